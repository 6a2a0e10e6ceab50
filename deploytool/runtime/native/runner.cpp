// deploytool_runner: runs the `forward` method of an ExecuTorch .pte file.
//
//   deploytool_runner MODEL.pte IN_DIR OUT_DIR [IN_DIR OUT_DIR ...]
//
// Each (IN_DIR, OUT_DIR) pair is one sample; the program is loaded once for all
// of them (under an emulator, a process per sample cost more than the model).
//
// Input i is read from IN_DIR/in_<i>.bin as raw little-endian bytes. Its dtype
// and shape come from the method's metadata; an optional IN_DIR/in_<i>.json
// ({"dtype": "float32", "shape": [1, 3]}) is checked against the metadata and
// may give a smaller shape for a dynamically shaped input. Scalar inputs
// (int/float/bool) are read as int64/float64/bool.
//
// Output j is written to OUT_DIR/out_<j>.bin (raw bytes) and OUT_DIR/out_<j>.json
// ({"dtype": "float32", "shape": [1, 10]}; "dim_order" is added when the
// tensor is not laid out contiguously).
//
// On failure the program exits non-zero and prints one line starting with
// "deploytool_runner: error: " on stderr. ExecuTorch's own log is held back and
// only the most relevant line of it is appended to that error, unless the
// environment variable DEPLOYTOOL_RUNNER_VERBOSE is set to a non-empty value
// other than "0", in which case it goes to stderr as it is emitted.

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor_ptr.h>
#include <executorch/runtime/core/error.h>
#include <executorch/runtime/core/evalue.h>
#include <executorch/runtime/core/exec_aten/exec_aten.h>
#include <executorch/runtime/core/exec_aten/util/scalar_type_util.h>
#include <executorch/runtime/platform/platform.h>
#include <executorch/runtime/platform/runtime.h>

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace fs = std::filesystem;

using executorch::aten::ScalarType;
using executorch::aten::Tensor;
using executorch::extension::TensorPtr;
using executorch::extension::make_tensor_ptr;
using executorch::extension::module::Module;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using executorch::runtime::MethodMeta;
using executorch::runtime::Tag;

namespace {

constexpr const char* kMethod = "forward";

// ---------------------------------------------------------------------------
// Log capture: ExecuTorch logs through the platform layer; keep the lines so
// that a failure can quote the runtime's own explanation.

bool g_verbose = false;
std::vector<std::string> g_log;  // "E file:line] message"

void capture_log(
    et_timestamp_t /*timestamp*/,
    et_pal_log_level_t level,
    const char* filename,
    const char* /*function*/,
    size_t line,
    const char* message,
    size_t length) {
  std::string msg(message, length);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == '\r')) {
    msg.pop_back();
  }
  const char* base = filename ? std::strrchr(filename, '/') : nullptr;
  base = base ? base + 1 : (filename ? filename : "?");
  std::ostringstream entry;
  entry << static_cast<char>(level) << ' ' << base << ':' << line << "] "
        << msg;
  if (g_verbose) {
    std::fprintf(stderr, "%s\n", entry.str().c_str());
    std::fflush(stderr);
  }
  if (level == kError || level == kFatal) {
    g_log.push_back(entry.str());
    if (g_log.size() > 32) {
      g_log.erase(g_log.begin());
    }
  }
}

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(const std::string& message) {
  throw Failure(message);
}

std::string error_name(Error e) {
  std::ostringstream s;
  s << executorch::runtime::to_string(e) << " (0x" << std::hex
    << static_cast<int>(e) << ")";
  return s.str();
}

// ---------------------------------------------------------------------------
// dtype names (numpy spelling)

const char* dtype_name(ScalarType t) {
  switch (t) {
    case ScalarType::Byte:
      return "uint8";
    case ScalarType::Char:
      return "int8";
    case ScalarType::Short:
      return "int16";
    case ScalarType::Int:
      return "int32";
    case ScalarType::Long:
      return "int64";
    case ScalarType::Half:
      return "float16";
    case ScalarType::Float:
      return "float32";
    case ScalarType::Double:
      return "float64";
    case ScalarType::Bool:
      return "bool";
    case ScalarType::BFloat16:
      return "bfloat16";
    case ScalarType::UInt16:
      return "uint16";
    case ScalarType::UInt32:
      return "uint32";
    case ScalarType::UInt64:
      return "uint64";
    default:
      return nullptr;
  }
}

std::string dtype_or_code(ScalarType t) {
  const char* name = dtype_name(t);
  if (name) {
    return name;
  }
  return "ScalarType(" + std::to_string(static_cast<int>(t)) + ")";
}

template <typename Seq>
std::string shape_str(const Seq& sizes) {
  std::ostringstream s;
  s << '[';
  bool first = true;
  for (auto v : sizes) {
    if (!first) {
      s << ", ";
    }
    first = false;
    s << static_cast<long long>(v);
  }
  s << ']';
  return s.str();
}

// ---------------------------------------------------------------------------
// Files

std::vector<uint8_t> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    fail("cannot open " + path.string());
  }
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0, std::ios::beg);
  std::vector<uint8_t> data(static_cast<size_t>(size));
  if (size > 0 &&
      !in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(size))) {
    fail("cannot read " + path.string());
  }
  return data;
}

void write_file(const fs::path& path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) {
    fail("cannot create " + path.string());
  }
  if (size > 0) {
    out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  out.close();
  if (!out) {
    fail("cannot write " + path.string());
  }
}

// Minimal reader for the side-car JSON the Python wrapper writes:
// {"dtype": "<name>", "shape": [d0, d1, ...]}. Not a general JSON parser.
struct InputSpec {
  bool has_dtype = false;
  std::string dtype;
  bool has_shape = false;
  std::vector<int64_t> shape;
};

InputSpec parse_input_spec(const fs::path& path) {
  const std::vector<uint8_t> raw = read_file(path);
  const std::string text(raw.begin(), raw.end());
  InputSpec spec;
  auto bad = [&](const std::string& why) {
    fail(path.filename().string() + ": " + why);
  };

  const size_t dk = text.find("\"dtype\"");
  if (dk != std::string::npos) {
    size_t p = text.find(':', dk);
    size_t q1 = p == std::string::npos ? p : text.find('"', p);
    size_t q2 = q1 == std::string::npos ? q1 : text.find('"', q1 + 1);
    if (q2 == std::string::npos) {
      bad("malformed \"dtype\"");
    }
    spec.has_dtype = true;
    spec.dtype = text.substr(q1 + 1, q2 - q1 - 1);
  }

  const size_t sk = text.find("\"shape\"");
  if (sk != std::string::npos) {
    size_t p = text.find(':', sk);
    size_t open = p == std::string::npos ? p : text.find('[', p);
    size_t close = open == std::string::npos ? open : text.find(']', open);
    if (close == std::string::npos) {
      bad("malformed \"shape\"");
    }
    spec.has_shape = true;
    std::string body = text.substr(open + 1, close - open - 1);
    for (char& c : body) {
      if (c == ',') {
        c = ' ';
      }
    }
    std::istringstream items(body);
    std::string item;
    while (items >> item) {
      char* end = nullptr;
      const long long v = std::strtoll(item.c_str(), &end, 10);
      if (end == item.c_str() || *end != '\0' || v < 0) {
        bad("bad dimension '" + item + "' in \"shape\"");
      }
      spec.shape.push_back(v);
    }
  }
  return spec;
}

// 64-byte aligned, zero-initialised buffer that outlives the tensor using it.
struct AlignedBuffer {
  void* ptr = nullptr;
  explicit AlignedBuffer(size_t size) {
    const size_t rounded = ((size + 63) / 64) * 64;
    ptr = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
    if (!ptr) {
      fail("out of memory allocating " + std::to_string(size) + " bytes");
    }
    std::memset(ptr, 0, rounded == 0 ? 64 : rounded);
  }
  ~AlignedBuffer() {
    std::free(ptr);
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
};

// ---------------------------------------------------------------------------
// Inputs

struct Inputs {
  std::vector<std::unique_ptr<AlignedBuffer>> buffers;
  std::vector<TensorPtr> tensors;
  std::vector<EValue> values;
  bool reshaped = false;  // some input shape differs from the metadata
};

EValue read_scalar_input(size_t i, Tag tag, const fs::path& bin) {
  const std::vector<uint8_t> data = read_file(bin);
  const std::string label = "input " + std::to_string(i) + " (" +
      bin.filename().string() + ")";
  switch (tag) {
    case Tag::Int: {
      if (data.size() != sizeof(int64_t)) {
        fail(label + ": expected 8 bytes (int64 scalar) but the file has " +
             std::to_string(data.size()) + " bytes");
      }
      int64_t v;
      std::memcpy(&v, data.data(), sizeof v);
      return EValue(v);
    }
    case Tag::Double: {
      if (data.size() != sizeof(double)) {
        fail(label + ": expected 8 bytes (float64 scalar) but the file has " +
             std::to_string(data.size()) + " bytes");
      }
      double v;
      std::memcpy(&v, data.data(), sizeof v);
      return EValue(v);
    }
    case Tag::Bool: {
      if (data.size() != 1) {
        fail(label + ": expected 1 byte (bool scalar) but the file has " +
             std::to_string(data.size()) + " bytes");
      }
      return EValue(data[0] != 0);
    }
    default:
      fail(label + ": unsupported input kind (tag " +
           std::to_string(static_cast<int>(tag)) + ")");
  }
}

Inputs read_inputs(const MethodMeta& meta, const fs::path& in_dir) {
  Inputs inputs;
  const size_t n = meta.num_inputs();
  for (size_t i = 0; i < n; ++i) {
    const std::string stem = "in_" + std::to_string(i);
    const fs::path bin = in_dir / (stem + ".bin");
    const fs::path json = in_dir / (stem + ".json");

    auto tag = meta.input_tag(i);
    if (!tag.ok()) {
      fail("cannot read the metadata of input " + std::to_string(i) + ": " +
           error_name(tag.error()));
    }
    if (tag.get() == Tag::None) {
      inputs.values.emplace_back();
      continue;
    }
    if (!fs::exists(bin)) {
      fail("missing input file " + bin.string() + " (method '" + kMethod +
           "' takes " + std::to_string(n) + " input(s))");
    }
    if (tag.get() != Tag::Tensor) {
      inputs.values.push_back(read_scalar_input(i, tag.get(), bin));
      continue;
    }

    auto info = meta.input_tensor_meta(i);
    if (!info.ok()) {
      fail("cannot read the tensor metadata of input " + std::to_string(i) +
           ": " + error_name(info.error()));
    }
    const ScalarType dtype = info->scalar_type();
    std::vector<executorch::aten::SizesType> sizes(
        info->sizes().begin(), info->sizes().end());
    const std::string label = "input " + std::to_string(i) + " (" +
        bin.filename().string() + ")";

    if (fs::exists(json)) {
      const InputSpec spec = parse_input_spec(json);
      if (spec.has_dtype && spec.dtype != dtype_or_code(dtype)) {
        fail(label + ": dtype " + spec.dtype + " given but the method expects " +
             dtype_or_code(dtype) + " " + shape_str(sizes));
      }
      if (spec.has_shape) {
        if (spec.shape.size() != sizes.size()) {
          fail(label + ": shape " + shape_str(spec.shape) +
               " given but the method expects rank " +
               std::to_string(sizes.size()) + " " + shape_str(sizes));
        }
        for (size_t d = 0; d < sizes.size(); ++d) {
          if (spec.shape[d] != sizes[d]) {
            inputs.reshaped = true;
          }
          sizes[d] = static_cast<executorch::aten::SizesType>(spec.shape[d]);
        }
      }
    }

    const char* name = dtype_name(dtype);
    if (!name) {
      fail(label + ": unsupported dtype " + dtype_or_code(dtype));
    }
    size_t numel = 1;
    for (auto s : sizes) {
      numel *= static_cast<size_t>(s);
    }
    const size_t expected = numel * executorch::runtime::elementSize(dtype);

    const std::vector<uint8_t> data = read_file(bin);
    if (data.size() != expected) {
      fail(label + ": expected " + std::to_string(expected) + " bytes (" +
           name + " " + shape_str(sizes) + ") but the file has " +
           std::to_string(data.size()) + " bytes");
    }

    auto buffer = std::make_unique<AlignedBuffer>(expected);
    if (expected > 0) {
      std::memcpy(buffer->ptr, data.data(), expected);
    }
    TensorPtr tensor = make_tensor_ptr(std::move(sizes), buffer->ptr, dtype);
    inputs.values.emplace_back(*tensor);
    inputs.tensors.push_back(std::move(tensor));
    inputs.buffers.push_back(std::move(buffer));
  }

  const fs::path extra = in_dir / ("in_" + std::to_string(n) + ".bin");
  if (fs::exists(extra)) {
    fail("found " + extra.filename().string() + " but method '" + kMethod +
         "' takes only " + std::to_string(n) + " input(s)");
  }
  return inputs;
}

// ---------------------------------------------------------------------------
// Outputs

void write_output(size_t j, const EValue& value, const fs::path& out_dir) {
  const std::string stem = "out_" + std::to_string(j);
  const fs::path bin = out_dir / (stem + ".bin");
  const fs::path json = out_dir / (stem + ".json");
  std::ostringstream meta;

  if (value.isTensor()) {
    const Tensor& t = value.toTensor();
    const char* name = dtype_name(t.scalar_type());
    if (!name) {
      fail("output " + std::to_string(j) + " has unsupported dtype " +
           dtype_or_code(t.scalar_type()));
    }
    write_file(bin, t.const_data_ptr(), t.nbytes());
    meta << "{\"dtype\": \"" << name << "\", \"shape\": "
         << shape_str(t.sizes());
    bool contiguous = true;
    const auto order = t.dim_order();
    for (size_t d = 0; d < order.size(); ++d) {
      if (order[d] != d) {
        contiguous = false;
      }
    }
    if (!contiguous) {
      meta << ", \"dim_order\": " << shape_str(order);
    }
    meta << "}\n";
  } else if (value.isInt()) {
    const int64_t v = value.toInt();
    write_file(bin, &v, sizeof v);
    meta << "{\"dtype\": \"int64\", \"shape\": []}\n";
  } else if (value.isDouble()) {
    const double v = value.toDouble();
    write_file(bin, &v, sizeof v);
    meta << "{\"dtype\": \"float64\", \"shape\": []}\n";
  } else if (value.isBool()) {
    const uint8_t v = value.toBool() ? 1 : 0;
    write_file(bin, &v, 1);
    meta << "{\"dtype\": \"bool\", \"shape\": []}\n";
  } else {
    fail("output " + std::to_string(j) + " is neither a tensor nor a scalar "
         "(tag " + std::to_string(static_cast<int>(value.tag)) + ")");
  }
  const std::string text = meta.str();
  write_file(json, text.data(), text.size());
}

// The most relevant runtime log line to quote in an error.
std::string runtime_detail() {
  if (g_log.empty()) {
    return "";
  }
  // The first error is usually the root cause; later ones are consequences.
  return " [runtime: " + g_log.front() + "]";
}

void run_sample(Module& module, const MethodMeta& meta, const fs::path& in_dir,
                const fs::path& out_dir) {
  if (!fs::is_directory(in_dir)) {
    fail("input directory not found: " + in_dir.string());
  }
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) {
    fail("cannot create output directory " + out_dir.string() + ": " +
         ec.message());
  }
  Inputs inputs = read_inputs(meta, in_dir);

  auto outputs = module.execute(kMethod, inputs.values);
  if (!outputs.ok()) {
    std::string hint;
    if (inputs.reshaped) {
      hint = " (an input shape differs from the exported one; the method may "
             "not accept dynamic shapes)";
    }
    fail(std::string("executing '") + kMethod + "' failed: " +
         error_name(outputs.error()) + hint + runtime_detail());
  }

  for (size_t j = 0; j < outputs->size(); ++j) {
    write_output(j, outputs->at(j), out_dir);
  }
}

int run(int argc, char** argv) {
  if (argc < 4 || argc % 2 != 0) {
    fail("usage: deploytool_runner MODEL.pte IN_DIR OUT_DIR [IN_DIR OUT_DIR ...]");
  }
  const fs::path model_path = argv[1];

  if (!fs::is_regular_file(model_path)) {
    fail("model file not found: " + model_path.string());
  }

  Module module(model_path.string(), Module::LoadMode::File);
  // Full flatbuffer verification: a corrupt or truncated file must fail with
  // an error, not crash the process.
  const Error load_error =
      module.load(executorch::runtime::Program::Verification::InternalConsistency);
  if (load_error != Error::Ok) {
    fail("cannot load program " + model_path.string() + ": " +
         error_name(load_error) + runtime_detail());
  }

  auto meta = module.method_meta(kMethod);
  if (!meta.ok()) {
    fail(std::string("program has no usable method '") + kMethod + "': " +
         error_name(meta.error()) + runtime_detail());
  }

  if (g_verbose) {
    std::string backends;
    for (size_t b = 0; b < meta->num_backends(); ++b) {
      auto name = meta->get_backend_name(b);
      backends += (b ? ", " : "") + std::string(name.ok() ? name.get() : "?");
    }
    std::fprintf(stderr,
                 "deploytool_runner: method '%s': %zu input(s), %zu output(s), "
                 "backends: %s\n",
                 kMethod, meta->num_inputs(), meta->num_outputs(),
                 backends.empty() ? "none" : backends.c_str());
  }

  const Error method_error = module.load_method(kMethod);
  if (method_error != Error::Ok) {
    fail(std::string("cannot load method '") + kMethod + "': " +
         error_name(method_error) + runtime_detail());
  }

  for (int pair = 2; pair + 1 < argc; pair += 2) {
    run_sample(module, meta.get(), argv[pair], argv[pair + 1]);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const char* verbose = std::getenv("DEPLOYTOOL_RUNNER_VERBOSE");
  g_verbose = verbose && *verbose && std::strcmp(verbose, "0") != 0;
  executorch::runtime::register_pal(
      executorch::runtime::PalImpl::create(capture_log, __FILE__));
  executorch::runtime::runtime_init();

  try {
    return run(argc, argv);
  } catch (const Failure& f) {
    std::string line = f.what();
    for (char& c : line) {
      if (c == '\n' || c == '\r') {
        c = ' ';
      }
    }
    std::fprintf(stderr, "deploytool_runner: error: %s\n", line.c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "deploytool_runner: error: unexpected exception: %s\n",
                 e.what());
    return 2;
  }
}

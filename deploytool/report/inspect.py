"""What is inside an artifact: which ops a backend runs, how many quantize/dequantize boundaries, the largest tensors.

    >>> from deploytool.report.inspect import inspect_artifact
    >>> print(inspect_artifact(Path("build/deploytool/android/model.pte")).text())

.pte: the program's flatbuffer (instructions outside any delegate) and each XNNPACK delegate's own graph,
decoded with the flatc and schema that ship with executorch. .onnx: the graph as written, and the graph
after onnxruntime's optimizations (which Q/DQ pairs became int8 kernels such as QLinearConv).
"""
from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deploytool.errors import UsageError

QDQ_WORDS = ("quantize", "dequantize", "QuantizeLinear", "DequantizeLinear", "XNNConvert")
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4, "int16": 2, "int8": 1,
               "uint8": 1, "qint8": 1, "qcint8": 1, "qint32": 4, "qcint32": 4, "qdint8": 1, "qcint4": 1, "bool": 1}
# The .pte's ScalarType names and XNNPACK's datatypes in numpy's words (as manifest.json has them), so one
# tensor is not "float" outside the delegate and "fp32" inside it.
DTYPE_NAMES = {"float": "float32", "fp32": "float32", "half": "float16", "fp16": "float16", "bf16": "bfloat16",
               "double": "float64", "long": "int64", "int": "int32", "short": "int16", "char": "int8", "byte": "uint8"}
TOP_TENSORS = 8


@dataclass
class TensorInfo:
    name: str
    shape: list[int]
    dtype: str
    constant: bool  # a weight / initializer, as opposed to an activation

    @property
    def bytes(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count * DTYPE_BYTES.get(self.dtype, 4)


def dtype_name(name: str) -> str:
    """One spelling per dtype: ExecuTorch's ScalarType and XNNPACK's datatype names as numpy's.

    >>> dtype_name("FLOAT"), dtype_name("xnn_datatype_fp32"), dtype_name("xnn_datatype_qcint8")
    ('float32', 'float32', 'qcint8')
    """
    name = name.lower().removeprefix("xnn_datatype_")
    return DTYPE_NAMES.get(name, name)


@dataclass
class Inspection:
    """An artifact's op-level picture. `delegated` maps backend -> op counts inside it."""

    path: Path
    format: str
    delegated: dict[str, dict[str, int]] = field(default_factory=dict)
    not_delegated: dict[str, int] = field(default_factory=dict)  # op -> count on the runtime's own kernels
    qdq_boundaries: int = 0  # quantize + dequantize ops anywhere: each is a conversion pass over a tensor
    tensors: list[TensorInfo] = field(default_factory=list)  # the largest, biggest first
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path),
                "tensors": [{**asdict(t), "bytes": t.bytes} for t in self.tensors]}

    def text(self) -> str:
        lines = [f"{self.path} ({self.format})"]
        for backend, ops in self.delegated.items():
            lines.append(f"  {backend}: {sum(ops.values())} ops")
            lines += [f"    {op:<40} x{count}" for op, count in _by_count(ops)]
        if self.format == "pte":
            lines.append(f"  not delegated (ExecuTorch's own kernels): {sum(self.not_delegated.values())} ops")
            lines += [f"    {op:<40} x{count}" for op, count in _by_count(self.not_delegated)]
        lines.append(f"  quantize/dequantize boundaries: {self.qdq_boundaries}")
        lines.append("  largest tensors:")
        lines += [f"    {t.bytes / 1024:10.1f} KiB  {t.dtype:<14} {str(t.shape):<22} "
                  f"{'weight' if t.constant else 'activation'}  {t.name}" for t in self.tensors]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def inspect_artifact(path: Path, fmt: str | None = None) -> Inspection:
    """Inspect a .pte or .onnx file; `fmt` defaults to the one its name says."""
    from deploytool.bench import guess_format

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} does not exist.", hint="Pass an exported .pte or .onnx file.")
    fmt = fmt or guess_format(path)[0]
    if fmt == "pte":
        return inspect_pte(path)
    if fmt == "onnx":
        return inspect_onnx(path)
    raise UsageError(f"`inspect` reads .pte and .onnx files; {path.name} is {fmt}.",
                     hint="Inspect the model.pte or model.onnx exported next to it.")


def inspect_pte(path: Path) -> Inspection:
    """Ops outside delegates (KernelCall instructions), ops inside each XNNPACK delegate, and tensors of both."""
    from executorch.exir._serialize._program import deserialize_pte_binary
    from executorch.exir.schema import DelegateCall, KernelCall, Tensor

    program = deserialize_pte_binary(path.read_bytes()).program
    result = Inspection(path, "pte")
    for plan in program.execution_plan:
        for chain in plan.chains:
            for instruction in chain.instructions:
                args = instruction.instr_args
                if isinstance(args, KernelCall):
                    op = plan.operators[args.op_index]
                    name = f"{op.name}.{op.overload}" if op.overload else op.name
                    result.not_delegated[name] = result.not_delegated.get(name, 0) + 1
                elif isinstance(args, DelegateCall):
                    delegate = plan.delegates[args.delegate_index]
                    ops, tensors = _delegate_graph(delegate, program)
                    backend = f"delegated to {delegate.id}"
                    result.delegated[backend] = dict(Counter(result.delegated.get(backend, {})) + ops)
                    result.tensors += tensors
        result.tensors += [TensorInfo(f"{plan.name} value {i}", list(v.val.sizes), dtype_name(v.val.scalar_type.name),
                                      v.val.data_buffer_idx > 0)
                           for i, v in enumerate(plan.values) if isinstance(v.val, Tensor)]
    result.qdq_boundaries = sum(n for ops in (result.not_delegated, *result.delegated.values())
                                for op, n in ops.items() if any(w in op for w in QDQ_WORDS))
    result.tensors = sorted(result.tensors, key=lambda t: t.bytes, reverse=True)[:TOP_TENSORS]
    if any("XNNConvert" in ops for ops in result.delegated.values()):
        result.notes.append("XNNConvert is XNNPACK's quantize/dequantize between float32 and int8 tensors")
    return result


def _delegate_graph(delegate, program) -> tuple[Counter, list[TensorInfo]]:
    """An XNNPACK delegate's node types and tensors; other backends are counted as one opaque call."""
    from executorch.exir.schema import DataLocation

    if delegate.id != "XnnpackBackend" or delegate.processed.location != DataLocation.INLINE:
        return Counter({f"{delegate.id} call": 1}), []
    graph = _xnnpack_graph(program.backend_delegate_data[delegate.processed.index].data)
    ops = Counter(node["xnode_union_type"] for node in graph["xnodes"])
    tensors = []
    for value in graph["xvalues"]:
        tensor = value["xvalue_union"].get("tensor_value", value["xvalue_union"])
        if "dims" in tensor:
            tensors.append(TensorInfo(f"xnnpack value {tensor.get('id_out')}", tensor["dims"],
                                      dtype_name(tensor["datatype"]),
                                      tensor.get("constant_buffer_idx", 0) > 0 or bool(tensor.get("constant_key"))))
    return ops, tensors


def _xnnpack_graph(blob: bytes) -> dict[str, Any]:
    """The XNNGraph flatbuffer of a delegate blob as JSON, through executorch's flatc and XNNPACK schema."""
    import importlib.resources

    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader
    from executorch.exir._serialize._flatbuffer import _flatc_decompile

    header = XNNHeader.from_bytes(blob[:XNNHeader.EXPECTED_LENGTH])
    schema = importlib.resources.files("executorch.backends.xnnpack.serialization") / "schema.fbs"
    with tempfile.TemporaryDirectory(prefix="deploytool-inspect-") as scratch:
        folder = Path(scratch)
        (folder / "schema.fbs").write_bytes(schema.read_bytes())
        start = header.flatbuffer_offset
        (folder / "graph.bin").write_bytes(blob[start:start + header.flatbuffer_size])
        _flatc_decompile(scratch, str(folder / "schema.fbs"), str(folder / "graph.bin"))
        text = (folder / "graph.json").read_text()
    # flatc writes clamp bounds as bare inf/nan, which JSON spells Infinity/NaN.
    return json.loads(re.sub(r"(?<=[:\[,\s])(-?)(inf|nan)\b",
                             lambda m: m.group(1) + ("Infinity" if m.group(2) == "inf" else "NaN"), text))


def inspect_onnx(path: Path) -> Inspection:
    """Op types as written and after onnxruntime's optimizations (what the CPU EP really runs), initializers."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    result = Inspection(path, "onnx")
    written = Counter(node.op_type for node in model.graph.node)
    optimized = _ort_optimized_ops(path)
    result.delegated["onnxruntime CPU EP, after its graph optimizations"] = dict(optimized)
    result.qdq_boundaries = sum(n for op, n in optimized.items() if op in QDQ_WORDS)
    result.tensors = sorted((TensorInfo(init.name, list(init.dims), numpy_helper.to_array(init).dtype.name, True)
                             for init in model.graph.initializer), key=lambda t: t.bytes, reverse=True)[:TOP_TENSORS]
    listed = ", ".join(f"{op} x{n}" for op, n in _by_count(written))
    result.notes.append(f"as written: {sum(written.values())} nodes ({listed})")
    return result


def _ort_optimized_ops(path: Path) -> Counter:
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="deploytool-inspect-") as scratch:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # its warning that the saved graph is machine-specific: this one never leaves
        options.optimized_model_filepath = str(Path(scratch) / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return Counter(node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node)


def _by_count(ops: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(ops.items(), key=lambda item: (-item[1], item[0]))

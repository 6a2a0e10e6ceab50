""".pt2 (AOTInductor package): each wrapper.cpp's constants table and the kernels it calls."""
from __future__ import annotations

import re
import zipfile
from collections import Counter
from pathlib import Path

from deploytool.report.inspect.types import ComputeOp, Inspection, TensorInfo

AOTI_DTYPES = {"float32": "float32", "float": "float32", "float16": "float16", "half": "float16",
               "bfloat16": "bfloat16", "float64": "float64", "int64": "int64", "int32": "int32", "int16": "int16",
               "int8": "int8", "uint8": "uint8", "bool": "bool", "qint8": "qint8", "quint8": "quint8",
               "qint32": "qint32"}
AOTI_QPARAM_NAME = re.compile(r"(^|_)(scale|zp|zero_point)(_\d+)*$")
AOTI_CALL = re.compile(r"aoti_torch_(\w+)\(")  # a literal prefix: fast over a wrapper of megabytes
AOTI_CONSTANT = re.compile(r"constants_info_\[(\d+)\]\.(\w+) = ([^;\n]*);")


def inspect_aoti(path: Path) -> Inspection:
    """An AOTInductor package: each wrapper.cpp's constants table (name, dtype, stored size, shape) and the
    conv / linear / matmul kernels it calls (int8: qlinear / qconv pointwise), counted as ops."""
    result = Inspection(path, "aoti")
    with zipfile.ZipFile(path) as archive:
        wrappers = [name for name in archive.namelist() if name.endswith(".wrapper.cpp")]
        if not wrappers:
            result.notes.append("no AOTInductor wrapper.cpp in the package: its constants and kernels are unknown")
        for name in wrappers:
            text = archive.read(name).decode("utf-8", "replace")
            constants = _aoti_constants(text)
            result.tensors += constants
            _name_by_kernel(constants, text)
            calls = Counter(AOTI_CALL.findall(text))
            for call, count in calls.items():
                if not call.startswith("cpu_") and not re.search(r"mm|conv|linear", call):
                    continue  # the shim's own helpers: empty_strided, get_dtype...
                op = call.removeprefix("cpu_")
                result.not_delegated[op] = result.not_delegated.get(op, 0) + count
                compute = _aoti_compute(op)
                if compute:
                    result.compute += [ComputeOp(compute[0], op, compute[1])] * count
            fused = re.findall(r"^\s*(cpp_fused_\w+)\(", text, flags=re.MULTILINE)  # calls, not declarations
            if fused:
                key = "cpp_fused_* (Inductor's generated C++ loops)"
                result.not_delegated[key] = result.not_delegated.get(key, 0) + len(fused)
            # a quantize / dequantize fused into a generated loop still is one conversion pass over a tensor
            result.qdq_boundaries += sum("quantize" in kernel for kernel in fused)
    result.qdq_boundaries += sum(n for op, n in result.not_delegated.items() if "quantize" in op)
    result.tensors.sort(key=lambda t: t.bytes, reverse=True)
    return result


def _aoti_constants(text: str) -> list[TensorInfo]:
    fields: dict[int, dict[str, str]] = {}
    for index, name, value in AOTI_CONSTANT.findall(text):
        fields.setdefault(int(index), {})[name] = value.strip()
    tensors = []
    for entry in fields.values():
        name = entry.get("name", "").strip('"')
        fqn = entry.get("original_fqn", "").strip('"')
        raw = re.sub(r"^.*dtype_", "", entry.get("dtype", "float32"))
        dtype = AOTI_DTYPES.get(raw, raw)
        shape = [int(d) for d in re.findall(r"-?\d+", entry.get("shape", ""))]
        size = entry.get("data_size", "")
        stored = int(size) if size.isdigit() else None
        tensors.append(TensorInfo(fqn or name, shape, dtype, True, stored,
                                  qparam=bool(AOTI_QPARAM_NAME.search(name))))
    return tensors


def _name_by_kernel(constants: list[TensorInfo], text: str) -> None:
    """Constants Inductor made up (_frozen_param3) named by the compute kernel that reads them."""
    unnamed = {t.name: t for t in constants if re.fullmatch(r"_frozen_param\d+|constant\d+", t.name)}
    if not unnamed:
        return
    for op, args in re.findall(r"aoti_torch_cpu_(\w+)\(([^;]*)\);", text):
        if _aoti_compute(op.removesuffix("_out")) is None:
            continue
        for word in re.findall(r"\w+", args):
            tensor = unnamed.pop(word, None)
            if tensor is not None:
                tensor.name = f"{word}, read by {op}"


def _aoti_compute(op: str) -> tuple[str, bool] | None:
    """(kind, int8) of a kernel the wrapper calls, or None when it is no conv / linear / matmul."""
    name = op.removesuffix("_out")
    int8 = bool(re.search(r"(^|_)q(linear|conv)|int8|_int_mm|da8w8", name))
    if re.search(r"rnn|lstm|gru", name):
        return "rnn", int8
    if "conv" in name:
        return "conv", int8
    if "linear" in name:
        return "linear", int8
    if "scaled_dot_product" in name:
        return "attention", False
    if re.search(r"(^|_)(addmm|mkl_linear)$", name):
        return "linear", int8
    if re.search(r"(^|_)(mm|bmm|baddbmm|matmul|addbmm)$", name) or int8 and "mm" in name:
        return "matmul", int8
    return None

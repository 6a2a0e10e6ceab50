""".pte and .bpte (ExecuTorch): the program's instructions outside any delegate, each XNNPACK delegate's own
graph, the tensors of both and the conv / linear / matmul calls with their MACs."""
from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path
from typing import Any

from deploytool.errors import UsageError
from deploytool.report.inspect.flatbuffer import Flatbuffer, Table, read_schema, u32
from deploytool.report.inspect.types import EIGHT_BIT, QDQ_WORDS, ComputeOp, Inspection, TensorInfo, dtype_name, prod

XNN_COMPUTE = {"XNNConv2d": "conv", "XNNDepthwiseConv2d": "conv", "XNNConvTranspose2d": "conv",
               "XNNFullyConnected": "linear", "XNNBatchMatrixMultiply": "matmul",
               "XNNScaledDotProductAttention": "attention"}
XNN_QUANTIZED_INPUT = frozenset({"qint8", "quint8", "qdint8", "qpint8"})
# Outside delegates: ExecuTorch's portable kernels run these in float (their int8 weights are dequantized first).
PTE_COMPUTE = {"aten::convolution": "conv", "aten::_convolution": "conv", "aten::linear": "linear",
               "aten::addmm": "linear", "aten::mm": "matmul", "aten::bmm": "matmul", "aten::matmul": "matmul",
               "aten::baddbmm": "matmul"}


def inspect_pte(path: Path) -> Inspection:
    """Ops outside delegates (KernelCall instructions), ops inside each XNNPACK delegate, tensors of both, and
    the conv / linear / matmul calls with their MACs."""
    return _inspect_program(Path(path).read_bytes(), Path(path), "pte")


def inspect_bpte(path: Path) -> Inspection:
    """A BundledProgram: the .pte it wraps (its `program` bytes), inspected as a .pte."""
    return _inspect_program(_bundled_program_bytes(Path(path).read_bytes()), Path(path), "bpte")


def _bundled_program_bytes(blob: bytes) -> bytes:
    """The `program` vector of a BundledProgram flatbuffer (its third field: version, method_test_suites,
    program)."""
    table = u32(blob, 0)
    vtable = table - struct.unpack_from("<i", blob, table)[0]
    slot = 4 + 2 * 2
    has_slot = slot < struct.unpack_from("<H", blob, vtable)[0]
    offset = struct.unpack_from("<H", blob, vtable + slot)[0] if has_slot else 0
    if not offset:
        raise UsageError("this .bpte holds no program.")
    vector = table + offset + u32(blob, table + offset)
    return blob[vector + 4:vector + 4 + u32(blob, vector)]


def _inspect_program(data: bytes, path: Path, fmt: str) -> Inspection:
    """Read with executorch's own program.fbs and XNNPACK schema.fbs, by a small flatbuffer reader that decodes
    only what is asked for: no torch import, no flatc process, a few ms per delegate."""
    schema = read_schema("exir/_serialize/scalar_type.fbs", "exir/_serialize/program.fbs")
    scalar_types = schema.enums["ScalarType"][1]
    segment_base = 0
    if data[8:12] == b"eh00":  # extended header (program size, segment base): delegate blobs follow the program
        segment_base = struct.unpack_from("<Q", data, 24)[0]
    program = Table(Flatbuffer(data, schema), u32(data, 0), "Program")
    segments = program.get("segments", [])
    delegate_data = program.get("backend_delegate_data", [])
    result = Inspection(path, fmt)
    seen_keys: set[str] = set()  # XNNPACK constants are shared through the named data store: count each once
    for plan in program.get("execution_plan", []):
        plan_name = plan.get("name", "forward")
        values = [value.get("val") for value in plan.get("values", [])]
        operators = [(op.get("name", ""), op.get("overload", "")) for op in plan.get("operators", [])]
        delegates = plan.get("delegates", [])
        readers: dict[int, str] = {}  # value index -> the first op outside delegates that reads it
        for chain in plan.get("chains", []):
            for instruction in chain.get("instructions", []):
                args = instruction.get("instr_args")
                if args is None:
                    continue
                if args.kind == "KernelCall":
                    name, overload = operators[args.get("op_index", 0)]
                    label = f"{name}.{overload}" if overload else name
                    result.not_delegated[label] = result.not_delegated.get(label, 0) + 1
                    indices = list(args.get("args", []))
                    for index in indices:
                        readers.setdefault(index, name)
                    if name in PTE_COMPUTE:
                        result.compute.append(_kernel_call_compute(name, indices, values))
                elif args.kind == "DelegateCall":
                    delegate = delegates[args.get("delegate_index", 0)]
                    backend_id = delegate.get("id", "")
                    processed = delegate.get("processed")
                    blob = None
                    if processed is not None:
                        index = processed.get("index", 0)
                        if processed.get("location", 0) == 1:  # SEGMENT
                            segment = segments[index]
                            start = segment_base + segment.get("offset", 0)
                            blob = data[start:start + segment.get("size", 0)]
                        else:
                            blob = delegate_data[index].get("data", b"")
                    ops, tensors, compute = _delegate_graph(backend_id, blob, seen_keys)
                    backend = f"delegated to {backend_id}"
                    result.delegated[backend] = dict(Counter(result.delegated.get(backend, {})) + ops)
                    result.tensors += tensors
                    result.compute += compute
        for i, value in enumerate(values):
            if value is None or value.kind != "Tensor":
                continue
            extra = value.get("extra_tensor_info")
            external = extra is not None and extra.get("location", 0) == 1  # EXTERNAL
            name = extra.get("fully_qualified_name") if extra is not None else None
            if not name:
                name = f"{plan_name} value {i}" + (f", read by {readers[i]}" if i in readers else "")
            dtype = dtype_name(scalar_types.get(value.get("scalar_type", 0), "byte"))
            result.tensors.append(TensorInfo(name, list(value.get("sizes", [])), dtype,
                                             value.get("data_buffer_idx", 0) > 0 or external))
    result.qdq_boundaries = sum(n for ops in (result.not_delegated, *result.delegated.values())
                                for op, n in ops.items() if any(w in op for w in QDQ_WORDS))
    result.tensors.sort(key=lambda t: t.bytes, reverse=True)
    if any("XNNConvert" in ops for ops in result.delegated.values()):
        result.notes.append("XNNConvert is XNNPACK's quantize/dequantize between float32 and int8 tensors")
    return result


def _kernel_call_compute(op: str, arg_indices: list[int], values: list) -> ComputeOp:
    """A conv / linear / matmul outside any delegate: MACs from its tensors' sizes (the out tensor is last)."""
    sizes = [list(values[i].get("sizes", [])) for i in arg_indices
             if 0 <= i < len(values) and values[i] is not None and values[i].kind == "Tensor"]
    kind = PTE_COMPUTE[op]
    macs = None
    if len(sizes) >= 3 or (len(sizes) >= 2 and kind == "matmul"):
        out = prod(sizes[-1])
        if kind == "conv":
            macs = out * prod(sizes[1][1:])
        elif op in ("aten::addmm", "aten::linear", "aten::baddbmm"):
            macs = out * sizes[1][-1]
        else:
            macs = out * sizes[0][-1]
    return ComputeOp(kind, op, False, macs)


def _delegate_graph(backend_id: str, blob: bytes | None, seen_keys: set[str] | None = None
                    ) -> tuple[Counter, list[TensorInfo], list[ComputeOp]]:
    """An XNNPACK delegate's node types, tensors (constants sized by the delegate's constant table, named by the
    node that uses them) and compute nodes; other backends are counted as one opaque call."""
    if backend_id != "XnnpackBackend" or not blob:
        return Counter({f"{backend_id} call": 1}), [], []
    graph = _xnnpack_graph(blob)
    seen_keys = set() if seen_keys is None else seen_keys
    ops = Counter(node["xnode_union_type"] for node in graph["xnodes"])
    constant_data = graph.get("constant_data") or []
    values = {}
    for value in graph["xvalues"]:
        tensor = value["xvalue_union"].get("tensor_value", value["xvalue_union"])
        values[tensor.get("id_out", 0)] = tensor
    roles: dict[int, str] = {}
    compute = []
    for node in graph["xnodes"]:
        kind = XNN_COMPUTE.get(node["xnode_union_type"])
        if kind is None:
            continue
        fields = node["xnode_union"]
        op = node["xnode_union_type"]
        for role in ("filter_id", "bias_id", "input2_id"):
            if role in fields:
                roles.setdefault(fields[role], f"{op.removeprefix('XNN')} "
                                               f"{role.removesuffix('_id').replace('input2', 'weight')}")
        compute.append(_xnn_compute(op, kind, fields, values))
    tensors = []
    for entry in constant_data:  # per-channel scales live in the constant table too, under "scale_<hash>" keys
        key = entry.get("named_key") or ""
        if key.startswith("scale_") and key not in seen_keys:
            seen_keys.add(key)
            tensors.append(TensorInfo("quantization scales", [], "float32", True, int(entry.get("size", 0)), True))
    for value_id, tensor in values.items():
        buffer = tensor.get("constant_buffer_idx", 0)
        constant = buffer > 0
        stored = None
        if constant and buffer < len(constant_data):
            entry = constant_data[buffer]
            key = entry.get("named_key") or ""
            if key:
                if key in seen_keys:
                    continue  # the same weights, stored once, used by another delegate
                seen_keys.add(key)
            stored = int(entry.get("size", 0)) or None
        tensors.append(TensorInfo(roles.get(value_id, f"xnnpack value {value_id}"), list(tensor.get("dims", [])),
                                  dtype_name(tensor.get("datatype", "fp32")), constant, stored))
    return ops, tensors, compute


def _xnn_compute(op: str, kind: str, fields: dict, values: dict) -> ComputeOp:
    """MACs of one XNNPACK compute node from its tensors' dims; int8 when its weight and input are quantized."""
    def dims(key: str) -> list[int]:
        return list(values.get(fields.get(key), {}).get("dims", []))

    def dtype(key: str) -> str:
        return dtype_name(values.get(fields.get(key), {}).get("datatype", "fp32"))

    out = prod(dims("output_id"))
    if kind == "conv":
        kernel = fields.get("kernel_height", 1) * fields.get("kernel_width", 1)
        if op == "XNNConvTranspose2d":
            macs = prod(dims("input1_id")) * kernel * fields.get("group_output_channels", 1)
        else:
            macs = out * kernel * fields.get("group_input_channels", 1)
        weight, activation = dtype("filter_id"), dtype("input1_id")
    elif kind == "linear":
        macs = out * (dims("input1_id") or [1])[-1]
        weight, activation = dtype("filter_id"), dtype("input1_id")
    elif kind == "matmul":
        macs = out * (dims("input1_id") or [1])[-1]
        weight, activation = dtype("input2_id"), dtype("input1_id")
    else:  # attention: Q.K^T and the weighted sum of V
        query, key = dims("query_id"), dims("key_id")
        macs = 2 * prod(query) * (key[-2] if len(key) >= 2 else 1)
        weight, activation = dtype("key_id"), dtype("query_id")
    int8 = weight in EIGHT_BIT and activation in XNN_QUANTIZED_INPUT | EIGHT_BIT
    return ComputeOp(kind, op, int8, macs)


def _xnnpack_graph(blob: bytes) -> dict[str, Any]:
    """The XNNGraph flatbuffer of a delegate blob as the JSON flatc writes it (enums by name, unions as
    `<field>_type` + `<field>`, scalars at their default included), read with executorch's XNNPACK schema."""
    start, size = 0, len(blob)
    if blob[4:8] == b"XH00":  # XNNHeader: magic, header length, flatbuffer offset and size, constant data
        start, size = struct.unpack_from("<II", blob, 10)
    schema = read_schema("backends/xnnpack/serialization/schema.fbs")
    buffer = Flatbuffer(blob[start:start + size], schema)
    return Table(buffer, u32(buffer.data, 0), "XNNGraph").to_json()

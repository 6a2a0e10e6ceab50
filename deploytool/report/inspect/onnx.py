""".onnx: initializers and nodes as written, the graph after onnxruntime's optimizations, and the conv / matmul /
gemm nodes with their MACs and whether they run in int8 kernels."""
from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

from deploytool.report.inspect.types import EIGHT_BIT, QDQ_WORDS, ComputeOp, Inspection, TensorInfo, by_count, prod

# Inputs that are scales and zero points, by op: not weights.
ONNX_QPARAM_INPUTS = {"QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2), "QLinearConv": (1, 2, 4, 5, 6, 7),
                      "QLinearMatMul": (1, 2, 4, 5, 6, 7), "ConvInteger": (2, 3), "MatMulInteger": (2, 3),
                      "QGemm": (1, 2, 4, 5, 7, 8), "MatMulIntegerToFloat": (2, 3, 4, 5),
                      "DynamicQuantizeMatMul": (2, 3), "QLinearAdd": (1, 2, 4, 5, 6, 7),
                      "QLinearMul": (1, 2, 4, 5, 6, 7)}
ONNX_INT8_COMPUTE = {"ConvInteger": "conv", "QLinearConv": "conv", "MatMulInteger": "matmul",
                     "QLinearMatMul": "matmul", "QGemm": "linear", "MatMulIntegerToFloat": "matmul",
                     "DynamicQuantizeMatMul": "matmul", "QAttention": "attention", "DynamicQuantizeLSTM": "rnn"}
ONNX_FLOAT_COMPUTE = {"Conv": "conv", "ConvTranspose": "conv", "FusedConv": "conv", "MatMul": "matmul",
                      "FusedMatMul": "matmul", "Gemm": "linear", "Attention": "attention", "LSTM": "rnn",
                      "GRU": "rnn", "RNN": "rnn"}
ONNX_WEIGHT_INPUT = {"QLinearConv": 3, "QLinearMatMul": 3, "QGemm": 3}  # else input 1
ONNX_PASS_THROUGH = frozenset({"Transpose", "Reshape", "Identity", "Unsqueeze", "Squeeze", "Flatten"})


def inspect_onnx(path: Path, optimized: bool | None = True) -> Inspection:
    """Op types as written and after onnxruntime's optimizations (what the CPU EP really runs), initializers,
    and the conv / matmul / gemm nodes with their MACs (from ONNX shape inference) and whether they run int8.

    Which nodes run in int8 kernels is read from onnxruntime's optimized graph (a QDQ Conv that became
    QLinearConv keeps its node's name); `optimized=None` builds that graph only for a quantized graph (holdings:
    an fp32 graph runs nothing in int8), False never (the QDQ pattern rules below decide).
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    result = Inspection(path, "onnx")
    written = Counter(node.op_type for node in model.graph.node)
    quantized = any(op in ONNX_QPARAM_INPUTS or op in ONNX_INT8_COMPUTE or op == "DynamicQuantizeLinear"
                    for op in written)
    runs = None  # node name -> op type, after onnxruntime's optimizations
    if optimized or (optimized is None and quantized):
        try:
            runs = _ort_optimized_nodes(path)
        except ImportError:
            result.notes.append("onnxruntime is not installed: int8 kernels judged from the QDQ patterns")
    if runs is not None:
        ops = Counter(runs.values())
        result.delegated["onnxruntime CPU EP, after its graph optimizations"] = dict(ops)
        result.qdq_boundaries = sum(n for op, n in ops.items() if op in QDQ_WORDS)
    else:
        result.qdq_boundaries = sum(n for op, n in written.items() if op in QDQ_WORDS)
    _onnx_contents(model, result, runs)
    listed = ", ".join(f"{op} x{n}" for op, n in by_count(written))
    result.notes.append(f"as written: {sum(written.values())} nodes ({listed})")
    return result


def _onnx_contents(model, result: Inspection, runs: dict[str, str] | None = None) -> None:
    from onnx import helper, shape_inference

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    for node in graph.node:  # weights some exporters write as Constant nodes
        value = next((a.t for a in node.attribute if a.name == "value" and a.HasField("t")), None)
        if node.op_type == "Constant" and value is not None and node.output and value.dims:
            initializers.setdefault(node.output[0], value)
            value.name = node.output[0]
    producer = {out: node for node in graph.node for out in node.output if out not in initializers}
    qparams: set[str] = set()
    dequantized: set[str] = set()  # initializers read by DequantizeLinear: quantized data (an int32 is a qint32)
    for node in graph.node:
        for index in ONNX_QPARAM_INPUTS.get(node.op_type, ()):
            if index < len(node.input):
                qparams.add(node.input[index])
        if node.op_type == "DequantizeLinear" and node.input:
            dequantized.add(node.input[0])

    def dtype_of(init) -> str:
        name = helper.tensor_dtype_to_np_dtype(init.data_type).name
        return "qint32" if name == "int32" and init.name in dequantized else name

    result.tensors = sorted((TensorInfo(init.name, list(init.dims), dtype_of(init), True,
                                        qparam=init.name in qparams and init.name not in dequantized)
                             for init in initializers.values()), key=lambda t: t.bytes, reverse=True)

    try:
        inferred = shape_inference.infer_shapes(model).graph
    except Exception:  # noqa: BLE001 - a graph shape inference cannot follow: MACs unknown, ops still counted
        inferred = graph
    shapes: dict[str, list[int] | None] = {}
    for info in (*inferred.value_info, *inferred.input, *inferred.output):
        dims = info.type.tensor_type.shape.dim
        # a symbolic axis (batch) counts as 1: MACs per sample
        shapes[info.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in dims] \
            if info.type.tensor_type.HasField("shape") else None
    for name, init in initializers.items():
        shapes[name] = list(init.dims)

    def source(name: str):
        """The node a value comes from, through reshapes and transposes."""
        node = producer.get(name)
        while node is not None and node.op_type in ONNX_PASS_THROUGH and node.input:
            name = node.input[0]
            node = producer.get(name)
        return node

    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def requantized(name: str) -> bool:
        """Every reader of the value is a QuantizeLinear (through a Relu / Clip onnxruntime folds into it)."""
        readers = consumers.get(name, [])
        return bool(readers) and all(
            reader.op_type == "QuantizeLinear"
            or reader.op_type in ("Relu", "Clip") and requantized(reader.output[0]) for reader in readers)

    def dequantized_8bit(name: str) -> bool:
        """A value dequantized from 8 bits: an int8 / uint8 initializer, or an activation through Q -> DQ."""
        node = source(name)
        if node is None or node.op_type != "DequantizeLinear":
            return False
        data = node.input[0]
        return dtype_of(initializers[data]) in EIGHT_BIT if data in initializers else True

    for node in graph.node:
        kind = ONNX_INT8_COMPUTE.get(node.op_type)
        int8 = kind is not None
        kind = kind or ONNX_FLOAT_COMPUTE.get(node.op_type)
        if kind is None:
            continue
        weight_index = ONNX_WEIGHT_INPUT.get(node.op_type, 1)
        weight = node.input[weight_index] if len(node.input) > weight_index else ""
        if not int8 and runs is not None and node.name in runs:
            int8 = runs[node.name] in ONNX_INT8_COMPUTE  # what onnxruntime made of this node
        elif not int8 and kind not in ("attention", "rnn"):  # onnxruntime has no QDQ fusion for these
            # onnxruntime's QDQ fusions: DQ -> Conv / MatMul -> Q becomes QLinearConv / QLinearMatMul, DQ -> Gemm
            # becomes QGemm (its output may stay float); anything else runs in float on dequantized inputs.
            int8 = dequantized_8bit(weight) and dequantized_8bit(node.input[0]) and (
                node.op_type == "Gemm" or requantized(node.output[0]))
        result.compute.append(ComputeOp(kind, node.op_type, int8, _onnx_macs(node, kind, weight, shapes,
                                                                             source, initializers)))


def _onnx_macs(node, kind: str, weight: str, shapes: dict, source, initializers) -> int | None:
    if kind == "rnn":  # every step multiplies the input by W and the state by R (all gates): T x B x (|W| + |R|)
        first, recurrence = shapes.get(node.input[0]), shapes.get(node.input[2]) if len(node.input) > 2 else None
        weight_shape = shapes.get(weight)
        if not (first and recurrence and weight_shape) or len(first) != 3:
            return None
        layout = next((a.i for a in node.attribute if a.name == "layout"), 0)
        steps, batch = (first[1], first[0]) if layout else (first[0], first[1])
        return steps * batch * (prod(weight_shape) + prod(recurrence))
    out = shapes.get(node.output[0]) if node.output else None
    if not out or kind == "attention":
        return None
    weight_shape = shapes.get(weight)
    if weight_shape is None:  # through a DequantizeLinear (or Transpose) to its initializer
        origin = source(weight)
        if origin is not None and origin.input and origin.input[0] in initializers:
            weight_shape = list(initializers[origin.input[0]].dims)
    if kind == "conv":
        if not weight_shape or len(weight_shape) < 3:
            return None
        if node.op_type == "ConvTranspose":
            first = shapes.get(node.input[0])
            return prod(first) * prod(weight_shape[1:]) if first else None
        return prod(out) * prod(weight_shape[1:])
    first = shapes.get(node.input[0])
    if node.op_type in ("Gemm", "QGemm"):
        if not first or len(first) != 2:
            return None
        trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
        return prod(out) * first[0 if trans_a else 1]
    return prod(out) * first[-1] if first else None


def _ort_optimized_ops(path: Path) -> Counter:
    return Counter(_ort_optimized_nodes(path).values())


def _ort_optimized_nodes(path: Path) -> dict[str, str]:
    """Node name -> op type of the graph onnxruntime's CPU EP runs, after all its graph optimizations."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="deploytool-inspect-") as scratch:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # its warning that the saved graph is machine-specific: this one never leaves
        options.optimized_model_filepath = str(Path(scratch) / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(options.optimized_model_filepath, load_external_data=False).graph
        return {node.name or f"#{i}": node.op_type for i, node in enumerate(graph.node)}

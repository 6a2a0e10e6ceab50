"""int8 ONNX with onnxruntime's static quantizer, calibrated on the same real samples as the PT2E path.

Activations and weights are both uint8 (U8U8). onnxruntime's default, int8 activations and weights, runs as u8 x s8
on x86-64 (its QDQ transformer shifts s8 activations to u8), and on CPUs without VNNI its u8 x s8 kernels sum pairs
of products in 16 bits with VPMADDUBSW, which saturates: on an AVX2 EPYC the int8 ONNX lost 4-21 dB against its own
QDQ reference. The U8U8 kernels widen to 16 bits before multiplying and cannot saturate; VNNI, AMX and Arm CPUs run
both exactly (docs/performance/model-optimizations/quantization.md, "When and why do I need to try U8U8?"). MLAS
picks its kernels by CPUID at session start (core/mlas/lib/platform.cpp), so the server's CPU, not this one, decides
which run: U8U8 gives the same numbers on each. Measured here, U8U8 lost nothing against its reference and cost
nothing against eager, where `reduce_range` (7-bit weights, the documented alternative) cost 1-5 dB.

Imports onnxruntime at import time: only the ONNX writer imports this module.
"""
from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from deploytool.config import InputSpec, OnnxCalibration, QuantConfig
from deploytool.data import Dataset
from deploytool.errors import QuantizeError
from deploytool.fsutil import scratch

log = logging.getLogger("deploytool")

RETRIES = 3  # quantize_static runs after a failure that names nodes: each leaves those nodes in fp32
# The ops that hold weights. Quantizing only them keeps a transformer's attention masks, softmax and
# normalizations in fp32: GPT-2's QDQ graph went from 1.1 dB to 20.1 dB against eager (a -inf mask ruins any
# int8 range).
WEIGHTED_OPS = ("Conv", "MatMul", "Gemm")


def quantize_onnx(fp32_model: Path, *, recipe: QuantConfig, calibration: Dataset,
                  inputs: tuple[InputSpec, ...], op_types: tuple[str, ...] | None = None) -> bytes:
    """QDQ U8U8 int8 bytes of an fp32 .onnx: ORT pre-processing (shape inference, folding), then quantize_static,
    on every op it supports, or on `op_types` only.

    When the pre-processing fails, quantizes without its symbolic shape inference (or without it at all); when
    quantize_static fails, retries with the nodes its error names left in fp32, then with MinMax calibration.

    >>> data = quantize_onnx(Path("model.onnx"), recipe=QuantConfig(), calibration=split.calibration,
    ...                      inputs=(InputSpec("x", (1, 3, 224, 224)),))
    """
    with scratch("ortq") as folder:
        quantized = Path(folder) / "int8.onnx"
        # onnxruntime's calibrators print progress on stdout, which belongs to results.
        with contextlib.redirect_stdout(sys.stderr):
            source = _preprocessed(fp32_model, Path(folder) / "pre.onnx")
            _quantize(source, quantized, recipe=recipe, reader=DatasetReader(calibration, inputs),
                      name=fp32_model.name, op_types=op_types)
        return quantized.read_bytes()


def _preprocessed(fp32_model: Path, target: Path) -> Path:
    """`target` written by onnxruntime's quant_pre_process, or without its symbolic shape inference when that
    fails (it raises on some graphs, e.g. TypeError: object of type 'NoneType' has no len()), or `fp32_model`
    itself when the rest fails too: the pre-processing helps the quantizer, it is not needed.

    >>> _preprocessed(Path("model.onnx"), Path("/tmp/pre.onnx"))
    PosixPath('/tmp/pre.onnx')
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    for skip_symbolic_shape, then in ((False, "without its symbolic shape inference"), (True, "as exported")):
        try:
            quant_pre_process(str(fp32_model), str(target), skip_symbolic_shape=skip_symbolic_shape)
            return target
        except Exception as exc:  # onnxruntime's shape inference and optimizer raise assorted types
            log.info("onnxruntime's pre-processing of %s failed (%s: %s); quantizing it %s", fp32_model.name,
                     type(exc).__name__, str(exc).strip()[:200], then)
    return fp32_model


def _quantize(source: Path, target: Path, *, recipe: QuantConfig, reader: DatasetReader, name: str,
              op_types: tuple[str, ...] | None) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {OnnxCalibration.MINMAX: CalibrationMethod.MinMax, OnnxCalibration.ENTROPY: CalibrationMethod.Entropy,
               OnnxCalibration.PERCENTILE: CalibrationMethod.Percentile}
    method, excluded, failures = methods[recipe.onnx_calibration], [], []
    while True:
        reader.rewind()  # a failed attempt may have read part of the samples
        try:
            quantize_static(str(source), str(target), reader, quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
                            per_channel=recipe.per_channel, calibrate_method=method, nodes_to_exclude=excluded,
                            op_types_to_quantize=list(op_types) if op_types else None)
            _run_once(target, reader)
            return
        except Exception as exc:  # onnxruntime.quantization raises assorted types on unsupported graphs
            failure = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
            failures.append(failure)
            named = sorted(_nodes_named_in(failure, source) - set(excluded))
            if named and len(failures) <= RETRIES:
                excluded += named
                log.warning("onnxruntime could not quantize %s (%s); retrying with %s left in fp32", name, failure,
                            ", ".join(named))
            elif method is not CalibrationMethod.MinMax:
                log.warning("onnxruntime's %s calibration of %s failed (%s); retrying with MinMax", method.name,
                            name, failure)
                method = CalibrationMethod.MinMax
            else:
                raise QuantizeError(f"onnxruntime static quantization of {name} failed: {'; then '.join(failures)}",
                                    hint="Leave onnx out with --format, or use --precision fp32; add -v for the "
                                         "traceback.") from exc


def _run_once(model: Path, reader: DatasetReader) -> None:
    """Raise what onnxruntime raises on the quantized graph's first calibration sample: the quantizer can write a
    graph it will not run (a LayerNorm's 2-D bias quantized per channel: "scale must be 1D tensor with size 8")."""
    import onnxruntime as ort

    reader.rewind()
    ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, reader.get_next())


def _nodes_named_in(message: str, model: Path) -> set[str]:
    """Names of the model's nodes that `message` names, itself or through a tensor they read or write (also
    through the helper nodes the calibrator and the quantizer name after a tensor: `<tensor>_ReduceMax`,
    `<tensor>_DequantizeLinear`).

    >>> _nodes_named_in("Quantization parameters are not specified for param /conv/Conv_output_0.", path)
    {'/conv/Conv', '/relu/Relu'}
    """
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    by_tensor: dict[str, set[str]] = {}
    for node in graph.node:
        for tensor in (*node.input, *node.output):
            by_tensor.setdefault(tensor, set()).add(node.name)
    nodes = {node.name for node in graph.node if node.name}
    found = set()
    for token in re.findall(r"[\w./:\-]+", message):
        token = token.rstrip(".:")
        tensor = re.sub(r"(_(Reduce(Max|Min)|QuantizeLinear|DequantizeLinear))?(_Reshape)?$", "", token)
        found |= ({token} & nodes) | by_tensor.get(token, set()) | by_tensor.get(tensor, set())
    return found - {""}


class DatasetReader(CalibrationDataReader):
    """onnxruntime's CalibrationDataReader over a Dataset: one batch-1 feed dict per sample, lazily loaded.

    >>> DatasetReader(split.calibration, (InputSpec("x", (1, 1, 8, 8)),)).get_next()["x"].shape
    (1, 1, 8, 8)
    """

    def __init__(self, dataset: Dataset, inputs: tuple[InputSpec, ...]):
        self.dataset = dataset
        self.inputs = inputs
        self._feeds: Iterator[dict[str, np.ndarray]] = self._all_feeds()

    def _all_feeds(self) -> Iterator[dict[str, np.ndarray]]:
        for _, arrays in self.dataset.samples():
            yield {spec.name: np.ascontiguousarray(a, dtype=spec.dtype)[None] for spec, a in zip(self.inputs, arrays)}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)

    def rewind(self) -> None:
        self._feeds = self._all_feeds()

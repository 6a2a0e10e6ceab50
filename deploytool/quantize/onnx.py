"""int8 ONNX with onnxruntime's static quantizer, calibrated on the same real samples as the PT2E path.

Imports onnxruntime at import time: only the ONNX writer imports this module.
"""
from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from deploytool.config import InputSpec, OnnxCalibration, QuantConfig
from deploytool.data import Dataset
from deploytool.errors import QuantizeError



def quantize_onnx(fp32_model: Path, *, recipe: QuantConfig, calibration: Dataset,
                  inputs: tuple[InputSpec, ...]) -> bytes:
    """QDQ int8 bytes of an fp32 .onnx: ORT pre-processing (shape inference, folding), then quantize_static.

    >>> data = quantize_onnx(Path("model.onnx"), recipe=QuantConfig(), calibration=split.calibration,
    ...                      inputs=(InputSpec("x", (1, 3, 224, 224)),))
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {OnnxCalibration.MINMAX: CalibrationMethod.MinMax, OnnxCalibration.ENTROPY: CalibrationMethod.Entropy,
               OnnxCalibration.PERCENTILE: CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory(prefix="deploytool-ortq-") as scratch:
        preprocessed, quantized = Path(scratch) / "pre.onnx", Path(scratch) / "int8.onnx"
        # onnxruntime's calibrators print progress on stdout, which belongs to results.
        with contextlib.redirect_stdout(sys.stderr):
            try:
                quant_pre_process(str(fp32_model), str(preprocessed))
                quantize_static(str(preprocessed), str(quantized), DatasetReader(calibration, inputs),
                                quant_format=QuantFormat.QDQ, per_channel=recipe.per_channel,
                                calibrate_method=methods[recipe.onnx_calibration])
            except Exception as exc:  # onnxruntime.quantization raises assorted types on unsupported graphs
                raise QuantizeError(f"onnxruntime static quantization of {fp32_model.name} failed: "
                                    f"{type(exc).__name__}: {str(exc).strip()[:500]}",
                                    hint="Try quantize.onnx_calibration = \"minmax\", or --precision fp32.") from exc
        return quantized.read_bytes()


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

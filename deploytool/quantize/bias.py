"""Static int8 with bias correction: NNCF's `quantize_pt2e` over deploytool's own quantizer (recipes.build_quantizer).

NNCF reads which tensors to quantize, and how (bits, symmetric, per-channel), from the quantizer's annotations,
collects its own activation statistics, then corrects each quantized layer's bias so that its mean output matches
fp32. All of that math is NNCF's; this file only chooses its options and feeds it the calibration split.

NNCF is an optional dependency (`pip install 'deploytool[bias]'`); importing this module does not import it.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Sequence

from deploytool.capture import Captured
from deploytool.config import QuantConfig
from deploytool.data import Dataset
from deploytool.errors import ConfigError, QuantizeError, did_you_mean, import_optional

log = logging.getLogger("deploytool")

NNCF_PIN = "nncf==3.4.0"  # the release whose quantize_pt2e was checked against torch 2.13 and torchao 0.18


def quantize_bias_corrected(captured: Captured, *, recipe: QuantConfig, calibration: Dataset, example_inputs: tuple,
                            batch_size: int = 32, keep_fp32: Sequence[str] = (), fast: bool = True,
                            smooth_quant: bool = False, activation_ranges: str | None = None) -> Captured:
    """Static int8 as Session.quantized(Plan()) makes it, with NNCF's bias correction; re-exported at batch 1.

    `fast` picks NNCF's fast bias correction (one statistics pass); False its full one, which re-runs each layer
    on the quantized inputs before it: slower, sometimes better. `smooth_quant` adds NNCF's SmoothQuant, which
    only touches matmuls and linears (transformers, classifier heads). `activation_ranges` names one of NNCF's
    RangeEstimatorParametersSet members ("MINMAX", "HISTOGRAM", "MEAN_QUANTILE", ...); None keeps NNCF's default,
    the mean over samples of each sample's min and max. NNCF collects its own statistics: the recipe's observer
    does not apply here.

    >>> q = quantize_bias_corrected(captured, recipe=QuantConfig(), calibration=split.calibration,
    ...                             example_inputs=(x,))
    """
    nncf = import_nncf()
    from nncf.experimental.torch.fx import quantize_pt2e

    from deploytool.quantize.pt2e import kept_fp32, quantizer_for, reexport, torch_batches

    range_options = {} if activation_ranges is None else {
        "activations_range_estimator_params": range_estimator(activation_ranges)}
    quantizer = quantizer_for(captured, recipe, keep_fp32)
    batch = batch_size if captured.dynamic_batch else 1
    batches = [inputs for _, inputs in torch_batches(calibration, example_inputs=example_inputs, batch=batch)]
    try:
        with _stdout_to_stderr():
            converted = quantize_pt2e(
                captured.program.module(), quantizer, nncf.Dataset(batches), subset_size=len(batches),
                fast_bias_correction=fast, smooth_quant=smooth_quant,
                batchwise_statistics=batch > 1,  # per-sample statistics, as at batch 1, whatever the batch size
                do_copy=True,  # NNCF folds BatchNorm and rewrites biases in place; `captured` serves other variants
                **range_options)
    except Exception as exc:  # NNCF raises its own errors and whatever the graph passes raise
        raise QuantizeError(f"NNCF bias correction failed: {type(exc).__name__}: {exc}",
                            hint="Quantize without bias correction (plain static int8); add -v for the "
                                 "traceback.") from exc
    kept = kept_fp32(captured, recipe, keep_fp32)
    log.info("bias-corrected (NNCF %s) on %d samples in batches of %d%s", "fast" if fast else "full",
             len(calibration), batch, f"; kept in fp32: {', '.join(kept)}" if kept else "")
    return reexport(captured, converted, example_inputs=example_inputs)


def range_estimator(name: str):
    """NNCF's RangeEstimatorParametersSet member called `name`.

    >>> range_estimator("MINMAX")
    RangeEstimatorParameters(min=StatisticsCollectorParameters(...), max=...)
    """
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    known = [n for n in vars(RangeEstimatorParametersSet) if n.isupper()]
    if name not in known:
        raise ConfigError(f"Unknown activation range method '{name}'. {did_you_mean(name, known)}",
                          hint="Use one of NNCF's RangeEstimatorParametersSet names, or none for NNCF's default.")
    return getattr(RangeEstimatorParametersSet, name)


def nncf_available() -> bool:
    """Whether NNCF can be imported, without importing it."""
    import importlib.util

    return importlib.util.find_spec("nncf") is not None


def import_nncf():
    """The nncf module, or a MissingDependencyError with the command that installs it."""
    return import_optional("nncf", label="NNCF", needed_by="Bias correction", extra="bias", pin=NNCF_PIN)


@contextlib.contextmanager
def _stdout_to_stderr():
    """NNCF logs and draws its progress bars on stdout; deploytool keeps stdout for results (--json)."""
    from nncf.common.logging.logger import stdout_handler

    previous = stdout_handler.setStream(sys.stderr)  # the stream it had, None when it was stderr already
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if previous is not None:
            stdout_handler.setStream(previous)

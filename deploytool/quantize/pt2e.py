"""PT2E static int8 with ExecuTorch's XNNPACKQuantizer, calibrated in batches on real data."""
from __future__ import annotations

import logging

from deploytool.capture import Captured, export
from deploytool.config import QuantConfig
from deploytool.data import Dataset
from deploytool.errors import QuantizeError
from deploytool.progress import Progress

log = logging.getLogger("deploytool")


def quantize(captured: Captured, *, recipe: QuantConfig, calibration: Dataset, example_inputs: tuple,
             batch_size: int = 32) -> Captured:
    """Insert observers, run the calibration samples through in batches, convert, re-export at batch 1.

    >>> q = quantize(captured, recipe=QuantConfig(), calibration=split.calibration, example_inputs=(x,))
    """
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=recipe.per_channel))
    try:
        prepared = prepare_pt2e(captured.program.module(), quantizer)
    except Exception as exc:  # the quantizer raises assorted errors on unsupported patterns
        raise QuantizeError(f"Inserting int8 observers failed: {type(exc).__name__}: {exc}",
                            hint="Try --precision fp32, or report the model; add -v for the traceback.") from exc
    batch = batch_size if captured.dynamic_batch else 1
    dtypes = [t.dtype for t in example_inputs]
    progress = Progress("calibrating", len(calibration))
    seen = 0
    with torch.inference_mode():
        for refs, arrays in calibration.batches(batch):
            prepared(*(torch.from_numpy(a).to(d) for a, d in zip(arrays, dtypes)))
            seen += len(refs)
            progress.advance(len(refs))
    progress.close()
    if not seen:
        raise QuantizeError("No calibration sample could be read, so there are no ranges to quantize with.")
    converted = convert_pt2e(prepared)
    log.info("calibrated on %d samples in batches of %d", seen, batch)
    try:
        program = export(converted, example_inputs, strict=False, dynamic_batch=False)
    except Exception as exc:  # re-export of a converted graph should not fail; report it if it does
        raise QuantizeError(f"Re-exporting the quantized model failed: {type(exc).__name__}: {exc}") from exc
    return Captured(program, captured.method, dynamic_batch=False, quantized=True)

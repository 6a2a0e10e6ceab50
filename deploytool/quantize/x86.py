"""int8 for Inductor on x86-64: PT2E with torchao's X86InductorQuantizer, calibrated on the run's split.

The AOTInductor writer compiles this program; the .pte comes from the XNNPACK one (quantize/session.py).
"""
from __future__ import annotations

from typing import Any

from deploytool.errors import QuantizeError


def quantize_x86(prepared) -> Any:
    """PT2E int8 for Inductor on x86: capture batch-dynamic, calibrate in batches, convert, re-export.

    >>> program = quantize_x86(prepared)
    """
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from deploytool.capture import export
    from deploytool.quantize.pt2e import feed

    config = prepared.config
    captured = prepared.captured()
    try:
        observed = prepare_pt2e(captured.program.module(),
                                x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config()))
    except Exception as exc:  # the quantizer raises assorted errors on unsupported patterns
        raise QuantizeError(f"X86InductorQuantizer could not annotate the model: {type(exc).__name__}: {exc}") from exc
    feed(observed, prepared.split.calibration, example_inputs=prepared.example_inputs,
         batch=config.data.batch_size if captured.dynamic_batch else 1)
    converted = convert_pt2e(observed)
    try:
        return export(converted, prepared.example_inputs, strict=False, dynamic_batch=config.dynamic_batch)
    except Exception as exc:  # re-export of a converted graph should not fail; report it if it does
        raise QuantizeError(f"Re-exporting the X86 int8 model failed: {type(exc).__name__}: {exc}") from exc

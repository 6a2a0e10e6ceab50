"""int8 for Inductor on x86-64: PT2E with torchao's X86InductorQuantizer, calibrated on the run's split.

The AOTInductor writer compiles this program; the .pte comes from the XNNPACK one (quantize/session.py).

Weights are 7-bit where oneDNN multiplies uint8 activations by int8 weights in pairs summed in 16 bits: on x86-64
without VNNI (AVX2, AVX-512 before Cascade Lake) VPMADDUBSW saturates at 32767, and 255 x 127 x 2 exceeds it,
so the .pt2 drifted 10-25 dB from this program (oneDNN doc/advanced/int8_computations.md, "Inputs of mixed type":
the user picks u7 or s7 ranges; jit_uni_x8s8s32x_conv_kernel.cpp compute_ker). 255 x 64 x 2 fits. With VNNI or
AMX the 7-bit values are computed exactly too, so one program is right on every x86 CPU. Depthwise convolutions
keep 8 bits: one input channel per group gives no pair to saturate (oneDNN's depthwise kernel widens to 32 bits
first). Against eager, 7-bit weights cost the program 0.5-3 dB (MobileNetV2 0.9, a UNet 2.5, the digits CNN 3.2);
torchao's `reduce_range` (7-bit activations, its advice for CPUs without VNNI) cost 4-5 dB.
"""
from __future__ import annotations

from typing import Any

from deploytool.errors import QuantizeError

RECIPE_REVISION = 2  # part of the cached X86 program's key: bump it when x86_quantizer() changes (2: 7-bit weights)
SEVEN_BIT = (-64, 63)  # int8 weights that cannot saturate u8 x s8 pair sums: 255 * 64 * 2 = 32640 <= 32767
WEIGHTS_NOTE = ("uint8 activations; per-channel weights in 7 bits (-64..63) for oneDNN's u8 x s8 kernels, which "
                "sum pairs in 16 bits on x86-64 without VNNI, 8 bits in depthwise convolutions")


def quantize_x86(prepared) -> Any:
    """PT2E int8 for Inductor on x86: capture batch-dynamic, calibrate in batches, convert, re-export.

    >>> program = quantize_x86(prepared)
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from deploytool.capture import export
    from deploytool.quantize.pt2e import feed

    config = prepared.config
    captured = prepared.captured()
    try:
        observed = prepare_pt2e(captured.program.module(), x86_quantizer())
    except Exception as exc:  # the quantizer raises assorted errors on unsupported patterns
        raise QuantizeError(f"X86InductorQuantizer could not annotate the model: {type(exc).__name__}: {exc}") from exc
    feed(observed, prepared.split.calibration, example_inputs=prepared.example_inputs,
         batch=config.data.batch_size if captured.dynamic_batch else 1,
         label="calibrating the X86 int8 program (AOTInductor)")
    converted = convert_pt2e(observed)
    try:
        return export(converted, prepared.example_inputs, strict=False, dynamic_batch=config.dynamic_batch,
                      varying=captured.varying)
    except Exception as exc:  # re-export of a converted graph should not fail; report it if it does
        raise QuantizeError(f"Re-exporting the X86 int8 model failed: {type(exc).__name__}: {exc}") from exc


def x86_quantizer():
    """torchao's X86InductorQuantizer with its default config, weights 7-bit where oneDNN pairs them (see above).

    >>> observed = prepare_pt2e(program.module(), x86_quantizer())
    """
    import dataclasses

    import torch
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86

    config = x86.get_default_x86_inductor_quantization_config()
    seven_bit = dataclasses.replace(config.weight, quant_min=SEVEN_BIT[0], quant_max=SEVEN_BIT[1])
    weighted = {torch.ops.aten.conv1d.default, torch.ops.aten.conv2d.default, torch.ops.aten.linear.default}

    class SaturationFree(x86.X86InductorQuantizer):
        def annotate(self, model):
            model = super().annotate(model)
            for node in model.graph.nodes:
                annotation = node.meta.get(x86.QUANT_ANNOTATION_KEY)
                weight = node.args[1] if node.target in weighted else None
                if annotation is None or weight not in annotation.input_qspec_map:
                    continue
                if weight.meta["val"].shape[1] > 1:  # input channels per group: 1 in depthwise, no pair to sum
                    annotation.input_qspec_map[weight] = seven_bit
            return model

    return SaturationFree().set_global(config)

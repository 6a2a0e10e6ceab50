"""`deploytool quantize`."""
from __future__ import annotations

import click

from deploytool.cli.options import build_config, command_with_examples, print_json, project_options


@command_with_examples("""  deploytool quantize --model model.py:build --calib photos/
  deploytool quantize --model zoo:digits               # the zoo entry brings its own real data
  deploytool quantize --model torchvision:resnet18 --weights resnet18.pth --calib val/ --calib-limit 128
""")("quantize")
@project_options
@click.option("--per-tensor", is_flag=True, default=None, help="Per-tensor weights instead of per-channel.")
def quantize(per_tensor: bool | None, **flags) -> None:
    """Int8 post-training quantization, calibrated on real data.

    Captures the model with torch.export, calibrates XNNPACK int8 (PT2E) on the calibration split, and
    saves the quantized program in the output folder, where `deploytool export` picks it up. The
    held-out split is never calibrated on; it is what the parity checks run on.
    """
    from deploytool import api

    config = build_config(flags, **{"quantize.per_channel": False if per_tensor else None})
    result = api.quantize(config)
    reference = result.reference_parity
    if flags["as_json"]:
        from deploytool.report import _comparison_dict

        print_json({"program": str(result.program_path), "reused": result.reused, "cache_key": result.cache_key,
                    "calibration_samples": result.calibration_samples, "held_out_samples": result.held_out_samples,
                    "capture": result.capture_method, "parity_vs_eager": _comparison_dict(reference)})
        return
    state = "reused (unchanged)" if result.reused else "written"
    click.echo(f"quantized program: {result.program_path} ({state})")
    click.echo(f"calibrated on {result.calibration_samples} samples; {result.held_out_samples} held out for parity; "
               f"captured {result.capture_method}")
    for line in reference.checklist():
        click.echo(line)
    click.echo("next: deploytool export --target android")

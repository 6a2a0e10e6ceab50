"""`deploytool quantize`."""
from __future__ import annotations

import logging

import click

from deploytool.cli.diagnose import recipe_options, recipe_overrides, show_diagnosis
from deploytool.cli.options import (build_config, command_with_examples, executor_options, make_executor, print_json,
                                    project_options)


@command_with_examples("""  deploytool quantize --model model.py:build --calib photos/
  deploytool quantize --model zoo:digits               # the zoo entry brings its own real data
  deploytool quantize --model torchvision:resnet18 --weights resnet18.pth --calib val/ --calib-limit 128
  deploytool quantize --per-tensor --min-sqnr 25 --diagnose   # fp32 fallback to a budget, with report.html
  deploytool quantize --min-sqnr 25 --jobs 4         # its sensitivity candidates in 4 worker processes
  deploytool quantize --min-sqnr 25 --executor ray   # ... or as Ray tasks, one per candidate layer
""")("quantize")
@project_options
@recipe_options
@click.option("--diagnose", "with_diagnosis", is_flag=True,
              help="Also write the per-layer diagnosis: <output>/diagnosis/report.json and report.html.")
@executor_options
def quantize(with_diagnosis: bool, executor_name: str, jobs: int, ray_address: str | None, **flags) -> None:
    """Int8 post-training quantization, calibrated on real data.

    Captures the model with torch.export, calibrates XNNPACK int8 (PT2E) on the calibration split, and
    saves the quantized program in the output folder, where `deploytool export` picks it up. The
    held-out split is never calibrated on; it is what the parity checks run on.

    With a budget (--min-sqnr, --min-top1-agreement, --max-accuracy-drop), each layer's sensitivity is one
    job: --jobs N or --executor ray measures them in parallel, with the same ranking as in this process.
    """
    from deploytool import api

    executor = make_executor(executor_name, jobs, ray_address)
    config = build_config(flags, **recipe_overrides(flags))
    if executor is not None and not config.quantize.has_budget and not with_diagnosis:
        logging.getLogger("deploytool").warning(
            "--executor/--jobs only spread a sensitivity search, which needs a budget (--min-sqnr, "
            "--min-top1-agreement, --max-accuracy-drop) or --diagnose; quantizing here in one process.")
    prepared = api.prepare(config)
    result = api.quantize(config, prepared, executor=executor)
    diagnosis = (api.diagnose(config, prepared, fallback=result.fallback,
                                search=result.recipe.get("search"), executor=executor) if with_diagnosis
                 else None)
    if flags["as_json"]:
        from deploytool.report import comparison_dict

        print_json({"program": str(result.program_path), "reused": result.reused, "cache_key": result.cache_key,
                    "calibration_samples": result.calibration_samples, "held_out_samples": result.held_out_samples,
                    "capture": result.capture_method, "parity_vs_eager": comparison_dict(result.reference_parity),
                    "recipe": result.recipe, "fallback": result.fallback,
                    "diagnosis": str(diagnosis[1] / "report.json") if diagnosis else None})
        _fail_unmet_budget(result.fallback)
        return
    show_summary(result)
    if diagnosis:
        show_diagnosis(*diagnosis, as_json=False)
    _fail_unmet_budget(result.fallback)
    click.echo("next: deploytool export --target android")


def show_summary(result) -> None:
    """What quantize made (an api.QuantizeResult): the program, the data it saw, its checklist vs eager and the
    fp32 fallback's steps. `export` prints it too when it quantizes in the same run.

    >>> show_summary(api.quantize(config))
    quantized program: build/deploytool/quantized/program.pt2 (written)
    """
    state = "reused (unchanged)" if result.reused else "written"
    click.echo(f"quantized program: {result.program_path} ({state})")
    click.echo(f"calibrated on {result.calibration_samples} samples; {result.held_out_samples} held out for parity; "
               f"captured {result.capture_method}")
    for line in result.reference_parity.checklist():
        click.echo(line)
    if result.fallback:
        from deploytool.quantize.fallback import fallback_lines

        for line in fallback_lines(result.fallback):
            click.echo(line)


def _fail_unmet_budget(fallback) -> None:
    from deploytool.errors import ParityFailed

    if fallback and not fallback["met"]:
        raise ParityFailed(f"The quality budget {fallback['budget']} was not met even with "
                           f"{len(fallback['kept_fp32'])} layer(s) in fp32; the best program is saved.",
                           hint="Raise --max-fp32-layers, relax the budget, try another --observer, or calibrate "
                                "on more data; `deploytool diagnose` shows which layers suffer.")

"""`deploytool diagnose`, and the recipe options it shares with `quantize`."""
from __future__ import annotations

from typing import Any

import click

from deploytool.cli.options import (build_config, command_with_examples, executor_options, make_executor, print_json,
                                    project_options, stack)
from deploytool.config import Activations, Observer

OBSERVERS = sorted(o.value for o in Observer)
ACTIVATIONS = [a.value for a in Activations]


def recipe_options(function):
    """--observer, --keep-fp32, the fallback budgets and the rest: each overrides a quantize.* config key."""
    options = [
        click.option("--per-tensor", is_flag=True, default=None, help="Per-tensor weights instead of per-channel."),
        click.option("--observer", type=click.Choice(OBSERVERS),
                     help="How calibration picks activation ranges [default: histogram]."),
        click.option("--percentile", type=float, help="With --observer percentile: the kept share [default: 99.99]."),
        click.option("--symmetric-activations/--asymmetric-activations", default=None,
                     help="Zero point fixed at 0, or fitted to the range [default: asymmetric]."),
        click.option("--keep-fp32", "keep_fp32", multiple=True, metavar="PATTERN",
                     help="Leave these eager modules in fp32: a path, a glob (classifier.*) or type:ClassName. "
                          "Repeatable."),
        click.option("--activations", type=click.Choice(ACTIVATIONS),
                     help="int8 activations for the .pte: auto searches static, bias-corrected (with NNCF), mixed, "
                          "then dynamic, stopping at the first that meets the budget [default: auto]."),
        click.option("--no-search", is_flag=True, default=None,
                     help="The plain recipe, no search: the same as --activations static."),
        click.option("--min-sqnr", type=float, metavar="DB",
                     help="Budget: output SQNR >= DB [default for the search: 20]; past every int8 variant, "
                          "the most sensitive layers are kept in fp32 until it holds."),
        click.option("--min-top1-agreement", type=float, metavar="X",
                     help="Budget: top-1 agreement with eager fp32 of at least X (0-1)."),
        click.option("--max-accuracy-drop", type=float, metavar="PTS",
                     help="Budget: at most PTS points of top-1 accuracy lost (needs labelled held-out data)."),
        click.option("--max-fp32-layers", type=int, help="Cap on layers the fallback keeps in fp32 [default: 8]."),
        click.option("--metric", metavar="FILE.py:FN",
                     help="Your own quality measure, fn(outputs, targets) -> share in [0, 1], higher is better; "
                          "targets are the 'targets' array of the --calib .npz. It decides int8 verdicts and the "
                          "search (SQNR is then shown as information). Runs that file's code."),
        click.option("--max-metric-drop", type=float, metavar="PTS",
                     help="Points of --metric an int8 artifact may lose against eager [default: 1]."),
    ]
    return stack(options, function)


def recipe_overrides(flags: dict[str, Any]) -> dict[str, Any]:
    """Takes the recipe flags out of `flags` and returns them as dotted config keys."""
    per_tensor = flags.pop("per_tensor")
    observer = flags.pop("observer")
    activations = "static" if flags.pop("no_search") else flags.pop("activations")
    flags.pop("activations", None)
    return {
        "quantize.activations": activations,
        "quantize.per_channel": False if per_tensor else None,
        "quantize.observer": observer,
        "quantize.percentile": flags.pop("percentile"),
        "quantize.symmetric_activations": flags.pop("symmetric_activations"),
        "quantize.keep_fp32": tuple(flags.pop("keep_fp32")),
        "quantize.min_sqnr_db": flags.pop("min_sqnr"),
        "quantize.min_top1_agreement": flags.pop("min_top1_agreement"),
        "quantize.max_accuracy_drop": flags.pop("max_accuracy_drop"),
        "quantize.max_fp32_layers": flags.pop("max_fp32_layers"),
        "quantize.metric": flags.pop("metric"),
        "quantize.max_metric_drop": flags.pop("max_metric_drop"),
    }


@command_with_examples("""  deploytool diagnose --model model.py:build --calib photos/ --per-tensor
  deploytool diagnose --keep-fp32 'classifier.*' --observer percentile
  deploytool diagnose --per-tensor --executor ray      # one Ray task per sensitivity candidate
""")("diagnose")
@project_options
@recipe_options
@executor_options
def diagnose(executor_name: str, jobs: int, ray_address: str | None, **flags) -> None:
    """Find the layers that int8 quantization hurts.

    Compares every layer of the int8 model with the same eager fp32 layer on the held-out data (SQNR,
    named by eager module path), names the first layer where the error jumps, ranks layers by how much
    they alone harm the output, and checks the calibration data. Writes
    <output>/diagnosis/report.json and report.html. Each layer's sensitivity is one job: --jobs N or
    --executor ray measures them in parallel.
    """
    from deploytool import api

    executor = make_executor(executor_name, jobs, ray_address)
    config = build_config(flags, **recipe_overrides(flags))
    diagnosis, folder = api.diagnose(config, executor=executor)
    show_diagnosis(diagnosis, folder, as_json=flags["as_json"])


def show_diagnosis(diagnosis, folder, *, as_json: bool) -> None:
    if as_json:
        print_json({**diagnosis.to_dict(), "report": str(folder / "report.json"), "html": str(folder / "report.html")})
        return
    for line in diagnosis.lines():
        click.echo(line)
    click.echo(f"report: {folder / 'report.json'}, {folder / 'report.html'}")

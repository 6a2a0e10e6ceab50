"""`deploytool export`."""
from __future__ import annotations

from pathlib import Path

import click

from deploytool.cli.diagnose import recipe_options, recipe_overrides
from deploytool.cli.options import (arm64_option, arm64_profiles, build_config, command_with_examples, print_json,
                                    project_options, split_list)
from deploytool.config import Precision, ScriptCapture
from deploytool.errors import ParityFailed, StageError, UsageError


@command_with_examples("""  deploytool export --target android
  deploytool export --model model.py:build --calib photos/ --target android   # quantize + export in one run
  deploytool export --target android,ios --precision fp32
  deploytool export --model zoo:digits --target ios --json
  deploytool export --target all
  deploytool export --target server --format onnx --capture script
  deploytool export --model zoo:digits --target android --into android_demo
  deploytool export --target android --arm64        # also verified on ARM's kernels under qemu-user
""")("export")
@project_options
@recipe_options
@click.option("--target", "target", help="Comma-separated targets: android, ios, server, or all "
                                       "(see `deploytool targets`).")
@click.option("--format", "formats", help="Comma-separated formats to write (default: all of each target's); "
                                         "see `deploytool targets`.")
@click.option("--precision", type=click.Choice([p.value for p in reversed(Precision)]),
              help="Default: int8 when `quantize` ran in this output folder or --calib is given (then it "
                   "quantizes first, in this run), else fp32.")
@click.option("--capture", type=click.Choice([c.value for c in ScriptCapture]),
              help="How TorchScript formats (torchscript, ptl) capture the model [default: trace, checked on "
                   "held-out samples].")
@arm64_option
@click.option("--into", "into", type=click.Path(file_okay=False, path_type=Path),
              help="Demo app folder (android_demo or ios_demo) to copy model.pte and manifest.json into, once "
                   "parity passes.")
def export(target: str | None, formats: str | None, precision: str | None, capture: str | None, arm64: str | None,
           into: Path | None, **flags) -> None:
    """Lower to each target's artifact, then verify it in its real runtime.

    Writes <output>/<target>/ with the artifacts (model.pte; server: model.onnx, model.pt, model.pt2 and
    their int8 variants), manifest.json and report.json. Parity runs each artifact in its own runtime
    (ExecuTorch, onnxruntime, torch.jit, AOTInductor; in a child process) on the held-out real samples,
    compares with eager fp32 and with its quantized reference, and ends with a cross-runtime table.
    Exit code 1 when a check fails; the artifact is kept and flagged.

    With --calib and no up-to-date quantized program, it first quantizes (the recipe flags of `deploytool
    quantize` apply) in the same run: one load, one capture.
    """
    from deploytool import api
    from deploytool.config import Precision

    targets = split_list(target)
    config = build_config(flags, torchscript_capture=capture, **recipe_overrides(flags))
    if not config.model:  # nothing recorded: quantize never ran into this output folder
        raise UsageError(f"No model given, and no `deploytool quantize` ran into {config.output_dir}.",
                         hint="Run `deploytool quantize --model model.py:build --calib DATA/` first (export then "
                              "reuses its model, data and int8 program), or pass --model to export fp32.")
    plan = api.plan_formats(targets or config.targets, split_list(formats))  # typos fail before any heavy work
    if into is not None:
        demo_target = _demo_target(plan, into)
    chosen = Precision(precision) if precision else api.default_precision(config)
    previous = api.unchanged_export(config, plan, chosen) if into is None and arm64 is None else None
    if previous is not None:  # nothing changed since an export that passed: nothing to load or run
        if flags["as_json"]:
            print_json([artifact for report in previous.reports for artifact in report["artifacts"]])
        else:
            click.echo(previous.summary())
        return
    api.prestart_first_runtime(plan)  # its runtime imports while the model loads (and quantizes, with --calib)
    prepared = api.prepare(config)
    if chosen is Precision.INT8:  # quantize here, sharing the loaded model, data and capture with export
        result = api.quantize(config, prepared)
        if not result.reused and not flags["as_json"]:
            from deploytool.cli.quantize import show_summary

            show_summary(result)
    reports = api.export(config, targets=targets, formats=split_list(formats), precision=chosen, prepared=prepared,
                         arm64=arm64_profiles(arm64))
    show_reports(reports, as_json=flags["as_json"])
    if into is not None:  # only reached when parity passed
        from deploytool.demo_apps import install_into_demo

        install_into_demo(config.output_dir / demo_target, into, target=demo_target)


def _demo_target(plan: dict[str, tuple[str, ...]], into: Path) -> str:
    """The one target whose demo app `into` must be; checked before any heavy work."""
    from deploytool.demo_apps import demo_app

    if len(plan) != 1:
        raise UsageError(f"--into copies one target's model, but {len(plan)} targets are exported "
                         f"({', '.join(plan)}).", hint=f"Export one target, e.g. --target android --into {into}.")
    target = next(iter(plan))
    demo_app(into, target=target)
    return target


def show_reports(reports, *, as_json: bool) -> None:
    """Table (or JSON) on stdout; exit 1 when any artifact failed its checks or could not be built, 4 when a
    target got nothing built at all."""
    from deploytool.crosscheck import matrix
    from deploytool.report import cross_table, details, summary_table

    if as_json:
        print_json([r.to_dict() for r in reports])
    else:
        # Tables first; the checklists and accuracy last, where the eye lands when the command ends.
        click.echo(summary_table(reports))
        click.echo("\n" + cross_table(matrix(reports)))
        click.echo(details(reports))
    raise_for_failures(reports)


def raise_for_failures(reports) -> None:
    """ParityFailed (exit 1) naming each failed artifact, or StageError (exit 4) when a target got no artifact
    built; nothing when every artifact passed. A format that could not be built is a failed artifact."""
    failed = [r for r in reports if not r.passed]
    if not failed:
        return
    empty = [t for t in dict.fromkeys(r.target for r in reports)
             if all(r.build_error for r in reports if r.target == t)]
    if empty:
        unbuilt = [r for r in reports if r.target in empty]
        names = ", ".join(f"{r.format} for {r.target}" for r in unbuilt)
        others = (" The other artifacts are written, verified and listed in manifest.json."
                  if len(unbuilt) < len(reports) else "")
        raise StageError(f"Could not build {names}: {unbuilt[0].build_error}. Nothing was built for "
                         f"{', '.join(empty)}.{others}", hint=unbuilt[0].build_hint)
    names = ", ".join(f"{r.target} ({r.artifact_path.name}" + (": not built" if r.build_error else "") + ")"
                      + (f": {r.shortfall}" if r.shortfall else "") for r in failed)
    int8 = any(r.precision == "int8" and not r.build_error for r in failed)
    hint = ("See the checklist above. " + ("For int8: `deploytool quantize` with more calibration data or a quality "
                                           "budget (--min-sqnr), or --precision fp32. " if int8 else "") +
            ("An fp32 artifact that differs from eager is a lowering or runtime problem, not a quantization one: "
             "`deploytool inspect` shows what the artifact holds. " if any(r.precision == "fp32" and not r.build_error
                                                                          for r in failed) else "") +
            ("A format that could not be built says why under its row." if any(r.build_error for r in failed)
             else "")).strip()
    raise ParityFailed(f"Parity failed for {names}; the artifacts are kept and flagged in report.json.", hint=hint)

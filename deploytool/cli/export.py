"""`deploytool export`."""
from __future__ import annotations

import click

from deploytool.cli.options import build_config, command_with_examples, print_json, project_options, split_list
from deploytool.errors import ParityFailed


@command_with_examples("""  deploytool export --target android
  deploytool export --target android,ios --precision fp32
  deploytool export --model zoo:digits --target ios --json
""")("export")
@project_options
@click.option("--target", "target", help="Comma-separated targets: android, ios (see `deploytool targets`).")
@click.option("--format", "formats", help="Comma-separated formats to write (default: all of each target's); "
                                         "see `deploytool targets`.")
@click.option("--precision", type=click.Choice(["int8", "fp32"]),
              help="Default: int8 when `quantize` ran in this output folder, else fp32.")
def export(target: str | None, formats: str | None, precision: str | None, **flags) -> None:
    """Lower to each target's artifact, then verify it in its real runtime.

    Writes <output>/<target>/model.pte, manifest.json and report.json. Parity runs the artifact in the
    ExecuTorch runtime (in a child process) on the held-out real samples and compares with eager fp32
    and with the quantized reference. Exit code 1 when a check fails; the artifact is kept and flagged.
    """
    from deploytool import api
    from deploytool.config import Precision

    targets = split_list(target)
    config = build_config(flags)
    api.plan_formats(targets or config.targets, split_list(formats))  # typos fail before any heavy work
    reports = api.export(config, targets=targets, formats=split_list(formats),
                         precision=Precision(precision) if precision else None)
    show_reports(reports, as_json=flags["as_json"])


def show_reports(reports, *, as_json: bool) -> None:
    """Table (or JSON) on stdout; exit 1 when any artifact failed its checks."""
    from deploytool.report import details, summary_table

    if as_json:
        print_json([r.to_dict() for r in reports])
    else:
        click.echo(summary_table(reports))
        click.echo(details(reports))
    failed = [r for r in reports if not r.passed]
    if failed:
        names = ", ".join(f"{r.target} ({r.artifact_path})" for r in failed)
        raise ParityFailed(f"Parity failed for {names}; the artifacts are kept and flagged in report.json.",
                           hint="See the checklist above; `deploytool quantize` with more calibration data, or "
                                "--precision fp32, are the usual next steps.")

"""`deploytool check`."""
from __future__ import annotations

import click

from deploytool.cli.export import show_reports
from deploytool.cli.options import build_config, command_with_examples, project_options, split_list


@command_with_examples("""  deploytool check
  deploytool check --target android --json
""")("check")
@project_options
@click.option("--target", "target", help="Comma-separated targets to check [default: the configured ones].")
def check(target: str | None, **flags) -> None:
    """Re-run parity on the exported artifacts: a CI gate.

    Loads each artifact named by <output>/<target>/manifest.json in its real runtime, runs the held-out
    real samples, and compares with the eager model. Exit code 0 when every check passes, 1 otherwise.
    """
    from deploytool import api

    config = build_config(flags)
    show_reports(api.check(config, targets=split_list(target)), as_json=flags["as_json"])

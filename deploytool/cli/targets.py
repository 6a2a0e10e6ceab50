"""`deploytool targets`."""
from __future__ import annotations

import click

from deploytool.cli.options import command_with_examples


@command_with_examples("  deploytool targets\n")("targets")
def targets() -> None:
    """List the export targets, their formats and the runtime that verifies each."""
    from deploytool.registry import TARGETS

    for entry in TARGETS.entries():
        click.echo(f"{entry.name:<9} {', '.join(entry.meta['formats']):<12} verified in {entry.meta['runtime']}")
        click.echo(f"{'':<9} {entry.meta['summary']}")

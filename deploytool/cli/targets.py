"""`deploytool targets`."""
from __future__ import annotations

import click

from deploytool.cli.options import command_with_examples


@command_with_examples("  deploytool targets\n")("targets")
def targets() -> None:
    """List the export targets, their formats and the runtime that verifies each."""
    from deploytool.export import FORMATS
    from deploytool.registry import TARGETS

    click.echo("targets:")
    for entry in TARGETS.entries():
        click.echo(f"  {entry.name:<9} formats: {', '.join(entry.meta['formats'])}. {entry.meta['summary']}")
    click.echo("formats:")
    for entry in FORMATS.entries():
        click.echo(f"  {entry.name:<12} verified in {entry.meta['runtime']}. {entry.meta['summary']}")

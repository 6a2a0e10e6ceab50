"""`Cli`: runs `deploytool ARGS` in-process through the real main(), from a chosen folder."""
from __future__ import annotations

import os
from pathlib import Path

import click
from click.testing import CliRunner


@click.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def _through_main(args) -> None:
    """Goes through deploytool.cli.main, so `error:` lines and exit codes are the real ones."""
    from deploytool.cli import main

    main(list(args))


class Cli:
    """Runs `deploytool ARGS` in-process from `folder`, like a user's shell, and checks the exit code."""

    def __init__(self, folder: Path):
        self.folder = folder

    def __call__(self, *args: str, expect: int | None = 0):
        previous = Path.cwd()
        os.chdir(self.folder)
        try:
            result = CliRunner().invoke(_through_main, list(args), catch_exceptions=False)
        finally:
            os.chdir(previous)
        if expect is not None:
            assert result.exit_code == expect, (
                f"deploytool {' '.join(args)} exited {result.exit_code}, expected {expect}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

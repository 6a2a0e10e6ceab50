"""`deploytool` command line. Imports no torch: heavy work is imported inside each command."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import traceback
import warnings

import click

from deploytool.cli.bench import bench
from deploytool.cli.check import check
from deploytool.cli.diagnose import diagnose
from deploytool.cli.export import export
from deploytool.cli.inspect import inspect
from deploytool.cli.quantize import quantize
from deploytool.cli.setup import setup
from deploytool.cli.targets import targets
from deploytool.cli.zoo import zoo
from deploytool.cli.options import RESULTS
from deploytool.errors import DeployError
from deploytool.fsutil import remove_dead_scratch

EXAMPLES = """
\b
Examples:
  deploytool quantize --model model.py:build --calib photos/
  deploytool export --target android,ios
  deploytool check
"""


@click.group(epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", is_flag=True, help="Debug logs and full tracebacks (or DEPLOYTOOL_DEBUG=1).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.version_option(package_name="deploytool")
def cli(verbose: bool, quiet: bool) -> None:
    """Take an eager PyTorch model to a phone and a server, int8-quantized on real data, and prove on
    held-out real inputs that the artifact still matches the eager model."""
    debug = verbose or os.environ.get("DEPLOYTOOL_DEBUG") == "1"
    _setup_logging(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)


for command in (quantize, diagnose, export, check, bench, inspect, targets, zoo, setup):
    cli.add_command(command)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now (test runners and notebooks swap it between calls)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


class _Formatter(logging.Formatter):
    """Progress and info lines as they are; warnings and errors prefixed like the CLI's own `error:` lines."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return f"{record.levelname.lower()}: {message}" if record.levelno >= logging.WARNING else message


def _setup_logging(level: int) -> None:
    logger = logging.getLogger("deploytool")
    logger.setLevel(level)
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(_Formatter())
        logger.addHandler(handler)
        logger.propagate = False
    if level > logging.DEBUG:
        # torch, torchao and executorch log optional-kernel and deprecation noise that users cannot act on.
        for noisy in ("torch", "torch.utils._pytree", "torchao", "executorch", "nncf"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|torchao|executorch|nncf)\.")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: turns DeployErrors into `error:`/`hint:` lines and exit codes."""
    args = sys.argv[1:] if argv is None else argv
    verbose = os.environ.get("DEPLOYTOOL_DEBUG") == "1" or any(a in ("-v", "--verbose") for a in args)
    _exit_cleanly_on_terminate()
    remove_dead_scratch()  # temporary folders of runs killed outright (kill -9) hold held-out inputs
    try:
        if "--json" in args:  # the JSON alone on stdout: whatever else prints (a model's print) goes to stderr
            token = RESULTS.set(sys.stdout)
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    cli.main(args=argv, prog_name="deploytool", standalone_mode=False)
            finally:
                RESULTS.reset(token)
        else:
            cli.main(args=argv, prog_name="deploytool", standalone_mode=False)
    except DeployError as exc:
        if verbose:
            traceback.print_exc()
        click.echo(exc.lines(), err=True)
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        if isinstance(exc, click.exceptions.Abort) and isinstance(exc.__cause__, EOFError):
            _internal_error(exc.__cause__, verbose)  # click turns any EOFError into Abort: a bug, not Ctrl-C
        click.echo("interrupted; nothing half-written was left behind.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except Exception as exc:  # a bug in deploytool: show where, ask for a report
        _internal_error(exc, verbose)


def _exit_cleanly_on_terminate() -> None:
    """SIGTERM and SIGHUP unwind like an exception (exit 143 / 129): temporary folders are removed, atomic writes
    drop their partial files, and runtime children are stopped, as for Ctrl-C."""
    import signal

    def terminate(signum, _frame) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name) and signal.getsignal(getattr(signal, name)) in (signal.SIG_DFL, None):
                signal.signal(getattr(signal, name), terminate)


def _internal_error(exc: BaseException, verbose: bool) -> None:
    if verbose:
        traceback.print_exception(exc)
    else:
        click.echo(f"internal error: {type(exc).__name__}: {exc}", err=True)
        click.echo("hint: re-run with -v for the traceback and report it.", err=True)
    sys.exit(70)

"""The DeployError tree. Each class carries its exit code; the CLI prints `error:`/`hint:` lines."""
from __future__ import annotations

import difflib
from collections.abc import Iterable
from types import ModuleType


class DeployError(Exception):
    """Base of every error the tool reports to users. `hint` says what to type or change next."""

    exit_code = 70

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def lines(self) -> str:
        """What a user sees: `error: ...`, then `hint: ...` when there is one."""
        return f"error: {self.message}" + (f"\nhint: {self.hint}" if self.hint else "")


class UsageError(DeployError):
    """Bad flags or arguments."""

    exit_code = 2


class ConfigError(UsageError):
    """A config file or config value is invalid."""


class DataError(UsageError):
    """Calibration or evaluation data is missing, unreadable or does not fit the model."""


class ModelLoadError(UsageError):
    """A model spec, factory or checkpoint could not be turned into a module."""


class MissingDependencyError(DeployError):
    """An optional package or tool is not installed."""

    exit_code = 3


class StageError(DeployError):
    """Capture, quantization or lowering failed."""

    exit_code = 4


class CaptureError(StageError):
    pass


class QuantizeError(StageError):
    pass


class CandidateError(QuantizeError):
    """A sensitivity candidate run as a job (--executor/--jobs) failed: the ranking would have a hole."""


class LowerError(StageError):
    pass


class ParityFailed(DeployError):
    """Artifacts were written but do not match eager within the thresholds."""

    exit_code = 1


def import_optional(module: str, *, label: str, needed_by: str, extra: str, pin: str) -> ModuleType:
    """`module` imported, or a MissingDependencyError saying what needs it and the pip command that installs it.

    >>> ray = import_optional("ray", label="Ray", needed_by="--executor ray", extra="ray", pin="ray==2.60.0")
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(f"{needed_by} needs {label}, which is not installed.",
                                     hint=f"pip install 'deploytool[{extra}]'  (or: pip install {pin})") from None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`Did you mean 'x'? Known: a, b.` — the tail of every unknown-name message."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    guess = f"Did you mean '{close[0]}'? " if close else ""
    return f"{guess}Known: {', '.join(known)}."

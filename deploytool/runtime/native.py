"""`deploytool check --native`: run each .pte in `deploytool_runner`, a C++ program over
`executorch::extension::Module`, the way an app embeds ExecuTorch (no Python in the process).

It is built once (cached) against the executorch wheel's prebuilt x86-64 runtime with its XNNPACK
backend, so it checks the C++ embedding path on this machine: not ARM kernels, and not the Android
JNI or iOS Objective-C glue.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deploytool.config import Thresholds
from deploytool.errors import MissingDependencyError, StageError

RUNNER_FORMAT = "pte-native"  # the RUNNERS entry; also the format of its rows in the report
# Same program, same kernels, same delegate as the Python runtime: anything above float noise is a bug.
SAME_PROGRAM = Thresholds(max_abs_rel=1e-6)
NOTE = ("run by deploytool_runner, C++ executorch::extension::Module with the wheel's x86-64 XNNPACK runtime "
        "(not ARM, not the JNI / Objective-C glue)")


class NativeRunnerBuildFailed(StageError):
    """The native runner did not compile or link."""


def ensure_runner() -> Path:
    """Build the native runner on first use (a few seconds; cached after) and return its path.

    >>> ensure_runner().name
    'deploytool_runner'
    """
    from deploytool.runtime.native_runner import NativeBuildError, NativeToolchainMissing, build_runner

    try:
        return build_runner()
    except NativeToolchainMissing as exc:
        raise MissingDependencyError(f"--native needs to build the C++ runner: {exc.message}",
                                     hint=exc.hint or "Install cmake and a C++ compiler.") from None
    except NativeBuildError as exc:
        raise NativeRunnerBuildFailed(f"Building the native runner failed: {exc.message}",
                                      hint="The compiler's own error is quoted above; without --native, check "
                                           "runs the Python runtime only.") from None


def run(path: Path, samples: list[tuple[np.ndarray, ...]]) -> list[list[np.ndarray]]:
    """The RUNNERS entry: every sample through the native runner (already built by `ensure_runner`)."""
    from deploytool.runtime.native_runner import NativeRunError, run_native

    runner = ensure_runner()
    try:
        return [run_native(runner, Path(path), list(sample)) for sample in samples]
    except NativeRunError as exc:  # the parent shows one line: keep the one that names the failure
        raise RuntimeError(exc.message.splitlines()[0]) from None

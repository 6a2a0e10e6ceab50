"""Drive `deploytool_runner`, the native C++ runner for `.pte` files, built by native_build.py.

The runner runs a program the way an application embedding `executorch::extension::Module`
would: same kernels, same XNNPACK delegate, no Python in the process. `run_native()` runs one
`.pte` on numpy inputs through it. The build API is importable from here too.

Only numpy is imported here; nothing pulls in torch or executorch.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deploytool.fsutil import scratch
from deploytool.runtime.native_build import (
    SOURCE_DIR,
    NativeBuildError,
    NativeToolchainMissing,
    build_runner,
    default_cache_root,
)

__all__ = [
    "NativeBuildError",
    "NativeToolchainMissing",
    "NativeRunError",
    "build_runner",
    "run_native",
    "default_cache_root",
    "SOURCE_DIR",
]


_ERROR_PREFIX = "deploytool_runner: error: "


class NativeRunError(RuntimeError):
    """The native runner failed, crashed or timed out on a program."""

    def __init__(
        self,
        message: str,
        *,
        returncode: int | None = None,
        signal_name: str | None = None,
        stderr: str = "",
    ):
        super().__init__(message)
        self.message = message
        self.returncode = returncode
        self.signal_name = signal_name
        self.stderr = stderr


def _dtype_name(arr: np.ndarray) -> str:
    if arr.dtype.name == "bfloat16":  # ml_dtypes
        return "bfloat16"
    if arr.dtype.kind not in "biuf":
        raise NativeRunError(f"unsupported input dtype {arr.dtype} for the native runner")
    return arr.dtype.name


def _numpy_dtype(name: str) -> tuple[np.dtype, bool]:
    """numpy dtype for a runner dtype name; second item: bfloat16 read as raw uint16."""
    if name == "bfloat16":
        try:
            import ml_dtypes

            return np.dtype(ml_dtypes.bfloat16), False
        except ImportError:
            return np.dtype("<u2"), True
    try:
        return np.dtype(name).newbyteorder("<"), False
    except TypeError:
        raise NativeRunError(f"runner produced an output of unknown dtype {name!r}") from None


def _write_inputs(in_dir: Path, inputs: Sequence[object]) -> None:
    for i, x in enumerate(inputs):
        arr = np.asarray(x)
        name = _dtype_name(arr)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        arr = np.ascontiguousarray(arr)
        (in_dir / f"in_{i}.bin").write_bytes(arr.tobytes())
        (in_dir / f"in_{i}.json").write_text(
            json.dumps({"dtype": name, "shape": list(arr.shape)})
        )


def _read_outputs(out_dir: Path) -> list[np.ndarray]:
    outputs = []
    j = 0
    while (out_dir / f"out_{j}.json").is_file():
        meta = json.loads((out_dir / f"out_{j}.json").read_text())
        shape = [int(d) for d in meta["shape"]]
        dtype, bf16_raw = _numpy_dtype(meta["dtype"])
        raw = (out_dir / f"out_{j}.bin").read_bytes()
        count = int(np.prod(shape, dtype=np.int64))
        if len(raw) != count * dtype.itemsize:
            raise NativeRunError(
                f"out_{j}.bin has {len(raw)} bytes, expected {count * dtype.itemsize} "
                f"for {meta['dtype']} {shape}"
            )
        arr = np.frombuffer(raw, dtype=dtype)
        if bf16_raw:  # exact widening, no ml_dtypes available
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        order = meta.get("dim_order")
        if order is not None and list(order) != list(range(len(shape))):
            arr = arr.reshape([shape[d] for d in order]).transpose(np.argsort(order))
        else:
            arr = arr.reshape(shape)
        if arr.dtype.byteorder == "<" and sys.byteorder == "big":  # pragma: no cover
            arr = arr.astype(arr.dtype.newbyteorder("="))
        outputs.append(np.array(arr, copy=True, order="C"))
        j += 1
    return outputs


def _runner_message(stderr: str) -> str | None:
    for line in reversed(stderr.splitlines()):
        if line.startswith(_ERROR_PREFIX):
            return line[len(_ERROR_PREFIX):].strip()
    return None


def _tail(text: str, n: int = 8) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


def run_native(
    runner: Path,
    pte: Path,
    inputs: Sequence[np.ndarray],
    *,
    timeout_s: float = 120,
) -> list[np.ndarray]:
    """Run `forward` of `pte` on `inputs` with the native runner; return its outputs.

    Inputs are written as raw little-endian bytes plus a dtype/shape side-car
    that the runner checks against the program's metadata. Raises
    NativeRunError with the runner's one-line error, the signal name when it
    crashed, or a timeout notice.
    """
    return run_native_many(runner, pte, [inputs], timeout_s=timeout_s)[0]


def run_native_many(
    runner: Path,
    pte: Path,
    samples: Sequence[Sequence[np.ndarray]],
    *,
    timeout_s: float = 120,
) -> list[list[np.ndarray]]:
    """`run_native` for several samples in one process: the program is loaded once (under an emulator a process
    per sample cost more than the model). `timeout_s` covers them all."""
    runner = Path(runner)
    pte = Path(pte)
    if not runner.is_file():
        raise NativeRunError(f"native runner not found at {runner}; call build_runner() first")
    with scratch("native") as tmp:
        pairs = [(Path(tmp) / f"in{i}", Path(tmp) / f"out{i}") for i in range(len(samples))]
        for (in_dir, _), inputs in zip(pairs, samples):
            in_dir.mkdir()
            _write_inputs(in_dir, inputs)
        cmd = [str(runner), str(pte), *(str(p) for pair in pairs for p in pair)]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, errors="replace",
                timeout=timeout_s, stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            raise NativeRunError(
                f"native runner timed out after {timeout_s:g}s on {pte.name}", stderr=err
            ) from None
        except OSError as exc:
            raise NativeRunError(f"cannot start the native runner {runner}: {exc}") from None

        rc = proc.returncode
        if rc < 0:
            try:
                sig = signal.Signals(-rc)
                name, desc = sig.name, signal.strsignal(sig) or ""
            except ValueError:
                name, desc = f"signal {-rc}", ""
            detail = _tail(proc.stderr)
            raise NativeRunError(
                f"native runner crashed with {name}" + (f" ({desc})" if desc else "")
                + f" while running {pte.name}" + (f":\n{detail}" if detail else ""),
                returncode=rc, signal_name=name, stderr=proc.stderr,
            )
        if rc != 0:
            msg = _runner_message(proc.stderr) or _tail(proc.stderr) or "no message"
            raise NativeRunError(
                f"native runner failed on {pte.name} (exit {rc}): {msg}",
                returncode=rc, stderr=proc.stderr,
            )
        return [_read_outputs(out_dir) for _, out_dir in pairs]

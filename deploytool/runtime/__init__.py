"""Run an artifact in its real runtime, in a child process.

A crash inside a native runtime (segfault, abort) or a hang becomes a failed `RunResult` naming the
signal, instead of taking the tool down with it. `prestart` starts the child early, so importing the
runtime (executorch: ~3 s) overlaps the work that builds the artifact.
"""
from __future__ import annotations

import atexit
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploytool import fsutil
from deploytool.registry import Registry

Arrays = tuple[np.ndarray, ...]

# `preload`: modules a prestarted child imports while it waits for its artifact.
RUNNERS = Registry("artifact format")
RUNNERS.register("pte", "deploytool.runtime.executorch:run", runtime="ExecuTorch runtime (XNNPACK)",
                 preload=("executorch.runtime",))
# `check --native`: the same .pte in a C++ program over executorch::extension::Module (built on first use).
RUNNERS.register("pte-native", "deploytool.runtime.native:run", runtime="native C++ runner (x86-64 XNNPACK)")
RUNNERS.register("bpte", "deploytool.runtime.bundled:run",
                 runtime="ExecuTorch runtime (bundled-program verify + XNNPACK)", preload=("executorch.runtime",))
RUNNERS.register("onnx", "deploytool.runtime.onnx:run", runtime="onnxruntime (CPU EP)", preload=("onnxruntime",))
# The int8 ONNX model's quantized reference: the same QDQ graph, op by op, with no int8 kernel fusion.
RUNNERS.register("onnx-qdq-reference", "deploytool.runtime.onnx:run_unoptimized",
                 runtime="onnxruntime (CPU EP, graph optimizations off)", preload=("onnxruntime",))
RUNNERS.register("torchscript", "deploytool.runtime.torchscript:run", runtime="torch.jit.load", preload=("torch",))
RUNNERS.register("ptl", "deploytool.runtime.lite:run", runtime="PyTorch Mobile lite interpreter", preload=("torch",))
RUNNERS.register("aoti", "deploytool.runtime.aoti:run", runtime="AOTInductor (aoti_load_package)", preload=("torch",))

CRASHED, TIMED_OUT = "crashed with", "did not finish within"  # phrases of run errors; see failure_verdict

_prestarted: dict[str, subprocess.Popen] = {}  # format -> a child importing its runtime, waiting for one job


@dataclass
class RunResult:
    outputs: list[list[np.ndarray]] | None  # [sample][output]
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def prestart(fmt: str) -> None:
    """Start the child that will run the next `fmt` artifact now; `run_artifact` hands it the job later.

    >>> prestart("pte")            # executorch imports while the .pte is lowered
    >>> run_artifact(Path("out/android/model.pte"), "pte", samples)
    """
    running = _prestarted.get(fmt)
    if running is None or running.poll() is not None:
        _prestarted[fmt] = _start_worker(RUNNERS.get(fmt).meta.get("preload", ()))


def run_artifact(path: Path, fmt: str, samples: list[Arrays], *, timeout_s: float = 300.0) -> RunResult:
    """Run every sample through the artifact in a child process: a prestarted one, else a fresh one."""
    runner = RUNNERS.get(fmt).target  # unknown formats fail here, with suggestions
    with fsutil.scratch("run") as scratch:
        inputs, outputs = Path(scratch) / "inputs.npz", Path(scratch) / "outputs.npz"
        save_samples(inputs, samples)
        started = time.perf_counter()
        child = _prestarted.pop(fmt, None)
        if child is None or child.poll() is not None:
            child = _start_worker(())
        # The child gets the runner's import string, so runners registered at run time (plugins, tests) work too.
        job = json.dumps([runner, str(path), str(inputs), str(outputs)])
        try:
            _, stderr = child.communicate(job + "\n", timeout=timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            return RunResult(None, f"{path.name}: the {fmt} runtime {TIMED_OUT} {timeout_s:.0f} s (hang?)",
                             time.perf_counter() - started)
        seconds = time.perf_counter() - started
        if child.returncode < 0:
            name = signal.Signals(-child.returncode).name
            return RunResult(None, f"{path.name}: the {fmt} runtime {CRASHED} {name}{stderr_tail(stderr)}", seconds)
        if child.returncode != 0:
            return RunResult(None, f"{path.name}: the {fmt} runtime failed{stderr_tail(stderr)}", seconds)
        return RunResult([list(sample) for sample in load_samples(outputs)], None, seconds)


def failure_verdict(run_error: str) -> str:
    """The table word for an artifact that did not run: CRASH (killed by a signal), HANG (timed out), ERROR."""
    if CRASHED in run_error:
        return "CRASH"
    return "HANG" if TIMED_OUT in run_error else "ERROR"


def _start_worker(preload) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "deploytool.runtime.worker", *preload], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@atexit.register
def _stop_prestarted() -> None:
    """A prestarted child whose artifact never came (the build failed) is not left behind."""
    for child in _prestarted.values():
        child.kill()
        child.wait()


def flat_outputs(outputs) -> list:
    """Tensors in tuples, lists and dicts, flattened in order: how every output is counted and compared."""
    if isinstance(outputs, (list, tuple)):
        return [o for item in outputs for o in flat_outputs(item)]
    if isinstance(outputs, dict):
        return [o for item in outputs.values() for o in flat_outputs(item)]
    return [outputs]


def as_arrays(outputs) -> list[np.ndarray]:
    """A torch module's outputs as float32 numpy arrays, flattened in order (copies, safe to keep)."""
    return [o.detach().float().numpy().copy() for o in flat_outputs(outputs)]


def save_samples(path: Path, samples) -> None:
    """Samples (each a sequence of arrays) as one .npz (deploytool.npz), for a runtime child to read back."""
    from deploytool.npz import pack

    path.write_bytes(pack({"samples": samples}))


def load_samples(path: Path) -> list[Arrays]:
    from deploytool.npz import unpack

    with np.load(path) as saved:
        return [tuple(sample) for sample in unpack(saved, "samples")]


def stderr_tail(stderr: str) -> str:
    """The last meaningful line of a runtime's stderr, as ": <line>" to append to a message, else "".
    Blank lines and cpuinfo's start-up warnings are skipped; the line is cut at 300 characters.

    >>> stderr_tail("[cpuinfo] warning\nRuntimeError: bad input\n")
    ': RuntimeError: bad input'
    """
    lines = [line for line in stderr.strip().splitlines() if line.strip() and not line.startswith("[cpuinfo")]
    return f": {lines[-1][:300]}" if lines else ""

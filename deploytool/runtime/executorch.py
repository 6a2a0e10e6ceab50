"""Run a .pte through ExecuTorch's runtime (the C++ runtime the Android and iOS libraries wrap)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def run(path: Path, samples: list[tuple[np.ndarray, ...]]) -> list[list[np.ndarray]]:
    from executorch.runtime import Runtime

    return run_each(Runtime.get().load_program(path).load_method("forward").execute, samples)


def bench(path: Path, sample: tuple[np.ndarray, ...], *, runs: int, warmup: int, threads: int) -> dict:
    """Latency of `forward` with ExecuTorch's threadpool (the one XNNPACK runs on) resized to `threads`."""
    from executorch.runtime import Runtime

    return bench_forward(lambda: Runtime.get().load_program(path).load_method("forward").execute, sample,
                         runs=runs, warmup=warmup, threads=threads)


def run_each(forward, samples: list[tuple[np.ndarray, ...]]) -> list[list[np.ndarray]]:
    """`forward` (an ExecuTorch method taking a tuple of tensors) on each sample, outputs as numpy arrays."""
    import torch

    results = []
    for sample in samples:
        outputs = forward(tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in sample))
        results.append([o.detach().numpy().copy() for o in outputs])
    return results


def bench_forward(load, sample: tuple[np.ndarray, ...], *, runs: int, warmup: int, threads: int) -> dict:
    """Time `load()` (which returns the forward callable), then the forward on `sample`, at `threads`."""
    import time

    import torch

    from deploytool.runtime.timing import measure

    setting = set_threads(threads)
    started = time.perf_counter()
    forward = load()
    load_s = time.perf_counter() - started
    inputs = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in sample)
    return measure(lambda: forward(inputs), runs=runs, warmup=warmup, load_s=load_s, thread_setting=setting)


def set_threads(threads: int) -> str:
    """Resize ExecuTorch's threadpool (XNNPACK's); says what the pool reports back."""
    from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count, _unsafe_reset_threadpool

    _unsafe_reset_threadpool(threads)  # "unsafe" while inferences run; a bench sets it before loading anything
    return f"_unsafe_reset_threadpool({threads}); threadpool reports {_threadpool_get_thread_count()} threads"

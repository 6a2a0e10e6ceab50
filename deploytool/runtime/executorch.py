"""Run a .pte through ExecuTorch's runtime (the C++ runtime the Android and iOS libraries wrap)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def run(path: Path, samples: list[tuple[np.ndarray, ...]]) -> list[list[np.ndarray]]:
    import torch
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(path).load_method("forward")
    results = []
    for sample in samples:
        outputs = method.execute(tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in sample))
        results.append([o.detach().numpy().copy() for o in outputs])
    return results


def bench(path: Path, sample: tuple[np.ndarray, ...], *, runs: int, warmup: int, threads: int) -> dict:
    """Latency of `forward` with ExecuTorch's threadpool (the one XNNPACK runs on) resized to `threads`."""
    import time

    import torch
    from executorch.runtime import Runtime

    from deploytool.bench import measure

    setting = set_threads(threads)
    started = time.perf_counter()
    method = Runtime.get().load_program(path).load_method("forward")
    load_s = time.perf_counter() - started
    inputs = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in sample)
    return measure(lambda: method.execute(inputs), runs=runs, warmup=warmup, load_s=load_s, thread_setting=setting)


def set_threads(threads: int) -> str:
    """Resize ExecuTorch's threadpool (XNNPACK's); says what the pool reports back."""
    from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count, _unsafe_reset_threadpool

    _unsafe_reset_threadpool(threads)  # "unsafe" while inferences run; a bench sets it before loading anything
    return f"_unsafe_reset_threadpool({threads}); threadpool reports {_threadpool_get_thread_count()} threads"

"""Run a TorchScript .pt through torch.jit.load, as a libtorch or Python server would."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deploytool.runtime import as_arrays


def run(path: Path, samples: list[tuple[np.ndarray, ...]]) -> list[list[np.ndarray]]:
    import torch

    return run_module(torch.jit.load(str(path), map_location="cpu"), samples)


def bench(path: Path, sample: tuple[np.ndarray, ...], *, runs: int, warmup: int, threads: int) -> dict:
    """Latency of the TorchScript module with torch's intra-op pool at `threads`."""
    import torch

    return bench_module(lambda: torch.jit.load(str(path), map_location="cpu"), sample, runs=runs, warmup=warmup,
                        threads=threads)


def bench_module(load: Callable[[], Any], sample: tuple[np.ndarray, ...], *, runs: int, warmup: int,
                 threads: int) -> dict:
    """Set torch's threads, time `load()`, then time calls of the loaded module (TorchScript, lite, AOTInductor)."""
    import time

    import torch

    from deploytool.runtime.timing import measure, set_torch_threads

    setting = set_torch_threads(threads)
    started = time.perf_counter()
    module = load()
    load_s = time.perf_counter() - started
    inputs = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in sample)
    with torch.no_grad():
        return measure(lambda: module(*inputs), runs=runs, warmup=warmup, load_s=load_s, thread_setting=setting)


def run_module(module: Any, samples: list[tuple[np.ndarray, ...]]) -> list[list[np.ndarray]]:
    """Every sample through a loaded module (TorchScript, lite interpreter or AOTInductor) without autograd."""
    import torch

    with torch.no_grad():
        return [as_arrays(module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in sample))) for sample in samples]

"""Run an AOTInductor .pt2 package through torch._inductor.aoti_load_package (the compiled .so inside)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deploytool.runtime.torchscript import bench_module, run_module


def run(path: Path, samples: list[tuple[np.ndarray, ...]]) -> list[list[np.ndarray]]:
    import torch

    return run_module(torch._inductor.aoti_load_package(str(path)), samples)


def bench(path: Path, sample: tuple[np.ndarray, ...], *, runs: int, warmup: int, threads: int) -> dict:
    """Latency of the AOTInductor package (its OpenMP kernels follow torch's thread count) at `threads`."""
    import torch

    return bench_module(lambda: torch._inductor.aoti_load_package(str(path)), sample, runs=runs, warmup=warmup,
                        threads=threads)

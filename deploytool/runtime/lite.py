"""Run a .ptl in the PyTorch Mobile lite interpreter (the runtime of the deprecated pytorch_android_lite)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deploytool.runtime.torchscript import bench_module, run_module


def run(path: Path, samples: list[tuple[np.ndarray, ...]]) -> list[list[np.ndarray]]:
    from torch.jit.mobile import _load_for_lite_interpreter

    return run_module(_load_for_lite_interpreter(str(path)), samples)


def bench(path: Path, sample: tuple[np.ndarray, ...], *, runs: int, warmup: int, threads: int) -> dict:
    """Latency of the PyTorch Mobile lite interpreter at `threads`."""
    from torch.jit.mobile import _load_for_lite_interpreter

    return bench_module(lambda: _load_for_lite_interpreter(str(path)), sample, runs=runs, warmup=warmup,
                        threads=threads)

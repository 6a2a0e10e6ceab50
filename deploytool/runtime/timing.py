"""Timing one inference call the same way in every runtime: warm-up, timed runs, CPU time and machine load.

Each runtime's `bench` (runtime/*.py), the bench of the eager model (deploytool.bench) and the search's .pte
cost (export.executorch.pte_cost) time with `measure`, so their numbers compare.

    >>> measure(lambda: module(*inputs), runs=50, warmup=5, load_s=0.2, thread_setting=set_torch_threads(2))
"""
from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any


def machine_load() -> tuple[float | None, int]:
    """(1-minute load average, usable cores); the load is None where the OS does not report one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        return os.getloadavg()[0], cores
    except OSError:
        return None, cores


def measure(call: Callable[[], Any], *, runs: int, warmup: int, load_s: float, thread_setting: str) -> dict:
    """Time `call` (one inference): `warmup` untimed calls, then `runs` timed ones. For runtime `bench`es.

    >>> measure(lambda: session.run(None, feeds), runs=50, warmup=5, load_s=0.2, thread_setting="ORT intra_op 2")
    """
    started = time.perf_counter()
    call()
    first = time.perf_counter() - started
    for _ in range(max(warmup - 1, 0)):
        call()
    load_before, cores = machine_load()
    before = resource.getrusage(resource.RUSAGE_SELF)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    after = resource.getrusage(resource.RUSAGE_SELF)
    loads = [load for load in (load_before, machine_load()[0]) if load is not None]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    deciles = statistics.quantiles(times, n=10, method="inclusive") if len(times) > 1 else times * 9
    return {"runs": runs, "median_ms": 1e3 * statistics.median(times), "p10_ms": 1e3 * deciles[0],
            "p90_ms": 1e3 * deciles[-1], "first_ms": 1e3 * first, "cpu_ms": 1e3 * cpu / max(runs, 1),
            "load_s": load_s, "thread_setting": thread_setting, "load_avg": max(loads) if loads else None,
            "cores": cores}


def set_torch_threads(threads: int) -> str:
    """torch's intra-op pool (eager, TorchScript, AOTInductor's OpenMP kernels); says what torch reports back."""
    import torch

    torch.set_num_threads(threads)
    return f"torch.set_num_threads({threads}); torch.get_num_threads() = {torch.get_num_threads()}"

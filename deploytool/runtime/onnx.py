"""Run a .onnx in onnxruntime on the CPU execution provider, as a server would."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def run(path: Path, samples: list[tuple[np.ndarray, ...]]) -> list[list[np.ndarray]]:
    """Every sample through an InferenceSession with onnxruntime's default (full) graph optimizations."""
    return _run(path, samples, optimize=True)


def run_unoptimized(path: Path, samples: list[tuple[np.ndarray, ...]]) -> list[list[np.ndarray]]:
    """The graph op by op (no fusion): for a QDQ model, int8 simulated in fp32, its quantized reference."""
    return _run(path, samples, optimize=False)


def _run(path: Path, samples: list[tuple[np.ndarray, ...]], *, optimize: bool) -> list[list[np.ndarray]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return [[np.asarray(o) for o in session.run(None, dict(zip(names, sample)))] for sample in samples]


def bench(path: Path, sample: tuple[np.ndarray, ...], *, runs: int, warmup: int, threads: int) -> dict:
    """Latency of one session.run with `threads` intra-op threads (inter-op 1: a batch-1 graph runs in sequence)."""
    import time

    import onnxruntime as ort

    from deploytool.runtime.timing import measure

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    started = time.perf_counter()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - started
    feeds = dict(zip([i.name for i in session.get_inputs()], sample))
    setting = f"SessionOptions.intra_op_num_threads = {session.get_session_options().intra_op_num_threads}"
    return measure(lambda: session.run(None, feeds), runs=runs, warmup=warmup, load_s=load_s, thread_setting=setting)

"""Latency, load time, peak memory and size of each artifact in its real runtime, next to the eager model.

Each (artifact, thread count) runs in a fresh child process, so one runtime's threadpool, allocator and
memory peak never leak into another's numbers:

    >>> from deploytool.bench import bench_artifact
    >>> row = bench_artifact(Path("build/deploytool/android/model.pte"), "pte", sample, runs=50, threads=2)
    >>> row.median_ms, row.peak_rss_mb
    (0.41, 212.3)

A runtime module takes part by defining `bench(path, sample, *, runs, warmup, threads) -> dict` next to its
`run` (the RUNNERS entry may name another function with meta `bench="module:function"`); it loads the
artifact, sets its own thread count, and returns `measure(...)` of one inference call.
"""
from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploytool import fsutil
from deploytool.progress import timed_stage
from deploytool.runtime.timing import measure, set_torch_threads

log = logging.getLogger("deploytool")

EAGER = "eager"  # the reference row's format name: the model itself, in torch eager mode
EAGER_BENCH = "deploytool.bench:bench_eager"
SUFFIX_FORMATS = {".pte": "pte", ".bpte": "bpte", ".onnx": "onnx", ".pt": "torchscript", ".ptl": "ptl",
                  ".pt2": "aoti"}
NOISY_SPREAD = 0.5  # a p10-p90 band wider than half the median: the runs disagree, no one figure stands for them
BUSY_MARGIN = 0.5  # load average above cores + this: other processes held cores the run's threads needed


@dataclass
class BenchRow:
    """One artifact at one thread count. Times in milliseconds per inference, batch 1."""

    name: str  # "android/model.pte", or "eager fp32" for the reference
    format: str
    precision: str
    runtime: str
    threads: int
    size_bytes: int
    runs: int = 0
    median_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    first_ms: float | None = None  # the first call after loading (lazy initialisation shows here)
    cpu_ms: float | None = None  # user+sys CPU per run, all threads: steadier than wall time on a busy machine
    load_s: float | None = None
    peak_rss_mb: float | None = None  # of the whole child process, loading included
    thread_setting: str = ""  # how the runtime's thread count was set, and what it reports back
    load_avg: float | None = None  # 1-minute load average around the timed runs (the highest seen)
    cores: int | None = None  # cores this process may run on
    error: str | None = None
    also: list[str] = field(default_factory=list)  # byte-identical copies benched once (ios/model.pte)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def warning(self) -> str | None:
        """Why this row's figures are unreliable, or None (see `reliability`)."""
        if not self.ok or self.median_ms is None:
            return None
        return reliability(p10_ms=self.p10_ms, median_ms=self.median_ms, p90_ms=self.p90_ms,
                           load_avg=self.load_avg, cores=self.cores, threads=self.threads)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "warning": self.warning}


def reliability(*, p10_ms: float, median_ms: float, p90_ms: float, load_avg: float | None, cores: int | None,
                threads: int) -> str | None:
    """Why timings are not to be trusted: the runs spread widely, or the machine was busy. None when neither.

    The load average counts this benchmark's own threads too (the runs come back to back), so only a load
    above the core count says that other processes competed for the cores.

    >>> reliability(p10_ms=24.0, median_ms=25.0, p90_ms=26.0, load_avg=0.8, cores=2, threads=1) is None
    True
    >>> reliability(p10_ms=280.0, median_ms=289.0, p90_ms=310.0, load_avg=3.9, cores=2, threads=2)
    'busy machine: load average 3.9 on 2 cores'
    """
    reasons = []
    if median_ms > 0 and (p90_ms - p10_ms) / median_ms > NOISY_SPREAD:
        reasons.append(f"noisy: p10-p90 spans {p10_ms:.3g}-{p90_ms:.3g} ms around a median of {median_ms:.3g} ms")
    if load_avg is not None and cores and load_avg > cores + BUSY_MARGIN:
        reasons.append(f"busy machine: load average {load_avg:.1f} on {cores} cores")
    return "; ".join(reasons) or None


@dataclass(frozen=True)
class Benchable:
    """An artifact file to bench, with its format and precision (from its manifest, or its name)."""

    path: Path
    format: str
    precision: str


def bench(config: Any, paths: Sequence[Path] = (), *, threads: Sequence[int] = (1,), runs: int = 50,
          warmup: int = 5, prepared: Any = None) -> list[BenchRow]:
    """The eager model and every artifact at each thread count, on one held-out real sample (batch 1).

    `paths` are artifact files or folders; none means every artifact exported into config's output folder.
    Byte-identical copies (android/ and ios/model.pte) are benched once.

    >>> rows = bench(config, threads=(1, 2), runs=30)
    >>> print(table(rows))
    """
    from deploytool.context import batch_of_one, prepare
    from deploytool.errors import UsageError
    from deploytool.fsutil import sha256_file

    unique: dict[str, tuple[Benchable, list[str]]] = {}
    for item in collect(config.output_dir, paths):
        unique.setdefault(sha256_file(item.path), (item, []))[1].append(_display(item.path, config.output_dir))
    if not unique:
        raise UsageError(f"No artifacts to bench in {', '.join(map(str, paths)) or config.output_dir}.",
                         hint="Run `deploytool export` first, or name artifact files.")
    prepared = prepared or prepare(config)
    held_out = prepared.split.held_out if len(prepared.split.held_out) else prepared.split.calibration
    sample = batch_of_one(next(held_out.samples())[1], prepared.inputs)
    rows = []
    with fsutil.scratch("bench") as scratch:
        spec = Path(scratch) / "model.json"
        spec.write_text(json.dumps({"model": config.model, "base_dir": str(config.base_dir), "weights": config.weights,
                                    "trust_checkpoint": bool(config.trust_checkpoint),
                                    "inputs": [i.name for i in prepared.inputs]}))
        for count in threads:
            with timed_stage(f"bench: eager ({count} thread{'s' if count > 1 else ''})", log=log):
                eager = bench_artifact(spec, EAGER, sample, runs=runs, warmup=warmup, threads=count,
                                       precision="fp32")
            eager.name = f"eager ({config.model})"
            rows.append(eager)
            for item, names in unique.values():
                with timed_stage(f"bench: {names[0]} ({count} thread{'s' if count > 1 else ''})", log=log):
                    row = bench_artifact(item.path, item.format, sample, runs=runs, warmup=warmup, threads=count,
                                         precision=item.precision)
                row.name, row.also = names[0], names[1:]
                rows.append(row)
    return rows


def collect(output_dir: Path, paths: Sequence[Path]) -> list[Benchable]:
    """Artifacts named by paths: files, folders with a manifest.json, or output folders holding target folders."""
    from deploytool.errors import UsageError

    found: list[Benchable] = []
    for path in paths or (output_dir,):
        path = Path(path)
        if path.is_file():
            found.append(_described(path))
        elif path.is_dir():
            manifests = [path / "manifest.json"] if (path / "manifest.json").is_file() else \
                sorted(path.glob("*/manifest.json"))
            if not manifests:
                raise UsageError(f"{path} holds no manifest.json (nor target folders with one).",
                                 hint="Pass the output folder of `deploytool export`, or artifact files.")
            for manifest in manifests:
                entries = json.loads(manifest.read_text())["artifacts"]
                found += [Benchable(manifest.parent / e["file"], e["format"], e["precision"]) for e in entries]
        else:
            raise UsageError(f"{path} does not exist.", hint="Pass artifact files or the export output folder.")
    return found


def _described(path: Path) -> Benchable:
    """A single file: its manifest entry when its folder has one, else its name."""
    manifest = path.parent / "manifest.json"
    if manifest.is_file():
        for entry in json.loads(manifest.read_text())["artifacts"]:
            if entry["file"] == path.name:
                return Benchable(path, entry["format"], entry["precision"])
    return Benchable(path, *guess_format(path))


def _display(path: Path, output_dir: Path) -> str:
    try:
        return str(path.resolve().relative_to(output_dir.resolve()))
    except ValueError:
        return str(path)


def bench_artifact(path: Path, fmt: str, sample: Sequence[np.ndarray], *, runs: int, threads: int,
                   warmup: int = 5, precision: str = "", timeout_s: float = 600.0) -> BenchRow:
    """Bench one artifact (or the eager model: fmt "eager", path a model-spec JSON) in a fresh child process.

    >>> bench_artifact(Path("server/model.onnx"), "onnx", sample, runs=30, threads=1).median_ms
    0.12
    """
    from deploytool.export import FORMATS
    from deploytool.runtime import RUNNERS, save_samples

    target = EAGER_BENCH if fmt == EAGER else bench_target(fmt)
    runtime = "torch eager" if fmt == EAGER else FORMATS.get(fmt).meta["runtime"] if fmt in FORMATS else \
        RUNNERS.get(fmt).meta["runtime"]
    row = BenchRow(name=str(path), format=fmt, precision=precision, runtime=runtime, threads=threads,
                   size_bytes=path.stat().st_size if fmt != EAGER else 0)
    with fsutil.scratch("bench") as scratch:
        inputs, result = Path(scratch) / "inputs.npz", Path(scratch) / "result.json"
        save_samples(inputs, [tuple(sample)])
        # Pools that read the environment at start-up (OpenMP, MKL) get the same count as the runtime's own knob.
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        command = [sys.executable, "-m", "deploytool.bench", target, str(path), str(inputs), str(result),
                   str(runs), str(warmup), str(threads)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            row.error = f"did not finish within {timeout_s:.0f} s"
            return row
        if done.returncode != 0 or not result.is_file():
            from deploytool.runtime import stderr_tail

            row.error = f"the {fmt} runtime failed (exit {done.returncode}){stderr_tail(done.stderr)}"
            return row
        values = json.loads(result.read_text())
    for key, value in values.items():
        setattr(row, key, value)
    return row


def bench_target(fmt: str) -> str:
    """The `bench` function of a format's runtime: meta `bench`, else `bench` next to its `run`.

    >>> bench_target("onnx")
    'deploytool.runtime.onnx:bench'
    """
    from deploytool.runtime import RUNNERS

    entry = RUNNERS.get(fmt)
    return entry.meta.get("bench") or entry.target.partition(":")[0] + ":bench"


def bench_eager(spec_path: Path, sample, *, runs: int, warmup: int, threads: int) -> dict:
    """The eager fp32 model, loaded from a model-spec JSON (model, weights, base_dir, trust_checkpoint)."""
    import torch

    from deploytool.loading import load

    setting = set_torch_threads(threads)
    spec = json.loads(Path(spec_path).read_text())
    started = time.perf_counter()
    module = load(spec["model"], base_dir=Path(spec["base_dir"]), weights=spec.get("weights"),
                  trust_checkpoint=spec.get("trust_checkpoint", False)).module.eval()
    # By name: the data may feed forward()'s arguments out of their order (deploytool.normalize).
    inputs = dict(zip(spec["inputs"], (torch.from_numpy(np.ascontiguousarray(a)) for a in sample)))
    load_s = time.perf_counter() - started
    size = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    with torch.inference_mode():
        return {**measure(lambda: module(**inputs), runs=runs, warmup=warmup, load_s=load_s, thread_setting=setting),
                "size_bytes": size}


def guess_format(path: Path) -> tuple[str, str]:
    """(format, precision) of an artifact file by its name: model.int8.onnx -> ("onnx", "int8")."""
    from deploytool.errors import UsageError

    fmt = SUFFIX_FORMATS.get(path.suffix)
    if fmt is None:
        raise UsageError(f"{path}: cannot tell the format from the suffix '{path.suffix}'.",
                         hint=f"Known: {', '.join(SUFFIX_FORMATS)}; or pass the output folder (its manifests "
                              "name each artifact's format).")
    return fmt, "int8" if ".int8." in path.name else ""  # a model.pte may be either: unknown without a manifest


def ratios(rows: list[BenchRow]) -> dict[int, float]:
    """Eager median per thread count, the denominator of each row's 'vs eager'."""
    return {r.threads: r.median_ms for r in rows if r.format == EAGER and r.ok and r.median_ms}


def table(rows: list[BenchRow]) -> str:
    """The rows as a console table. 'x eager' is latency / eager latency at the same thread count (lower is
    faster); 'cpu ms' is user+sys CPU per run over all threads.

    >>> print(table(rows))
    """
    eager = ratios(rows)
    eager_size = next((r.size_bytes for r in rows if r.format == EAGER and r.size_bytes), 0)
    header = ("threads", "artifact", "precision", "median ms", "p10", "p90", "x eager", "cpu ms", "load s",
              "peak RSS MB", "size MB", "x eager size")
    measured = [r for r in rows if r.ok]
    cells = [header] + [_cells(r, eager.get(r.threads), eager_size) for r in measured]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    # Why a row's figures are unreliable goes at the end of that row, next to the figures it is about.
    notes = [""] + [f"  ! unreliable: {r.warning}" if r.warning else "" for r in measured]
    lines = ["  ".join(v.ljust(w) if i < 3 else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths))).rstrip()
             + note for line, note in zip(cells, notes)]
    lines += [f"{r.threads:<{widths[0]}}  {r.name}  FAILED: {r.error}" for r in rows if not r.ok]
    settings = sorted({f"  {r.format}: {r.runtime}: {r.thread_setting}" for r in rows if r.ok})
    return "\n".join(lines + ["", "threads, as set in each runtime:", *settings])


def _cells(row: BenchRow, eager_ms: float | None, eager_size: int) -> tuple[str, ...]:
    return (str(row.threads), row.name, row.precision or "-", f"{row.median_ms:.3f}", f"{row.p10_ms:.3f}",
            f"{row.p90_ms:.3f}", f"{row.median_ms / eager_ms:.3g}" if eager_ms else "-", f"{row.cpu_ms:.3f}",
            f"{row.load_s:.3f}", f"{row.peak_rss_mb:.0f}", f"{row.size_bytes / 2**20:.2f}",
            f"{row.size_bytes / eager_size:.3g}" if eager_size else "-")


def peak_rss_mb() -> float:
    """This process's own peak RSS. Not ru_maxrss: Linux carries that across exec, so a child started from a
    process holding torch would report the parent's footprint."""
    try:
        status = Path("/proc/self/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration, ValueError):  # not Linux: the best available
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)


def main(argv: list[str]) -> int:
    """Child entry: `python -m deploytool.bench MODULE:BENCH ARTIFACT INPUTS.npz RESULT.json RUNS WARMUP THREADS`."""
    from deploytool.registry import Entry
    from deploytool.runtime import load_samples

    target, artifact, inputs_path, result_path, runs, warmup, threads = argv
    sample = load_samples(Path(inputs_path))[0]
    try:
        values = Entry(target, target).load()(Path(artifact), sample, runs=int(runs), warmup=int(warmup),
                                              threads=int(threads))
    except Exception as exc:  # report any runtime failure as one line for the parent
        text = str(exc).strip()
        print(f"{type(exc).__name__}: {text.splitlines()[-1] if text else ''}", file=sys.stderr)
        return 1
    values["peak_rss_mb"] = peak_rss_mb()
    Path(result_path).write_text(json.dumps(values))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

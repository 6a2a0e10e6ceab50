"""Verify artifacts: run each in its real runtime on the held-out samples, compare with eager."""
from __future__ import annotations

import datetime
import hashlib
import io
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploytool.config import Precision
from deploytool.export import Artifact
from deploytool.report import ArtifactReport, human_size

log = logging.getLogger("deploytool")

Outputs = list[list[np.ndarray]]  # [sample][output]
SIZE_SLACK = (0.02, 64 * 1024)  # (share, bytes) an int8 file may exceed its fp32 form by: program and scales
RUNS_CACHE = Path(".cache") / "runs"  # under the output folder: runtime outputs by file, inputs and versions


@dataclass
class References:
    """What artifacts are compared with, computed once per export or check."""

    eager: Outputs  # eager fp32 module
    int8: Outputs | None  # the quantized program before lowering, when one exists
    labels: list[Any] = field(default_factory=list)  # per held-out sample: its truth (class index, pitch, ...) or None
    task: Any = None  # deploytool.parity.TaskMetric scoring outputs against `labels`; it decides int8 verdicts


def verify(artifact: Artifact, *, target: str, samples: list[tuple[np.ndarray, ...]], references: References,
           config, output_names: tuple[str, ...], unverified: bool = False, reuse_runs: bool = False) -> ArtifactReport:
    """Run the artifact in a child process and check it against eager (and, for int8, against the program it
    was lowered from: it may lose at most parity.max_lowering_loss_db of SQNR against eager compared with it).

    With `reuse_runs`, the runtime's outputs recorded by an earlier run of this same file (bytes, held-out inputs,
    library versions) stand in for running it again (`recorded_run`); the comparisons are always made anew.
    """
    from deploytool.fsutil import sha256_file
    from deploytool.parity import compare, lowering_check, task_result
    from deploytool.progress import timed_stage
    from deploytool.runtime import RUNNERS

    started = time.perf_counter()
    size_error = oversize(artifact)
    if size_error:
        log.warning("%s", size_error)
    sha256 = sha256_file(artifact.path)
    runtime = RUNNERS.get(artifact.format).meta["runtime"]
    with timed_stage(f"verifying {target}/{artifact.path.name} in {runtime} on {len(samples)} held-out samples",
                     log=log):
        run, ran_at = recorded_run(artifact, samples, sha256=sha256, timeout_s=config.parity.timeout_s,
                                   cache_dir=config.output_dir / RUNS_CACHE if reuse_runs else None)
    notes = [*artifact.notes, *([f"runtime outputs reused from its run at {ran_at} (same file, held-out inputs "
                                 "and library versions); compared anew"] if ran_at else [])]
    precision = Precision(artifact.precision)
    comparisons, acc = [], {}
    if run.ok:
        candidate = f"{artifact.path.name} ({artifact.precision})"
        task = task_result(references.task, references.eager, run.outputs, references.labels)
        comparisons.append(compare(references.eager, run.outputs, output_names=output_names,
                                   candidate_name=candidate, reference_name="eager fp32",
                                   thresholds=config.parity.for_precision(precision),
                                   task=task if precision is Precision.INT8 else None))
        if precision is Precision.INT8 and references.int8 is not None:
            comparisons.append(lowering_check(references.eager, references.int8, run.outputs,
                                              output_names=output_names, max_loss_db=config.parity.max_lowering_loss_db,
                                              candidate_name=candidate, reference_name="quantized reference"))
        acc = task.to_dict() if task else {}
    return ArtifactReport(
        model=config.model, target=target, format=artifact.format, precision=artifact.precision,
        artifact_path=artifact.path, size_bytes=artifact.path.stat().st_size, sha256=sha256,
        delegation=artifact.delegation, comparisons=comparisons, run_error=run.error, accuracy=acc,
        notes=notes, unverified=unverified, held_out_min=config.data.holdout_min,
        timings={"build": artifact.seconds, "verify": time.perf_counter() - started},
        outputs=run.outputs, companions={c.name: sha256_file(c) for c in artifact.companions},
        size_error=size_error, holds=measured_holdings(artifact), fp32_bytes=artifact.fp32_bytes,
    )


def measured_holdings(artifact: Artifact) -> dict[str, Any] | None:
    """What the file holds (report.inspect.holdings), or None where no inspector reads its format. A measurement
    that fails is logged and left out: it describes the artifact, it never stops its verdict."""
    from deploytool.export import FORMATS
    from deploytool.report.inspect import holdings

    fmt = artifact.format if artifact.format in FORMATS else None  # a second runtime's row: by the file's name
    try:
        return holdings(artifact.path, fmt, expected=artifact.precision).to_dict()
    except Exception as exc:  # an unreadable or unknown file: the runtime's verdict still stands
        log.debug("could not measure what %s holds: %s", artifact.path.name, exc)
        return None


def recorded_run(artifact: Artifact, samples: list[tuple[np.ndarray, ...]], *, sha256: str, timeout_s: float,
                 cache_dir: Path | None) -> tuple[Any, str | None]:
    """(RunResult, when it ran): the artifact run in its real runtime now, or, when `cache_dir` holds the outputs
    of an earlier successful run of the same file with the same inputs and library versions, those outputs.

    Only runs that finished are recorded: a crash or a hang runs again. The key names the file's place
    (target/name), so each copy of one .pte (android, ios) runs once in the runtime itself.

    >>> run, ran_at = recorded_run(artifact, samples, sha256=digest, timeout_s=300, cache_dir=out / RUNS_CACHE)
    >>> ran_at  # None: it ran now; else the UTC time of the run reused
    """
    from deploytool import cache
    from deploytool.fsutil import sha256_file
    from deploytool.npz import pack, unpack
    from deploytool.runtime import RunResult, run_artifact
    from deploytool.versions import versions

    if cache_dir is None:
        return run_artifact(artifact.path, artifact.format, samples, timeout_s=timeout_s), None
    digest = hashlib.sha256(json.dumps({
        "file": f"{artifact.path.parent.name}/{artifact.path.name}", "format": artifact.format, "sha256": sha256,
        "companions": sorted((c.name, sha256_file(c)) for c in artifact.companions), "versions": versions(),
    }, sort_keys=True).encode())
    for sample in samples:
        for array in sample:
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    path = cache_dir / f"{digest.hexdigest()[:24]}.npz"
    recorded = cache.fetch(path)
    if recorded is not None:
        try:
            with np.load(io.BytesIO(recorded)) as saved:
                outputs, ran_at = unpack(saved, "outputs"), str(saved["ran_at"])
            log.info("reusing %s's runtime outputs from its run at %s (same file, inputs and versions)",
                     artifact.path.name, ran_at)
            return RunResult(outputs, None, 0.0), ran_at
        except (OSError, KeyError, ValueError):  # written by an older release: run it again
            pass
    run = run_artifact(artifact.path, artifact.format, samples, timeout_s=timeout_s)
    if run.ok:
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        cache.store(path, pack({"outputs": run.outputs}, ran_at=np.array(now)))
    return run, None


def oversize(artifact: Artifact) -> str | None:
    """Why an int8 artifact is not worth shipping because it is larger than its fp32 form, or None.

    SIZE_SLACK covers the program and the scales that an int8 file adds around weights of the same size.

    >>> oversize(Artifact(Path("model.int8.onnx"), "onnx", "int8", fp32_bytes=5_750_000))  # a 7.2 MB file
    'model.int8.onnx (int8) is 7.2 MB, larger than its fp32 form (5.8 MB): ...'
    """
    if artifact.precision != Precision.INT8.value or artifact.fp32_bytes is None:
        return None
    from deploytool.report.inspect import WEIGHED_BY_CONSTANTS, stored_bytes

    size = stored_bytes(artifact.path, artifact.format)
    if size <= artifact.fp32_bytes * (1 + SIZE_SLACK[0]) + SIZE_SLACK[1]:
        return None
    what = "holds weights of" if artifact.format in WEIGHED_BY_CONSTANTS else "is"
    return (f"{artifact.path.name} (int8) {what} {human_size(size)}, larger than its fp32 form "
            f"({human_size(artifact.fp32_bytes)}): int8 weights are 4x smaller, so some are stored more than once "
            "(an unrolled loop, or fp32 copies at the int8/fp32 seams). Ship the fp32 artifact, or keep the "
            "repeated layers fp32 with quantize.keep_fp32.")

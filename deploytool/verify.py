"""Verify artifacts: run each in its real runtime on the held-out samples, compare with eager."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deploytool.config import Precision
from deploytool.export import Artifact
from deploytool.report import ArtifactReport

Outputs = list[list[np.ndarray]]  # [sample][output]


@dataclass
class References:
    """What artifacts are compared with, computed once per export or check."""

    eager: Outputs  # eager fp32 module
    int8: Outputs | None  # the quantized program before lowering, when one exists
    labels: list[Any] = field(default_factory=list)  # per held-out sample: its truth (class index, pitch, ...) or None
    task: Any = None  # deploytool.parity.TaskMetric scoring outputs against `labels`; it decides int8 verdicts


def verify(artifact: Artifact, *, target: str, samples: list[tuple[np.ndarray, ...]], references: References,
           config, output_names: tuple[str, ...], unverified: bool = False) -> ArtifactReport:
    """Run the artifact in a child process and check it against eager (and, for int8, against the program it
    was lowered from: it may lose at most parity.max_lowering_loss_db of SQNR against eager compared with it)."""
    from deploytool.fsutil import sha256_file
    from deploytool.parity import compare, lowering_check, task_result
    from deploytool.runtime import run_artifact

    started = time.perf_counter()
    run = run_artifact(artifact.path, artifact.format, samples, timeout_s=config.parity.timeout_s)
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
        artifact_path=artifact.path, size_bytes=artifact.path.stat().st_size, sha256=sha256_file(artifact.path),
        delegation=artifact.delegation, comparisons=comparisons, run_error=run.error, accuracy=acc,
        notes=list(artifact.notes), unverified=unverified, held_out_min=config.data.holdout_min,
        timings={"build": artifact.seconds, "verify": time.perf_counter() - started},
        outputs=run.outputs, companions={c.name: sha256_file(c) for c in artifact.companions},
    )

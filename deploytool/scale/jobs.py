"""Jobs: one independent piece of a matrix (model x target x recipe), self-contained so any process can run it.

A `JobSpec` pickles (plain strings and dicts): the config table, the folder its relative paths resolve
from, and the folder the job owns. `run_job` runs it anywhere (this process, a spawned worker, a Ray task)
and always returns a small JSON-able report; a failing job is one failed row, never an exception.

    >>> spec = JobSpec("export", "digits", target="android", recipe="fp32", output="/tmp/jobs/digits-android",
    ...                config={"model": "zoo:digits"}, base_dir="/work")
    >>> run_job(spec)["passed"]
    True
"""
from __future__ import annotations

import functools
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploytool.errors import DeployError, UsageError
from deploytool.registry import Registry

# kind -> "module:function" taking a JobSpec and returning a JobResult; imported in the worker only. A kind
# that runs the chain (export, gate, zoo) lives above it, next to what it runs: this layer imports none of them.
JOB_KINDS = Registry("job kind")
JOB_KINDS.register("export", "deploytool.api:export_job",
                   summary="export one target at one precision, verify it")
JOB_KINDS.register("gate", "deploytool.gate:gate_job", summary="the CI gate's cases of one model, every target")
JOB_KINDS.register("zoo", "deploytool.zoo:zoo_job",
                   summary="one zoo entry, target and precision vs expected.json")
JOB_KINDS.register("candidate", "deploytool.scale.jobs:candidate_job",
                   summary="one sensitivity candidate: the project quantized with some layers kept fp32")


@dataclass(frozen=True)
class JobSpec:
    """What a worker needs, by value or by path: nothing in it refers to the submitting process."""

    kind: str  # a JOB_KINDS name
    model: str  # the row's model name (a zoo name or the config's model spec)
    target: str
    recipe: str  # the precision, "int8" or "fp32"
    output: str  # absolute folder this job alone writes into
    config: dict[str, Any] = field(default_factory=dict)  # config table as in deploytool.toml (export, gate, candidate)
    base_dir: str = "."  # absolute folder the config's relative paths resolve from
    # Kind-specific options (zoo: weights, calib_limit; candidate: keep_fp32, and `target` is the layer left int8).
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.model}/{self.target}/{self.recipe}"


@dataclass
class JobResult:
    passed: bool
    metrics: dict[str, Any]  # comparable between runs: no timings, no timestamps
    findings: list[str] = field(default_factory=list)  # why it did not pass, one line each
    # Kind-specific extras for the submitting process (zoo: weights, compared; gate: the CaseResults themselves).
    details: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)


def run_job(spec: JobSpec) -> dict[str, Any]:
    """Run one job and report it; every error becomes the report's `error`, so the other jobs go on.

    >>> run_job(JobSpec("export", "broken.py:build", target="android", recipe="fp32", output="/tmp/x"))["error"]
    "ModelLoadError: ..."
    """
    started = time.perf_counter()
    result, error = None, None
    try:
        result = JOB_KINDS.get(spec.kind).load()(spec)
    except DeployError as exc:
        error = f"{type(exc).__name__}: {exc.message}" + (f" (hint: {exc.hint})" if exc.hint else "")
    except Exception as exc:  # a bug or the user's model code: this job fails, the matrix goes on
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}".rstrip()
    return report_of(spec, result, error, seconds=time.perf_counter() - started)


def report_of(spec: JobSpec, result: JobResult | None, error: str | None, *,
              seconds: float | None = None) -> dict[str, Any]:
    """A job's row: what it was, whether it passed, its metrics, or why it did not run."""
    timings = {**(result.timings if result else {})}
    if seconds is not None:
        timings["job_s"] = round(seconds, 1)
    return {
        "job": spec.label, "kind": spec.kind, "model": spec.model, "target": spec.target, "recipe": spec.recipe,
        "output": spec.output,
        "passed": bool(result and result.passed and not error),
        "metrics": result.metrics if result else {},
        "findings": result.findings if result else [],
        "details": result.details if result else {},
        "error": error,
        "timings": timings,
    }


def model_name(config) -> str:
    """A [[models]] entry's name, else the model spec as written: the model of a job's row and of a gate case."""
    return config.name or config.model or "model"


def verdict(report: dict[str, Any]) -> str:
    """ok, FAIL (ran, did not pass) or ERROR (did not run to the end)."""
    return "ok" if report["passed"] else ("ERROR" if report["error"] else "FAIL")


class ProgressLine:
    """`[3/8] digits/android/int8 ok (12.3 s)` on stderr as each job finishes."""

    def __init__(self, total: int, *, stream=None):
        self.total, self.done, self.stream = total, 0, stream or sys.stderr

    def __call__(self, report: dict[str, Any]) -> None:
        self.done += 1
        seconds = report["timings"].get("job_s")
        took = f" ({seconds:.1f} s)" if seconds is not None else ""
        self.stream.write(f"[{self.done}/{self.total}] {report['job']} {verdict(report)}{took}\n")
        self.stream.flush()


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """The report without what changes run to run (timings): two executors must agree on the rest."""
    return {k: v for k, v in report.items() if k != "timings"}


# --- the job kinds ---------------------------------------------------------------------------------------


def candidate_job(spec: JobSpec) -> JobResult:
    """One sensitivity candidate: the project's model quantized with params["keep_fp32"] left in fp32, measured
    on the held-out samples against eager (deploytool.quantize.diagnose.Session.evaluate)."""
    session = _candidate_session(config_of(spec), spec.base_dir)
    return JobResult(True, session.evaluate(spec.params["keep_fp32"]).to_dict())


# One project at a time: a worker gets the candidates of one search, so it loads the model, opens the data and
# captures once. `base_dir` is in the key because ProjectConfig equality ignores it.
@functools.lru_cache(maxsize=1)
def _candidate_session(config, base_dir: str):
    from deploytool.context import prepare

    return prepare(config).session(config.quantize)


def evaluate_candidates(executor, session, keep_sets: dict[str, tuple[str, ...]]) -> list:
    """`session.evaluate(keep)` for each candidate layer's set, as one `candidate` job each on `executor`, in order.

    A failed job is a CandidateError naming its layer: a sensitivity ranking with a hole would be wrong.

    >>> evaluate_candidates(executor_for("ray"), session, {"features.0": ("features.3", "classifier")})
    [Evaluation(kept_fp32=('classifier', 'features.3'), metrics=(OutputMetrics(...),), accuracy=0.96)]
    """
    from deploytool.config import to_plain
    from deploytool.errors import CandidateError
    from deploytool.quantize.session import Evaluation

    config = session.prepared.config
    table = {**config.to_dict(), "quantize": to_plain(session.recipe)}  # the session's recipe, not the file's
    specs = [JobSpec("candidate", model_name(config), target=layer, recipe="int8", output=str(config.output_dir),
                     config=table, base_dir=str(config.base_dir.resolve()), params={"keep_fp32": list(keep)})
             for layer, keep in keep_sets.items()]
    reports = executor.run(specs, on_done=ProgressLine(len(specs)))
    failed = [report for report in reports if report["error"]]
    if failed:
        others = f" ({len(failed) - 1} other candidate(s) failed too)" if len(failed) > 1 else ""
        raise CandidateError(f"The sensitivity of layer {failed[0]['target']} could not be measured{others}: "
                             f"{failed[0]['error'].splitlines()[0]}",
                             hint="Run without --executor/--jobs to measure it in this process (-v shows the "
                                  "traceback).")
    return [Evaluation.from_dict(report["metrics"]) for report in reports]


def config_of(spec: JobSpec):
    """The job's ProjectConfig: its config table, writing into the job's own output folder.

    >>> config_of(spec).output_dir == Path(spec.output)
    True
    """
    from deploytool.config import parse_config

    if not Path(spec.output).is_absolute() or not Path(spec.base_dir).is_absolute():
        raise UsageError(f"job {spec.label}: output and base_dir must be absolute paths (workers run elsewhere).")
    return parse_config({**spec.config, "output": spec.output}, source=f"job {spec.label}",
                        base_dir=Path(spec.base_dir))


def artifact_result(reports) -> JobResult:
    """A job's result from its ArtifactReports: passed when every artifact did, one finding per one that did not."""
    rows = []
    for report in reports:
        row = report.to_dict()
        row.pop("timings_s")
        rows.append(row)
    findings = [f"{r.artifact_path.name}: " + (f"did not run: {r.run_error}" if r.run_error else "parity failed")
                for r in reports if not r.passed]
    return JobResult(bool(reports) and not findings, {"artifacts": rows}, findings,
                     timings={r.artifact_path.name: r.timings for r in reports})

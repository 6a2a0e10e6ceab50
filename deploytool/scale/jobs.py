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
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploytool.errors import DeployError, UsageError
from deploytool.registry import Registry

# kind -> "module:function" taking a JobSpec and returning a JobResult; imported in the worker only.
JOB_KINDS = Registry("job kind")
JOB_KINDS.register("export", "deploytool.scale.jobs:export_job",
                   summary="export one target at one precision, verify it")
JOB_KINDS.register("gate", "deploytool.scale.jobs:gate_job", summary="the CI gate's cases of one model, every target")
JOB_KINDS.register("zoo", "deploytool.scale.jobs:zoo_job",
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


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """The report without what changes run to run (timings): two executors must agree on the rest."""
    return {k: v for k, v in report.items() if k != "timings"}


# --- the job kinds ---------------------------------------------------------------------------------------


def export_job(spec: JobSpec) -> JobResult:
    """Export and verify one target at one precision into the job's folder (the int8 program quantized there)."""
    from deploytool import api
    from deploytool.config import Precision

    reports = api.export(_config(spec), targets=(spec.target,), precision=Precision(spec.recipe))
    return _artifact_result(reports)


def gate_job(spec: JobSpec) -> JobResult:
    """One model's gate cases (deploytool.gate.check_model), before the baseline comparison done by the caller.

    One job per model, not per target: a model's targets share one output folder (and its lock), one
    quantization and one lowering of the .pte.
    """
    from deploytool.gate import check_model

    cases = check_model(_config(spec), targets=tuple(spec.params["targets"]) or None, export=spec.params["export"])
    rows = [case.to_dict() for case in cases]
    for case in cases:
        for report in case.reports:
            report.outputs = None  # raw outputs: large, and only the cross-check inside the job needs them
    for row in rows:
        for artifact in row["artifacts"]:
            artifact.pop("timings_s")
    return JobResult(all(case.passed for case in cases), {"cases": rows}, [c.error for c in cases if c.error],
                     details={"cases": cases})


def check_models_on(executor, configs: list, *, targets: tuple[str, ...] | None, export: bool) -> list[list]:
    """deploytool.gate.check_model for each config, as one job each on `executor`; a failed job is an ERROR
    case for each of its targets.

    >>> check_models_on(executor_for("ray"), load_projects(Path(".")), targets=None, export=True)
    [[CaseResult(model='digitnet', target='android', ...)], [CaseResult(model='digitmlp', ...)]]
    """
    from deploytool.api import plan_formats
    from deploytool.scale.executor import ProgressLine
    from deploytool.gate import CaseResult, model_name, precision_of

    specs = [JobSpec("gate", model_name(config), target=",".join(targets or config.targets),
                     recipe=precision_of(config).value, output=str(config.output_dir),
                     config=config.to_dict(), base_dir=str(config.base_dir.resolve()),
                     params={"targets": list(targets or ()), "export": export}) for config in configs]
    per_model = []
    for config, report in zip(configs, executor.run(specs, on_done=ProgressLine(len(specs)))):
        if report["error"]:
            error = report["error"].splitlines()[0]
            per_model.append([CaseResult(report["model"], target, report["recipe"], error=error)
                              for target in plan_formats(targets or config.targets, None)])
        else:
            per_model.append(report["details"]["cases"])
    return per_model


def zoo_job(spec: JobSpec) -> JobResult:
    """One zoo entry at one target and precision, measured and compared with its expected.json."""
    from deploytool.zoo import run_entry

    weights = spec.params.get("weights")
    run = run_entry(spec.model, output=Path(spec.output), targets=(spec.target,), precisions=(spec.recipe,),
                    weights=Path(weights) if weights else None, calib_limit=spec.params.get("calib_limit"))
    metrics = dict(run.results.get(spec.target, {}).get(spec.recipe, {}))
    build_s = metrics.pop("build_s", None)
    return JobResult(run.passed, metrics, [f.message for f in run.findings],
                     {"weights": run.weights, "compared": run.compared},
                     {"build_s": build_s} if build_s is not None else {})


def candidate_job(spec: JobSpec) -> JobResult:
    """One sensitivity candidate: the project's model quantized with params["keep_fp32"] left in fp32, measured
    on the held-out samples against eager (deploytool.quantize.diagnose.Session.evaluate)."""
    session = _candidate_session(_config(spec), spec.base_dir)
    return JobResult(True, session.evaluate(spec.params["keep_fp32"]).to_dict())


# One project at a time: a worker gets the candidates of one search, so it loads the model, opens the data and
# captures once. `base_dir` is in the key because ProjectConfig equality ignores it.
@functools.lru_cache(maxsize=1)
def _candidate_session(config, base_dir: str):
    from deploytool import api

    return api.prepare(config).session(config.quantize)


def evaluate_candidates(executor, session, keep_sets: dict[str, tuple[str, ...]]) -> list:
    """`session.evaluate(keep)` for each candidate layer's set, as one `candidate` job each on `executor`, in order.

    A failed job is a CandidateError naming its layer: a sensitivity ranking with a hole would be wrong.

    >>> evaluate_candidates(executor_for("ray"), session, {"features.0": ("features.3", "classifier")})
    [Evaluation(kept_fp32=('classifier', 'features.3'), metrics=(OutputMetrics(...),), accuracy=0.96)]
    """
    from deploytool.config import to_plain
    from deploytool.errors import CandidateError
    from deploytool.scale.executor import ProgressLine
    from deploytool.gate import model_name
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


def _config(spec: JobSpec):
    from deploytool.config import parse_config

    if not Path(spec.output).is_absolute() or not Path(spec.base_dir).is_absolute():
        raise UsageError(f"job {spec.label}: output and base_dir must be absolute paths (workers run elsewhere).")
    return parse_config({**spec.config, "output": spec.output}, source=f"job {spec.label}",
                        base_dir=Path(spec.base_dir))


def _artifact_result(reports) -> JobResult:
    rows = []
    for report in reports:
        row = report.to_dict()
        row.pop("timings_s")
        rows.append(row)
    findings = [f"{r.artifact_path.name}: " + (f"did not run: {r.run_error}" if r.run_error else "parity failed")
                for r in reports if not r.passed]
    return JobResult(bool(reports) and not findings, {"artifacts": rows}, findings,
                     timings={r.artifact_path.name: r.timings for r in reports})

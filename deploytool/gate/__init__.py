"""The CI gate: every declared model x target exported when its inputs changed, run in its real runtime, compared
with eager fp32 and with the committed baseline. `deploytool check`, the pytest plugin and the GitHub Action all
come through `run`.

    >>> result = run(load_projects(Path(".")))
    >>> print(result.table())
    >>> result.passed
    True
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploytool.gate.baseline import BASELINE_FILE, METRICS_BY_KEY, Difference, compare, metrics_of, read_baseline
from deploytool.config import Precision, ProjectConfig
from deploytool.errors import ParityFailed, StageError, UsageError, did_you_mean
from deploytool.scale.jobs import JobResult, JobSpec, ProgressLine, config_of, model_name

log = logging.getLogger("deploytool")

DEFAULT_PRECISION = Precision.INT8  # a gate checks what ships; precision = "fp32" in the config for float models


def precision_of(config: ProjectConfig) -> Precision:
    """The precision a model is gated at: its config's, else DEFAULT_PRECISION."""
    return config.precision or DEFAULT_PRECISION


@dataclass(frozen=True)
class Outcome:
    """One check of one model x target: a JUnit test case."""

    name: str
    passed: bool
    message: str
    error: bool = False  # nothing could be checked (export failed), as opposed to checked and failed
    seconds: float = 0.0


@dataclass
class CaseResult:
    """One model x target: its artifacts' parity reports and their comparison with the baseline."""

    model: str
    target: str
    precision: str
    reports: list = field(default_factory=list)  # deploytool.report.ArtifactReport, one per artifact
    differences: dict[str, list[Difference]] = field(default_factory=dict)  # artifact file -> metric vs baseline
    missing_baseline: list[str] = field(default_factory=list)  # artifact files with nothing recorded yet
    exported: bool = False  # False: the artifacts were current and only re-verified
    error: str | None = None  # export or check stopped before parity (capture or lowering failed)

    @property
    def id(self) -> str:
        """`mymodel-android-int8`: pytest ids and the name people grep for."""
        return f"{self.model}-{self.target}-{self.precision}"

    @property
    def regressions(self) -> list[Difference]:
        return [d for ds in self.differences.values() for d in ds if d.regressed]

    @property
    def improvements(self) -> list[Difference]:
        return [d for ds in self.differences.values() for d in ds if d.improved]

    @property
    def passed(self) -> bool:
        return (self.error is None and bool(self.reports) and all(r.passed for r in self.reports)
                and not self.regressions)

    def checklist(self) -> str:
        """What a person reads: each artifact's parity checklist, then the baseline differences."""
        from deploytool.report import details

        lines = [f"{self.model}/{self.target} ({self.precision}): {'PASS' if self.passed else 'FAIL'}"]
        if self.error:
            lines.append(f"  error: {self.error}")
        if self.reports:
            lines.append(details(self.reports).lstrip("\n"))
        lines.extend(f"  [FAIL] baseline: {d.line()}" for d in self.regressions)
        lines.extend(f"  [better] baseline: {d.line()}" for d in self.improvements)
        lines.extend(f"  note: no baseline recorded for {file}; `deploytool check --update-baseline` records one"
                     for file in self.missing_baseline)
        return "\n".join(lines)

    def outcomes(self) -> list[Outcome]:
        """Every check: the artifact ran, each parity threshold, each baseline metric."""
        if self.error:
            return [Outcome("export", False, self.error, error=True)]
        outcomes = []
        for r in self.reports:
            file = r.artifact_path.name
            outcomes.append(Outcome(f"{file} ({r.precision}) runs in its runtime", r.run_error is None,
                                    r.run_error or f"ran on {r.vs_eager().samples} held-out samples",
                                    seconds=r.timings.get("verify", 0.0)))
            for comparison in r.comparisons:
                outcomes.extend(Outcome(f"{file} ({r.precision}) vs {comparison.reference}: {c.output} "
                                        f"{c.label}", c.passed, c.line()) for c in comparison.checks)
            outcomes.extend(Outcome(f"{file} ({r.precision}) vs baseline: {d.metric.label}", not d.regressed,
                                    d.line()) for d in self.differences.get(file, []))
        return outcomes

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "target": self.target, "precision": self.precision,
                "passed": self.passed, "exported": self.exported, "error": self.error,
                "artifacts": [r.to_dict() for r in self.reports],
                "baseline": {"regressions": [d.line() for d in self.regressions],
                             "improvements": [d.line() for d in self.improvements],
                             "missing": self.missing_baseline}}


@dataclass
class GateResult:
    cases: list[CaseResult]
    baseline_path: Path
    baseline_written: bool = False

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(c.passed for c in self.cases)

    def table(self) -> str:
        """One row per artifact: model, target, file, size, delegated share, parity, baseline, verdict."""
        from deploytool.report import columns, human_size
        from deploytool.runtime import failure_verdict

        rows = [("model", "target", "artifact", "precision", "size", "delegated", "SQNR", "top-1 agr", "accuracy",
                 "baseline", "result")]
        for case in self.cases:
            if case.error:
                rows.append((case.model, case.target, "-", case.precision, "-", "-", "-", "-", "-", "-", "ERROR"))
            for r in case.reports:
                values = metrics_of(r)
                differences = case.differences.get(r.artifact_path.name)
                shown = [METRICS_BY_KEY[k].show(values[k]) if k in values else "-"
                         for k in ("delegated_share", "sqnr_db", "top1_agreement", "accuracy")]
                rows.append((case.model, case.target, r.artifact_path.name, r.precision, human_size(r.size_bytes),
                             *shown, self._baseline_cell(differences),
                             failure_verdict(r.run_error) if r.run_error
                             else "PASS" if r.passed and not _worse(differences) else "FAIL"))
        return columns(rows)

    def _baseline_cell(self, differences: list[Difference] | None) -> str:
        if self.baseline_written:
            return "updated"
        if differences is None:
            return "none"
        worse = _worse(differences)
        return f"WORSE: {', '.join(worse)}" if worse else "ok"

    def details(self) -> str:
        """Checklists of failing cases; baseline improvements and missing entries of passing ones."""
        lines = []
        for case in self.cases:
            if not case.passed:
                lines.append("\n" + case.checklist())
            else:
                lines.extend(f"better than baseline: {d.line()}" for d in case.improvements)
                lines.extend(f"no baseline recorded for {case.model}/{case.target} {file}"
                             for file in case.missing_baseline)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "baseline": str(self.baseline_path), "baseline_written": self.baseline_written,
                "cases": [c.to_dict() for c in self.cases]}


def _worse(differences: list[Difference] | None) -> list[str]:
    return [d.metric.label for d in differences or () if d.regressed]


def planned_cases(config: ProjectConfig) -> list[tuple[str, str]]:
    """(target, case id) of each case `run` produces for this model, known without loading anything heavy.

    >>> planned_cases(config)
    [('android', 'digitnet-android-int8')]
    """
    from deploytool.api import plan_formats

    precision = precision_of(config).value
    return [(t, f"{model_name(config)}-{t}-{precision}") for t in plan_formats(config.targets, None)]


def run(projects: list[ProjectConfig], *, names: tuple[str, ...] | None = None,
        targets: tuple[str, ...] | None = None, export: bool = True, update_baseline: bool = False,
        executor: Any = None) -> GateResult:
    """Check every model x target and compare with deploytool.baseline.json next to the config.

    `export`: re-export a target whose manifest records other inputs (model, data, options) or none; else only
    re-verify the artifacts already exported, as `deploytool check` of a single unnamed model always did.
    `update_baseline`: record this run's metrics instead of comparing, only when every parity check passes.
    `executor` (deploytool.scale.executor): check the models as independent jobs, one per model, e.g. on Ray.

    >>> result = run(load_projects(Path(".")), names=("digitnet",), targets=("android",))
    >>> [c.id for c in result.cases]
    ['digitnet-android-int8']
    """
    baseline = read_baseline(baseline_path(projects))
    cases = []
    selected = select(projects, names)
    if executor is None:
        per_model = [check_model(config, targets=targets, export=export) for config in selected]
    else:
        per_model = check_models_on(executor, selected, targets=targets, export=export)
    for config, model_cases in zip(selected, per_model):
        if not update_baseline:
            for case in model_cases:
                _compare_with_baseline(case, baseline, config)
        cases.extend(model_cases)
    result = GateResult(cases, baseline.path)
    if update_baseline and result.passed:
        for case in cases:
            baseline.record(case.model, case.target, case.reports)
        baseline.keep_only({model_name(p) for p in projects})
        baseline.write()
        result.baseline_written = True
    return result


def baseline_path(projects: list[ProjectConfig]) -> Path:
    """deploytool.baseline.json sits next to the config file (the repository root), ready to commit."""
    return projects[0].base_dir.resolve() / BASELINE_FILE


def select(projects: list[ProjectConfig], names: tuple[str, ...] | None) -> list[ProjectConfig]:
    known = [model_name(p) for p in projects]
    for name in names or ():
        if name not in known:
            raise UsageError(f"No model named '{name}' in the config. {did_you_mean(name, known)}",
                             hint="Names come from `name = ...` in each [[models]] table.")
    return [p for p in projects if not names or model_name(p) in names]


def check_model(config: ProjectConfig, *, targets: tuple[str, ...] | None, export: bool) -> list[CaseResult]:
    """One model's cases, one per target.

    With `export`, a failed capture or lowering becomes an ERROR case rather than an abort, so the other models
    are still checked. Without it, errors propagate exactly as `deploytool check` of one model always did.
    """
    from deploytool import api

    name = model_name(config)
    if not export:
        reports = api.check(config, targets=targets)
        return [CaseResult(name, t, reports[0].precision, [r for r in reports if r.target == t])
                for t in dict.fromkeys(r.target for r in reports)]
    plan = api.plan_formats(targets or config.targets, None)
    precision = precision_of(config)
    prepared = api.prepare(config)
    inputs_hash = prepared.inputs_hash(precision)
    stale = tuple(t for t, formats in plan.items() if not _is_current(config.output_dir / t, inputs_hash, formats))
    current = tuple(t for t in plan if t not in stale)
    if current:
        log.info("%s: %s unchanged since the last export; re-verifying", name, ", ".join(current))
    try:
        reports = api.export(config, targets=stale, precision=precision, prepared=prepared) if stale else []
        reports += api.check(config, targets=current, prepared=prepared) if current else []
    except (StageError, ParityFailed) as exc:  # this model could not be exported, or its artifacts changed
        message = exc.message + (f" Hint: {exc.hint}" if exc.hint else "")
        return [CaseResult(name, t, precision.value, error=message) for t in plan]
    return [CaseResult(name, t, precision.value, [r for r in reports if r.target == t], exported=t in stale)
            for t in plan]


def gate_job(spec: JobSpec) -> JobResult:
    """One model's gate cases (deploytool.gate.check_model), before the baseline comparison done by the caller.

    One job per model, not per target: a model's targets share one output folder (and its lock), one
    quantization and one lowering of the .pte.
    """
    cases = check_model(config_of(spec), targets=tuple(spec.params["targets"]) or None, export=spec.params["export"])
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
    """check_model for each config, as one job each on `executor`; a failed job is an ERROR
    case for each of its targets.

    >>> check_models_on(executor_for("ray"), load_projects(Path(".")), targets=None, export=True)
    [[CaseResult(model='digitnet', target='android', ...)], [CaseResult(model='digitmlp', ...)]]
    """
    from deploytool.api import plan_formats

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



def _is_current(folder: Path, inputs_hash: str, formats: tuple[str, ...]) -> bool:
    """The target's manifest was made from these inputs and holds every planned format."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (manifest.get("inputs_hash") == inputs_hash
            and set(formats) <= {a.get("format") for a in manifest.get("artifacts", [])})


def _compare_with_baseline(case: CaseResult, baseline, config: ProjectConfig) -> None:
    for r in case.reports:
        file = r.artifact_path.name
        recorded = baseline.entry(case.model, case.target, file, r.precision)
        if recorded is None:
            case.missing_baseline.append(file)
            continue
        where = f"{case.model}/{case.target}" + (f" {file}" if len(case.reports) > 1 else "") + f" {r.precision}"
        case.differences[file] = compare(where, metrics_of(r), recorded, config.baseline)

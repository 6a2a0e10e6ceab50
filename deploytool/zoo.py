"""The model zoo: what an entry holds, and `run_entry`, which takes it through the pipeline and checks the
results against the entry's committed expected.json.

Entries live in `model_zoo/<name>/entry.py`, one small file each, registered by name in
`model_zoo/__init__.py` (strings only: listing them imports no torch).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from deploytool.config import InputSpec, Precision, Preprocess, parse_config
from deploytool.errors import ConfigError, ParityFailed
from deploytool.fsutil import atomic_write_json
from deploytool.scale.jobs import JobResult, JobSpec

log = logging.getLogger("deploytool")

EXPECTED_SCHEMA = "deploytool.zoo.expected/1"
NO_BASELINE = "no expected results stored"


@dataclass(frozen=True)
class Recipe:
    """How an entry is quantized and checked; `why` explains each choice that differs from the defaults."""

    precisions: tuple[str, ...] = ("int8", "fp32")  # what `zoo run` builds per target
    per_channel: bool = True  # per-channel weights keep depthwise convs accurate at no runtime cost
    calib_limit: int | None = None  # None: deploytool's default
    holdout: float = 0.5  # zoo data sets are small: half calibrates, half is held out for parity and accuracy
    keep_fp32: tuple[str, ...] = ()  # module names the quantizer leaves in fp32
    fp32_only: str | None = None  # why int8 is not built (it crashes or mismatches); None: int8 is built
    # (result key, why): artifacts whose parity is known to fail, with the measured numbers; `zoo run` reports
    # their failed checks as known instead of failing on them (their other metrics still meet the baseline)
    known_failures: tuple[tuple[str, str], ...] = ()
    why: str = ""

    def __post_init__(self) -> None:
        unknown = [p for p in self.precisions if p not in {m.value for m in Precision}]
        if unknown or not self.precisions:
            raise ConfigError(f"recipe precisions {list(self.precisions)}: use 'int8' and/or 'fp32'")
        if self.fp32_only and "int8" in self.precisions:
            raise ConfigError("a recipe marked fp32_only cannot list 'int8' in its precisions")


@dataclass(frozen=True)
class ZooEntry:
    """One registered model: how to build it, its data, its recipe. Expected results sit in expected.json."""

    name: str
    build: Callable[[], Any]  # -> nn.Module in eval mode, with the entry's own weights
    inputs: tuple[InputSpec, ...]
    preprocess: Preprocess | None
    labels: tuple[str, ...]
    write_data: Callable[[Path], Path]  # materialises the entry's real data under a folder, returns its path
    data_note: str  # where the calibration and evaluation data come from
    weights_note: str  # where the entry's own weights come from
    recipe: Recipe = Recipe()
    architecture: Callable[[], Any] | None = None  # the bare module, for user-supplied weights
    cached_weights: Callable[[], Path | None] | None = None  # a weights file the user already has, if any
    label_of: Callable[[Any], Any] | None = None  # SampleRef -> its truth (class index, pitch), when not from folders
    task_metric: Any = None  # deploytool.parity.TaskMetric over label_of's truths; None: top-1 accuracy if labelled
    notes: tuple[str, ...] = ()  # anything else a user should know (input size chosen for CI time, ...)
    targets: tuple[str, ...] = ("android", "ios")
    trained: bool = True  # False: random init (BatchNorm re-estimated); its int8 parity proves nothing either way

    def weights_file(self, weights: Path | None = None) -> Path | None:
        """The weights that replace the entry's own: the user's file, else one found in the local cache."""
        if weights is not None:
            return weights
        return self.cached_weights() if self.cached_weights else None

    def weights_source(self, weights: Path | None = None) -> str:
        """A one-line account of where the weights come from, recorded with the results."""
        path = self.weights_file(weights)
        return f"weights file {path}" if path else self.weights_note

    def instantiate(self, weights: Path | None = None, *, trust: bool = False) -> Any:
        """The module with the entry's own weights, or with `weights_file(weights)` when there is one.

        >>> entry.instantiate(Path("resnet18.pth"))
        """
        from deploytool.errors import ModelLoadError
        from deploytool.loading import load_weights

        path = self.weights_file(weights)
        if path is None:
            return self.build()
        if self.architecture is None:
            raise ModelLoadError(f"Zoo entry '{self.name}' does not accept other weights.",
                                 hint="Drop --weights; the entry brings its own trained checkpoint.")
        module = self.architecture()
        load_weights(module, path, trust=trust)
        return module.eval()


def expected_path(name: str) -> Path:
    import model_zoo

    return Path(model_zoo.__file__).parent / name / "expected.json"


def entry(name: str) -> ZooEntry:
    """The registered entry (imports its module; unknown names get suggestions)."""
    from deploytool.registry import zoo

    return zoo().get(name).load()


# --- metrics and their tolerances ------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    label: str
    unit: str
    higher_is_better: bool
    tolerance: float  # absolute, in `unit`; for size a fraction of the baseline
    relative: bool = False

    def limit(self, baseline: float, tolerance: float) -> float:
        step = baseline * tolerance if self.relative else tolerance
        return baseline - step if self.higher_is_better else baseline + step

    def show(self, value: float) -> str:
        if self.unit == "dB":
            return f"{value:.1f} dB"
        if self.unit == "bytes":
            return f"{value / 1024:.1f} KiB"
        return f"{value:.3f}"


METRICS = {
    # int8 SQNR moves by ~1 dB between calibration-order or library changes; 3 dB is a real regression.
    "sqnr_db": Metric("SQNR", "dB", True, 3.0),
    # Held-out sets hold 20-150 samples: one or two flipped predictions must not fail the run.
    "top1_agreement": Metric("top-1 agreement", "", True, 0.05),
    "accuracy": Metric("accuracy", "", True, 0.04),
    # Flatbuffer layout and constant packing move sizes by a few percent; 10% more is a real change.
    "size_bytes": Metric("artifact size", "bytes", False, 0.10, relative=True),
    # One op falling out of the XNNPACK partition in a 100-op graph is 1%: catch it.
    "delegated_share": Metric("delegated-op share", "", True, 0.005),
}
# fp32 lowering lands anywhere from ~90 dB to bit-exact (200 dB): only a fall towards int8-like noise matters.
FP32_SQNR_FLOOR_DB = 60.0


def measure(report) -> dict[str, Any]:
    """The zoo's metrics of one artifact report; `accuracy` is the entry's task metric (top-1 accuracy, pitch
    accuracy) on the held-out samples."""
    eager = report.vs_eager()
    first = eager.outputs[0] if eager else None
    result: dict[str, Any] = {
        "sqnr_db": round(first.sqnr_db, 2) if first else None,
        "top1_agreement": round(first.top1_agreement, 4) if first and first.top1_agreement is not None else None,
        "accuracy": round(report.accuracy["artifact"], 4) if report.accuracy else None,
        "size_bytes": report.size_bytes,
        "delegated_share": round(report.delegation.share, 4) if report.delegation else None,
        "parity_passed": report.passed,
        "run_error": report.run_error,
        "failed_checks": [f"{c.candidate} vs {c.reference}: {line.strip()}" for c in report.comparisons
                          for line in c.checklist()[1:] if "[FAIL]" in line],
        "build_s": round(report.timings.get("build", 0.0), 1),
    }
    return result


@dataclass
class Finding:
    target: str
    precision: str
    message: str


def compare_expected(results: dict[str, dict[str, dict[str, Any]]], expected: dict[str, Any]) -> list[Finding]:
    """Every metric that regressed past its tolerance, and every crash or failed parity check.

    >>> compare_expected({"android": {"int8": {"sqnr_db": 31.2}}},
    ...                  {"results": {"android": {"int8": {"sqnr_db": {"baseline": 34.1, "tolerance": 1.1}}}}})
    [Finding(target='android', precision='int8', message='SQNR 31.2 dB, expected >= 33.0 dB (baseline 34.1 dB)')]
    """
    findings = []
    for target, by_precision in results.items():
        for precision, measured in by_precision.items():
            if measured.get("run_error"):
                findings.append(Finding(target, precision, f"the artifact did not run: {measured['run_error']}"))
                continue
            findings.extend(Finding(target, precision, f"parity {line}") for line in measured.get("failed_checks", ()))
            stored = expected.get("results", {}).get(target, {}).get(precision)
            if stored is None:
                findings.append(Finding(target, precision, f"{NO_BASELINE} for this target and precision "
                                                           "(a missing baseline, not a regression)"))
                continue
            for name, spec in stored.items():
                value = measured.get(name)
                metric = METRICS[name]
                limit = metric.limit(spec["baseline"], spec["tolerance"])
                if value is None:
                    findings.append(Finding(target, precision, f"{metric.label} was not measured, expected about "
                                                               f"{metric.show(spec['baseline'])}"))
                elif (value < limit) if metric.higher_is_better else (value > limit):
                    sign = ">=" if metric.higher_is_better else "<="
                    findings.append(Finding(target, precision,
                                            f"{metric.label} {metric.show(value)}, expected {sign} "
                                            f"{metric.show(limit)} (baseline {metric.show(spec['baseline'])})"))
    return findings


def baseline_from(results: dict[str, dict[str, dict[str, Any]]], previous: dict[str, Any]) -> dict[str, Any]:
    """Stored expectations for `results`, keeping tolerances edited by hand in the previous file."""
    stored = json.loads(json.dumps(previous.get("results", {})))  # targets and precisions not re-run stay
    for target, by_precision in results.items():
        for precision, measured in by_precision.items():
            old = previous.get("results", {}).get(target, {}).get(precision, {})
            specs = {}
            for name, metric in METRICS.items():
                if measured.get(name) is None:
                    continue
                tolerance = old.get(name, {}).get("tolerance", _default_tolerance(name, precision, measured[name]))
                specs[name] = {"baseline": measured[name], "tolerance": tolerance}
            stored.setdefault(target, {})[precision] = specs
    return stored


def _default_tolerance(name: str, precision: str, baseline: float) -> float:
    if name == "sqnr_db" and precision == Precision.FP32.value:
        return round(max(baseline - FP32_SQNR_FLOOR_DB, METRICS[name].tolerance), 1)
    return METRICS[name].tolerance


# --- running an entry -----------------------------------------------------------------------------------


@dataclass
class ZooRun:
    entry: ZooEntry
    weights: str
    results: dict[str, dict[str, dict[str, Any]]]  # target -> precision -> metrics
    findings: list[Finding]
    expected_file: Path
    compared: bool  # False when the weights differ from the baseline's, so the numbers cannot be compared
    reports: list = field(default_factory=list)  # ArtifactReports
    prepared: Any = None  # deploytool.api.Prepared: the loaded model and its data split

    @property
    def passed(self) -> bool:
        return not self.findings


def run_entry(name: str, *, output: Path, targets: tuple[str, ...] | None = None,
              precisions: tuple[str, ...] | None = None, weights: Path | None = None,
              calib_limit: int | None = None, update_baseline: bool = False,
              arm64: tuple[str, ...] | None = None) -> ZooRun:
    """Quantize and export one entry via deploytool.api, measure, and compare with its expected.json.

    `calib_limit` overrides the recipe's (to see what a worse recipe does). With `update_baseline`, the
    measured numbers become the new expected.json (written atomically) instead of being judged. `arm64` runs
    each .pte on ARM's kernels too (api.export); those rows have no baseline, their verdicts count.

    >>> run = run_entry("digits", output=Path("build/zoo/digits"), targets=("android",))
    >>> run.passed, run.results["android"]["int8"]["sqnr_db"]
    (True, 34.1)
    """
    from deploytool import api
    from deploytool.export import FORMATS

    zoo_entry = entry(name)
    recipe = replace(zoo_entry.recipe, calib_limit=calib_limit) if calib_limit else zoo_entry.recipe
    targets = targets or zoo_entry.targets
    precisions = precisions or recipe.precisions
    configs = {p: entry_config(zoo_entry, recipe, output=output / p, weights=weights) for p in precisions}
    prepared = api.prepare(configs[precisions[0]])
    results: dict[str, dict[str, dict[str, Any]]] = {}
    reports = []
    second_runs: list[Finding] = []  # a .pte again in another runtime (arm64): its verdict, no baseline of its own
    for precision, config in configs.items():
        log.info("zoo %s: %s for %s", name, precision, ", ".join(targets))
        for report in api.export(config, targets=targets, precision=Precision(precision), prepared=prepared,
                                 arm64=arm64):
            reports.append(report)
            if report.format not in FORMATS:
                measured = measure(report)
                second_runs += [Finding(f"{report.target} ({report.format})", precision, message)
                                for message in ([f"the artifact did not run: {report.run_error}"] if report.run_error
                                                else [f"parity {line}" for line in measured["failed_checks"]])]
                continue
            results.setdefault(result_key(report, precision), {})[precision] = measure(report)
    source = zoo_entry.weights_source(weights)
    path = expected_path(name)
    previous = json.loads(path.read_text()) if path.is_file() else {}
    compared = previous.get("weights", source) == source and not update_baseline
    findings = compare_expected(results, previous if compared else {})
    if not compared:  # no baseline applies, but crashes and parity failures still count
        findings = [f for f in findings if not f.message.startswith(NO_BASELINE)]
    findings = without_known_failures(findings, recipe) + second_runs
    run = ZooRun(zoo_entry, source, results, findings, path, compared, reports, prepared)
    if update_baseline:
        raise_on_findings(run)  # a crash or a parity failure is never stored as the expected result
        _write_expected(path, zoo_entry, recipe, source, results, previous)
    return run


def zoo_job(spec: JobSpec) -> JobResult:
    """One zoo entry at one target and precision, measured and compared with its expected.json."""
    weights = spec.params.get("weights")
    run = run_entry(spec.model, output=Path(spec.output), targets=(spec.target,), precisions=(spec.recipe,),
                    weights=Path(weights) if weights else None, calib_limit=spec.params.get("calib_limit"))
    metrics = dict(run.results.get(spec.target, {}).get(spec.recipe, {}))
    build_s = metrics.pop("build_s", None)
    findings = [f.message if f.target == spec.target else f"{f.target}: {f.message}" for f in run.findings]
    # A job for --target all measures several artifacts (android, server/model.pt2, ...): each gets its own row.
    return JobResult(run.passed, metrics, findings,
                     {"weights": run.weights, "compared": run.compared, "results": run.results},
                     {"build_s": build_s} if build_s is not None else {})


def without_known_failures(findings: list[Finding], recipe: Recipe) -> list[Finding]:
    """The findings less the failed parity checks of artifacts the recipe lists as known failures; each of
    those is logged as a warning with the recipe's reason. Crashes and baseline regressions always stay.

    >>> without_known_failures([Finding("server", "int8", "parity ...")], Recipe(known_failures=(("server", "why"),)))
    []
    """
    known = dict(recipe.known_failures)
    kept = []
    for finding in findings:
        if finding.target in known and finding.message.startswith("parity "):
            log.warning("known failure of %s %s (%s): %s", finding.target, finding.precision, known[finding.target],
                        finding.message)
        else:
            kept.append(finding)
    return kept


def result_key(report, precision: str) -> str:
    """Where expected.json keeps an artifact's results: the target's name for its main artifact in the run's
    precision (android's .pte, server's model.int8.onnx in an int8 run), `target/file` for every other one
    (android/model.ptl, server/model.pt2), so `--target all` compares each artifact with its own baseline.

    >>> result_key(ptl_report, "fp32")
    'android/model.ptl'
    """
    from deploytool.registry import TARGETS

    main = TARGETS.get(report.target).meta["formats"][0]
    if report.format == main and report.precision == precision:
        return report.target
    return f"{report.target}/{report.artifact_path.name}"


def entry_config(zoo_entry: ZooEntry, recipe: Recipe, *, output: Path, weights: Path | None = None):
    """The ProjectConfig an entry runs with: its own data and recipe, no project config file involved."""
    quantize: dict[str, Any] = {"per_channel": recipe.per_channel}
    if recipe.keep_fp32:  # a ConfigError names the key if this deploytool's quantizer lacks the option
        quantize["keep_fp32"] = list(recipe.keep_fp32)
    data: dict[str, Any] = {"holdout": recipe.holdout}
    if recipe.calib_limit:
        data["calib_limit"] = recipe.calib_limit
    table = {"model": f"zoo:{zoo_entry.name}", "output": str(output), "quantize": quantize, "data": data,
             "weights": str(weights) if weights else None}
    return parse_config({k: v for k, v in table.items() if v is not None}, source=f"zoo entry '{zoo_entry.name}'",
                        base_dir=Path.cwd())


def _write_expected(path: Path, zoo_entry: ZooEntry, recipe: Recipe, source: str, results, previous) -> None:
    from deploytool.versions import versions

    atomic_write_json(path, {
        "schema": EXPECTED_SCHEMA,
        "model": zoo_entry.name,
        "weights": source,
        "recipe": asdict(recipe),
        "results": baseline_from(results, previous),
        "measured_with": {k: v for k, v in versions().items() if k in ("torch", "torchao", "executorch")},
    })


def raise_on_findings(run: ZooRun) -> None:
    """Exit code 1 with every finding listed, the way parity failures are reported."""
    if run.findings:
        lines = "; ".join(f"{f.target} {f.precision}: {f.message}" for f in run.findings)
        unstored = sorted({f.target.split("/")[0] for f in run.findings if f.message.startswith(NO_BASELINE)})
        store = (f"Store the missing baselines: deploytool zoo run {run.entry.name} --target {','.join(unstored)} "
                 f"--update-baseline (adds them to {run.expected_file}). ") if unstored else ""
        what = "has no stored baseline" if len(unstored) and all(
            f.message.startswith(NO_BASELINE) for f in run.findings) else "regressed"
        raise ZooRegression(f"zoo entry '{run.entry.name}' {what}: {lines}.",
                            hint=f"{store}Fix the cause, or after a deliberate change: deploytool zoo run "
                                 f"{run.entry.name} --update-baseline (rewrites {run.expected_file}).")


class ZooRegression(ParityFailed):
    """A zoo entry's results fell past the tolerances stored in its expected.json."""

"""Stored baselines: the metrics a model repository commits, and how a later run compares with them.

`deploytool check --update-baseline` writes deploytool.baseline.json next to the config: per model x target x
artifact, SQNR and top-1 agreement vs eager fp32, top-1 accuracy (labelled data), file size and delegated share.
Later runs fail when a metric is worse than its baseline by more than its tolerance ([baseline] in the config,
`BaselineConfig`); improvements are reported and never fail.

    >>> baseline = read_baseline(Path("deploytool.baseline.json"))
    >>> [d.line() for d in compare(where, metrics_of(report), baseline.entry("digitnet", "android", report),
    ...                            BaselineConfig()) if d.regressed]
    ['digitnet/android int8: SQNR 27.9 dB, baseline 31.0 dB (-3.1 dB, allowed -1.0)']
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploytool.config import BaselineConfig
from deploytool.errors import ConfigError
from deploytool.fsutil import atomic_write_json
from deploytool.report import human_size
from deploytool.versions import versions

BASELINE_FILE = "deploytool.baseline.json"
SCHEMA = "deploytool.baseline/1"


@dataclass(frozen=True)
class Metric:
    key: str  # in the baseline file and in BaselineConfig's tolerance of the same idea
    label: str
    higher_is_better: bool
    show: Callable[[float], str]  # a value, for people
    show_change: Callable[[float, float], str]  # (value, baseline) -> the signed change, for people
    show_allowed: Callable[[float], str]  # the tolerance as the largest allowed change, signed
    tolerance: str = ""  # BaselineConfig field; defaults to `key`
    relative: bool = False  # the tolerance is a share of the baseline value, not an absolute amount

    def regressed(self, value: float, baseline: float, tolerance: float) -> bool:
        if self.relative:
            return value > baseline * (1 + tolerance)
        return value < baseline - tolerance if self.higher_is_better else value > baseline + tolerance

    def improved(self, value: float, baseline: float) -> bool:
        return value > baseline if self.higher_is_better else value < baseline


def _points(value: float, baseline: float) -> str:
    return f"{(value - baseline) * 100:+.1f} points"


METRICS = (
    Metric("sqnr_db", "SQNR", True, lambda v: f"{v:.1f} dB", lambda v, b: f"{v - b:+.1f} dB",
           lambda t: f"{-t:+.1f}"),
    Metric("top1_agreement", "top-1 agreement", True, lambda v: f"{v:.3f}", lambda v, b: f"{v - b:+.3f}",
           lambda t: f"{-t:+.3f}"),
    Metric("accuracy", "top-1 accuracy", True, lambda v: f"{v:.1%}", _points, lambda t: f"{-t * 100:+.1f}"),
    Metric("size_bytes", "size", False, lambda v: human_size(int(v)), lambda v, b: f"{v / b - 1:+.1%}" if b else "new",
           lambda t: f"+{t:.0%}", tolerance="size_growth", relative=True),
    Metric("delegated_share", "delegated share", True, lambda v: f"{v:.0%}", _points, lambda t: f"{-t * 100:+.1f}"),
)
METRICS_BY_KEY = {m.key: m for m in METRICS}


@dataclass(frozen=True)
class Difference:
    """One metric of one artifact against its baseline."""

    where: str  # "digitnet/android int8", plus the file when a target has several artifacts
    metric: Metric
    value: float
    baseline: float
    tolerance: float

    @property
    def regressed(self) -> bool:
        return self.metric.regressed(self.value, self.baseline, self.tolerance)

    @property
    def improved(self) -> bool:
        return self.metric.improved(self.value, self.baseline)

    def line(self) -> str:
        m = self.metric
        return (f"{self.where}: {m.label} {m.show(self.value)}, baseline {m.show(self.baseline)} "
                f"({m.show_change(self.value, self.baseline)}, allowed {m.show_allowed(self.tolerance)})")


def metrics_of(report) -> dict[str, float]:
    """The baseline metrics of one verified artifact (`ArtifactReport`); metrics it lacks are left out.

    Rounded to what people read, so reruns that differ below that precision compare equal.

    >>> metrics_of(report)
    {'size_bytes': 9216, 'sqnr_db': 37.62, 'top1_agreement': 1.0, 'accuracy': 0.95, 'delegated_share': 1.0}
    """
    values: dict[str, float] = {"size_bytes": report.size_bytes}
    eager = report.vs_eager()
    if eager is not None:
        values["sqnr_db"] = round(min(o.sqnr_db for o in eager.outputs), 2)  # the worst output decides
        agreements = [o.top1_agreement for o in eager.outputs if o.top1_agreement is not None]
        if agreements:
            values["top1_agreement"] = round(min(agreements), 4)
    if report.accuracy and report.accuracy.get("artifact") is not None:
        values["accuracy"] = round(report.accuracy["artifact"], 4)
    if report.delegation is not None:
        values["delegated_share"] = round(report.delegation.share, 4)
    return values


def compare(where: str, values: dict[str, float], recorded: dict[str, Any],
            tolerances: BaselineConfig) -> list[Difference]:
    """Every metric present in both the run and the baseline, regressed, improved or unchanged."""
    return [Difference(where, m, values[m.key], float(recorded[m.key]), getattr(tolerances, m.tolerance or m.key))
            for m in METRICS if m.key in values and isinstance(recorded.get(m.key), (int, float))]


@dataclass
class Baseline:
    """deploytool.baseline.json in memory: models -> target -> artifact file -> {precision, metrics}."""

    path: Path
    models: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)

    def entry(self, model: str, target: str, file: str, precision: str) -> dict[str, Any] | None:
        """The recorded metrics of one artifact; None when none were recorded for this precision."""
        recorded = self.models.get(model, {}).get(target, {}).get(file)
        return recorded if recorded and recorded.get("precision") == precision else None

    def record(self, model: str, target: str, reports: list) -> None:
        """Replace one model x target's entries with these verified artifacts' metrics."""
        self.models.setdefault(model, {})[target] = {
            r.artifact_path.name: {"precision": r.precision, **metrics_of(r)} for r in reports}

    def keep_only(self, models: set[str]) -> None:
        """Drop models the config no longer declares, so the committed file does not keep stale entries."""
        self.models = {name: targets for name, targets in self.models.items() if name in models}

    def write(self) -> Path:
        models = {name: dict(sorted(targets.items())) for name, targets in sorted(self.models.items())}
        return atomic_write_json(self.path, {"schema": SCHEMA, "models": models, "versions": versions()})


def read_baseline(path: Path) -> Baseline:
    """The committed baseline; an empty one when the file does not exist yet."""
    if not path.is_file():
        return Baseline(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable baseline ({exc}).",
                          hint="Restore it from version control, or rewrite it with `deploytool check "
                               "--update-baseline`.") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("models"), dict):
        raise ConfigError(f"{path}: not a deploytool baseline (expected \"schema\": \"{SCHEMA}\" and \"models\").",
                          hint="Rewrite it with `deploytool check --update-baseline`.")
    return Baseline(path, data["models"])

"""Reports: one dataclass per target, JSON for machines, a table and a checklist for people."""
from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploytool.versions import versions

SCHEMA = "deploytool.report/1"


@dataclass
class ArtifactReport:
    model: str
    target: str
    format: str
    precision: str
    artifact_path: Path
    size_bytes: int
    sha256: str
    delegation: Any  # deploytool.export.Delegation | None
    comparisons: list  # [deploytool.parity.Comparison]
    run_error: str | None  # the artifact did not load or crashed in its runtime
    accuracy: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unverified: bool = False  # calibrated and checked on random data
    held_out_min: int = 0  # fewer held-out samples than this give no verdict: the report fails (data.holdout_min)
    timings: dict[str, float] = field(default_factory=dict)
    outputs: Any = field(default=None, repr=False)  # the artifact's outputs, for cross-artifact comparison
    companions: dict[str, str] = field(default_factory=dict)  # file name -> sha256 of files that travel with it
    build_error: str | None = None  # the format's writer failed: no file, nothing ran (see `not_built`)
    build_hint: str | None = None
    size_error: str | None = None  # an int8 artifact larger than its fp32 form (verify.oversize)
    holds: dict[str, Any] | None = None  # what the file holds, measured from it (report.inspect.Holdings.to_dict)
    fp32_bytes: int | None = None  # int8 only: its fp32 form's size, which it must not exceed (verify.oversize)

    @property
    def passed(self) -> bool:
        return (self.run_error is None and bool(self.comparisons) and all(c.passed for c in self.comparisons)
                and self.shortfall is None and self.size_error is None)

    @property
    def shortfall(self) -> str | None:
        """Why the held-out samples were too few for a verdict, or None: a PASS on 1 sample is no PASS."""
        from deploytool.data import held_out_shortfall

        eager = self.vs_eager()
        return held_out_shortfall(eager.samples, self.held_out_min) if eager else None

    def vs_eager(self):
        return self.comparisons[0] if self.comparisons else None

    def to_dict(self) -> dict[str, Any]:
        delegation = None
        if self.delegation is not None:
            delegation = {**dataclasses.asdict(self.delegation), "share": round(self.delegation.share, 4)}
        return {
            "file": None if self.build_error else self.artifact_path.name,
            "format": self.format,
            "precision": self.precision,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "passed": self.passed,
            "delegation": delegation,
            "parity": {
                "unverified": self.unverified,
                "shortfall": self.shortfall,
                "run_error": self.run_error,
                "comparisons": [comparison_dict(c) for c in self.comparisons],
            },
            "accuracy": self.accuracy or None,
            **({"build": {"error": self.build_error, "hint": self.build_hint}} if self.build_error else {}),
            **({"size_error": self.size_error} if self.size_error else {}),
            "holds": self.holds,
            "notes": self.notes,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }


def not_built(error, *, model: str, target: str, format: str, precision: str, path: Path) -> ArtifactReport:
    """The row of an artifact at `path` that could not be built (`error`, a DeployError): it fails, and says why
    and what next.

    >>> not_built(LowerError("Lowering failed", hint="-v"), model="m.py:build", target="android", format="pte",
    ...           precision="int8", path=Path("build/deploytool/android/model.pte")).passed
    False
    """
    return ArtifactReport(model=model, target=target, format=format, precision=precision,
                          artifact_path=path, size_bytes=0, sha256="", delegation=None, comparisons=[],
                          run_error=None, build_error=error.message, build_hint=error.hint)


def target_report(reports: list[ArtifactReport], *, target: str, extra: dict[str, Any]) -> dict[str, Any]:
    """report.json of one target folder. The only file with a timestamp: artifacts stay reproducible."""
    return {
        "schema": SCHEMA,
        "model": reports[0].model if reports else None,
        "target": target,
        "passed": all(r.passed for r in reports),
        **extra,
        "artifacts": [r.to_dict() for r in reports],
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
    }


def comparison_dict(comparison) -> dict[str, Any]:
    """A parity.Comparison as JSON-ready data: candidate, reference, sample count, verdict, per-output metrics
    and the checklist, each check with its verdict. The form of "comparisons" in report.json.

    >>> comparison_dict(comparison)["passed"]
    True
    """
    return {
        "candidate": comparison.candidate,
        "reference": comparison.reference,
        "samples": comparison.samples,
        "passed": comparison.passed,
        "outputs": [dataclasses.asdict(m) for m in comparison.outputs],
        "checks": [{**dataclasses.asdict(c), "passed": c.passed} for c in comparison.checks],
    }


def summary_table(reports: list[ArtifactReport]) -> str:
    """The stdout table: model, target, artifact, precision, size, delegated share, parity."""
    header = ("model", "target", "artifact", "precision", "size", "delegated", "SQNR", "top-1 agr", "parity")
    from deploytool.export import FORMATS
    from deploytool.runtime import failure_verdict

    metric = next((r.accuracy["metric"] for r in reports if r.accuracy), None)
    if metric:  # the task metric, under its own name, beside eager's
        header = (*header[:-1], metric, header[-1])
    rows = [header]
    for r in reports:
        # A file run by a second runtime (check --native) gets that runtime's name, so the two rows differ.
        name = r.artifact_path.name if r.format in FORMATS else f"{r.artifact_path.name} [{r.format}]"
        if r.build_error:
            name = f"{r.artifact_path.name} (not built)"
        eager = r.vs_eager()
        first = eager.outputs[0] if eager else None
        delegated = f"{r.delegation.share:.0%}" if r.delegation else "-"
        if r.delegation and r.delegation.excluded:
            delegated += f" ({len(r.delegation.excluded)} left out)"
        parity = "PASS" if r.passed else (failure_verdict(r.run_error) if r.run_error else
                                          "NOT BUILT" if r.build_error else "FAIL")
        if r.shortfall:
            parity += f" ({r.vs_eager().samples} held out, {r.held_out_min} needed)"
        if r.unverified:
            parity += " (unverified: random data)"
        task = (f"{r.accuracy['artifact']:.1%} (eager {r.accuracy['eager_fp32']:.1%})" if r.accuracy else "-",)
        rows.append((r.model, r.target, name, held(r), human_size(r.size_bytes), delegated,
                     f"{first.sqnr_db:.1f} dB" if first else "-",
                     f"{first.top1_agreement:.3f}" if first and first.top1_agreement is not None else "-",
                     *(task if metric else ()), parity))
    return columns(rows)


def held(report: ArtifactReport) -> str:
    """The precision column: what the file holds (measured), saying so where it is not what was asked for.

    >>> held(report)  # an int8 .pt2 whose quantizer matched nothing
    'fp32 (asked int8)'
    """
    holds = report.holds
    if not holds:
        return report.precision
    if holds["label"] == "mixed":
        return f"mixed ({holds['int8_weight_share']:.0%} int8)"
    return holds["label"] if holds["label"] == report.precision else f"{holds['label']} (asked {report.precision})"


def holds_line(holds: dict[str, Any]) -> str:
    """'int8: 98% of weight bytes 8-bit, 100% of MACs in int8 kernels', with the reason when there is one."""
    compute = ("" if holds["int8_compute_share"] is None else
               f", {holds['int8_compute_share']:.0%} of {holds['compute_unit']} in int8 kernels")
    line = f"{holds['label']}: {holds['int8_weight_share']:.0%} of weight bytes 8-bit{compute}"
    return f"{line} ({holds['reason']})" if holds.get("reason") else line


def cross_table(rows: list) -> str:
    """The cross-runtime parity matrix (deploytool.crosscheck.CrossRow), worst output per row."""
    header = ("artifact", "precision", "runtime", "compared with", "SQNR", "top-1 agr", "max abs/range", "verdict")
    lines = [header]
    for r in rows:
        lines.append((r.artifact, r.precision, r.runtime, r.reference,
                      f"{r.sqnr_db:.1f} dB" if r.sqnr_db is not None else "-",
                      f"{r.top1_agreement:.3f}" if r.top1_agreement is not None else "-",
                      f"{r.max_abs_rel:.2e}" if r.max_abs_rel is not None else "-",
                      f"{r.verdict}: {r.error}" if r.error else r.verdict))
    return "cross-runtime parity (held-out samples):\n" + columns(lines)


def columns(rows: list[tuple]) -> str:
    """Rows as left-aligned text columns, the header underlined with dashes: every table the CLI prints."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def details(reports: list[ArtifactReport]) -> str:
    """Checklists, accuracy and failures under the table."""
    lines: list[str] = []
    for r in reports:
        lines.append(f"\n{r.target}: {r.artifact_path}")
        if r.holds:
            lines.append(f"  holds: {holds_line(r.holds)}")
        lines.extend(f"  note: {note}" for note in r.notes)
        if r.run_error:
            lines.append(f"  [FAIL] the artifact did not run: {r.run_error}")
        if r.build_error:
            lines.append(f"  [FAIL] {r.artifact_path.name} ({r.format}) could not be built: {r.build_error}")
            lines.extend([f"  hint: {r.build_hint}"] if r.build_hint else [])
        if r.size_error:
            lines.append(f"  [FAIL] {r.size_error}")
        if r.shortfall:
            lines.append(f"  [FAIL] {r.shortfall}: add real samples, or lower data.holdout_min to accept a weaker "
                         "check")
        for comparison in r.comparisons:
            lines.extend(f"  {line}" for line in comparison.checklist())
        if r.accuracy:
            eager, artifact = r.accuracy["eager_fp32"], r.accuracy["artifact"]
            lines.append(f"  {r.accuracy['metric']} on {r.accuracy['labelled_samples']} held-out labelled samples: "
                         f"eager fp32 {eager:.2%}, {r.artifact_path.name} {r.precision} {artifact:.2%} "
                         f"({(artifact - eager) * 100:+.1f} points)")
        if r.delegation and r.delegation.not_delegated:
            where = r.delegation.where
            left = ", ".join(f"{op} x{n}" + (f" at {', '.join(where[op])}" if where.get(op) else "")
                             for op, n in r.delegation.not_delegated.items())
            kept = r.delegation.total_ops - r.delegation.delegated_ops
            lines.append(f"  not delegated to XNNPACK ({kept} of {r.delegation.total_ops} ops, "
                         f"{1 - r.delegation.share:.0%}; they run on the portable CPU kernels): {left}")
        if r.delegation and r.delegation.excluded:
            lines.append("  left out of the XNNPACK delegate, because lowering failed with them:")
            lines.extend(f"    {node}: {reason}" for node, reason in r.delegation.excluded.items())
        if r.unverified:
            lines.append("  UNVERIFIED: calibrated and checked on random data (--calib random); parity proves nothing.")
    return "\n".join(lines)


def human_size(size: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"

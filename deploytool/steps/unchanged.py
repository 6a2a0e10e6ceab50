"""`export` with nothing changed since its last passing run: say so from that run's reports, load nothing.

A passing export records a stamp in <output>/.cache/export.json: a hash of everything its artifacts were made
from, read from files alone (no torch, no model build), and the sha256 of every file it left in the target
folders and in quantized/. The next export with the same stamp and untouched files prints that run's results
(trained MobileNetV2: ~0.4 s instead of ~5 s spent importing torch and building the model to find out).

Only where files tell the whole model: a zoo entry (its code and pinned weights are deploytool's own files) or a
saved .pt2 program. A `file.py:factory` or `pkg.module:factory` may import code anywhere, so its exports always
run in full. `deploytool check` always re-runs every artifact in its runtime.

    >>> previous = unchanged_export(config, plan, Precision.INT8)   # None: run the export
    >>> record_export(config, plan, Precision.INT8, summary_table(reports))  # after an export that passed
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploytool.config import Precision, ProjectConfig
from deploytool.fsutil import atomic_write_json, sha256_file

log = logging.getLogger("deploytool")

STAMP = Path(".cache") / "export.json"  # under the output folder
SOURCES = ("deploytool", "model_zoo")  # packages whose files shape every artifact: their code is part of the stamp


def stamp(config: ProjectConfig, plan: dict[str, tuple[str, ...]], precision: Precision) -> str | None:
    """What the export's artifacts are made of, as one hash; None when files alone cannot tell the model."""
    from deploytool.steps.quantize import replayable
    from deploytool.versions import versions

    model = config.model or ""
    if model.startswith("zoo:"):
        model_files: list[Path] = []  # its code and pinned weights' hashes are in SOURCES
    elif model.endswith(".pt2"):
        model_files = [config.base_dir / model]
    else:
        return None
    calib = config.data.calib
    data = config.base_dir / calib if calib not in (None, "random") else config.output_dir / "data"
    quantized = config.output_dir / "quantized" if precision is Precision.INT8 else None
    # As replayed: the next export reads this run's recorded config back, paths made absolute.
    parts = {"config": replayable(config), "plan": plan,
             "precision": precision.value, "versions": versions(),
             "sources": _tree_digest(*(_package_dir(p) for p in SOURCES)),
             "model": _tree_digest(*model_files), "data": _tree_digest(data),
             "quantized": _tree_digest(quantized) if quantized else None}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


@dataclass
class Previous:
    """The last passing export, as it recorded itself: each target's report.json, and the table it printed."""

    reports: list[dict[str, Any]]
    table: str

    def summary(self) -> str:
        """That run's table, then why it was not repeated."""
        created = self.reports[0].get("created_at", "the last run")
        return (f"{self.table}\nunchanged since {created}: model, data, options, versions and files are that "
                "run's, so it was not repeated (`deploytool check` re-runs every artifact in its runtime)")


def unchanged_export(config: ProjectConfig, plan: dict[str, tuple[str, ...]],
                      precision: Precision) -> Previous | None:
    """The previous run, when it passed with this stamp and its files are as it left them; else None (run the
    export)."""
    try:
        recorded = json.loads((config.output_dir / STAMP).read_text())
    except (OSError, ValueError):
        return None
    now = stamp(config, plan, precision)
    if (now is None or recorded.get("stamp") != now or "table" not in recorded
            or recorded.get("files") != _target_files(config, plan)):
        return None
    reports = [json.loads((config.output_dir / target / "report.json").read_text()) for target in plan]
    return Previous(reports, recorded["table"]) if all(r.get("passed") for r in reports) else None


def record_export(config: ProjectConfig, plan: dict[str, tuple[str, ...]], precision: Precision,
                  table: str) -> None:
    """After an export that passed: its stamp, the hash of every file it left in the target folders, and the
    table it printed (report.summary_table), which the next unchanged export prints again."""
    now = stamp(config, plan, precision)
    if now is not None:
        atomic_write_json(config.output_dir / STAMP,
                          {"stamp": now, "files": _target_files(config, plan), "table": table})


def forget_export(config: ProjectConfig) -> None:
    """Before an export runs: a run that fails halfway leaves no stamp that vouches for its files."""
    (config.output_dir / STAMP).unlink(missing_ok=True)


def _target_files(config: ProjectConfig, plan: dict[str, tuple[str, ...]]) -> dict[str, str]:
    return {str(path.relative_to(config.output_dir)): sha256_file(path)
            for target in plan for path in _files(config.output_dir / target)}


def _tree_digest(*roots: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under the roots (a root may be one file); {} for missing ones."""
    return {f"{root.name}/{path.relative_to(root)}" if root.is_dir() else root.name: sha256_file(path)
            for root in roots for path in _files(root)}


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _package_dir(name: str) -> Path:
    from importlib.util import find_spec

    spec = find_spec(name)  # finds the package without importing it (model_zoo's entries import torch)
    return Path(spec.origin).parent if spec and spec.origin else Path(name)

"""The check step's parts: artifacts read back from their manifest, and the .pte's second run in the C++ runner.

    >>> artifact = artifact_of(folder, manifest["artifacts"][0], recorded_delegations(folder))
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from deploytool.errors import ParityFailed, UsageError
from deploytool.export import Artifact
from deploytool.fsutil import sha256_file
from deploytool.report import ArtifactReport
from deploytool.verify import verify


MANIFEST_FIELDS = ("file", "format", "sha256", "precision")  # what check needs of each artifact entry


def read_manifest(folder: Path) -> dict[str, Any]:
    """`folder`/manifest.json, checked for what `check` reads: a damaged or hand-edited one is a UsageError naming
    the file and the field, never an internal error."""
    path = folder / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path} is not readable JSON ({exc}); it was cut short or edited.",
                         hint="Re-run `deploytool export` to write it again.") from None
    entries = manifest.get("artifacts") if isinstance(manifest, dict) else None
    if not isinstance(entries, list):
        raise UsageError(f"{path} has no 'artifacts' list.", hint="Re-run `deploytool export` to write it again.")
    for i, entry in enumerate([*entries, *manifest.get("not_built", [])]):
        missing = [f for f in MANIFEST_FIELDS if not isinstance(entry, dict) or not isinstance(entry.get(f), str)]
        if missing and not (isinstance(entry, dict) and "error" in entry and missing == ["sha256"]):
            raise UsageError(f"{path}: artifact entry {i} lacks {', '.join(repr(f) for f in missing)}; check compares "
                             "every file with the sha256 export recorded.",
                             hint="Re-run `deploytool export` to write the manifest again.")
    return manifest


def native_runner_for(manifests: dict[Path, dict]) -> Path:
    """Build (or find cached) the native runner before any heavy work; --native needs a .pte to run."""
    from deploytool.runtime.native import ensure_runner

    if not any(a["format"] == "pte" for m in manifests.values() for a in m["artifacts"]):
        raise UsageError("--native runs .pte files, and none was exported here.",
                         hint="Export one with `deploytool export --target android` (or ios).")
    return ensure_runner()


def recorded_delegations(folder: Path) -> dict[str, Any]:
    """sha256 -> Delegation from the export's report.json: lowering is what measured it, and check re-runs none."""
    from deploytool.export import Delegation

    try:
        artifacts = json.loads((folder / "report.json").read_text()).get("artifacts", [])
    except (OSError, json.JSONDecodeError, AttributeError):
        return {}
    return {a["sha256"]: Delegation.from_dict(d)
            for a in artifacts if isinstance(a, dict) and (d := a.get("delegation")) and a.get("sha256")}


def verify_native(artifact: Artifact, python: ArtifactReport, **verify_args) -> ArtifactReport:
    """The .pte again in the C++ runner: vs eager (as every row) and vs the Python runtime's outputs."""
    from deploytool.parity import compare
    from deploytool.runtime.native import NOTE, RUNNER_FORMAT, SAME_PROGRAM

    report = verify(replace(artifact, format=RUNNER_FORMAT, notes=(NOTE,)), **verify_args)
    if report.outputs is not None and python.outputs is not None:
        report.comparisons.append(compare(python.outputs, report.outputs, output_names=verify_args["output_names"],
                                          thresholds=SAME_PROGRAM, reference_name="ExecuTorch Python runtime",
                                          candidate_name=f"{artifact.path.name} (native C++ runner)"))
    return report


def artifact_of(folder: Path, entry: dict[str, Any], delegations: dict[str, Any]) -> Artifact:
    """A manifest entry as the Artifact to verify. Its file and companions must lie inside `folder` (a manifest
    naming ../../etc/hostname, or an AOTInductor .so elsewhere, is refused: exit 2)."""
    path = inside(folder, entry["file"])
    companions = tuple(inside(folder, name) for name in entry.get("companions", {}))
    return Artifact(path, entry["format"], entry["precision"], delegations.get(entry["sha256"]),
                    companions=companions, fp32_bytes=entry.get("fp32_bytes"))


def changed_since_export(artifact: Artifact, entry: dict[str, Any]) -> ParityFailed | None:
    """Why the artifact cannot be checked (a file missing, or not the bytes the manifest recorded), else None."""
    recorded = {artifact.path: entry["sha256"],
                **{artifact.path.parent / name: digest for name, digest in entry.get("companions", {}).items()}}
    for file, digest in recorded.items():
        if not file.is_file():
            return ParityFailed(f"{file} is missing; the manifest lists it.", hint="Re-run `deploytool export`.")
        if sha256_file(file) != digest:
            return ParityFailed(f"{file} differs from the sha256 in its manifest; it changed after export.",
                                hint="Re-run `deploytool export`.")
    return None


def inside(folder: Path, name: str) -> Path:
    """`folder / name`, refused unless it resolves inside `folder`."""
    path = (folder / str(name)).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise UsageError(f"{folder / 'manifest.json'} names {name!r}, which lies outside {folder}; deploytool "
                         "loads only files of the target folder.",
                         hint="Re-run `deploytool export` to write a fresh manifest.")
    return path

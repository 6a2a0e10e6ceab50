"""The model an export recorded in its manifests (<output>/<target>/manifest.json), for `check` and `bench`.

Those commands need the model that made the artifacts. When no flag or config names it, the manifests do:
first those of the output folder, then, with the default output folder empty, the one output folder under
./build that holds manifests (where `deploytool zoo run` writes: build/zoo/<entry>/<precision>).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from deploytool.errors import UsageError

log = logging.getLogger("deploytool")

SCHEMA = "deploytool.manifest/1"
SEARCH_ROOT = "build"  # where export and zoo run write unless told otherwise


@dataclass(frozen=True)
class RecordedModel:
    manifest: Path  # the manifest.json it was read from
    model: str  # the model spec, as `--model` takes it
    weights: str | None  # the weights file the export loaded, if any

    @property
    def output_dir(self) -> Path:
        """The output folder the manifest's target folder sits in."""
        return self.manifest.parent.parent


def recorded_model(folders: Iterable[Path], *, search: Path | None = None) -> RecordedModel | None:
    """The model recorded by the first manifest in `folders` (target folders, or output folders holding them).

    With none there and a `search` folder, the one output folder below `search` whose manifests name a model;
    a UsageError lists them when there are several, with the `--output` that picks each.

    >>> recorded_model([Path("build/deploytool")], search=Path("build")).model
    'zoo:digits'
    """
    for folder in folders:
        found = next(_recorded(_manifests_in(folder)), None)
        if found:
            return found
    if search is None or not search.is_dir():
        return None
    by_output: dict[Path, RecordedModel] = {}
    for found in _recorded(sorted(search.glob("**/manifest.json"))):
        by_output.setdefault(found.output_dir, found)
    if len(by_output) > 1:
        choices = [f"--output {shown(output)} ({found.model})" for output, found in by_output.items()]
        raise UsageError(f"No model given, and {shown(search)} holds artifacts of {len(by_output)} output folders: "
                         f"{'; '.join(choices)}.",
                         hint=f"Name one, e.g. `deploytool check {choices[0].split(' (')[0]}`, or pass --model.")
    return next(iter(by_output.values()), None)


def _manifests_in(folder: Path) -> list[Path]:
    if (folder / "manifest.json").is_file():
        return [folder / "manifest.json"]
    return sorted(folder.glob("*/manifest.json")) if folder.is_dir() else []


def _recorded(paths: Iterable[Path]) -> Iterable[RecordedModel]:
    for path in paths:
        try:
            manifest = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            log.debug("ignoring unreadable %s", path)
            continue
        if isinstance(manifest, dict) and manifest.get("schema") == SCHEMA and manifest.get("model"):
            yield RecordedModel(path, manifest["model"], manifest.get("weights"))


def shown(path: Path) -> str:
    """`path` relative to the working folder when inside it: what the user types."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)

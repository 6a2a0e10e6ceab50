"""Saved torch.export programs (.pt2), read without running any pickle.

torch.export.load (torch 2.13) unpickles with code execution allowed in several places: sample inputs or legacy
`.pt` weights that do not load with `weights_only=True` (it falls back to `weights_only=False`), weights and
constants marked `use_pickle`, custom and opaque objects; and an archive holding an AOTInductor package loads its
compiled library. `read_program` reads the file once, refuses any such part, naming the file and the part, then
loads those same bytes: nothing unpickles with code allowed, and the file cannot change between check and load.

    >>> program = read_program(Path("build/deploytool/quantized/program.pt2"))
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from deploytool.errors import UsageError

# Archive folders and name prefixes, as torch/export/pt2_archive/constants.py spells them.
AOTINDUCTOR_DIR = "data/aotinductor/"
PAYLOAD_CONFIG_DIRS = ("data/weights/", "data/constants/")
OBJECT_PREFIXES = ("custom_obj_", "opaque_obj_")  # torchbind and opaque objects: unpickled outright


class UnsafeProgram(UsageError):
    """A saved program that only loads by running pickle (or a compiled library): refused."""


def read_program(path: Path, *, hint: str | None = None) -> Any:
    """The ExportedProgram in `path`, loaded from bytes that were checked to need no pickle.

    Raises UnsafeProgram (exit 2) naming the file and the parts that would need one; `hint` replaces the default
    advice (a cached program says how to rebuild it).
    """
    import torch

    data = Path(path).read_bytes()
    parts = pickled_parts(data)
    if parts:
        shown = "; ".join(parts[:4]) + (f" (+{len(parts) - 4} more)" if len(parts) > 4 else "")
        raise UnsafeProgram(
            f"{path} was refused: loading it would run code from inside the file ({shown}). deploytool loads "
            "saved programs only when every part reads without pickle.",
            hint=hint or "Re-save the program with torch.export.save from a trusted environment (plain tensors, "
                         "no tensor subclasses or custom objects), or pass the model as file.py:factory.")
    return torch.export.load(io.BytesIO(data))


def pickled_parts(data: bytes) -> list[str]:
    """The archive's members that torch.export.load would unpickle with code allowed (or load as a library).

    >>> pickled_parts(Path("model.pt2").read_bytes())
    []
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        return []  # not an archive at all: torch.export.load says so, without unpickling anything
    found = []
    with archive:
        for name in archive.namelist():
            member = name.split("/", 1)[1] if "/" in name else name  # below the archive's root folder
            if member.startswith(AOTINDUCTOR_DIR):
                found.append(f"{name}: an AOTInductor package's compiled library")
            elif member.endswith("_config.json") and member.startswith(PAYLOAD_CONFIG_DIRS):
                found += [f"{name}: {fqn} {why}" for fqn, why in _pickled_payloads(archive.read(name))]
            elif member.endswith(".pt") and not _loads_without_pickle(archive.read(name)):
                found.append(f"{name}: does not load with weights_only=True")
    return found


def _pickled_payloads(config: bytes) -> list[tuple[str, str]]:
    try:
        entries = json.loads(config).get("config", {})
    except (ValueError, AttributeError):
        return [("(the whole config)", "is not a payload config")]
    found = []
    for fqn, payload in entries.items():
        path_name = str(payload.get("path_name", "")) if isinstance(payload, dict) else ""
        if not isinstance(payload, dict) or payload.get("use_pickle"):
            found.append((fqn, "is stored as a pickle (use_pickle)"))
        elif path_name.startswith(OBJECT_PREFIXES):
            found.append((fqn, f"is a pickled object ({path_name})"))
    return found


def _loads_without_pickle(data: bytes) -> bool:
    import torch

    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception:  # refused globals, damaged bytes: every failure means it would not load without pickle
        return False
    return True

"""The .bpte bundle's file format, shared by its writer (export/bundled) and its runner (runtime/bundled).

A bundle `model.bpte` holds one method's test cases; its tolerances travel in the sidecar `model.bpte.json`
(the bundle format has no field for them), tagged with SIDECAR_SCHEMA.

    >>> sidecar_path(Path("build/deploytool/android/model.bpte")).name
    'model.bpte.json'
"""
from __future__ import annotations

from pathlib import Path

METHOD = "forward"  # the one method a bundle tests: the exported program's
SIDECAR_SCHEMA = "deploytool.bundle/1"


def sidecar_path(bundle: Path) -> Path:
    """`model.bpte` -> `model.bpte.json` (tolerances and case count).

    >>> sidecar_path(Path("model.bpte"))
    PosixPath('model.bpte.json')
    """
    return bundle.with_name(bundle.name + ".json")

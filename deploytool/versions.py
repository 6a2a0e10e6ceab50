"""The versions of deploytool and the stack it runs, recorded in every report, manifest and cache key."""
from __future__ import annotations

import functools


@functools.cache
def versions() -> dict[str, str]:
    """Installed version of each package that shapes an artifact; a package not installed is left out.

    >>> versions()["torch"]
    '2.13.0+cpu'
    """
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("deploytool", "torch", "torchao", "executorch", "torchvision", "onnx", "onnxruntime"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found

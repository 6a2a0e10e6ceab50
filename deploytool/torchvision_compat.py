"""The one place deploytool imports torchvision.

torchvision wheels from the registry link CUDA libraries. With a CPU-only torch their C++ extension does
not load, and `import torchvision` dies registering fake kernels for ops that were never defined
(`RuntimeError: operator torchvision::nms does not exist`). Classification models need none of those
ops, so we define the missing schemas first; calling an op that needs the extension then raises a
clear `MissingDependencyError` instead.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType

from deploytool.errors import MissingDependencyError

# Ops that torchvision's import registers fake kernels for without checking the extension loaded.
_UNGUARDED_OPS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library = None  # keeps the schema definitions alive


def import_torchvision() -> ModuleType:
    """`import torchvision`, working around a C++ extension that cannot load.

    >>> tv = import_torchvision(); model = tv.models.resnet18()
    """
    return _import()[0]


def extension_failure() -> str | None:
    """Why torchvision's C++ ops are unavailable, or None when they work."""
    return _import()[1]


@functools.cache
def _import() -> tuple[ModuleType, str | None]:
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None:
        raise MissingDependencyError("torchvision is not installed.", hint='pip install "torchvision==0.28.0"')
    reason = _extension_failure(Path(spec.origin).parent, torch)
    if reason:
        _define_missing_ops(torch)
    import torchvision

    if reason:
        _explain_op_failures(reason)
    return torchvision, reason


def _extension_failure(package: Path, torch) -> str | None:
    libraries = sorted(package.glob("_C*.so")) + sorted(package.glob("_C*.pyd"))
    if not libraries:
        return "torchvision's C++ extension (_C) is missing from the installed package"
    try:
        torch.ops.load_library(str(libraries[0]))
    except (OSError, RuntimeError) as exc:
        return (f"torchvision's C++ extension does not load with this torch build "
                f"(torch {torch.__version__}): {str(exc).splitlines()[0][:160]}")
    return None


def _define_missing_ops(torch) -> None:
    global _library
    _library = torch.library.Library("torchvision", "FRAGMENT")
    for name, schema in _UNGUARDED_OPS.items():
        if not _has_schema(torch, name):
            _library.define(schema)


def _has_schema(torch, name: str) -> bool:
    try:
        return torch._C._get_schema(f"torchvision::{name}", "") is not None
    except RuntimeError:
        return False


def _explain_op_failures(reason: str) -> None:
    """Replace torchvision's generic "Couldn't load custom C++ ops" with the real cause."""

    def unavailable() -> None:
        raise MissingDependencyError(
            f"This torchvision op (e.g. nms, roi_align) needs the C++ extension, which is unavailable: {reason}.",
            hint="Classification models work without it. For detection ops, install a torchvision build that "
                 "matches your torch (the same CPU or CUDA variant).")

    import sys

    for name, module in list(sys.modules.items()):
        if name.startswith("torchvision.ops") and hasattr(module, "_assert_has_ops"):
            module._assert_has_ops = unavailable

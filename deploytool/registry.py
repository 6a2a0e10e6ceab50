"""Name -> lazy import string registries for targets and zoo entries.

Entries hold only strings and metadata, so listing them (`deploytool targets`, `zoo list`, `--help`)
never imports torch.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from deploytool.errors import UsageError, did_you_mean


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "pkg.module:attr", imported on first use
    meta: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Any:
        module_name, _, attr = self.target.partition(":")
        value = importlib.import_module(module_name)
        return getattr(value, attr) if attr else value


class Registry:
    """Registered names with metadata; `get` suggests close matches for unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, target: str, **meta: Any) -> None:
        """Add an entry; the same entry again is a no-op (a step that registers on each run), another one under
        a taken name a ValueError."""
        entry = Entry(name, target, meta)
        if self._entries.get(name, entry) != entry:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = entry

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UsageError(f"Unknown {self.kind} '{name}'. {did_you_mean(name, self._entries)}") from None


TARGETS = Registry("target")
# `formats` are written by default; `extra_formats` only when --format names them, or with --target all.
TARGETS.register("android", "", formats=("pte",), extra_formats=("bpte", "ptl"),
                 summary="ExecuTorch .pte with XNNPACK for the Android library (arm64; verified here on x86-64); "
                         "--format pte,bpte adds a BundledProgram for on-device self-verification, --format ptl a legacy "
                         "PyTorch Mobile .ptl")
TARGETS.register("ios", "", formats=("pte",), extra_formats=("bpte",),
                 summary="ExecuTorch .pte with XNNPACK for the iOS Swift package; --format pte,bpte adds a "
                         "BundledProgram for on-device self-verification")
TARGETS.register("server", "", formats=("onnx", "torchscript", "aoti"),
                 summary="ONNX for onnxruntime (fp32 + int8 QDQ), TorchScript, AOTInductor .pt2 for x86-64 Linux")
ALL_TARGETS = "all"  # --target all: every registered target


ZOO = Registry("zoo model")


def zoo() -> Registry:
    """The zoo registry, filled by importing `model_zoo` (which imports no torch)."""
    import model_zoo  # noqa: F401  registers its entries into ZOO

    return ZOO

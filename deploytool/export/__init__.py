"""Lowering steps: programs in, artifacts on disk out. One writer per format, registered by name."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploytool.registry import Registry


@dataclass(frozen=True)
class Delegation:
    delegated_ops: int
    total_ops: int
    not_delegated: dict[str, int] = field(default_factory=dict)  # op type -> count left on the portable CPU path

    @property
    def share(self) -> float:
        return self.delegated_ops / self.total_ops if self.total_ops else 0.0


@dataclass(frozen=True)
class Artifact:
    path: Path
    format: str  # a FORMATS name; also picks the runtime that verifies it
    precision: str  # "fp32" or "int8"
    delegation: Delegation | None = None
    notes: tuple[str, ...] = ()  # what the report should tell the user about how it was built
    seconds: float = 0.0  # time to build it


class Programs:
    """What the writers lower from: the fp32 and (when quantized) int8 programs, static at batch 1."""

    def __init__(self, prepared: Any, *, precision: str, int8_program: Any = None):
        self.prepared = prepared
        self.precision = precision
        self.int8 = int8_program

    @functools.cached_property
    def fp32(self) -> Any:
        from deploytool.capture import export

        prepared = self.prepared
        return export(prepared.loaded.module, prepared.example_inputs, strict=False, dynamic_batch=False)

    @property
    def main(self) -> Any:
        """The program for single-program formats: int8 when quantizing, else fp32."""
        return self.int8 if self.precision == "int8" else self.fp32


FORMATS = Registry("format")
FORMATS.register("pte", "deploytool.export.executorch:write_pte", runtime="ExecuTorch runtime (XNNPACK)",
                 summary="ExecuTorch program for the Android and iOS libraries")

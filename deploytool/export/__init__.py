"""Lowering steps: a captured program in, an artifact on disk out."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


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
    format: str  # "pte", ...
    runtime: str  # the runtime that verifies it
    precision: str
    sha256: str
    size_bytes: int
    delegation: Delegation | None = None

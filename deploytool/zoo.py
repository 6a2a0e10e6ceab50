"""What a model-zoo entry holds. Entries live in `model_zoo/`, one small file each."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploytool.config import InputSpec, Preprocess


@dataclass(frozen=True)
class ZooEntry:
    name: str
    build: Callable[[], Any]  # -> nn.Module in eval mode, with its weights
    inputs: tuple[InputSpec, ...]
    preprocess: Preprocess | None
    labels: tuple[str, ...]
    write_data: Callable[[Path], Path]  # materialises the entry's real data under a folder, returns its path
    data_note: str  # where the calibration and evaluation data come from
    recipe_note: str = "int8 everywhere, symmetric per-channel weights"

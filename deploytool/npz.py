"""Lists of samples, each a few arrays, in one .npz: runtime inputs and outputs, recorded runs, references.

A group's arrays are stored under `<group>/<sample>/<position>` and `<group>/counts` holds each sample's array
count, so samples of different lengths and several groups share one file.

    >>> data = pack({"eager": eager_outputs, "int8": int8_outputs}, key=np.array("3f2a"))
    >>> with np.load(io.BytesIO(data)) as saved:
    ...     unpack(saved, "int8")[0][0].shape
    (1, 1000)
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np


def pack(groups: dict[str, Sequence[Sequence[np.ndarray]]], **extra: np.ndarray) -> bytes:
    """npz bytes of every group's samples, plus `extra` arrays under their own names."""
    arrays = dict(extra)
    for group, samples in groups.items():
        arrays[f"{group}/counts"] = np.array([len(sample) for sample in samples], dtype=np.int64)
        arrays.update({f"{group}/{i}/{j}": a for i, sample in enumerate(samples) for j, a in enumerate(sample)})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def unpack(saved: Any, group: str) -> list[list[np.ndarray]]:
    """One group's samples from an open np.load of `pack`'s bytes (KeyError when the group is missing)."""
    counts = saved[f"{group}/counts"]
    return [[saved[f"{group}/{i}/{j}"] for j in range(int(n))] for i, n in enumerate(counts)]

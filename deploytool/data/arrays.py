"""Array data: .npy / .npz (first axis = samples) and .pt files (a tensor, tuple or dict per sample)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deploytool.data import Arrays, Dataset, SampleRef, SampleSkipped
from deploytool.errors import DataError

ARRAY_SUFFIXES = {".npy", ".npz", ".pt"}


def array_files(paths: list[Path], input_names: tuple[str, ...], description: str) -> Dataset:
    """Samples from array files. A .pt file holds a stacked tensor, a list of samples, or one sample given as a
    tuple or dict of tensors."""
    refs: list[SampleRef] = []
    for path in paths:
        count = _sample_count(path, input_names)
        if count is None:
            refs.append(SampleRef(key=path.name, path=path))
        else:
            refs.extend(SampleRef(key=f"{path.name}#{i}", path=path, index=i) for i in range(count))
    return Dataset(refs, lambda ref: _load(ref, input_names), description)


def _sample_count(path: Path, input_names: tuple[str, ...]) -> int | None:
    """Samples in a file: stacked arrays and tensors and lists count along the first axis; None = one sample."""
    if path.suffix == ".npy":
        array = _open_npy(path)
        return array.shape[0] if array.ndim else 0
    if path.suffix == ".npz":
        counts = {name: a.shape[0] for name, a in _npz_arrays(path, input_names).items()}
        if len(set(counts.values())) > 1:
            raise DataError(f"{path}: arrays have different sample counts {counts}; the first axis is the sample "
                            "axis and must match across inputs.")
        return next(iter(counts.values()))
    value = _load_pt(path)
    if isinstance(value, list) or hasattr(value, "shape"):
        return len(value)
    return None  # a tuple or dict: one sample with several inputs


def _load(ref: SampleRef, input_names: tuple[str, ...]) -> Arrays:
    if ref.path.suffix == ".npy":
        arrays: Arrays = (np.asarray(_open_npy(ref.path)[ref.index]),)
    elif ref.path.suffix == ".npz":
        npz = _npz_arrays(ref.path, input_names)
        arrays = tuple(np.asarray(npz[name][ref.index]) for name in npz)
    else:
        value = _load_pt(ref.path)
        if ref.index is not None:
            value = value[ref.index]
        arrays = _pt_sample(value, input_names, ref)
    for name, array in zip(input_names or ("input",), arrays):
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise DataError(f"{ref.key}: input '{name}' contains NaN or Inf.",
                            hint="Clean the data; calibrating on non-finite values ruins every range.")
    return arrays


def _open_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc}).") from None


def _npz_arrays(path: Path, input_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc}).") from None
    names = list(npz.files)
    if len(input_names) > 1 or (input_names and len(names) > 1):
        missing = [n for n in input_names if n not in names]
        if missing:
            raise DataError(f"{path}: holds arrays {names}, but the model's inputs are {list(input_names)} "
                            f"(missing {missing}).", hint="Name each array in the .npz after a forward() argument.")
        names = list(input_names)
    return {name: npz[name] for name in names}


def _load_pt(path: Path):
    import torch

    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises many types for bad files; all mean "not loadable data"
        raise DataError(f"{path}: not a readable tensor file ({type(exc).__name__}: {str(exc)[:200]}).") from None


def _pt_sample(value, input_names: tuple[str, ...], ref: SampleRef) -> Arrays:
    if isinstance(value, dict):
        missing = [n for n in input_names if n not in value]
        if missing:
            raise DataError(f"{ref.key}: dict has keys {sorted(value)}, the model's inputs are {list(input_names)}.")
        value = [value[n] for n in input_names]
    if not isinstance(value, (list, tuple)):
        value = (value,)
    try:
        return tuple(v.detach().cpu().numpy() for v in value)
    except AttributeError:
        raise SampleSkipped(f"holds {type(value).__name__}, expected tensors") from None

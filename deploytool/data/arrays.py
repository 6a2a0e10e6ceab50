"""Array data: .npy / .npz (first axis = samples) and .pt files (a tensor, tuple or dict per sample)."""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from deploytool.data import Arrays, Dataset, SampleRef, SampleSkipped
from deploytool.errors import DataError

ARRAY_SUFFIXES = {".npy", ".npz", ".pt"}
TARGETS = "targets"  # the array of truths for a metric (deploytool.normalize keeps it out of the inputs)
HUGE = float(np.finfo(np.float32).max) / 4  # beyond this, an observer's range (max - min) of inputs overflows float32


def array_files(paths: list[Path], input_names: tuple[str, ...], description: str) -> Dataset:
    """Samples from array files. A .pt file holds a stacked tensor, a list of samples, or one sample given as a
    tuple or dict of tensors."""
    files = _LastFile(input_names)
    refs: list[SampleRef] = []
    for path in paths:
        count = _sample_count(path, files.content(path))
        if count is None:
            refs.append(SampleRef(key=path.name, path=path))
        else:
            refs.extend(SampleRef(key=f"{path.name}#{i}", path=path, index=i) for i in range(count))
    return Dataset(refs, files.sample, description)


class _LastFile:
    """The content of the file read last. A .npz or .pt file cannot be read one sample at a time, and a
    dataset's samples of one file come one after another: re-reading the file per sample was quadratic."""

    def __init__(self, input_names: tuple[str, ...]):
        self.input_names = input_names
        self.path: Path | None = None
        self.value = None

    def content(self, path: Path):
        """A .npy as a memory map, a .npz as {input name: array}, a .pt as what torch.load returns."""
        if path != self.path:
            self.value = None  # let the previous file go before reading the next
            if path.suffix == ".npy":
                self.value = _open_npy(path)
            elif path.suffix == ".npz":
                self.value = _npz_arrays(path, self.input_names)
            else:
                self.value = _load_pt(path)
            self.path = path
        return self.value

    def sample(self, ref: SampleRef) -> Arrays:
        return _load(ref, self.content(ref.path), self.input_names)


def targets_of(refs: list[SampleRef]) -> list[np.ndarray | None]:
    """Per sample, its row of the array named `targets` in its .npz (or its .pt dict's `targets`), else None:
    the truths a metric scores the outputs against; never a model input. Each file is read once.

    >>> targets_of(split.held_out.refs)[0]
    array(440.)
    """
    files = _LastFile(())
    found: list[np.ndarray | None] = []
    for ref in refs:
        content = files.content(ref.path) if ref.path.suffix in (".npz", ".pt") else None
        if isinstance(content, dict) and TARGETS in content:  # .npz: every array; .pt: one sample's dict
            value = content[TARGETS] if ref.index is None or ref.path.suffix == ".pt" else content[TARGETS][ref.index]
        elif isinstance(content, list) and ref.index is not None and isinstance(content[ref.index], dict):
            value = content[ref.index].get(TARGETS)
        else:
            value = None
        found.append(None if value is None else np.array(value.detach().numpy() if hasattr(value, "detach") else value))
    return found


def _sample_count(path: Path, content) -> int | None:
    """Samples in a file: stacked arrays and tensors and lists count along the first axis; None = one sample."""
    if path.suffix == ".npy":
        return content.shape[0] if content.ndim else 0
    if path.suffix == ".npz":
        if not content:
            raise DataError(f"{path} holds no arrays.", hint="Save one array per forward() argument, first axis = "
                                                            "samples: np.savez(path, x=samples).")
        scalars = [name for name, a in content.items() if a.ndim == 0]
        if scalars:
            raise DataError(f"{path}: array '{scalars[0]}' is a single number (0-d), not samples along a first axis.",
                            hint="Save arrays whose first axis is the sample axis, e.g. shape (N, ...).")
        counts = {name: a.shape[0] for name, a in content.items()}
        if len(set(counts.values())) > 1:
            raise DataError(f"{path}: arrays have different sample counts {counts}; the first axis is the sample "
                            "axis and must match across inputs.")
        return next(iter(counts.values()))
    if isinstance(content, list) or hasattr(content, "shape"):
        return len(content)
    return None  # a tuple or dict: one sample with several inputs


def _load(ref: SampleRef, content, input_names: tuple[str, ...]) -> Arrays:
    """One sample, copied out of the file's content: a forward() that writes into its input must not change it."""
    if ref.path.suffix == ".npy":
        arrays: Arrays = (np.array(content[ref.index]),)
    elif ref.path.suffix == ".npz":
        arrays = tuple(np.array(content[name][ref.index]) for name in content)
    else:
        value = content[ref.index] if ref.index is not None else content
        arrays = _pt_sample(value, input_names, ref)
    for name, array in zip(input_names or ("input",), arrays):
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise DataError(f"{ref.key}: input '{name}' contains NaN or Inf.",
                            hint="Clean the data; calibrating on non-finite values ruins every range.")
        if array.dtype.kind == "f" and array.size and float(np.abs(array).max()) > HUGE:
            raise DataError(f"{ref.key}: input '{name}' holds values up to {float(np.abs(array).max()):.3g}, where "
                            "float32 arithmetic overflows (their range, max - min, is Inf).",
                            hint="Scale the data as the model expects it; raw sensor counts or a missing "
                                 "normalization are the usual causes.")
    return arrays


def _open_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc}).") from None


def _npz_arrays(path: Path, input_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc}).",
                        hint="Write it again with np.savez; a copy cut short or a damaged download gives this.") \
            from None
    names = list(npz.files)
    if not input_names:  # every array, to read the targets from (targets_of)
        return {name: _npz_array(npz, name, path) for name in names}
    names = [n for n in names if n != TARGETS] or names
    if len(input_names) > 1 or (input_names and len(names) > 1):
        missing = [n for n in input_names if n not in names]
        if missing:
            raise DataError(f"{path}: holds arrays {names}, but the model's inputs are {list(input_names)} "
                            f"(missing {missing}).", hint="Name each array in the .npz after a forward() argument.")
        names = list(input_names)
    return {name: _npz_array(npz, name, path) for name in names}


def _npz_array(npz, name: str, path: Path) -> np.ndarray:
    """One array of an open .npz, read now: a damaged member or an object array is a DataError naming both."""
    try:
        return npz[name]
    except ValueError as exc:  # numpy refuses object arrays without pickle
        raise DataError(f"{path}: array '{name}' holds Python objects ({str(exc).splitlines()[0][:120]}); "
                        "deploytool reads numeric arrays only, without pickle.",
                        hint="Save it as a numeric array (np.asarray(values, dtype=np.float32)).") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: array '{name}' cannot be read ({type(exc).__name__}: {exc}).",
                        hint="Write the file again with np.savez; it is damaged or was cut short.") from None


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
        return tuple(v.detach().cpu().numpy().copy() for v in value)
    except AttributeError:
        raise SampleSkipped(f"holds {type(value).__name__}, expected tensors") from None

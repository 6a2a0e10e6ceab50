"""Calibration and evaluation data: list samples cheaply, load them lazily, split deterministically.

A `Dataset` knows its sample keys up front (file names, `file.npy#index`) and loads a sample only when
asked, so a folder of 10,000 images is never held in memory at once.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploytool.errors import DataError

log = logging.getLogger("deploytool")

Arrays = tuple[np.ndarray, ...]  # one sample: one array per model input, without the batch axis


@dataclass(frozen=True)
class SampleRef:
    key: str  # stable identity: decides the split, names the sample in messages
    path: Path
    index: int | None = None  # position inside a multi-sample file
    label: int | None = None


class SampleSkipped(Exception):
    """A single unreadable sample; the dataset skips it with a warning."""


@dataclass
class Dataset:
    """Sample references plus a loader. `labels` names the classes when the folder layout gives them."""

    refs: list[SampleRef]
    load_one: Callable[[SampleRef], Arrays]
    description: str
    labels: tuple[str, ...] = ()
    is_random: bool = False
    # Per input, the axes whose length may vary between samples, each with its bound ({axis: max}): batches then
    # group samples of one shape instead of refusing them (deploytool.config.DynamicDim).
    varying: tuple[dict[int, int], ...] = ()

    def __len__(self) -> int:
        return len(self.refs)

    def subset(self, refs: Sequence[SampleRef]) -> Dataset:
        return dataclasses.replace(self, refs=list(refs))

    def samples(self) -> Iterator[tuple[SampleRef, Arrays]]:
        """Yield loaded samples, skipping unreadable ones with a warning; fail if none could be read."""
        loaded = 0
        skipped: list[str] = []
        for ref in self.refs:
            try:
                arrays = self.load_one(ref)
            except SampleSkipped as exc:
                log.warning("skipping %s: %s", ref.key, exc)
                skipped.append(ref.key)
                continue
            loaded += 1
            yield ref, arrays
        if self.refs and not loaded:
            raise DataError(f"None of the {len(self.refs)} samples in {self.description} could be read "
                            f"(first: {skipped[0]}).", hint="Check the files named in the warnings above.")

    def batches(self, batch_size: int) -> Iterator[tuple[list[SampleRef], Arrays]]:
        """Stacked batches: one array per input, batch axis first. With `varying` axes, a batch holds samples of
        one shape (a new batch starts where the shape changes), each checked against its axes' bounds."""
        refs: list[SampleRef] = []
        rows: list[Arrays] = []
        first: tuple[SampleRef, Arrays] | None = None
        for ref, arrays in self.samples():
            if self.varying:
                first = first or (ref, arrays)
                check_varying(ref.key, arrays, self.varying, like=first)
                if rows and [a.shape for a in arrays] != [a.shape for a in rows[0]]:
                    yield refs, _stack(refs, rows)
                    refs, rows = [], []
            refs.append(ref)
            rows.append(arrays)
            if len(rows) == batch_size:
                yield refs, _stack(refs, rows)
                refs, rows = [], []
        if rows:
            yield refs, _stack(refs, rows)

    def fingerprint(self) -> str:
        """Content hash of the samples' files, keys and labels, for cache keys.

        Keys are relative (`3/digit_0004.png`, `calib.npy#7`), so two checkouts of one repository agree.
        """
        from deploytool.fsutil import sha256_file

        digest = hashlib.sha256()
        file_digests: dict[Path, str] = {}
        for ref in self.refs:
            if ref.path not in file_digests:
                file_digests[ref.path] = sha256_file(ref.path) if ref.path.is_file() else ""
            digest.update(f"{ref.key}|{ref.index}|{ref.label}|{file_digests[ref.path]}".encode())
        return digest.hexdigest()


def files_under(folder: Path, *, skip: tuple[Path, ...] = ()) -> list[Path]:
    """Every file under `folder`, sorted, leaving out the folders in `skip` (what deploytool writes into the output
    folder, when that lies inside the data: its cached .npz files are the tool's own, not samples).

    >>> files_under(Path("data"), skip=(Path("data/.cache"),))
    [PosixPath('data/a.npy'), PosixPath('data/b.npy')]
    """
    skip = tuple(s.resolve() for s in skip)
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(p.resolve().is_relative_to(s) for s in skip))


def check_varying(key: str, arrays: Arrays, varying: tuple[dict[int, int], ...],
                  like: tuple[SampleRef, Arrays] | None = None) -> None:
    """A sample's lengths on its inputs' varying axes must stay within their bounds (axes count without the
    batch axis here: axis 1 of the model input is axis 0 of a sample), and its other axes match `like`'s."""
    if like is not None:
        _stack([like[0], SampleRef(key, Path(key))], [_fixed(like[1], varying), _fixed(arrays, varying)])
    for position, (array, axes) in enumerate(zip(arrays, varying)):
        for axis, bound in axes.items():
            length = array.shape[axis - 1] if axis - 1 < array.ndim else None
            if length is None or length > bound:
                raise DataError(
                    f"{key}: input {position} has {'no axis' if length is None else f'length {length} on axis'} "
                    f"{axis}, {'which' if length is None else 'above'} its dynamic bound {bound}"
                    f"{' was declared for' if length is None else ''}.",
                    hint="Raise the bound (--dynamic-dim NAME:AXIS:MAX or [[dynamic_dims]]), or cut the sample.")


def _fixed(arrays: Arrays, varying: tuple[dict[int, int], ...]) -> Arrays:
    """The sample with its varying axes cut to length 1: what must agree between every two samples."""
    cut = []
    for position, array in enumerate(arrays):
        axes = varying[position] if position < len(varying) else {}
        cut.append(array[tuple(slice(0, 1) if axis + 1 in axes else slice(None) for axis in range(array.ndim))])
    return tuple(cut)


def _stack(refs: list[SampleRef], rows: list[Arrays]) -> Arrays:
    for position, column in enumerate(zip(*rows)):
        shapes = {a.shape for a in column}
        if len(shapes) > 1:
            first = next(i for i, a in enumerate(column) if a.shape != column[0].shape)
            a, b = column[0].shape, column[first].shape
            axes = [i for i in range(min(len(a), len(b))) if a[i] != b[i]] if len(a) == len(b) else []
            varying = (f"; for arrays whose length varies (sequences, audio), declare the axis dynamic with a bound: "
                       f"--dynamic-dim INPUT:{axes[0] + 1}:MAX (axis {axes[0] + 1} of the model input, MAX at least "
                       f"{max(a[axes[0]], b[axes[0]])})" if len(axes) == 1 else "; for arrays, make every sample the "
                       "same shape")
            raise DataError(
                f"Samples differ in shape: {refs[0].key} gives {list(a)} but {refs[first].key} gives "
                f"{list(b)} (input {position}).",
                hint="For images set preprocess.resize and preprocess.center_crop so every image comes out the same "
                     f"size{varying}.")
    return tuple(np.stack(column) for column in zip(*rows))



@dataclass(frozen=True)
class Split:
    calibration: Dataset
    held_out: Dataset
    unused: int = 0  # samples neither calibrated on nor held out: beyond calib_limit
    unreadable: tuple[str, ...] = ()  # keys of the files that could not be decoded, named in warnings


def split(dataset: Dataset, *, holdout: float, holdout_min: int, calib_limit: int | None) -> Split:
    """Deterministic split: each sample's key hashes to a number in [0, 1); those below `holdout` are held out.

    A sample's side depends only on its own key, so adding files never moves the others (except when the
    `holdout_min` floor tops up a small held-out part). The held-out part is never calibrated on.

    Every sample the split picks is decoded once here: an unreadable one is named in a warning and left
    out before the parts are counted, so every count a command reports is of samples that really decode.
    """
    unreadable: dict[str, str] = {}  # key -> why it could not be decoded
    readable: set[str] = set()
    while True:
        candidates = [ref for ref in dataset.refs if ref.key not in unreadable]
        # Under 2 samples there is no split; they are decoded anyway, so the error can say which ones fail.
        calib, held = (_pick(candidates, holdout=holdout, holdout_min=holdout_min, calib_limit=calib_limit)
                       if len(candidates) >= 2 else (candidates, []))
        unchecked = [ref for ref in (*calib, *held) if ref.key not in readable]
        if not unchecked:
            break
        # In file order: the samples of a .npz or .pt file are read from one load of it.
        for ref in sorted(unchecked, key=lambda r: (str(r.path), r.index or 0)):
            try:
                dataset.load_one(ref)
                readable.add(ref.key)
            except SampleSkipped as exc:
                log.warning("skipping %s: %s", ref.key, exc)
                unreadable[ref.key] = str(exc)
    if len(candidates) < 2:
        raise _too_few(dataset, len(candidates), unreadable)
    # Within each part, keep a readable order (by key) so logs and reports are stable.
    return Split(dataset.subset(sorted(calib, key=lambda r: r.key)), dataset.subset(sorted(held, key=lambda r: r.key)),
                 unused=len(candidates) - len(calib) - len(held), unreadable=tuple(sorted(unreadable)))


def _pick(refs: list[SampleRef], *, holdout: float, holdout_min: int,
          calib_limit: int | None) -> tuple[list[SampleRef], list[SampleRef]]:
    """(calibration, held out) by hash position, with the holdout_min floor and the calib_limit cut."""
    ordered = sorted(refs, key=_position)
    held = [ref for ref in ordered if _position(ref) < holdout]
    floor = min(holdout_min, len(ordered) // 2)
    if len(held) < floor:
        held = ordered[:floor]
    held_keys = {ref.key for ref in held}
    calib = [ref for ref in ordered if ref.key not in held_keys]
    if not calib:
        held, calib = held[:-1], held[-1:]
    if calib_limit is not None:
        calib = calib[:calib_limit]  # hash order: a limited calibration set still spans the classes
    return calib, held


def held_out_shortfall(count: int, holdout_min: int) -> str | None:
    """Why `count` held-out samples are too few for a parity verdict, or None when they are enough.

    >>> held_out_shortfall(1, 8)
    'only 1 held-out sample; a parity verdict needs at least 8 (data.holdout_min)'
    """
    if count >= holdout_min:
        return None
    return (f"only {count} held-out sample{'s' if count != 1 else ''}; a parity verdict needs at least {holdout_min} "
            "(data.holdout_min)")


def _too_few(dataset: Dataset, readable: int, unreadable: dict[str, str]) -> DataError:
    needed = "at least 2 are needed, one to calibrate and one held out for the parity check"
    if not unreadable:
        return DataError(f"{dataset.description} holds {readable} sample(s); {needed}.", hint="Add more samples.")
    named = "; ".join(f"{key}: {why}" for key, why in list(unreadable.items())[:5])
    more = f"; and {len(unreadable) - 5} more" if len(unreadable) > 5 else ""
    count = f"None of the {len(dataset)}" if not readable else f"Only {readable} of the {len(dataset)}"
    return DataError(f"{count} samples in {dataset.description} could be read ({needed}). Unreadable: "
                     f"{named}{more}.", hint="Replace or remove the unreadable files, or add readable samples.")


def _position(ref: SampleRef) -> float:
    return int(hashlib.sha256(ref.key.encode()).hexdigest()[:12], 16) / 16 ** 12

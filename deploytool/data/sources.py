"""Turn a `--calib` value into a Dataset: an image folder, array files, or (only when asked) random data."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deploytool.config import InputSpec, Preprocess
from deploytool.data import Dataset, SampleRef, files_under
from deploytool.data.arrays import ARRAY_SUFFIXES, array_files
from deploytool.data.images import IMAGE_SUFFIXES, image_folder, list_images
from deploytool.errors import DataError

RANDOM = "random"
RANDOM_SAMPLES = 64  # enough to exercise every range; the result is still unverified


def open_dataset(spec: str, *, base_dir: Path, preprocess: Preprocess, input_names: tuple[str, ...],
                 inputs: tuple[InputSpec, ...] = (), skip: tuple[Path, ...] = ()) -> Dataset:
    """`spec` is a folder of images or array files, an array file, or the literal 'random'. The folders in `skip`
    (what deploytool writes into the output folder) are never read as data, even when they lie inside it."""
    if spec == RANDOM:
        return random_dataset(inputs)
    path = check_calibration(spec, base_dir=base_dir)
    if path.is_file():
        dataset = array_files([path], input_names, f"{path}")
    elif list_images(path, skip=skip):
        dataset = image_folder(path, preprocess, skip=skip)
    else:
        files = [p for p in files_under(path, skip=skip) if p.suffix in ARRAY_SUFFIXES]
        dataset = array_files(files, input_names, f"array folder {path}")
    if not len(dataset):
        raise (DataError(f"{path} holds no samples (its first axis has length 0).",
                         hint="Point --calib at a file or folder of real samples, first axis = samples.")
               if path.is_file() else _no_samples(path))
    return dataset


def named_arrays(spec: str, *, base_dir: Path, skip: tuple[Path, ...] = ()) -> tuple[str, ...]:
    """The names the data gives its arrays (a .npz's array names, a .pt dict's keys; the first file of a folder),
    which pick the forward() arguments that get them; () for images, .npy files and unnamed tensors.

    >>> named_arrays("tokens.npz", base_dir=Path("."))
    ('input_ids', 'attention_mask', 'targets')
    """
    if spec == RANDOM:
        return ()
    path = (base_dir / spec).resolve()
    first = path if path.is_file() else next((p for p in files_under(path, skip=skip)
                                              if p.suffix in (".npz", ".pt")), None)
    if first is None or first.suffix not in (".npz", ".pt"):
        return ()
    try:
        if first.suffix == ".npz":
            with np.load(first, allow_pickle=False) as npz:
                return tuple(npz.files)
        import torch

        value = torch.load(first, weights_only=True, map_location="cpu")
    except Exception:  # unreadable: open_dataset names the file and the reason when it reads it
        return ()
    value = value[0] if isinstance(value, list) and value else value
    return tuple(str(k) for k in value) if isinstance(value, dict) else ()


def check_calibration(spec: str, *, base_dir: Path) -> Path:
    """What `--calib` must pass before the model is built (which can take minutes): the path exists, its type
    is supported, and it holds a sample file that opens. Returns the resolved path; decoding comes later.

    >>> check_calibration("photos", base_dir=Path("."))
    PosixPath('/home/me/project/photos')
    """
    path = (base_dir / spec).resolve()
    if not path.exists():
        raise DataError(f"Calibration data {path} does not exist.",
                        hint="Point --calib at a folder of images or a .npy/.npz/.pt file.")
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise DataError(f"{path} is a single image; calibration needs a folder of them.",
                            hint=f"Use --calib {path.parent}")
        if path.suffix not in ARRAY_SUFFIXES:
            raise DataError(f"{path}: unsupported data file type '{path.suffix}'.",
                            hint="Use a folder of jpg/png/webp/bmp images, or .npy, .npz or .pt files.")
    candidates = [path] if path.is_file() else (p for p in sorted(path.rglob("*")) if _is_sample_file(p))
    first_error = None
    for candidate in candidates:
        try:
            with candidate.open("rb"):
                return path
        except OSError as exc:
            first_error = first_error or DataError(f"{candidate}: not a readable {candidate.suffix} file "
                                                   f"({exc.strerror}).", hint="Check the files' permissions.")
    raise first_error or _no_samples(path)


def _is_sample_file(path: Path) -> bool:
    return (path.suffix.lower() in IMAGE_SUFFIXES or path.suffix in ARRAY_SUFFIXES) and path.is_file()


def _no_samples(path: Path) -> DataError:
    return DataError(f"Calibration folder {path} holds no images (jpg, png, webp, bmp) or arrays (.npy, .npz, .pt).",
                     hint="Point --calib at the folder that holds your real samples.")


def random_dataset(inputs: tuple[InputSpec, ...]) -> Dataset:
    """Seeded random samples. Only for `--calib random`: results on it prove nothing and say so."""
    if not inputs:
        raise DataError("--calib random needs the input shapes, and none are configured.",
                        hint="Add [[inputs]] with name, shape and dtype to the config.")

    def load(ref: SampleRef):
        rng = np.random.default_rng(ref.index)
        return tuple(rng.standard_normal(spec.shape[1:]).astype(spec.dtype) for spec in inputs)

    refs = [SampleRef(key=f"random#{i:03d}", path=Path(RANDOM), index=i) for i in range(RANDOM_SAMPLES)]
    return Dataset(refs, load, "random data (unverified)", is_random=True)

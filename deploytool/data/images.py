"""Image folders: recursive listing, class labels from sub-folders, preprocessing in PIL + numpy."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from deploytool.config import Color, Layout, Preprocess
from deploytool.data import Arrays, Dataset, SampleRef, SampleSkipped, files_under

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def list_images(folder: Path, *, skip: tuple[Path, ...] = ()) -> list[Path]:
    return [p for p in files_under(folder, skip=skip) if p.suffix.lower() in IMAGE_SUFFIXES]


def image_folder(folder: Path, preprocess: Preprocess, *, skip: tuple[Path, ...] = ()) -> Dataset:
    """Every image under `folder` (but `skip`). When all images sit in sub-folders, the sub-folder names are class
    labels."""
    paths = list_images(folder, skip=skip)
    parents = sorted({p.parent.relative_to(folder).parts[0] for p in paths if p.parent != folder})
    labelled = bool(paths) and all(p.parent != folder for p in paths) and len(parents) > 1
    label_of = {name: i for i, name in enumerate(parents)} if labelled else {}
    refs = [SampleRef(key=str(p.relative_to(folder)), path=p,
                      label=label_of[p.relative_to(folder).parts[0]] if labelled else None) for p in paths]
    return Dataset(refs, lambda ref: (load_image(ref.path, preprocess),), f"image folder {folder}",
                   labels=tuple(parents) if labelled else ())


def load_image(path: Path, preprocess: Preprocess) -> np.ndarray:
    """Decode, convert colour, resize, crop, normalise: the steps the demo apps repeat on device."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                pixels = _to_color(image, preprocess.color)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as exc:
        raise SampleSkipped(f"not a readable image ({type(exc).__name__}: {exc})") from None
    pixels = _resize_and_crop(pixels, preprocess)
    array = np.asarray(pixels, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    if preprocess.color is Color.BGR:
        array = array[:, :, ::-1]
    array = array * preprocess.scale
    array = (array - np.asarray(preprocess.mean, np.float32)) / np.asarray(preprocess.std, np.float32)
    if preprocess.layout is Layout.NCHW:
        array = array.transpose(2, 0, 1)
    return np.ascontiguousarray(array, dtype=np.float32)


def _to_color(image, color: Color):
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit: keep the top 8 bits rather than letting PIL clip everything above 255 to white.
        wide = np.asarray(image, dtype=np.uint32)
        image = Image.fromarray((wide >> 8).clip(0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite transparent pixels onto white, as viewers show them, instead of dropping alpha.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("L" if color is Color.L else "RGB")


def _resize_and_crop(image, preprocess: Preprocess):
    from PIL import Image

    if preprocess.resize:
        width, height = image.size
        scale = preprocess.resize / min(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = image.resize(size, Image.BILINEAR)
    if preprocess.center_crop:
        crop_h, crop_w = preprocess.center_crop
        width, height = image.size
        if crop_h > height or crop_w > width:
            raise SampleSkipped(f"image is {width}x{height}, smaller than the center crop {crop_w}x{crop_h}; "
                                "set preprocess.resize so the shorter side covers the crop")
        top, left = round((height - crop_h) / 2), round((width - crop_w) / 2)
        image = image.crop((left, top, left + crop_w, top + crop_h))
    return image

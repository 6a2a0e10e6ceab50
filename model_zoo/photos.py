"""Real photos without a download: crops of the sample photos that ship inside scikit-learn, scikit-image
and matplotlib.

`write_photos(folder, count)` writes `count` JPEG crops (different positions and scales of china.jpg
and flower.jpg) for the untrained torchvision entries; `crops=shipped_photo_crops` takes them from every
shipped photo (13), for the trained ImageNet entry. Nothing here is random data.
"""
from __future__ import annotations

import io
import itertools
import sys
from pathlib import Path

from deploytool.fsutil import atomic_write_bytes

CROP_SIZES = (256, 192, 160, 320)  # several scales so crops differ in content, not just position


def photo_crops(count: int):
    """Yield (name, PIL.Image) crops, deterministic and all distinct."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    sources = load_sample_images()
    produced = 0
    for size in CROP_SIZES:
        for (index, array), name in zip(enumerate(sources.images), sources.filenames):
            height, width = array.shape[:2]
            stride = size // 2
            for top, left in itertools.product(range(0, height - size + 1, stride), range(0, width - size + 1, stride)):
                if produced == count:
                    return
                crop = Image.fromarray(array[top:top + size, left:left + size])
                yield f"{Path(name).stem}_{size}_{top:03d}_{left:03d}", crop
                produced += 1
    if produced < count:
        raise ValueError(f"only {produced} distinct crops are available, {count} were asked for")


# Every RGB photograph shipped inside scikit-image, matplotlib and scikit-learn (synthetic images left out).
SHIPPED_PHOTOS = {
    "skimage": ("data/astronaut.png", "data/chelsea.png", "data/coffee.png", "data/hubble_deep_field.jpg",
                "data/ihc.png", "data/motorcycle_left.png", "data/motorcycle_right.png", "data/retina.jpg",
                "data/rocket.jpg"),
    "matplotlib": ("mpl-data/sample_data/grace_hopper.jpg", "mpl-data/sample_data/Minduka_Present_Blue_Pack.png"),
    "sklearn": ("datasets/images/china.jpg", "datasets/images/flower.jpg"),
}
# Square crops as a share of the shorter side, and their positions (fractions of the free space): whole
# photos and closer views, so the crops differ in content and scale, not just position.
CROP_LAYOUT = ((1.0, ((0.5, 0.5),)), (0.7, ((0, 0), (1, 0), (0, 1), (1, 1))), (0.45, ((0.25, 0.25), (0.75, 0.25),
                                                                                       (0.25, 0.75), (0.75, 0.75))))


def shipped_photo_crops(count: int):
    """Yield (name, PIL.Image) square crops of every photo in SHIPPED_PHOTOS, layout by layout, so the first
    `count` cover every photo before repeating one; deterministic and all distinct."""
    import importlib

    from PIL import Image

    photos = []
    for package, files in SHIPPED_PHOTOS.items():
        root = Path(importlib.import_module(package).__file__).parent
        photos.extend((Path(file).stem, root / file) for file in files)
    opened = {name: Image.open(path).convert("RGB") for name, path in photos}
    produced = 0
    for share, positions in CROP_LAYOUT:
        for x, y in positions:
            for name, image in opened.items():
                if produced == count:
                    return
                width, height = image.size
                size = round(min(width, height) * share)
                left, top = round((width - size) * x), round((height - size) * y)
                yield f"{name}_{int(share * 100):03d}_{left:04d}_{top:04d}", image.crop((left, top, left + size,
                                                                                         top + size))
                produced += 1
    if produced < count:
        raise ValueError(f"only {produced} distinct crops are available, {count} were asked for")


def write_photos(folder: Path, count: int = 48, *, crops=photo_crops) -> Path:
    """`count` JPEG crops from `crops` (photo_crops: scikit-learn's two photos; shipped_photo_crops: all).

    A folder whose `.written` list names exactly the crops there is returned as it is: finding the photos
    imports scikit-image and matplotlib, about 13% of a repeated export.
    """
    record = folder / ".written"
    if record.is_file():
        names = record.read_text().split()
        if len(names) == count and all((folder / f"{name}.jpg").is_file() for name in names):
            return folder
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for name, image in crops(count):
        target = folder / f"{name}.jpg"
        if not target.exists():  # atomic: an interrupted run never leaves a truncated JPEG that is then kept
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=92)
            atomic_write_bytes(target, buffer.getvalue())
        names.append(name)
    atomic_write_bytes(record, "\n".join(names).encode())  # last: it marks the folder complete
    return folder


if __name__ == "__main__":
    out = write_photos(Path(sys.argv[1] if len(sys.argv) > 1 else "photos"),
                       int(sys.argv[2]) if len(sys.argv) > 2 else 48)
    print(f"wrote crops of scikit-learn's sample photos to {out}", file=sys.stderr)

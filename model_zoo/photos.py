"""Real photos without a download: crops of the sample images that ship inside scikit-learn.

`write_photos(folder, count)` writes `count` JPEG crops (different positions and scales of china.jpg
and flower.jpg). They calibrate and check the torchvision entries; nothing here is random data.
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


def write_photos(folder: Path, count: int = 48) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in photo_crops(count):
        target = folder / f"{name}.jpg"
        if not target.exists():  # atomic: an interrupted run never leaves a truncated JPEG that is then kept
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=92)
            atomic_write_bytes(target, buffer.getvalue())
    return folder


if __name__ == "__main__":
    out = write_photos(Path(sys.argv[1] if len(sys.argv) > 1 else "photos"),
                       int(sys.argv[2]) if len(sys.argv) > 2 else 48)
    print(f"wrote crops of scikit-learn's sample photos to {out}", file=sys.stderr)

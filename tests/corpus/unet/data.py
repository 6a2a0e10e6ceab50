"""64 normalised RGB 64x64 images (`x`: smooth blobs and an edge over pixel noise); `targets` [64, 64, 64] are
eager's confident class per pixel (-1 where eager did not decide)."""
from pathlib import Path

import numpy as np

from corpus.samples import SAMPLES, decided_top1, eager, images, save_npz


def write_data(folder: Path) -> Path:
    x = images(np.random.default_rng(64), SAMPLES, 3, 64)
    logits = eager(Path(__file__).parent, {"x": x})  # [samples, classes, height, width]
    return save_npz(folder, "images.npz", x=x, targets=decided_top1(np.moveaxis(logits, 1, -1)))

"""64 sequences of 50 frames of 24 filterbank-like features (`features`, float32 [64, 50, 24]): segments of
3 to 12 frames, each a different spectral shape, with noise, standardised; `targets` [64, 50] are eager's
confident tag per frame (-1 where eager did not decide)."""
from pathlib import Path

import numpy as np

from corpus.samples import SAMPLES, decided_top1, eager, save_npz

FRAMES, FEATURES = 50, 24


def write_data(folder: Path) -> Path:
    rng = np.random.default_rng(50)
    shapes = rng.standard_normal((8, FEATURES)) * 1.5
    x = np.empty((SAMPLES, FRAMES, FEATURES), np.float32)
    for i in range(SAMPLES):
        t = 0
        while t < FRAMES:
            length = int(rng.integers(3, 13))
            x[i, t:t + length] = shapes[rng.integers(len(shapes))]
            t += length
    x += 0.4 * rng.standard_normal(x.shape)
    x = ((x - x.mean()) / x.std()).astype(np.float32)
    return save_npz(folder, "frames.npz", features=x,
                    targets=decided_top1(eager(Path(__file__).parent, {"features": x})))

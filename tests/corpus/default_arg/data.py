"""64 clips of 20 MFCC-like frames of 40 features (`x`, float32 [64, 20, 40]): a per-clip spectral envelope that
drifts slowly over time, plus noise, standardised per feature; `targets` are eager's confident classes (-1 where
eager did not decide)."""
from pathlib import Path

import numpy as np

from corpus.samples import SAMPLES, decided_top1, eager, save_npz


def write_data(folder: Path) -> Path:
    rng = np.random.default_rng(40)
    envelope = rng.standard_normal((SAMPLES, 1, 40)) * np.linspace(2.0, 0.3, 40)  # low coefficients vary most
    drift = np.cumsum(0.2 * rng.standard_normal((SAMPLES, 20, 40)), axis=1)
    x = envelope + drift + 0.3 * rng.standard_normal((SAMPLES, 20, 40))
    x = ((x - x.mean(axis=(0, 1))) / x.std(axis=(0, 1))).astype(np.float32)
    return save_npz(folder, "mfcc.npz", x=x, targets=decided_top1(eager(Path(__file__).parent, {"x": x})))

"""64 frames of a log-frequency power spectrum (`frames`, float32 [64, 251], 30 cents a bin from 31.7 Hz) of
harmonic tones between 60 and 1000 Hz: partials as 35-cent-wide bumps with random brightness, a noise floor,
log power, normalised per frame. `targets`: each frame's true f0 in cents above 10 Hz (for metric.py)."""
from pathlib import Path

import numpy as np

from corpus.samples import SAMPLES, save_npz

BINS, CENTS_PER_BIN, CENTS_OF_BIN0 = 251, 30.0, 1997.3794084376191


def frame(rng: np.random.Generator, f0_cents: float) -> np.ndarray:
    cents = CENTS_OF_BIN0 + CENTS_PER_BIN * np.arange(BINS)
    brightness = rng.uniform(0.4, 0.8)
    power = 10 ** rng.uniform(-4, -3) * rng.random(BINS)  # noise floor
    for k in range(1, 9):
        partial = f0_cents + 1200 * np.log2(k)
        power += brightness ** (k - 1) * rng.uniform(0.7, 1.0) * np.exp(-0.5 * ((cents - partial) / 35.0) ** 2)
    x = np.log(power + 1e-5)
    return ((x - x.mean()) / x.std()).astype(np.float32)


def write_data(folder: Path) -> Path:
    rng = np.random.default_rng(2018)
    f0 = np.exp(rng.uniform(np.log(60.0), np.log(1000.0), SAMPLES))
    targets = 1200 * np.log2(f0 / 10.0)
    frames = np.stack([frame(rng, c) for c in targets])
    return save_npz(folder, "frames.npz", frames=frames, targets=targets.astype(np.float32))

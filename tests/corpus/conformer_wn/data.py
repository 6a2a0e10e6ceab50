"""64 clips of 48 log-mel-like frames of 128 mels (`x`, float32 [64, 48, 128]): harmonic tones whose pitch
glides between 80 and 600 Hz, with an envelope and a noise floor. The model is untrained, so `targets` are
eager's own decoded pitch per frame (cents), NaN where its salience has no clear peak (the best bin more than 4
bins away is within 0.1 of the peak)."""
from pathlib import Path

import numpy as np

from corpus.samples import SAMPLES, eager, log_mel_like, save_npz

FRAMES, MELS = 48, 128
CENTS_OF_BIN0, CENTS_PER_BIN, WINDOW = 1997.3794084376191, 20.0, 4


def clear_peak_cents(salience: np.ndarray) -> np.ndarray:
    peak = salience.argmax(axis=-1)
    bins = np.arange(salience.shape[-1])
    far = np.abs(bins - peak[..., None]) > WINDOW
    runner_up = np.where(far, salience, -np.inf).max(axis=-1)
    near = np.clip(peak[..., None] + np.arange(-WINDOW, WINDOW + 1), 0, salience.shape[-1] - 1)
    weights = np.take_along_axis(salience, near, axis=-1)
    cents = CENTS_OF_BIN0 + CENTS_PER_BIN * (weights * near).sum(-1) / np.maximum(weights.sum(-1), 1e-12)
    return np.where(salience.max(axis=-1) - runner_up >= 0.1, cents, np.nan).astype(np.float32)


def write_data(folder: Path) -> Path:
    rng = np.random.default_rng(48)
    x = np.stack([log_mel_like(rng, FRAMES, MELS)[0] for _ in range(SAMPLES)])
    salience = eager(Path(__file__).parent, {"x": x})
    return save_npz(folder, "logmel.npz", x=x, targets=clear_peak_cents(salience))

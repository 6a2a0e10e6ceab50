"""Frame pitch accuracy: the share of frames whose decoded pitch is within 50 cents of the target.

outputs: [samples, frames, 360] salience (a leading batch axis of 1 per sample is allowed); targets: [samples,
frames] pitch in cents above 10 Hz, NaN for frames that are skipped (eager had no clear peak there).
"""
import numpy as np

CENTS_OF_BIN0, CENTS_PER_BIN = 1997.3794084376191, 20.0
TOLERANCE = 50.0
WINDOW = 4


def decode(salience: np.ndarray) -> np.ndarray:
    peak = salience.argmax(axis=-1)
    bins = np.clip(peak[..., None] + np.arange(-WINDOW, WINDOW + 1), 0, salience.shape[-1] - 1)
    weights = np.take_along_axis(salience, bins, axis=-1)
    return CENTS_OF_BIN0 + CENTS_PER_BIN * (weights * bins).sum(-1) / np.maximum(weights.sum(-1), 1e-12)


def metric(outputs, targets):
    salience = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
    targets = np.asarray(targets, np.float64)
    salience = np.asarray(salience, np.float64).reshape(*targets.shape, -1)
    kept = ~np.isnan(targets)
    if not kept.any():
        return 1.0
    return float(np.mean(np.abs(decode(salience)[kept] - targets[kept]) <= TOLERANCE))

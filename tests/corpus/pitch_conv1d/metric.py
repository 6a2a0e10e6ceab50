"""Raw pitch accuracy: the share of frames whose decoded pitch is within 50 cents of the true f0.

outputs: [samples, 384] sigmoid salience (or [samples, 1, 384]); targets: the true f0 of each frame in cents
above 10 Hz. Decoding as CREPE does: the salience-weighted mean of the bins within 4 of the argmax.
"""
import numpy as np

CENTS_OF_BIN0, CENTS_PER_BIN = 1997.3794084376191, 20.0
TOLERANCE = 50.0  # a quarter tone, the usual "raw pitch accuracy"
WINDOW = 4


def decode(salience: np.ndarray) -> np.ndarray:
    """Pitch in cents of each row of [frames, bins]."""
    peak = salience.argmax(axis=-1)
    offsets = np.arange(-WINDOW, WINDOW + 1)
    bins = np.clip(peak[:, None] + offsets[None], 0, salience.shape[-1] - 1)
    weights = np.take_along_axis(salience, bins, axis=-1)
    mean_bin = (weights * bins).sum(axis=-1) / np.maximum(weights.sum(axis=-1), 1e-12)
    return CENTS_OF_BIN0 + CENTS_PER_BIN * mean_bin


def metric(outputs, targets):
    salience = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
    targets = np.asarray(targets, np.float64).reshape(-1)
    salience = np.asarray(salience, np.float64).reshape(len(targets), -1)
    return float(np.mean(np.abs(decode(salience) - targets) <= TOLERANCE))

"""Pitch bins, decoding, and the task metric: raw pitch accuracy within 50 cents of the true f0."""
from __future__ import annotations

from typing import Any

import numpy as np

CENTS_PER_BIN = 20.0
CENTS_OF_BIN0 = 1997.3794084376191  # bin 0 is 31.70 Hz, as in CREPE (cents above 10 Hz)
TOLERANCE_CENTS = 50.0  # "raw pitch accuracy": within a quarter tone, the standard in pitch-tracking papers
WINDOW = 4  # bins either side of the argmax in the local average, as CREPE's to_local_average_cents


def cents_of_frequency(hz: float) -> float:
    """Cents above 10 Hz, the scale of the bins.

    >>> round(cents_of_frequency(440.0), 2)
    4505.5
    """
    return 1200.0 * float(np.log2(hz / 10.0))


def frequency_of_cents(cents: float) -> float:
    return 10.0 * 2.0 ** (cents / 1200.0)


def decode_cents(activations: np.ndarray) -> float:
    """One frame's pitch in cents: the activation-weighted mean of the bins within WINDOW of the argmax (CREPE's
    decoder; finer than the argmax bin's 20 cents).

    >>> round(decode_cents(np.eye(360)[100]), 2)
    3997.38
    """
    activations = np.asarray(activations, np.float64).reshape(-1)
    peak = int(np.argmax(activations))
    bins = np.arange(max(0, peak - WINDOW), min(activations.size, peak + WINDOW + 1))
    weights = activations[bins]
    return CENTS_OF_BIN0 + CENTS_PER_BIN * float(np.sum(weights * bins) / max(np.sum(weights), 1e-12))


def cents_errors(outputs: list[list[np.ndarray]], truths: list[Any]) -> np.ndarray:
    """|decoded - true| in cents for each sample with a truth; outputs[i][0] is that sample's [1, 360]."""
    return np.asarray([abs(decode_cents(o[0]) - t) for o, t in zip(outputs, truths) if t is not None])


def pitch_accuracy(outputs: list[list[np.ndarray]], truths: list[Any]) -> float | None:
    """Share of samples whose decoded pitch is within 50 cents of the truth; None when no sample has one.

    >>> pitch_accuracy([[np.eye(360)[None, 100]]], [4000.0])
    1.0
    """
    errors = cents_errors(outputs, truths)
    return float(np.mean(errors <= TOLERANCE_CENTS)) if errors.size else None


def median_cents_error(outputs: list[list[np.ndarray]], truths: list[Any]) -> float | None:
    """The median |decoded - true| in cents; None when no sample has a truth."""
    errors = cents_errors(outputs, truths)
    return float(np.median(errors)) if errors.size else None

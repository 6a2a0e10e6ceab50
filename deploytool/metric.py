"""The user's own quality measure: `--metric file.py:fn` (or pkg.module:fn), as a deploytool.parity.TaskMetric.

    def pitch_accuracy(outputs, targets):  # in metric.py
        cents = 1200 * np.log2(decode(outputs) / targets)
        return float(np.mean(np.abs(cents) < 50))

`outputs` are the model's outputs on the held-out samples stacked on the first axis: a numpy array, or a tuple of
them when the model has several outputs (in the order of the manifest's outputs). `targets` are the same
samples' rows of the array named `targets` in the calibration data. The function returns a share in [0, 1],
higher is better; a drop of 1 point is 0.01.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deploytool.errors import ConfigError, DataError


def user_metric(spec: str, *, base_dir: Path, max_drop: float) -> Any:
    """The TaskMetric that calls the function `spec` names, scoring only held-out samples with targets.

    >>> user_metric("metric.py:pitch_accuracy", base_dir=Path("."), max_drop=1.0).name
    'pitch_accuracy'
    """
    from deploytool.loading import load_callable
    from deploytool.parity import TaskMetric

    function = load_callable(spec, base_dir=base_dir, what="metric")
    return TaskMetric(spec.rpartition(":")[2], lambda outputs, truths: call_metric(function, spec, outputs, truths),
                      max_drop=max_drop)


def call_metric(function: Callable, spec: str, outputs: list[list[np.ndarray]], truths: list[Any]) -> float | None:
    """`function(stacked outputs, stacked targets)` over the samples that have targets; None when none has."""
    rows = [(sample, truth) for sample, truth in zip(outputs, truths) if truth is not None]
    if not rows:
        return None
    columns = [np.concatenate([sample[i] for sample, _ in rows]) for i in range(len(rows[0][0]))]
    try:
        targets = np.stack([np.asarray(truth) for _, truth in rows])
    except ValueError as exc:
        raise DataError(f"The targets of the held-out samples do not stack into one array ({exc}).",
                        hint="Give every sample a target of the same shape in the 'targets' array.") from None
    try:
        value = function(columns[0] if len(columns) == 1 else tuple(columns), targets)
    except Exception as exc:  # the user's metric can raise anything
        raise ConfigError(f"The metric {spec} raised {type(exc).__name__}: {str(exc)[:300]}",
                          hint=f"It is called as fn(outputs, targets) with outputs {[c.shape for c in columns]} "
                               f"and targets {targets.shape}; add -v for the traceback.") from exc
    try:
        share = float(value)
    except (TypeError, ValueError):
        share = float("nan")
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"The metric {spec} returned {value!r}; a metric returns a share in [0, 1], higher is "
                          "better.", hint="Return e.g. the share of samples the model gets right.")
    return share

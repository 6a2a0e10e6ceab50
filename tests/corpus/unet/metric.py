"""Pixel accuracy on the pixels where eager decided (targets -1 are skipped).

outputs: [samples, 4, height, width] class logits (a leading batch axis of 1 per sample is allowed); targets:
[samples, height, width] class ids.
"""
import numpy as np


def metric(outputs, targets):
    logits = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
    targets = np.asarray(targets)
    samples, height, width = targets.shape
    predicted = np.asarray(logits).reshape(samples, -1, height, width).argmax(axis=1)
    decided = targets >= 0
    return float((predicted[decided] == targets[decided]).mean()) if decided.any() else 1.0

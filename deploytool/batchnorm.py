"""Re-estimate BatchNorm statistics on real data: makes a randomly initialised CNN behave like a trained
one numerically (normalised activations), so parity on it means something."""
from __future__ import annotations

from collections.abc import Iterable


def reestimate_batchnorm(module, batches: Iterable) -> None:
    """Reset every BatchNorm's running mean/var and recompute them as a plain average over `batches`.

    >>> reestimate_batchnorm(model, [torch.stack(images)])   # images: real, preprocessed
    """
    import torch

    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.momentum, m.training) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches, not an exponential one
        m.train()
    try:
        with torch.no_grad():
            for batch in batches:
                module(*batch) if isinstance(batch, tuple) else module(batch)
    finally:
        for m, momentum, training in saved:
            m.momentum = momentum
            m.train(training)

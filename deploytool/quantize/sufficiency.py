"""Is the calibration data good enough? Warnings, never errors: the user decides.

Four questions: are there enough samples; do the inputs look real (not constant, not all zero, not i.i.d.
noise); did the activation ranges settle (ranges after half the samples vs after all of them); does the
held-out data stay inside the calibrated ranges (share of values an int8 range would clip, per layer).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from deploytool.quantize.recipes import module_path

INPUT_SAMPLES = 64  # enough samples to tell real data from noise; reading more costs time, not certainty
NOISE_CORRELATION = 0.1  # real images and signals have neighbour correlation well above 0.1; i.i.d. noise ~0
RANGE_SHIFT = 0.1  # ranges moving >10% of their width in the second half of calibration have not settled
CLIPPED_SHARE = 0.01  # >1% of a layer's held-out values outside its calibrated range is visible drift
MIN_CALIBRATION = 16  # fewer samples rarely reach the extremes real inputs hit: the int8 ranges come out too narrow


def sample_warnings(parts, *, holdout_min: int) -> list[str]:
    """Warnings about too little data in a deploytool.data.Split: held-out samples too few for a parity verdict
    (export and check then fail), calibration samples too few for ranges that hold.

    >>> sample_warnings(split(three_images, holdout=0.2, holdout_min=8, calib_limit=None), holdout_min=8)
    ['only 1 held-out sample; a parity verdict needs at least 8 (data.holdout_min): ...', 'calibrating on only 2 ...']
    """
    from deploytool.data import held_out_shortfall

    warnings = []
    shortfall = held_out_shortfall(len(parts.held_out), holdout_min)
    if shortfall:
        warnings.append(f"{shortfall}: every parity check will fail until there are more (add real samples to "
                        f"--calib: {2 * holdout_min} or more give {holdout_min} held out), or set data.holdout_min "
                        "lower to accept a weaker check")
    calibration = len(parts.calibration)
    if calibration < MIN_CALIBRATION and not parts.unused:
        warnings.append(f"calibrating on only {calibration} sample{'s' if calibration != 1 else ''}: int8 ranges "
                        f"from fewer than {MIN_CALIBRATION} rarely cover what real inputs reach; add real samples")
    return warnings


def input_warnings(samples: Iterable[tuple[np.ndarray, ...]]) -> list[str]:
    """Warnings about calibration inputs that look synthetic or degenerate.

    >>> input_warnings([(np.zeros((1, 8, 8), np.float32),)] * 4)
    ['input 0: every calibration sample is all zeros ...']
    """
    columns: list[list[np.ndarray]] = []
    for i, sample in enumerate(samples):
        if i == INPUT_SAMPLES:
            break
        columns = columns or [[] for _ in sample]
        for column, array in zip(columns, sample):
            column.append(np.asarray(array))
    warnings = []
    for index, arrays in enumerate(columns):
        if not np.issubdtype(arrays[0].dtype, np.floating):
            continue  # token ids and masks: no statistics to judge
        stack = np.stack(arrays).astype(np.float64)
        flat = stack.reshape(len(stack), -1)
        if not np.any(flat):
            warnings.append(f"input {index}: every calibration sample is all zeros; int8 ranges fitted to zeros "
                            "are meaningless. Calibrate on real data.")
        elif np.all(flat.std(axis=1) == 0):
            warnings.append(f"input {index}: every calibration sample is constant; calibrate on real data.")
        elif len(stack) > 1 and np.all(flat == flat[0]):
            warnings.append(f"input {index}: all {len(stack)} calibration samples are identical.")
        elif stack.shape[-1] >= 4 and abs(_neighbour_correlation(stack)) < NOISE_CORRELATION:
            warnings.append(f"input {index}: neighbouring values are uncorrelated "
                            f"({_neighbour_correlation(stack):.2f}), like i.i.d. random noise rather than real "
                            "images or signals; ranges calibrated on noise rarely fit real data.")
    return warnings


def _neighbour_correlation(stack: np.ndarray) -> float:
    """Mean correlation between each value and its neighbour along the last axis."""
    left, right = stack[..., :-1].ravel(), stack[..., 1:].ravel()
    if left.std() == 0 or right.std() == 0:
        return 1.0
    return float(np.corrcoef(left, right)[0, 1])


def range_warnings(calibrated, layer_of: dict[str, str]) -> list[str]:
    """Layers whose activation range still moved by more than RANGE_SHIFT in the second half of calibration."""
    if not calibrated.half_ranges:
        return []
    moved = []
    for name, (low, high) in calibrated.ranges().items():
        if name not in calibrated.half_ranges or name not in layer_of:
            continue
        half_low, half_high = calibrated.half_ranges[name]
        width = max(high - low, 1e-12)
        shift = max(abs(high - half_high), abs(low - half_low)) / width
        if shift > RANGE_SHIFT:
            moved.append((shift, layer_of[name]))
    if not moved:
        return []
    worst = ", ".join(f"{layer} ({shift:.0%})" for shift, layer in sorted(moved, reverse=True)[:5])
    return [f"activation ranges had not settled: between {calibrated.samples // 2} and {calibrated.samples} "
            f"calibration samples they still moved by more than {RANGE_SHIFT:.0%} of their width in "
            f"{len(moved)} layer(s): {worst}. Calibrate on more samples (--calib-limit)."]


def clipped_shares(calibrated, layer_of: dict[str, str], batches: Iterable[tuple]) -> dict[str, float]:
    """Per layer: share of held-out activation values outside the range calibration saw.

    `batches` yields model inputs (torch tensors). The observers' ranges are read first and the pass runs
    on a copy, so the calibrated graph is left as it was.
    """
    import copy

    import torch

    observed = copy.deepcopy(calibrated.prepared)
    ranges = calibrated.ranges()
    counts: dict[str, list[int]] = {}

    def count(name: str):
        low, high = ranges[name]

        def hook(_module, args):
            values = args[0].detach()
            outside = int(((values < low) | (values > high)).sum())
            total = counts.setdefault(layer_of[name], [0, 0])
            total[0] += outside
            total[1] += values.numel()
        return hook

    for name, module in observed.named_children():
        if name in ranges and name in layer_of:
            module.register_forward_pre_hook(count(name))
    with torch.inference_mode():
        for inputs in batches:
            observed(*inputs)
    return {layer: outside / total for layer, (outside, total) in counts.items() if total}


def clipping_warnings(shares: dict[str, float]) -> list[str]:
    drifted = sorted(((s, layer) for layer, s in shares.items() if s > CLIPPED_SHARE), reverse=True)
    if not drifted:
        return []
    worst = ", ".join(f"{layer} ({share:.1%})" for share, layer in drifted[:5])
    return [f"held-out data drifts outside the calibrated ranges: more than {CLIPPED_SHARE:.0%} of values clip in "
            f"{len(drifted)} layer(s): {worst}. Calibrate on data like what the model will see."]


def observer_layers(prepared) -> dict[str, str]:
    """Activation observer name -> eager module path of the value it observes ("input" for model inputs)."""
    layers = {}
    for node in prepared.graph.nodes:
        if node.op != "call_module" or not hasattr(getattr(prepared, node.target), "min_val"):
            continue  # not an observer (e.g. export's guard module)
        source = node.args[0]
        if source.op == "get_attr":
            continue  # weights: fixed, nothing to converge or drift
        layers[node.target] = module_path(source) or ("input" if source.op == "placeholder" else "(model)")
    return layers

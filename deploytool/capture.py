"""Capture an eager module as a torch.export program: strict first, then non-strict.

A batch-dynamic program lets calibration run in batches; when the model pins its batch size, we fall
back to a static program and say so.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from deploytool.errors import CaptureError

log = logging.getLogger("deploytool")

MAX_BATCH = 1024  # upper bound of the dynamic batch dimension; calibration batches stay far below it


Varying = tuple[dict[int, int], ...]  # per input, {axis: max} of the axes whose length varies between samples


@dataclass
class Captured:
    program: Any  # torch.export.ExportedProgram
    method: str  # "strict" or "non-strict"
    dynamic_batch: bool
    varying: Varying = ()  # the bounded dynamic axes the program keeps, and every program made from it


def capture(module, example_inputs: tuple, *, varying: Varying = ()) -> Captured:
    """torch.export the module, trying strict then non-strict mode, each batch-dynamic first (batched calibration).

    >>> captured = capture(model, (torch.zeros(1, 3, 224, 224),))
    >>> captured.method
    'strict'
    """
    attempts = [(strict, dyn) for dyn in (True, False) for strict in (True, False)]
    failures: list[tuple[str, Exception]] = []
    for strict, dyn in attempts:
        label = f"{'strict' if strict else 'non-strict'}{', batch-dynamic' if dyn else ''}"
        try:
            program = export(module, example_inputs, strict=strict, dynamic_batch=dyn, varying=varying)
        except Exception as exc:  # torch.export raises many unrelated types; every one means "not this way"
            log.debug("capture (%s) failed: %s", label, exc)
            failures.append((label, exc))
            continue
        # The batch-dynamic program only lets calibration run in batches; every artifact is made at batch 1.
        calibration = "; calibration runs in batches" if dyn else "; calibration runs one sample at a time"
        if failures:
            log.info("captured with torch.export (%s%s) after: %s", label, calibration,
                     "; ".join(f"{name}: {_first_line(exc)}" for name, exc in failures))
        else:
            log.info("captured with torch.export (%s%s)", label, calibration)
        return Captured(program, "strict" if strict else "non-strict", dyn, varying)
    raise _diagnose(failures)


def export(module, example_inputs: tuple, *, strict: bool, dynamic_batch: bool, varying: Varying = ()):
    """torch.export.export, batch-dynamic if asked, with `varying` axes dynamic up to their bounds: inputs whose
    axis has the same bound share one size (input_ids and their attention_mask)."""
    import torch

    # Canonical strides: a size-1 dim with an odd stride (e.g. from numpy) becomes a strange dim order in the
    # .pte, and XNNPACK then fails at run time with "Propagating input shapes failed".
    example_inputs = tuple(t.clone(memory_format=torch.contiguous_format) for t in example_inputs)
    shapes: list[dict] = [{} for _ in example_inputs]
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
        # Size-1 dims get specialised by export, so trace with a batch of 2.
        example_inputs = tuple(t.expand(2, *t.shape[1:]).clone() for t in example_inputs)
        for shape in shapes:
            shape[0] = batch
    shared: dict[tuple[int, int], Any] = {}
    for shape, axes in zip(shapes, varying):
        for axis, bound in axes.items():
            shape[axis] = shared.setdefault((axis, bound), torch.export.Dim(f"length{axis}_{bound}", max=bound))
    dynamic_shapes = tuple(s or None for s in shapes) if any(shapes) else None
    with torch.no_grad():
        return torch.export.export(module, example_inputs, dynamic_shapes=dynamic_shapes, strict=strict)


def _diagnose(failures: list[tuple[str, Exception]]) -> CaptureError:
    """Name the failing op or source line from the last (most permissive) attempt."""
    label, exc = failures[-1]
    text = str(exc)
    user_lines = re.findall(r'File "([^"]+)", line (\d+), in (\w+)\n\s*(.+)', text)
    user_lines = [u for u in user_lines if "site-packages" not in u[0]]
    where = f" at {user_lines[-1][0]}:{user_lines[-1][1]} ({user_lines[-1][3].strip()})" if user_lines else ""
    kind = type(exc).__name__
    if "data-dependent" in text or "GuardOnDataDependent" in kind or "Could not guard on data-dependent" in text:
        what = "forward() branches on tensor values (data-dependent control flow)"
        hint = ("Replace the Python `if` on a tensor with torch.where / torch.cond, or move the decision out of "
                "forward(); then re-run.")
    elif "Unsupported" in kind or "not supported" in text.lower():
        what = "forward() uses a construct torch.export does not support"
        hint = "Rewrite the line shown without it, or try --capture script for TorchScript-only targets."
    else:
        what = f"{kind}: {_first_line(exc)}"
        hint = "Run with -v for the full trace; torch.export's docs list the usual rewrites."
    tried = "; ".join(name for name, _ in failures)
    return CaptureError(f"The model cannot be captured with torch.export (tried: {tried}): {what}{where}.", hint=hint)


def _first_line(exc: Exception) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__

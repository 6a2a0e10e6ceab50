"""PT2E int8 with ExecuTorch's XNNPACKQuantizer: observers inserted for a per-layer plan, calibrated in batches
on real data; a converted graph re-exported. quantize/session.py converts every variant of a run from one
calibration."""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from deploytool.capture import Captured, export
from deploytool.config import QuantConfig
from deploytool.data import Dataset
from deploytool.errors import QuantizeError
from deploytool.progress import Progress

log = logging.getLogger("deploytool")

Ranges = dict[str, tuple[float, float]]  # activation observer name -> (min, max) seen


@dataclass
class Calibrated:
    """A prepared (observed) graph after calibration, with what the calibration looked like."""

    prepared: Any  # torch.fx.GraphModule with observers
    samples: int
    kept_fp32: tuple[str, ...]  # eager module paths left unquantized
    half_ranges: Ranges = field(default_factory=dict)  # after the first half of the samples

    def ranges(self) -> Ranges:
        return observer_ranges(self.prepared)


def prepare(captured: Captured, *, recipe: QuantConfig, keep_fp32: Sequence[str] = (), dynamic: Sequence[str] = (),
            all_dynamic: bool = False):
    """The captured graph with observers for the recipe: static int8, dynamic int8 for the modules in `dynamic`
    (or everywhere with `all_dynamic`), fp32 for the recipe's keep_fp32 and `keep_fp32` (eager module paths).

    >>> observed = prepare(captured, recipe=QuantConfig(), dynamic=("classifier",))
    """
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    quantizer = quantizer_for(captured, recipe, keep_fp32, dynamic=dynamic, all_dynamic=all_dynamic)
    try:
        return prepare_pt2e(captured.program.module(), quantizer)
    except Exception as exc:  # the quantizer raises assorted errors on unsupported patterns
        what = "dynamic int8" if all_dynamic or dynamic else "int8"
        raise QuantizeError(f"Inserting {what} observers failed: {type(exc).__name__}: {exc}",
                            hint="Try --precision fp32 or --activations static, or report the model; add -v for "
                                 "the traceback.") from exc


def kept_fp32(captured: Captured, recipe: QuantConfig, keep_fp32: Sequence[str] = ()) -> tuple[str, ...]:
    """The eager module paths left fp32: the recipe's keep_fp32 patterns and `keep_fp32`, resolved on the graph.

    >>> kept_fp32(captured, QuantConfig(keep_fp32=("type:Linear",)))
    ('classifier',)
    """
    from deploytool.quantize.recipes import module_names, resolve_layers

    return resolve_layers([*recipe.keep_fp32, *keep_fp32], module_names(captured.program.graph_module))


def quantizer_for(captured: Captured, recipe: QuantConfig, keep_fp32: Sequence[str] = (), *,
                  dynamic: Sequence[str] = (), all_dynamic: bool = False):
    """deploytool's quantizer (recipes.build_quantizer) for the captured graph: fp32 where kept_fp32 says, dynamic
    int8 for the modules in `dynamic` (or everywhere with `all_dynamic`), static int8 elsewhere.

    >>> prepare_pt2e(captured.program.module(), quantizer_for(captured, QuantConfig(), ("classifier",)))
    """
    from deploytool.quantize.recipes import build_quantizer

    return build_quantizer(recipe, keep_fp32=kept_fp32(captured, recipe, keep_fp32), dynamic=all_dynamic,
                           dynamic_layers=dynamic)


def reexport(captured: Captured, converted, *, example_inputs: tuple) -> Captured:
    """A converted (q/dq) graph module as a static batch-1 program."""
    try:
        program = export(converted, example_inputs, strict=False, dynamic_batch=False, varying=captured.varying)
    except Exception as exc:  # re-export of a converted graph should not fail; report it if it does
        raise QuantizeError(f"Re-exporting the quantized model failed: {type(exc).__name__}: {exc}") from exc
    return Captured(program, captured.method, dynamic_batch=False, varying=captured.varying)


def calibrate(captured: Captured, *, recipe: QuantConfig, calibration: Dataset, example_inputs: tuple,
              batch_size: int = 32, keep_fp32: Sequence[str] = ()) -> Calibrated:
    """The observed graph after running every calibration sample; ranges are also kept at the halfway point.

    >>> calibrated = calibrate(captured, recipe=QuantConfig(), calibration=split.calibration, example_inputs=(x,))
    """
    prepared = prepare(captured, recipe=recipe, keep_fp32=keep_fp32)
    kept = kept_fp32(captured, recipe, keep_fp32)
    batch = batch_size if captured.dynamic_batch else 1
    seen, half_ranges = feed(prepared, calibration, example_inputs=example_inputs, batch=batch)
    log.info("calibrated on %d samples in batches of %d%s", seen, batch,
             f"; kept in fp32: {', '.join(kept)}" if kept else "")
    return Calibrated(prepared, seen, kept, half_ranges)


def feed(observed, calibration: Dataset, *, example_inputs: tuple, batch: int,
         label: str = "calibrating") -> tuple[int, Ranges]:
    """Run every calibration sample through an observed graph, in batches, with a progress line.

    Returns how many samples were seen and the activation ranges at the halfway point.

    >>> seen, half_ranges = feed(prepare_pt2e(module, quantizer), split.calibration, example_inputs=(x,), batch=32)
    """
    import torch

    progress = Progress(label, len(calibration))
    seen, half_ranges = 0, {}
    with torch.inference_mode():
        for refs, inputs in torch_batches(calibration, example_inputs=example_inputs, batch=batch):
            observed(*inputs)
            seen += len(refs)
            if not half_ranges and seen >= len(calibration) / 2:
                half_ranges = observer_ranges(observed)
            progress.advance(len(refs))
    progress.close()
    flush_observers(observed)  # min_val, max_val and the histograms final for every reader
    return seen, half_ranges


def torch_batches(calibration: Dataset, *, example_inputs: tuple, batch: int) -> Iterator[tuple[list, tuple]]:
    """The calibration samples in batches of `batch`, as (refs, tensors in the example inputs' dtypes).

    Raises QuantizeError when there is no sample at all: nothing to take ranges from.

    >>> next(torch_batches(split.calibration, example_inputs=(x,), batch=32))[1][0].shape
    torch.Size([32, 1, 8, 8])
    """
    import torch

    dtypes = [t.dtype for t in example_inputs]
    empty = True
    for refs, arrays in calibration.batches(batch):
        empty = False
        yield refs, tuple(torch.from_numpy(a).to(d) for a, d in zip(arrays, dtypes))
    if empty:
        raise QuantizeError("No calibration sample could be read, so there are no ranges to quantize with.")


def flush_observers(prepared) -> None:
    """Fold what buffering observers (recipes.SampledHistogramObserver) hold into their ranges."""
    for module in prepared.children():
        if hasattr(module, "flush"):
            module.flush()


def observer_ranges(prepared) -> Ranges:
    """(min, max) of every per-tensor activation observer in a prepared graph."""
    flush_observers(prepared)
    ranges = {}
    for name, module in prepared.named_children():
        low, high = getattr(module, "min_val", None), getattr(module, "max_val", None)
        if low is not None and high is not None and low.numel() == 1 and float(low) <= float(high):
            ranges[name] = (float(low), float(high))
    return ranges

"""Quantization's engine: calibrate once, then build any per-layer variant from what that one pass recorded.

A variant is a Plan: which eager modules stay fp32, which get dynamic int8 (weights int8, activation ranges
measured per inference), the rest static int8. Observers only watch fp32 values while calibrating, so the
statistics an all-static calibration records for a tensor are what a variant's own calibration would record for
it. Each variant is prepared fresh with its own quantizer and given those recorded observers; its weight
observers look at the weights directly. Nothing is calibrated twice. A test checks that a variant equals one
calibrated for itself, bit for bit, wherever it observes the same groups of tensors (see `transplant`).
"""
from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

from deploytool.config import QuantConfig
from deploytool.errors import QuantizeError
from deploytool.parity import SQNR_EXACT_DB, OutputMetrics, accuracy, output_metrics

FP32_EXTRA_BYTES = 3  # a weight kept fp32 takes 4 bytes instead of 1
# Evaluates each named keep-fp32 set of a session, here or elsewhere; the layer above hands one in
# (deploytool.scale.jobs.evaluate_candidates spreads them as jobs), so quantizing knows nothing of jobs.
EvaluateMany = Callable[["Session", dict[str, tuple[str, ...]]], list["Evaluation"]]
# A program's .pte latency (ms) and size (bytes), measured by the layer above (it knows the formats).
class PteCost(NamedTuple):
    """A variant's .pte, measured: median batch-1 latency, file size, and the share of its weight bytes stored in
    8 bits (deploytool.report.inspect), so a "dynamic int8" that keeps the big weights fp32 is seen as such."""

    latency_ms: float
    size_bytes: int
    int8_weight_share: float


Cost = Callable[[Any], PteCost]


@dataclass(frozen=True)
class Plan:
    """A per-layer quantization choice; layers named nowhere are static int8 (or dynamic with all_dynamic).

    >>> Plan(fp32=("classifier",), dynamic=("features.3",)).name
    'static int8, dynamic: features.3, fp32: classifier'
    """

    fp32: tuple[str, ...] = ()  # eager module paths, beyond the recipe's own keep_fp32
    dynamic: tuple[str, ...] = ()
    all_dynamic: bool = False
    bias_corrected: bool = False  # static int8 through NNCF: its ranges and full bias correction (quantize/bias.py)

    def __post_init__(self) -> None:  # one plan, one cache key, whatever order the names came in
        object.__setattr__(self, "fp32", tuple(sorted(self.fp32)))
        object.__setattr__(self, "dynamic", tuple(sorted(self.dynamic)))

    @classmethod
    def of(cls, plan: Plan | Sequence[str]) -> Plan:
        """A Plan as given, or the plan that keeps the named layers fp32 (the fallback's and jobs' form)."""
        return plan if isinstance(plan, Plan) else cls(fp32=tuple(plan))

    @property
    def name(self) -> str:
        parts = ["dynamic int8" if self.all_dynamic else "static int8"]
        if self.bias_corrected:
            parts.append("bias-corrected (NNCF)")
        if self.dynamic:
            parts.append(f"dynamic: {_few(self.dynamic)}")
        if self.fp32:
            parts.append(f"fp32: {_few(self.fp32)}")
        return ", ".join(parts)

    @property
    def activations(self) -> str:
        """static, dynamic or mixed: what report.json says about the activations."""
        if self.all_dynamic:
            return "dynamic"
        return "mixed" if self.dynamic else "static"

    def needs_calibration(self) -> bool:
        return not self.all_dynamic


def _few(names: tuple[str, ...], shown: int = 3) -> str:
    """Names for one log line; the whole list is in the plan's record.

    >>> _few(("a", "b", "c", "d", "e"))
    'a, b, c and 2 more'
    """
    return ", ".join(names) if len(names) <= shown else f"{', '.join(names[:shown])} and {len(names) - shown} more"


@dataclass
class Evaluation:
    """A variant measured on the held-out samples against eager."""

    kept_fp32: tuple[str, ...]
    metrics: tuple[OutputMetrics, ...]
    accuracy: float | None
    errors: list[np.ndarray] = field(repr=False, default_factory=list)  # per output: candidate - eager

    @property
    def sqnr_db(self) -> float:
        """The worst output's SQNR; an output with NaN or Inf where eager is finite counts as the worst there is."""
        return min(-SQNR_EXACT_DB if m.nonfinite else m.sqnr_db for m in self.metrics)

    @property
    def top1_agreement(self) -> float | None:
        return self.metrics[0].top1_agreement

    def to_dict(self) -> dict[str, Any]:
        """What a `candidate` job sends back: everything but `errors`, which only the HTML diagnosis plots.

        >>> Evaluation.from_dict(evaluation.to_dict()).sqnr_db == evaluation.sqnr_db
        True
        """
        return {"kept_fp32": list(self.kept_fp32), "metrics": [asdict(m) for m in self.metrics],
                "accuracy": self.accuracy}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        return cls(tuple(data["kept_fp32"]), tuple(OutputMetrics(**m) for m in data["metrics"]), data["accuracy"])


class Session:
    """One captured model, calibrated once, quantized many ways, each way compared with eager fp32.

    >>> session = Session(prepared, prepared.captured(), recipe)
    >>> session.evaluate(Plan(fp32=("classifier",))).sqnr_db, session.evaluate(Plan(all_dynamic=True)).sqnr_db
    (31.2, 44.0)
    """

    def __init__(self, prepared: Any, captured: Any, recipe: QuantConfig):
        self.prepared, self.captured, self.recipe = prepared, captured, recipe
        self.batch = prepared.config.data.batch_size if captured.dynamic_batch else 1
        self._calibrated = None
        self._evaluations: dict[Plan, Evaluation] = {}
        self._last: dict[str, tuple[Plan, Any]] = {}  # kind -> (plan, value): see _latest

    # Measured only when a variant is evaluated here: the search judges its variants through the caller.
    @functools.cached_property
    def held_out(self) -> list:
        return [arrays for _, arrays in self.prepared.split.held_out.batches(self.batch)]

    @functools.cached_property
    def labels(self) -> list:
        return [ref.label for ref, _ in self.prepared.held_out()]

    @functools.cached_property
    def eager(self) -> list[list[np.ndarray]]:
        return self._run(self.prepared.loaded.module)

    @functools.cached_property
    def eager_accuracy(self) -> float | None:
        return accuracy(self.eager, self.labels)

    def _latest(self, kind: str, plan: Plan, make) -> Any:
        """The last value of one kind (converted, quantized), remade when the plan changes: the fallback and the
        diagnosis ask for one plan several times in a row, and each value is large."""
        if self._last.get(kind, (None,))[0] != plan:
            self._last[kind] = (plan, make(plan))
        return self._last[kind][1]

    def calibrate(self):
        """The run's one calibration: every layer the recipe quantizes observed as static int8
        (deploytool.quantize.pt2e.Calibrated). Variants read their statistics from it."""
        if self._calibrated is None:
            from deploytool.quantize.pt2e import calibrate

            self._calibrated = calibrate(self.captured, recipe=self.recipe, calibration=self.prepared.split.calibration,
                                         example_inputs=self.prepared.example_inputs, batch_size=self.batch)
        return self._calibrated

    def observed(self, plan: Plan | Sequence[str] = ()):
        """The plan's prepared (observed) graph, its observers holding what the one calibration recorded."""
        from deploytool.quantize.pt2e import prepare

        plan = Plan.of(plan)
        observed = prepare(self.captured, recipe=self.recipe, keep_fp32=plan.fp32, dynamic=plan.dynamic,
                           all_dynamic=plan.all_dynamic)
        transplant(self.calibrate().prepared if plan.needs_calibration() else None, observed)
        return observed

    def converted(self, plan: Plan | Sequence[str] = ()):
        """The plan's q/dq graph module: what evaluate runs and quantized re-exports."""
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

        # Converted in place: a deep copy loses the links torchao's metadata pass needs to find each dynamic
        # input's choose_qparams node ("No chose qparams node found for conv2d").
        return self._latest("converted", Plan.of(plan), lambda key: convert_pt2e(self.observed(key)))

    def evaluate(self, plan: Plan | Sequence[str] = ()) -> Evaluation:
        """The plan quantized and compared with eager on the held-out samples; cached per plan."""
        plan = Plan.of(plan)
        if plan not in self._evaluations:
            outputs = self._run(self.converted(plan))
            names = self.prepared.output_names
            metrics = tuple(output_metrics(n, [o[i] for o in self.eager], [o[i] for o in outputs])
                            for i, n in enumerate(names))
            errors = [np.concatenate([(c[i] - e[i]).ravel() for c, e in zip(outputs, self.eager)])
                      for i in range(len(names))]
            self._evaluations[plan] = Evaluation(plan.fp32, metrics, accuracy(outputs, self.labels), errors)
        return self._evaluations[plan]

    def quantized(self, plan: Plan | Sequence[str] = ()):
        """The plan as a static batch-1 Captured program, as export lowers it."""
        from deploytool.quantize.pt2e import reexport

        plan = Plan.of(plan)
        if plan.bias_corrected:  # NNCF collects its own statistics: the one variant with a data pass of its own
            from deploytool.quantize.bias import quantize_bias_corrected

            return self._latest("quantized", plan, lambda key: quantize_bias_corrected(
                self.captured, recipe=self.recipe, calibration=self.prepared.split.calibration,
                example_inputs=self.prepared.example_inputs, batch_size=self.batch, keep_fp32=key.fp32, fast=False))
        return self._latest("quantized", plan, lambda key: reexport(
            self.captured, self.converted(key), example_inputs=self.prepared.example_inputs))

    def inputs(self, arrays) -> tuple:
        import torch

        return tuple(torch.from_numpy(np.ascontiguousarray(a, dtype=s.dtype))
                     for a, s in zip(arrays, self.prepared.inputs))

    def _run(self, module) -> list[list[np.ndarray]]:
        """Per-sample outputs (batch axis kept at 1), as parity compares them."""
        import torch

        from deploytool.runtime import as_arrays

        samples: list[list[np.ndarray]] = []
        with torch.inference_mode():
            for arrays in self.held_out:
                outputs = as_arrays(module(*self.inputs(arrays)))
                samples.extend([o[i:i + 1] for o in outputs] for i in range(len(arrays[0])))
        return samples

    def weight_bytes(self, name: str) -> int:
        """Extra bytes when module `name`'s weights stay fp32 instead of int8."""
        module = self.prepared.loaded.module.get_submodule(name)
        return FP32_EXTRA_BYTES * sum(p.numel() for n, p in module.named_parameters() if n.endswith("weight"))


def transplant(calibrated, observed) -> None:
    """Give each activation observer of a freshly prepared graph a copy of the calibrated graph's observer of the
    same tensor, and let each weight observer see its weight. Dynamic activation observers hold nothing.

    One observer can serve several tensors (a max-pool's output shares its input's). Where a variant changes such
    a group (its conv in fp32 leaves the max-pool's output alone), the group keeps the statistics the calibration
    recorded for the whole group: a range that covers the variant's own.

    Raises QuantizeError when a tensor the variant observes was never observed by the calibration: the variant
    would otherwise be converted with made-up ranges.
    """
    recorded = observers_by_tensor(calibrated) if calibrated is not None else {}
    copies: dict[int, Any] = {}  # one copy per recorded observer, shared again as the variant shares it
    for tensor, (name, observer) in observers_by_tensor(observed).items():
        weight = _attribute(observed, tensor)
        if weight is not None:
            observer(weight)
            continue
        if getattr(observer, "is_dynamic", False):
            continue
        source = recorded.get(tensor)
        if source is None or not _same_kind(source[1], observer):
            raise QuantizeError(f"The calibration recorded no statistics for tensor '{tensor}' that this "
                                f"variant quantizes statically ({type(observer).__name__}).",
                                hint="Report the model; --no-search quantizes with the plain recipe.")
        key = id(source[1])
        if key not in copies:
            copies[key] = copy.deepcopy(source[1])
        setattr(observed, name, copies[key])


def observers_by_tensor(prepared) -> dict[str, tuple[str, Any]]:
    """Observed node name -> (observer module name, observer) in a prepared graph."""
    found = {}
    for node in prepared.graph.nodes:
        if node.op == "call_module" and node.target.startswith("activation_post_process"):
            found[node.args[0].name] = (node.target, getattr(prepared, node.target))
    return found


def _attribute(graph_module, node_name: str):
    """The tensor a get_attr node named `node_name` reads (a weight), else None."""
    node = next((n for n in graph_module.graph.nodes if n.name == node_name), None)
    if node is None or node.op != "get_attr":
        return None
    value = graph_module
    for part in node.target.split("."):
        value = getattr(value, part)
    return value


def _same_kind(recorded, wanted) -> bool:
    """Same observer class and the same quantized range: copying one for the other changes nothing else."""
    keys = ("dtype", "qscheme", "quant_min", "quant_max")
    return type(recorded) is type(wanted) and all(getattr(recorded, k, None) == getattr(wanted, k, None) for k in keys)

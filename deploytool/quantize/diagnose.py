"""Per-layer diagnosis of an int8 model: where the error appears, and which layers matter for the output.

Per-layer SQNR comes from torchao's PT2E numeric debugger (each node of the quantized graph against the
same node of the fp32 graph, matched through node-source metadata, named by the eager module path).
Sensitivity quantizes one layer at a time (the other weighted layers in fp32) and measures the final output.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from deploytool.config import QuantConfig
from deploytool.parity import SQNR_EXACT_DB
from deploytool.quantize.recipes import module_path
from deploytool.quantize.session import Evaluation, EvaluateMany, Session

log = logging.getLogger("deploytool")

NOISE_SHARE = 0.5  # the mixed plan targets the layers behind half of static int8's noise
# Held-out samples the mixed plan's noise ranking looks at: its noisiest layers on MobileNetV2 barely move past
# a dozen photos (16 photos: 3.8 s).
NOISE_SAMPLES = 16
JUMP_DB = 10.0  # one layer tripling the error amplitude of its input stands out from int8 rounding noise
CLEAN_INT8_DB = 40.0  # about what int8 rounding of a well-ranged activation gives
WEIGHTED_OPS = ("conv", "linear")  # the ops XNNPACK quantizes with int8 weights: the fallback candidates


@dataclass(frozen=True)
class LayerError:
    name: str  # eager module path, "(model)" for ops in the top-level forward
    type: str  # module class name
    sqnr_db: float  # this layer's output, int8 model vs fp32, over all held-out samples


@dataclass(frozen=True)
class Sensitivity:
    name: str
    alone_sqnr_db: float  # output SQNR with only this layer in int8 (all other candidates fp32)
    extra_bytes: int  # size cost of its weights in fp32


@dataclass(frozen=True)
class Uncompared:
    name: str  # eager module path, or ALL_LAYERS when the debugger could not run at all
    reason: str  # the node and the error, one line


ALL_LAYERS = "(all layers)"


def layer_errors(session: Session, keep_fp32: Sequence[str] = (), *,
                 samples: int | None = None) -> tuple[list[LayerError], list[Uncompared]]:
    """SQNR of every layer's output along the network, from torchao's numeric debugger, and the layers it
    could not compare (with why): a node whose output the debugger cannot pair costs that layer only.
    `samples`: only the first few held-out samples, else all of them.

    The debugger keeps every node's output of each sample it sees (trained MobileNetV2: ~120 MB a sample), so
    the samples go through LOGGED_SAMPLES at a time, each node's signal and noise power summed and its log
    dropped: memory stays flat, and the SQNR is that of all the samples together.

    >>> errors, uncompared = layer_errors(session)
    >>> [e.name for e in errors][:2], uncompared
    (['features.0', 'features.2'], [])
    """
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    from torchao.quantization.pt2e._numeric_debugger import prepare_for_propagation_comparison

    # The reference goes through prepare_pt2e with nothing annotated, so BatchNorm is folded into its conv just
    # as in the int8 graph; otherwise a conv's pre-BN output would be compared with a post-BN one.
    unquantized = prepare_pt2e(session.captured.program.module(), XNNPACKQuantizer())
    reference = prepare_for_propagation_comparison(unquantized)
    actual = prepare_for_propagation_comparison(session.converted(keep_fp32))  # it copies
    order = {node.name: i for i, node in enumerate(reference.graph.nodes)}
    powers: dict[Any, list[float]] = {}  # debug info -> [signal power, noise power] over the samples so far
    where: dict[Any, tuple[str, int]] = {}  # debug info -> (layer name, position of its node along the network)
    uncompared: dict[str, str] = {}
    with torch.inference_mode():
        for arrays in _chunks(session.held_out, samples):
            reference(*session.inputs(arrays))
            actual(*session.inputs(arrays))
            _add_powers(reference, actual, order, powers, where, uncompared)
    last: dict[str, tuple[int, Any]] = {}  # a layer's output is its last node's output
    for info, (name, position) in where.items():
        if name not in last or position > last[name][0]:
            last[name] = (position, info)
    types = _module_types(reference)
    errors = []
    for name, (_, info) in sorted(last.items(), key=lambda item: item[1][0]):
        signal, noise = powers[info]
        sqnr = 10 * math.log10(signal / noise) if noise > 0 and signal > 0 else math.inf
        errors.append(LayerError(name, types.get(name, ""), min(sqnr, SQNR_EXACT_DB)))
    return errors, [Uncompared(name, reason) for name, reason in uncompared.items() if name not in last]


def _add_powers(reference, actual, order: dict[str, int], powers: dict, where: dict, uncompared: dict) -> None:
    """Pair what both graphs logged for one chunk of samples, add each node's signal and noise power, and drop
    the logs."""
    import torch
    from torchao.quantization.pt2e._numeric_debugger import (
        OutputLogger,
        compare_results,
        extract_results_from_loggers,
    )

    ref_results, actual_results = extract_results_from_loggers(reference), extract_results_from_loggers(actual)
    for info, (node_name, stack, stats) in ref_results.items():
        # Only float tensors carry int8 error; a dynamic-batch graph also logs its symbolic sizes (plain ints),
        # which torchao's comparison rejects with a ValueError.
        if not all(isinstance(s, torch.Tensor) and s.is_floating_point() for s in stats):
            continue
        name = _layer_name(stack)
        try:
            summary = compare_results({info: ref_results[info]}, actual_results)[info]
        except KeyError:  # the node did not survive quantization (folded away): nothing to pair it with
            continue
        except Exception as exc:  # torchao's debugger is a private API: one node it cannot pair costs one layer
            log.debug("numeric debugger: cannot compare %s (%s)", node_name, name, exc_info=True)
            uncompared.setdefault(name, f"node {node_name}: {_one_line(exc)}")
            continue
        where[info] = (name, order.get(summary.ref_node_name, -1))
        total = powers.setdefault(info, [0.0, 0.0])
        for result in summary.results:
            ref = result.ref.double()
            total[0] += float(ref.square().sum())
            total[1] += float((result.actual.double() - ref).square().sum())
    for graph in (reference, actual):
        for module in graph.children():
            if isinstance(module, OutputLogger):
                module.stats = []


LOGGED_SAMPLES = 2  # held-out samples whose every node output the debugger holds at once


def _chunks(batches: list, samples: int | None) -> list:
    """The held-out batches cut into pieces of at most LOGGED_SAMPLES, the first `samples` of them (None: all)."""
    pieces, left = [], math.inf if samples is None else samples
    for arrays in batches:
        for start in range(0, len(arrays[0]), LOGGED_SAMPLES):
            if left <= 0:
                return pieces
            size = int(min(LOGGED_SAMPLES, left))
            pieces.append(tuple(a[start:start + size] for a in arrays))
            left -= len(pieces[-1][0])
    return pieces


def _layer_name(module_stack: Any) -> str:
    """The eager module path of a logged node, as the debugger's summaries name it."""
    from torchao.quantization.pt2e._numeric_debugger import _module_stack_to_str

    return _module_stack_to_str(module_stack).removeprefix("L['self'].") or "(model)"


def _one_line(exc: BaseException) -> str:
    """`Type: message`, with the message of the exception it wraps (torchao re-raises as ValueError)."""
    cause = f" ({_one_line(exc.__cause__)})" if exc.__cause__ else ""
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first[:200]}{cause}"


def first_jump(errors: Sequence[LayerError]) -> LayerError | None:
    """The first layer whose SQNR falls more than JUMP_DB below the layer before it; None when none does.

    The first layer is measured against CLEAN_INT8_DB, what int8 rounding of a well-ranged tensor gives, and
    so are layers after fp32 ones, whose near-exact SQNR says nothing about int8 noise.
    """
    previous = CLEAN_INT8_DB
    for error in errors:
        if previous - error.sqnr_db > JUMP_DB:
            return error
        previous = min(error.sqnr_db, CLEAN_INT8_DB)
    return None


def candidates(session: Session) -> list[str]:
    """Layers that carry int8 weights (conv, linear), in network order: what keeping fp32 can change."""
    found: dict[str, None] = {}
    for node in session.captured.program.graph.nodes:
        if node.op == "call_function" and node.meta.get("nn_module_stack") and any(
                op in str(node.target) for op in WEIGHTED_OPS):
            found[module_path(node)] = None
    return [name for name in found if name not in session.recipe.keep_fp32]


def dynamic_capable(session: Session) -> set[str]:
    """The weighted layers ExecuTorch's dynamic int8 config quantizes: it leaves depthwise convs, and convs or
    linears followed by a ReLU, in fp32 (XNNPACK still runs them), so only the others can be made dynamic. Read
    from the quantizer's own annotation: the layers whose weight it observes.
    """
    from deploytool.quantize.pt2e import prepare

    observed = prepare(session.captured, recipe=session.recipe, all_dynamic=True)
    return {module_path(node) for node in observed.graph.nodes
            if node.op == "call_function" and any(op in str(node.target) for op in WEIGHTED_OPS)
            and len(node.args) > 1 and _is_observer(node.args[1])}


def _is_observer(node) -> bool:
    return getattr(node, "op", None) == "call_module" and str(node.target).startswith("activation_post_process")


def noisiest_layers(session: Session, *, share: float = NOISE_SHARE) -> tuple[str, ...]:
    """The fewest layers dynamic int8 can take (dynamic_capable) that add `share` of the noise static int8 adds
    at them, from one pass of torchao's numeric debugger: a layer adds its output's relative noise power
    (10^(-SQNR/10)) less that of the layer before it along the network. What the mixed plan of the search makes
    dynamic; () when the debugger cannot follow the model.

    >>> noisiest_layers(session)
    ('features.1.conv.0.0', 'features.2.conv.1.0')
    """
    try:
        errors, _ = layer_errors(session, samples=NOISE_SAMPLES)
    except Exception:  # a private torchao API on a model from anywhere: the search then skips the mixed plan
        log.debug("numeric debugger failed; no mixed plan", exc_info=True)
        return ()
    weighted, previous, added = set(candidates(session)) & dynamic_capable(session), 0.0, []
    for error in errors:
        noise = 10 ** (-error.sqnr_db / 10)
        if error.name in weighted and noise > previous:
            added.append((noise - previous, error.name))
        previous = noise
    total, chosen = sum(a for a, _ in added), []
    for amount, name in sorted(added, reverse=True):
        if sum(a for a, _ in chosen) >= share * total:
            break
        chosen.append((amount, name))
    names = tuple(sorted(name for _, name in chosen))
    return names if 0 < len(names) < len(weighted) else ()


def sensitivity(session: Session, names: Sequence[str], *, base: Sequence[str] = (),
                evaluate_many: EvaluateMany | None = None) -> list[Sensitivity]:
    """Output SQNR with only one of `names` in int8 (the others fp32), for each; most harmful first.

    Quantizing one layer alone charges it with its own weights and input activation, so a pair that only
    hurts together (an outlier channel made by one layer and read by the next) shows up on both.
    `evaluate_many` evaluates the candidates elsewhere (as jobs: deploytool.scale.jobs.evaluate_candidates); the
    ranking is the same.

    >>> [s.name for s in sensitivity(session, candidates(session),
    ...                              evaluate_many=partial(evaluate_candidates, executor_for("local", jobs=2)))]
    ['features.0', 'features.3', 'classifier', 'features.7']
    """
    keep_sets = {name: (*base, *(other for other in names if other != name)) for name in names}
    if evaluate_many is None:
        evaluations = (session.evaluate(keep) for keep in keep_sets.values())  # lazy: one log line per layer
    else:
        evaluations = evaluate_many(session, keep_sets)
    found = []
    for name, evaluation in zip(names, evaluations):
        found.append(Sensitivity(name, round(evaluation.sqnr_db, 3), session.weight_bytes(name)))
        log.info("sensitivity: output SQNR with only %s in int8: %.1f dB", name, evaluation.sqnr_db)
    return sorted(found, key=lambda s: s.alone_sqnr_db)


def _module_types(graph_module) -> dict[str, str]:
    from deploytool.quantize.recipes import module_names

    return {path: type_name.rsplit(".", 1)[-1] for path, type_name in module_names(graph_module).items()}


@dataclass
class Diagnosis:
    """Everything `deploytool diagnose` reports; `to_dict` is report.json, `errors` feed the HTML histograms."""

    model: str
    recipe: dict[str, Any]
    kept_fp32: tuple[str, ...]
    evaluation: Evaluation
    eager_accuracy: float | None
    layers: list[LayerError]
    jump: LayerError | None
    ranking: list[Sensitivity]
    clipped: dict[str, float]
    warnings: list[str]
    fallback: dict[str, Any] | None = None
    uncompared: list[Uncompared] = field(default_factory=list)  # layers the numeric debugger could not pair
    search: dict[str, Any] | None = None  # the recipe search's record, when quantize ran one (quantize/search.py)

    @property
    def guilty(self) -> list[str]:
        """The layers that hurt the output most on their own: below the all-int8 output SQNR + JUMP_DB."""
        limit = self.evaluation.sqnr_db + JUMP_DB
        return [s.name for s in self.ranking if s.alone_sqnr_db < limit]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "deploytool.diagnosis/1", "model": self.model, "recipe": self.recipe,
            "kept_fp32": list(self.kept_fp32),
            "outputs": [asdict(m) for m in self.evaluation.metrics],
            "accuracy": {"eager_fp32": self.eager_accuracy, "int8": self.evaluation.accuracy},
            "first_jump": self.jump.name if self.jump else None,
            "most_sensitive": self.guilty,
            "layers": [{**asdict(e), "clipped_share": self.clipped.get(e.name)} for e in self.layers],
            "sensitivity": [asdict(s) for s in self.ranking],
            "uncompared": [asdict(u) for u in self.uncompared],
            "warnings": self.warnings, "fallback": self.fallback, "search": self.search,
        }

    def lines(self) -> list[str]:
        """The console summary: per-layer SQNR along the network, the jump, the most sensitive layers."""
        out = ["per-layer SQNR, int8 vs eager fp32 on the held-out samples, along the network:"]
        for error in self.layers:
            mark = "  <- error jumps here" if self.jump and error.name == self.jump.name else ""
            out.append(f"  {error.name:<32} {error.type:<20} {error.sqnr_db:6.1f} dB{mark}")
        out.extend(f"  {u.name:<32} {'not compared':<20} {u.reason}" for u in self.uncompared)
        out.append(f"output SQNR {self.evaluation.sqnr_db:.1f} dB"
                   + (f", top-1 agreement {self.evaluation.top1_agreement:.3f}"
                      if self.evaluation.top1_agreement is not None else ""))
        if self.ranking:
            out.append("sensitivity (output SQNR with only this layer in int8; lowest hurts most):")
            out.extend(f"  {s.name:<32} {s.alone_sqnr_db:6.1f} dB   fp32 costs +{s.extra_bytes / 1024:.1f} KiB"
                       for s in self.ranking)
        if self.guilty:
            out.append(f"most sensitive: {', '.join(self.guilty)} (try --keep-fp32 or --min-sqnr)")
        out.extend(f"warning: {w}" for w in self.warnings)
        return out


def diagnose(session: Session, *, keep_fp32: Sequence[str] = (), fallback: dict[str, Any] | None = None,
             search: dict[str, Any] | None = None, evaluate_many: EvaluateMany | None = None) -> Diagnosis:
    """Per-layer errors, first jump, sensitivity (its candidates through `evaluate_many` when given) and
    calibration-sufficiency warnings for one recipe.

    >>> diagnosis = diagnose(Session(prepared, captured, QuantConfig(per_channel=False)))
    >>> diagnosis.guilty
    ['features.3', 'features.0']
    """
    from deploytool.config import to_plain as _to_plain
    from deploytool.quantize import sufficiency

    kept = tuple(keep_fp32)
    evaluation = session.evaluate(kept)
    layers, uncompared = _layer_errors_or_why(session, kept)
    calibrated = session.calibrate()  # the run's one calibration: every variant's ranges come from it
    names = [name for name in candidates(session) if name not in kept]
    ranking = sensitivity(session, names, base=kept, evaluate_many=evaluate_many) if len(names) > 1 else []
    layer_of = sufficiency.observer_layers(calibrated.prepared)
    clipped = sufficiency.clipped_shares(calibrated, layer_of, (session.inputs(a) for a in session.held_out))
    warnings = [*sufficiency.input_warnings(s for _, s in session.prepared.split.calibration.samples()),
                *sufficiency.range_warnings(calibrated, layer_of), *sufficiency.clipping_warnings(clipped)]
    kept_all = tuple(sorted({*calibrated.kept_fp32, *kept}))
    recipe = {**_to_plain(session.recipe), "kept_fp32": list(kept_all)}
    return Diagnosis(session.prepared.config.model or "", recipe, kept_all, evaluation,
                     session.eager_accuracy, layers, first_jump(layers), ranking, clipped, warnings, fallback,
                     uncompared, search)


def _layer_errors_or_why(session: Session, kept: tuple[str, ...]) -> tuple[list[LayerError], list[Uncompared]]:
    """layer_errors, or none and the reason when torchao's debugger cannot follow the model at all: the output
    metrics, sensitivity and calibration checks do not depend on it, so the rest of the diagnosis still stands."""
    try:
        return layer_errors(session, kept)
    except Exception as exc:  # a private torchao API on a model from anywhere; the reason goes in the report
        log.debug("numeric debugger failed", exc_info=True)
        return [], [Uncompared(ALL_LAYERS, f"torchao's numeric debugger failed: {_one_line(exc)}")]

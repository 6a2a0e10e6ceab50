"""Automatic fp32 fallback: keep the most sensitive layers in fp32 until a quality budget holds.

Layers are ranked once by sensitivity (output SQNR with only that layer in int8), then kept in fp32 in
that order; each step is built from the run's one calibration (quantize/session.py), measured on the
held-out samples against eager fp32, and its cost is recorded: extra weight bytes, and latency of the
lowered .pte in the ExecuTorch runtime.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from deploytool.config import QuantConfig
from deploytool.quantize.diagnose import Sensitivity, candidates, sensitivity
from deploytool.quantize.session import Cost, Evaluation, EvaluateMany, Session

log = logging.getLogger("deploytool")



@dataclass(frozen=True)
class FallbackStep:
    layer: str | None  # the layer this step moved to fp32; None for the all-int8 start
    sqnr_db: float
    top1_agreement: float | None
    accuracy: float | None
    extra_bytes: int  # this layer's weights in fp32 instead of int8
    latency_ms: float | None  # the whole lowered .pte after this step
    met: bool


@dataclass
class FallbackResult:
    budget: dict[str, float]
    kept_fp32: tuple[str, ...]
    met: bool
    steps: list[FallbackStep]
    eager_accuracy: float | None
    ranking: list[Sensitivity] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"budget": self.budget, "met": self.met, "kept_fp32": list(self.kept_fp32),
                "eager_accuracy": self.eager_accuracy, "steps": [asdict(s) for s in self.steps],
                "ranking": [asdict(s) for s in self.ranking]}


def fallback_lines(record: dict[str, Any]) -> list[str]:
    """What people read from a fallback record: budget, each step with its cost, the verdict."""
    budget = ", ".join(f"{k} {v}" for k, v in record["budget"].items())
    out = [f"fp32 fallback for budget {budget}:"]
    for step in record["steps"]:
        what = f"+ {step['layer']} in fp32" if step["layer"] else "all int8"
        cost = f", +{step['extra_bytes'] / 1024:.1f} KiB" if step["layer"] else ""
        latency = f", {step['latency_ms']:.3f} ms" if step["latency_ms"] is not None else ""
        top1 = f", top-1 agr {step['top1_agreement']:.3f}" if step["top1_agreement"] is not None else ""
        out.append(f"  {what}: SQNR {step['sqnr_db']:.1f} dB{top1}{cost}{latency}"
                   f"{'  (budget met)' if step['met'] else ''}")
    out.append(f"  {'met' if record['met'] else 'NOT met'}; kept in fp32: {', '.join(record['kept_fp32']) or 'none'}")
    return out


def budget_of(recipe: QuantConfig) -> dict[str, float]:
    names = {"min_sqnr_db": recipe.min_sqnr_db, "min_top1_agreement": recipe.min_top1_agreement,
             "max_accuracy_drop": recipe.max_accuracy_drop}
    return {k: v for k, v in names.items() if v is not None}


def meets(evaluation: Evaluation, recipe: QuantConfig, eager_accuracy: float | None) -> bool:
    """True when every budget the recipe sets holds (an accuracy budget needs labelled held-out data)."""
    if recipe.min_sqnr_db is not None and evaluation.sqnr_db < recipe.min_sqnr_db:
        return False
    if recipe.min_top1_agreement is not None and (evaluation.top1_agreement or 0.0) < recipe.min_top1_agreement:
        return False
    if recipe.max_accuracy_drop is not None:
        if eager_accuracy is None or evaluation.accuracy is None:
            from deploytool.errors import DataError

            raise DataError("quantize.max_accuracy_drop needs labelled held-out samples (class sub-folders) and a "
                            "classifier output.", hint="Use --min-sqnr or --min-top1-agreement instead.")
        if (eager_accuracy - evaluation.accuracy) * 100 > recipe.max_accuracy_drop:
            return False
    return True


def within_budget(session: Session, *, evaluate_many: EvaluateMany | None = None,
                  cost: Cost | None = None) -> FallbackResult:
    """Greedy fallback for the session's recipe budget; the sensitivity candidates go through `evaluate_many`
    when given (e.g. as jobs), and `cost` measures each step's .pte.

    >>> result = within_budget(Session(prepared, captured, QuantConfig(min_sqnr_db=25)), cost=pte_cost)
    >>> result.met, result.kept_fp32
    (True, ('features.0',))
    """
    recipe = session.recipe
    kept: tuple[str, ...] = ()
    start = session.evaluate(kept)
    steps = [_step(session, None, start, kept, cost)]
    ranking: list[Sensitivity] = []
    if not steps[-1].met:
        ranking = sensitivity(session, candidates(session), evaluate_many=evaluate_many)
        for ranked in ranking[:recipe.max_fp32_layers]:
            kept = (*kept, ranked.name)
            steps.append(_step(session, ranked.name, session.evaluate(kept), kept, cost))
            if steps[-1].met:
                break
    return FallbackResult(budget_of(recipe), kept, steps[-1].met, steps, session.eager_accuracy, ranking)


def _step(session: Session, layer: str | None, evaluation: Evaluation, kept: tuple[str, ...],
          cost: Cost | None) -> FallbackStep:
    """One step's record; its .pte latency measured by `cost` (through the export's cache, so `export` reuses the
    .pte of the step the fallback settles on)."""
    met = meets(evaluation, session.recipe, session.eager_accuracy)
    latency = round(cost(session.quantized(kept).program).latency_ms, 4) if cost else None
    log.info("fallback: %s -> %.1f dB%s", f"+{layer}" if layer else "all int8", evaluation.sqnr_db,
             " (met)" if met else "")
    return FallbackStep(layer, round(evaluation.sqnr_db, 3), evaluation.top1_agreement, evaluation.accuracy,
                        session.weight_bytes(layer) if layer else 0, latency, met)


def quantize_within_budget(session: Session, *, evaluate_many: EvaluateMany | None = None,
                           cost: Cost | None = None) -> tuple[Any, dict[str, Any]]:
    """The static int8 program after the fallback, and the fallback's record for quantize.json.

    >>> quantized, record = quantize_within_budget(prepared.session(recipe), cost=pte_cost)
    >>> record["kept_fp32"]
    ['features.0', 'features.3']
    """
    result = within_budget(session, evaluate_many=evaluate_many, cost=cost)
    return session.quantized(result.kept_fp32), result.to_dict()

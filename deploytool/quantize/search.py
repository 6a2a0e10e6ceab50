"""The recipe search: int8 variants in order of cost, each judged on the held-out samples against eager; the
first that meets the budget is kept.

The order is the measured cost of the .pte (trained MobileNetV2, batch 1, 1 thread: static int8 3.66 ms,
dynamic int8 4.20 ms, fp32 13.4 ms; sizes 3.58 / 3.66 / 13.5 MB):
  1. static int8, the recipe as configured: the one calibration pass of the run;
  2. dynamic int8 for every layer: activation ranges measured per inference, so nothing is calibrated again;
  3. only under a budget the user set: the fp32 fallback over static int8 (quantize/fallback.py).
The kept variant's .pte latency and size are measured in the ExecuTorch runtime by the `cost` function the caller
hands in (it lowers through the export's cache, so `export` reuses that .pte).
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from deploytool.config import Activations, QuantConfig
from deploytool.errors import DeployError

log = logging.getLogger("deploytool")

Cost = Callable[[Any], tuple[float, int]]  # program -> (.pte median latency in ms, .pte size in bytes)


@dataclass(frozen=True)
class Step:
    """One variant the search tried."""

    name: str  # "static int8", "dynamic int8"
    sqnr_db: float  # worst output, vs eager on the held-out samples
    top1_agreement: float | None  # on decisive samples (deploytool.parity)
    task: dict[str, Any] | None  # the task metric, when there is one
    met: bool
    missed: tuple[str, ...] = ()  # which parts of the budget it missed
    latency_ms: float | None = None  # measured for the kept variant only: the search stops there
    size_bytes: int | None = None

    def line(self) -> str:
        """One line per step, as the search prints it.

        >>> Step("static int8", 14.7, 0.92, None, False, ("SQNR 14.7 dB < 20.0 dB",)).line()
        'static int8: SQNR 14.7 dB, top-1 agreement 0.920 -> misses SQNR 14.7 dB < 20.0 dB'
        """
        parts = [f"SQNR {self.sqnr_db:.1f} dB"]
        if self.top1_agreement is not None:
            parts.append(f"top-1 agreement {self.top1_agreement:.3f}")
        if self.task:
            parts.append(f"{self.task['metric']} {self.task['artifact']:.2%} (eager {self.task['eager_fp32']:.2%})")
        if self.latency_ms is not None:
            parts.append(f".pte {self.latency_ms:.2f} ms, {self.size_bytes / 1e6:.2f} MB")
        verdict = "meets the budget" if self.met else "misses " + "; ".join(self.missed)
        return f"{self.name}: {', '.join(parts)} -> {verdict}"


@dataclass
class SearchResult:
    program: Any  # the kept Captured
    activations: Activations  # STATIC or DYNAMIC: what export lowers
    steps: list[Step]
    budget: dict[str, float]
    fallback: dict[str, Any] | None = None  # the fp32 fallback's record, when it ran

    @property
    def met(self) -> bool:
        return any(s.met for s in self.steps) or bool(self.fallback and self.fallback["met"])

    def to_dict(self) -> dict[str, Any]:
        return {"budget": self.budget, "met": self.met, "activations": self.activations.value,
                "steps": [asdict(s) for s in self.steps]}


def budget_of(recipe: QuantConfig) -> dict[str, float]:
    """The budget the search holds each variant to: the user's, else the default SQNR target."""
    budget = {"min_sqnr_db": recipe.min_sqnr_db if recipe.min_sqnr_db is not None else recipe.target_sqnr_db}
    if recipe.min_top1_agreement is not None:
        budget["min_top1_agreement"] = recipe.min_top1_agreement
    if recipe.max_accuracy_drop is not None:
        budget["max_accuracy_drop"] = recipe.max_accuracy_drop
    return budget


def judge(name: str, comparison: Any, task: Any, budget: dict[str, float]) -> Step:
    """A Step from the variant's Comparison with eager (deploytool.parity.compare, with the int8 verdict's
    thresholds) and its TaskResult (or None): it meets the budget when that verdict passes and every budget item
    holds."""
    sqnr = min(m.sqnr_db for m in comparison.outputs)
    agreement = comparison.outputs[0].decisive_agreement
    missed = [c.describe() for c in comparison.checks if not c.passed]
    if sqnr < budget["min_sqnr_db"] and not any(c.name == "sqnr_db" and not c.passed for c in comparison.checks):
        missed.append(f"SQNR {sqnr:.1f} dB < {budget['min_sqnr_db']:.1f} dB")
    if "min_top1_agreement" in budget and (agreement or 0.0) < budget["min_top1_agreement"]:
        missed.append(f"top-1 agreement {agreement or 0.0:.3f} < {budget['min_top1_agreement']}")
    if "max_accuracy_drop" in budget and (task is None or task.drop > budget["max_accuracy_drop"]):
        missed.append("no labelled samples to measure accuracy on" if task is None else
                      f"accuracy drop {task.drop:.1f} > {budget['max_accuracy_drop']} points")
    return Step(name, round(sqnr, 3), agreement, task.to_dict() if task else None, not missed, tuple(missed))


def search(recipe: QuantConfig, *, static: Callable[[], Any], dynamic: Callable[[], Any],
           compare: Callable[[Any], Any], cost: Cost | None) -> SearchResult:
    """Try static, then dynamic int8; keep the first that meets the budget, else the better of the two by SQNR.

    `static` / `dynamic` build a variant's Captured program, `compare` judges its ExportedProgram against eager on
    the held-out samples (-> Comparison, TaskResult or None), `cost` measures the kept one's .pte.

    >>> result = search(QuantConfig(), static=build_static, dynamic=build_dynamic, compare=judge_on_held_out,
    ...                 cost=pte_cost)
    >>> result.activations, [s.met for s in result.steps]
    (<Activations.DYNAMIC: 'dynamic'>, [False, True])
    """
    budget = budget_of(recipe)
    order = {Activations.STATIC: ("static int8", static), Activations.DYNAMIC: ("dynamic int8", dynamic)}
    if recipe.activations is not Activations.AUTO:  # one variant asked for by name: judge it, no search
        order = {recipe.activations: order[recipe.activations]}
    tried: list[tuple[Activations, Step, Any]] = []
    for activations, (name, build) in order.items():
        program = build()
        step = judge(name, *compare(program.program), budget)
        log.info("search: %s", step.line())
        tried.append((activations, step, program))
        if step.met:
            break
    # The first that met the budget, else the best; one whose .pte cannot be built gives way to the next.
    ranked = sorted(range(len(tried)), key=lambda i: (not tried[i][1].met, -tried[i][1].sqnr_db))
    for position, index in enumerate(ranked):
        activations, step, program = tried[index]
        if cost is None:
            break
        try:
            latency, size = cost(program.program)
        except DeployError as exc:
            if position == len(ranked) - 1:
                raise
            log.warning("search: %s: its .pte could not be built (%s); trying the next variant", step.name,
                        exc.message)
            tried[index] = (activations, dataclasses.replace(step, met=False, missed=(
                *step.missed, f"its .pte could not be built: {exc.message}")), program)
            continue
        step = dataclasses.replace(step, latency_ms=round(latency, 4), size_bytes=size)
        tried[index] = (activations, step, program)
        log.info("search: kept %s", step.line())
        break
    if not step.met:
        log.warning("no int8 variant met the budget (%s); kept %s at %.1f dB",
                    ", ".join(f"{k} {v}" for k, v in budget.items()), step.name, step.sqnr_db)
    return SearchResult(program, activations, [s for _, s, _ in tried], budget)

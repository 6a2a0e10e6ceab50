"""The recipe search: int8 variants in order of cost, each judged on the held-out samples against eager; the
first that meets the budget is kept.

Every variant but the bias-corrected one comes from the run's one calibration (quantize/session.py). The order
is the measured cost of the .pte (trained MobileNetV2, batch 1, 1 thread: static int8 3.66 ms, dynamic int8
4.20 ms, fp32 13.4 ms; sizes 3.58 / 3.66 / 13.5 MB):
  1. static int8, the recipe as configured;
  2. static int8 through NNCF (its ranges and full bias correction), when NNCF is installed and static int8 came
     within BIAS_GAIN_DB of the budget: the one step with a data pass of its own (NNCF's statistics);
  3. mixed, when static int8 came within MIX_GAIN_DB of the budget: dynamic int8 for the layers that add most
     of static int8's noise among those dynamic int8 can take (one pass of torchao's numeric debugger), static
     elsewhere. The seams can keep weights fp32 (MobileNetV2, last five blocks dynamic:
     8.67 MB), so a mix that meets the budget is measured against dynamic int8 everywhere and the cheaper kept;
  4. dynamic int8 wherever ExecuTorch's dynamic config quantizes: it leaves depthwise convs and convs or linears
     followed by a ReLU in fp32 (still delegated), so on a ReLU CNN this is mostly fp32 (quantize/diagnose.py
     dynamic_capable);
  5. only under a budget the user set: the fp32 fallback over static int8 (quantize/fallback.py).
Cheapest means mostly int8 by the .pte's own weight bytes first, then the lower .pte latency, then size, measured
in the ExecuTorch runtime by the `cost` function the caller hands in (it lowers through the export's cache, so
`export` reuses that .pte).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from deploytool.config import Activations, QuantConfig
from deploytool.errors import DeployError, QuantizeError, UsageError
from deploytool.progress import SILENCE_S, timed_stage
from deploytool.quantize.session import Cost, Plan

log = logging.getLogger("deploytool")

STATIC, DYNAMIC, BIAS_CORRECTED = Plan(), Plan(all_dynamic=True), Plan(bias_corrected=True)
# The most NNCF's ranges and full bias correction gained over static int8 on the trained MobileNetV2 (11.3 ->
# 17.9 dB, 52 held-out photos); static int8 further than this from the budget skips the step.
BIAS_GAIN_DB = 7.0
# The most a mix gained over static int8 on the trained MobileNetV2 (issue 15: the first four blocks dynamic,
# 12.2 -> 14.0 dB; the noisiest four projection convs, 11.3 -> 11.3 dB).
MIX_GAIN_DB = 3.0


@dataclass(frozen=True)
class Step:
    """One variant the search tried."""

    name: str  # Plan.name: "static int8", "static int8, dynamic: features.1.conv.0.0", "dynamic int8"
    sqnr_db: float | None  # worst output, vs eager on the held-out samples; None when the step failed
    top1_agreement: float | None  # on decisive samples (deploytool.parity)
    task: dict[str, Any] | None  # the task metric, when there is one
    met: bool
    missed: tuple[str, ...] = ()  # which parts of the budget it missed
    latency_ms: float | None = None  # measured for the variants that could be kept: the search stops there
    size_bytes: int | None = None
    int8_weight_share: float | None = None  # of the .pte's weight bytes, read from the file
    activations: str = "static"  # static, mixed or dynamic
    error: str | None = None  # why the step could not be built or judged: a row, and the search goes on

    def line(self) -> str:
        """One line per step, as the search prints it.

        >>> Step("static int8", 14.7, 0.92, None, False, ("SQNR 14.7 dB < 20.0 dB",)).line()
        'static int8: SQNR 14.7 dB, top-1 agreement 0.920 -> misses SQNR 14.7 dB < 20.0 dB'
        """
        if self.error:
            return f"{self.name}: failed ({self.error}); the search goes on"
        parts = [f"SQNR {self.sqnr_db:.1f} dB"]
        if self.top1_agreement is not None:
            parts.append(f"top-1 agreement {self.top1_agreement:.3f}")
        if self.task:
            parts.append(f"{self.task['metric']} {self.task['artifact']:.2%} (eager {self.task['eager_fp32']:.2%})")
        if self.latency_ms is not None:
            parts.append(f".pte {self.latency_ms:.2f} ms, {self.size_bytes / 1e6:.2f} MB, "
                         f"{self.int8_weight_share:.0%} of weight bytes int8")
        verdict = "meets the budget" if self.met else "misses " + "; ".join(self.missed)
        return f"{self.name}: {', '.join(parts)} -> {verdict}"


@dataclass
class SearchResult:
    program: Any  # the kept Captured
    plan: Plan  # the kept variant's per-layer plan
    steps: list[Step]
    budget: dict[str, float]

    @property
    def met(self) -> bool:
        return any(s.met for s in self.steps)

    @property
    def activations(self) -> str:
        return self.plan.activations

    def to_dict(self) -> dict[str, Any]:
        return {"budget": self.budget, "met": self.met, "activations": self.activations,
                "plan": {"dynamic": list(self.plan.dynamic), "fp32": list(self.plan.fp32),
                         "all_dynamic": self.plan.all_dynamic, "bias_corrected": self.plan.bias_corrected},
                "steps": [asdict(s) for s in self.steps]}


def budget_of(recipe: QuantConfig) -> dict[str, float]:
    """The budget the search holds each variant to: the user's, else the default SQNR target."""
    budget = {"min_sqnr_db": recipe.min_sqnr_db if recipe.min_sqnr_db is not None else recipe.target_sqnr_db}
    if recipe.min_top1_agreement is not None:
        budget["min_top1_agreement"] = recipe.min_top1_agreement
    if recipe.max_accuracy_drop is not None:
        budget["max_accuracy_drop"] = recipe.max_accuracy_drop
    return budget


def judge(plan: Plan, comparison: Any, task: Any, budget: dict[str, float], *, sqnr_asked: bool = False) -> Step:
    """A Step from the variant's Comparison with eager (deploytool.parity.compare, with the int8 verdict's
    thresholds) and its TaskResult (or None): it meets the budget when that verdict passes and every budget item
    holds. Where a task metric decides, the default SQNR target is information; an SQNR the user asked for
    (`sqnr_asked`) still counts."""
    sqnr = min(m.sqnr_db for m in comparison.outputs)
    agreement = comparison.outputs[0].decisive_agreement
    missed = [c.describe() for c in comparison.checks if not c.passed]
    if (task is None or sqnr_asked) and sqnr < budget["min_sqnr_db"] and not any(
            c.name == "sqnr_db" and not c.passed for c in comparison.checks):
        missed.append(f"SQNR {sqnr:.1f} dB < {budget['min_sqnr_db']:.1f} dB")
    if "min_top1_agreement" in budget and (agreement or 0.0) < budget["min_top1_agreement"]:
        missed.append(f"top-1 agreement {agreement or 0.0:.3f} < {budget['min_top1_agreement']}")
    if "max_accuracy_drop" in budget and (task is None or task.drop > budget["max_accuracy_drop"]):
        missed.append("no labelled samples to measure accuracy on" if task is None else
                      f"accuracy drop {task.drop:.1f} > {budget['max_accuracy_drop']} points")
    return Step(plan.name, round(sqnr, 3), agreement, task.to_dict() if task else None, not missed, tuple(missed),
                activations=plan.activations)


def order(recipe: QuantConfig, sensitive: Callable[[], tuple[str, ...]], tried: list[Tried]) -> Iterator[Plan]:
    """The plans to try, cheapest first, given what was `tried` so far. A step is skipped when static int8 missed
    the SQNR budget by more than the step gained where measured (BIAS_GAIN_DB, MIX_GAIN_DB): it cannot get there.
    `sensitive` (the noisiest layers of static int8) is asked only for a mix that is tried."""
    if recipe.activations is not Activations.AUTO:  # one variant asked for by name: judge it, no search
        yield DYNAMIC if recipe.activations is Activations.DYNAMIC else STATIC
        return
    yield STATIC
    static = tried[0].step.sqnr_db  # None: static int8 failed, so the steps built on it cannot help either
    short = math.inf if static is None else budget_of(recipe)["min_sqnr_db"] - static  # how far from the budget
    if short <= BIAS_GAIN_DB:
        from deploytool.quantize.bias import nncf_available

        if nncf_available():
            yield BIAS_CORRECTED
    try:
        layers = sensitive() if short <= MIX_GAIN_DB else ()
    except Exception as exc:  # the layer ranking runs the model again: its failure skips the mix, not the search
        log.warning("search: no mixed variant: ranking the layers failed (%s)", failure_reason(exc))
        layers = ()
    if layers:
        yield Plan(dynamic=layers)
    yield DYNAMIC


@dataclass
class Tried:
    """A plan the search built and judged: what `order` reads to choose the next plan."""

    plan: Plan
    step: Step
    program: Any


def search(recipe: QuantConfig, *, build: Callable[[Plan], Any], compare: Callable[[Any], Any], cost: Cost | None,
           sensitive: Callable[[], tuple[str, ...]] = tuple) -> SearchResult:
    """Try the plans of `order` until one meets the budget; keep the cheapest that met it, else the best by SQNR.

    `build` makes a plan's Captured program, `compare` judges its ExportedProgram against eager on the held-out
    samples (-> Comparison, TaskResult or None), `cost` measures a .pte, `sensitive` names the layers a mixed
    plan makes dynamic.

    >>> result = search(QuantConfig(), build=session.quantized, compare=judge_on_held_out, cost=pte_cost,
    ...                 sensitive=lambda: noisiest_layers(session))
    >>> result.activations, [s.met for s in result.steps]
    ('dynamic', [False, False, True])
    """
    budget = budget_of(recipe)
    tried: list[Tried] = []

    def attempt(plan: Plan) -> bool:
        try:
            with timed_stage(f"search: {plan.name}", log=log, quiet_s=SILENCE_S):
                program = build(plan)
                step = judge(plan, *compare(program.program), budget, sqnr_asked=recipe.min_sqnr_db is not None)
        except UsageError:  # the data or the config is wrong: no other step can do better
            raise
        except Exception as exc:  # NNCF, torchao and the runtimes raise anything; one step is one row
            log.debug("search step %s failed", plan.name, exc_info=True)
            program, step = None, Step(plan.name, None, None, None, False, activations=plan.activations,
                                       error=failure_reason(exc))
            log.warning("search: %s", step.line())
        else:
            log.info("search: %s", step.line())
        tried.append(Tried(plan, step, program))
        return step.met

    for plan in order(recipe, sensitive, tried):
        if attempt(plan):
            break
    if tried[-1].plan.dynamic and tried[-1].step.met:
        attempt(DYNAMIC)  # the mix may cost more than dynamic everywhere: measure both
    if all(t.program is None for t in tried):
        raise QuantizeError("No int8 variant could be built: " + "; ".join(t.step.line() for t in tried),
                            hint="Run with -v for each step's traceback; --precision fp32 exports without int8.")
    kept = _cheapest([t for t in tried if t.program is not None], cost)
    if not kept.step.met:
        log.warning("no int8 variant met the budget (%s); kept %s at %.1f dB",
                    ", ".join(f"{k} {v}" for k, v in budget.items()), kept.step.name, kept.step.sqnr_db)
    return SearchResult(kept.program, kept.plan, [t.step for t in tried], budget)


def failure_reason(exc: BaseException) -> str:
    """One line for a failed step: a DeployError's message, else the exception's type and first line."""
    if isinstance(exc, DeployError):
        return exc.message
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__


def _cheapest(tried: list[Tried], cost: Cost | None) -> Tried:
    """Of the variants that met the budget, the one with the lowest measured (latency, size); with none, the best
    by SQNR. A variant whose .pte cannot be built gives way to the next."""
    met = [t for t in tried if t.step.met]
    ranked = met or sorted(tried, key=lambda t: -t.step.sqnr_db)
    if cost is None:
        return ranked[0]
    measured: list[Tried] = []
    for position, candidate in enumerate(ranked):
        try:
            with timed_stage(f"search: lowering and timing the .pte of {candidate.step.name}", log=log,
                             quiet_s=SILENCE_S):
                measured_cost = cost(candidate.program.program)
        except Exception as exc:  # lowering or running the .pte can raise anything (a delegate's execute error)
            if position == len(ranked) - 1 and not measured:
                raise exc if isinstance(exc, DeployError) else QuantizeError(
                    f"The .pte of {candidate.step.name} could not be built or run: {failure_reason(exc)}") from exc
            log.warning("search: %s: its .pte could not be built or run (%s); trying the next variant",
                        candidate.step.name, failure_reason(exc))
            candidate.step = dataclasses.replace(candidate.step, met=False, missed=(
                *candidate.step.missed, f"its .pte could not be built or run: {failure_reason(exc)}"))
            continue
        candidate.step = dataclasses.replace(candidate.step, latency_ms=round(measured_cost.latency_ms, 4),
                                             size_bytes=measured_cost.size_bytes,
                                             int8_weight_share=round(measured_cost.int8_weight_share, 4))
        measured.append(candidate)
        if not candidate.step.met:
            break  # none met: the best buildable one is kept
    # Of those that met the budget: mostly int8 first (a "dynamic int8" that keeps its big weights fp32 is not the
    # int8 artifact the user asked for), then the faster, then the smaller.
    kept = min(measured, key=lambda t: (not t.step.met, t.step.int8_weight_share < 0.5, t.step.latency_ms,
                                        t.step.size_bytes))
    log.info("search: kept %s", kept.step.line())
    return kept

"""Parity metrics and verdicts: every output, every check, reported together as a checklist.

What decides, and why (measured on the trained MobileNetV2, 50 held-out real photos):
- SQNR and cosine against eager say how much the numbers moved.
- Top-1 agreement counts only *decisive* samples, where eager's top class leads its runner-up by
  DECISIVE_MARGIN of softmax probability: 7 of the 10 flips of static int8 there were near ties that a
  1-LSB change flips. It fails only when its 95% confidence interval lies wholly below the limit, so a
  small or ambiguous held-out set cannot FAIL a good artifact.
- A task metric (accuracy on labels, a zoo entry's pitch accuracy), when there is one, decides for int8:
  the other checks against eager are then shown as information.
- An int8 artifact is held to the program it was lowered from by what it *loses against eager*
  (`lowering_check`), never by an absolute SQNR between the two: a deep int8 network amplifies any 1-LSB
  difference (one input pixel nudged by one step moves the PT2E program 16.7 dB from itself).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from deploytool.config import Thresholds

SQNR_EXACT_DB = 200.0  # reported for bit-identical outputs, where the ratio is infinite
DECISIVE_MARGIN = 0.1  # softmax probability by which eager's top-1 must lead for a flip to count
# Above this SQNR against eager an artifact is as exact as int8 gets; a few dB of 1-LSB rounding between it and
# its program there (a face net's softmax: 68.6 vs 71.6 dB) is no lowering error, so the loss is shown, not judged.
LOWERING_CEILING_DB = 40.0
CONFIDENCE_Z = 1.96  # 95% two-sided: the Wilson interval of a share measured on few samples

Outputs = list[list[np.ndarray]]  # [sample][output]


@dataclass(frozen=True)
class OutputMetrics:
    name: str
    max_abs: float
    mean_abs: float
    max_abs_rel: float  # max abs error / range of the reference output
    cosine: float  # mean over samples
    sqnr_db: float
    top1_agreement: float | None  # over all samples; None when the output is not classifier-like
    decisive_samples: int | None = None  # samples whose reference top-1 leads by DECISIVE_MARGIN
    decisive_agreement: float | None = None  # top-1 agreement over those; None when there are none
    # NaN or Inf in the candidate where the reference is finite: never a pass. The metrics above are computed
    # over the finite pairs only.
    nonfinite: int = 0
    first_nonfinite_sample: int | None = None


@dataclass(frozen=True)
class Check:
    name: str  # "sqnr_db", "cosine", ...
    output: str
    value: float
    limit: float
    at_least: bool  # True: value must be >= limit
    bound: float | None = None  # the value's 95% confidence bound on the passing side, for a share of few samples
    detail: str = ""  # what the value was measured on
    info: bool = False  # shown, never deciding (a task metric decides instead)
    label_text: str = ""  # overrides LABELS[name], e.g. a task metric's own name

    @property
    def passed(self) -> bool:
        if self.info:
            return True
        value = self.value if self.bound is None else self.bound
        return value >= self.limit if self.at_least else value <= self.limit

    @property
    def label(self) -> str:
        return self.label_text or LABELS[self.name]

    def line(self) -> str:
        mark = "info" if self.info else "ok  " if self.passed else "FAIL"
        return f"[{mark}] {self.describe()}"

    def describe(self) -> str:
        """The check without its mark, e.g. 'output_0: SQNR 14.7 dB >= 15.0 dB'."""
        sign = ">=" if self.at_least else "<="
        bound = f" (95% CI to {_fmt(self.name, self.bound)})" if self.bound is not None else ""
        return (f"{self.output}: {self.label} {_fmt(self.name, self.value)}{bound}{self.detail} "
                f"{sign} {_fmt(self.name, self.limit)}")


LABELS = {"sqnr_db": "SQNR", "cosine": "cosine", "top1_agreement": "top-1 agreement", "max_abs_rel": "max abs / range",
          "nonfinite": "NaN/Inf values where eager is finite",
          "sqnr_loss_db": "SQNR lost against eager, vs the program it was lowered from",
          "task_drop": "task metric drop vs eager"}


def _fmt(name: str, value: float) -> str:
    if name in ("sqnr_db", "sqnr_loss_db"):
        return f"{value:.1f} dB"
    if name == "max_abs_rel":
        return f"{value:.2e}"
    if name == "task_drop":
        return f"{value:.1f} points"
    if name in ("nonfinite", "differing"):
        return f"{value:.0f}"
    return f"{value:.4f}"


@dataclass(frozen=True)
class Comparison:
    candidate: str  # e.g. "model.pte (int8)"
    reference: str  # e.g. "eager fp32"
    samples: int
    outputs: tuple[OutputMetrics, ...]
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def checklist(self) -> list[str]:
        return [f"{self.candidate} vs {self.reference} on {self.samples} held-out samples:"] + \
               [f"  {c.line()}" for c in self.checks]


@dataclass(frozen=True)
class TaskMetric:
    """A model's own measure of quality on held-out samples with known truths: a share in [0, 1], higher is
    better. `score(outputs, truths)` returns None when no sample has a truth.

    >>> TaskMetric("top-1 accuracy", accuracy, max_drop=3.0).score(outputs, [3, 1, None])
    1.0
    """

    name: str
    score: Callable[[Outputs, list[Any]], float | None]
    max_drop: float  # points (share x 100) the artifact may lose against eager


@dataclass(frozen=True)
class TaskResult:
    metric: TaskMetric
    eager: float
    candidate: float
    samples: int  # held-out samples with a truth

    @property
    def drop(self) -> float:
        return 100 * (self.eager - self.candidate)

    def check(self, output: str) -> Check:
        return Check("task_drop", output, self.drop, self.metric.max_drop, at_least=False,
                     detail=f" ({self.metric.name} {self.candidate:.2%} vs eager {self.eager:.2%} on "
                            f"{self.samples} samples)", label_text=f"{self.metric.name} drop vs eager")

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric.name, "eager_fp32": self.eager, "artifact": self.candidate,
                "labelled_samples": self.samples, "drop_points": round(self.drop, 3), "max_drop_points": self.metric.max_drop}


def compare(reference: Outputs, candidate: Outputs, *, output_names: tuple[str, ...], thresholds: Thresholds,
            candidate_name: str, reference_name: str, task: TaskResult | None = None) -> Comparison:
    """Metrics per output over all samples, then every configured threshold checked (none short-circuits).

    With `task`, its drop is the deciding check and the thresholds' checks are shown as information.

    >>> compare(eager, pte, output_names=("logits",), thresholds=Thresholds(min_sqnr_db=15),
    ...         candidate_name="model.pte", reference_name="eager fp32").passed
    True
    """
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference samples vs {len(candidate)} candidate samples")
    metrics = tuple(output_metrics(name, [s[i] for s in reference], [s[i] for s in candidate])
                    for i, name in enumerate(output_names))
    checks = [replace(c, info=True) if task else c for m in metrics for c in _threshold_checks(m, thresholds)]
    if task:
        checks.append(task.check(output_names[0]))
    checks += [nonfinite_check(m) for m in metrics if m.nonfinite]  # decides even where a task metric does
    return Comparison(candidate_name, reference_name, len(reference), metrics, tuple(checks))


def nonfinite_check(m: OutputMetrics) -> Check:
    """The failing check of an output with NaN or Inf values where its reference has finite ones."""
    return Check("nonfinite", m.name, m.nonfinite, 0, at_least=False,
                 detail=f" (first in held-out sample {m.first_nonfinite_sample}; the other metrics use finite "
                        "values only)")


def _threshold_checks(m: OutputMetrics, thresholds: Thresholds) -> list[Check]:
    checks = []
    for name, limit, at_least in (("sqnr_db", thresholds.min_sqnr_db, True), ("cosine", thresholds.min_cosine, True),
                                  ("max_abs_rel", thresholds.max_abs_rel, False)):
        value = getattr(m, name)
        if limit is not None and value is not None:
            checks.append(Check(name, m.name, value, limit, at_least))
    limit = thresholds.min_top1_agreement
    if limit is not None and m.decisive_agreement is not None:
        checks.append(Check("top1_agreement", m.name, m.decisive_agreement, limit, True,
                            bound=wilson_upper(m.decisive_agreement, m.decisive_samples),
                            detail=f" on {m.decisive_samples} decisive samples"))
    return checks


def lowering_check(eager: Outputs, reference: Outputs, candidate: Outputs, *, output_names: tuple[str, ...],
                   max_loss_db: float, candidate_name: str, reference_name: str) -> Comparison:
    """The artifact against the quantized program it was lowered from: its metrics against that program (for
    information), and, per output, how much SQNR against eager it lost compared with that program.

    >>> lowering_check(eager, pt2e, pte, output_names=("logits",), max_loss_db=1.0,
    ...                candidate_name="model.pte", reference_name="quantized reference").passed
    True
    """
    metrics, checks = [], []
    for i, name in enumerate(output_names):
        column = lambda outputs: [s[i] for s in outputs]  # noqa: E731  one output over all samples
        metrics.append(output_metrics(name, column(reference), column(candidate)))
        ours = output_metrics(name, column(eager), column(candidate)).sqnr_db
        theirs = output_metrics(name, column(eager), column(reference)).sqnr_db
        checks.append(Check("sqnr_loss_db", name, theirs - ours, max_loss_db, at_least=False,
                            detail=f" (vs eager: {ours:.1f} dB, the program {theirs:.1f} dB)",
                            info=ours >= LOWERING_CEILING_DB))
        if metrics[-1].nonfinite:
            checks.append(nonfinite_check(metrics[-1]))
    return Comparison(candidate_name, reference_name, len(reference), tuple(metrics), tuple(checks))


def output_metrics(name: str, reference: list[np.ndarray], candidate: list[np.ndarray]) -> OutputMetrics:
    """One output's metrics over all samples, computed over the pairs where both values are finite; NaN or Inf
    in the candidate alone are counted (`nonfinite`), so they fail the comparison instead of vanishing in it.

    >>> output_metrics("y", [np.ones((1, 4))], [np.array([[1, 1, np.nan, 1]])]).nonfinite
    1
    """
    refs = [np.asarray(r, np.float64).reshape(-1) for r in reference]
    cands = [np.asarray(c, np.float64).reshape(-1) for c in candidate]
    if [np.shape(r) for r in reference] != [np.shape(c) for c in candidate]:
        first = next(i for i, (r, c) in enumerate(zip(reference, candidate)) if np.shape(r) != np.shape(c))
        raise ValueError(f"output '{name}': shapes differ on sample {first}, reference {np.shape(reference[first])} "
                         f"vs candidate {np.shape(candidate[first])}")
    # Samples may differ in length (dynamic axes): each is a row of its own, the sums run over all of them.
    broken_samples = [i for i, (r, c) in enumerate(zip(refs, cands)) if (np.isfinite(r) & ~np.isfinite(c)).any()]
    pairs = [_finite_pair(r, c) for r, c in zip(refs, cands)]
    ref, cand = np.concatenate([r for r, _ in pairs]), np.concatenate([c for _, c in pairs])
    broken = sum(int((np.isfinite(r) & ~np.isfinite(c)).sum()) for r, c in zip(refs, cands))
    error = cand - ref
    noise = float(np.sum(error ** 2))
    signal = float(np.sum(ref ** 2))
    sqnr = SQNR_EXACT_DB if noise == 0 else min(SQNR_EXACT_DB, 10 * math.log10(max(signal, 1e-30) / noise))
    cosines = [_cosine(r, c) for r, c in pairs]
    span = float(ref.max() - ref.min()) or 1.0
    max_abs = float(np.abs(error).max())
    top1 = decisive = decisive_agreement = None
    if _is_classifier_like(reference[0]):
        classes = np.shape(reference[0])[-1]  # one row of scores per sample, or per position of a sequence
        ref, cand = ref.reshape(-1, classes), cand.reshape(-1, classes)
        agree = ref.argmax(1) == cand.argmax(1)
        top1 = float(np.mean(agree))
        margin = decisive_margins(ref) >= DECISIVE_MARGIN
        decisive = int(margin.sum())
        decisive_agreement = float(np.mean(agree[margin])) if decisive else None
    return OutputMetrics(name, max_abs, float(np.abs(error).mean()), max_abs / span, float(np.mean(cosines)),
                         sqnr, top1, decisive, decisive_agreement, broken,
                         broken_samples[0] if broken_samples else None)


def _finite_pair(ref: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sides set to 0 where either is NaN or Inf: such a pair adds nothing to the sums (it is counted apart)."""
    finite = np.isfinite(ref) & np.isfinite(cand)
    return np.where(finite, ref, 0.0), np.where(finite, cand, 0.0)


def _cosine(ref: np.ndarray, cand: np.ndarray) -> float:
    """Two zero rows agree; a zero row against a non-zero one does not."""
    ref_norm, cand_norm = float(np.linalg.norm(ref)), float(np.linalg.norm(cand))
    if ref_norm == 0 or cand_norm == 0:
        return 1.0 if ref_norm == cand_norm else 0.0
    return float(np.dot(ref, cand) / (ref_norm * cand_norm))


def decisive_margins(scores: np.ndarray) -> np.ndarray:
    """Per row, how far the top class leads the runner-up in probability (softmax of the row unless the row
    already is a distribution).

    >>> decisive_margins(np.array([[0.7, 0.2, 0.1]]))
    array([0.5])
    """
    scores = np.asarray(scores, np.float64)
    is_distribution = np.all(scores >= 0) and np.allclose(scores.sum(1), 1.0, atol=1e-3)
    if not is_distribution:
        shifted = np.exp(scores - scores.max(1, keepdims=True))
        scores = shifted / shifted.sum(1, keepdims=True)
    top_two = np.sort(scores, axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def wilson_upper(share: float, samples: int, z: float = CONFIDENCE_Z) -> float:
    """Upper end of the Wilson score interval of a share measured on `samples` trials.

    >>> round(wilson_upper(0.8, 10), 3)
    0.943
    """
    denominator = 1 + z * z / samples
    centre = share + z * z / (2 * samples)
    spread = z * math.sqrt(share * (1 - share) / samples + z * z / (4 * samples * samples))
    return min(1.0, (centre + spread) / denominator)


def _is_classifier_like(output: np.ndarray) -> bool:
    return _is_scores_shape(np.shape(output))


def _is_scores_shape(shape: tuple[int, ...]) -> bool:
    """One row of scores per sample, e.g. [1, 1000] logits, or per position: [1, time, classes]."""
    return len(shape) in (2, 3) and shape[0] == 1 and shape[-1] > 1


def accuracy(outputs: Outputs, labels: list[Any]) -> float | None:
    """Top-1 accuracy of the first output against labels (a class index per sample, or per position for
    [1, time, classes] outputs, where a negative label marks padding); None when samples carry no labels.

    >>> accuracy([[np.array([[0.1, 0.9]])], [np.array([[0.8, 0.2]])]], [1, 1])
    0.5
    """
    hits, total = 0, 0
    for sample, label in zip(outputs, labels):
        if label is None or not _is_classifier_like(sample[0]):
            continue
        predicted = np.asarray(sample[0]).argmax(-1).reshape(-1)
        wanted = np.asarray(label).reshape(-1)
        if wanted.size != predicted.size:
            return None  # targets that are not one class per row: not top-1's to score
        counted = wanted >= 0
        hits += int(np.sum(predicted[counted] == wanted[counted]))
        total += int(counted.sum())
    return hits / total if total else None


def top1_metric(output_shape: tuple[int, ...], *, max_drop: float) -> TaskMetric | None:
    """The built-in task metric for labelled held-out samples: top-1 accuracy for (batch, classes) outputs,
    per-position top-1 for (batch, time, classes); None for any other output.

    >>> top1_metric((1, 12, 40), max_drop=3.0).name
    'per-position top-1 accuracy'
    """
    if not _is_scores_shape(tuple(output_shape)):
        return None
    name = "top-1 accuracy" if len(output_shape) == 2 else "per-position top-1 accuracy"
    return TaskMetric(name, accuracy, max_drop=max_drop)


def task_result(metric: TaskMetric | None, eager: Outputs, candidate: Outputs, truths: list[Any]) -> TaskResult | None:
    """The task metric of eager and of the candidate, or None when there is no metric or no truth to score on."""
    if metric is None:
        return None
    eager_score, candidate_score = metric.score(eager, truths), metric.score(candidate, truths)
    if eager_score is None or candidate_score is None:
        return None
    return TaskResult(metric, eager_score, candidate_score, sum(t is not None for t in truths))

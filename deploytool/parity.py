"""Parity metrics and verdicts: every output, every check, reported together as a checklist."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from deploytool.config import Thresholds

SQNR_EXACT_DB = 200.0  # reported for bit-identical outputs, where the ratio is infinite


@dataclass(frozen=True)
class OutputMetrics:
    name: str
    max_abs: float
    mean_abs: float
    max_abs_rel: float  # max abs error / range of the reference output
    cosine: float  # mean over samples
    sqnr_db: float
    top1_agreement: float | None  # None when the output is not classifier-like


@dataclass(frozen=True)
class Check:
    name: str  # "sqnr_db", "cosine", ...
    output: str
    value: float
    limit: float
    at_least: bool  # True: value must be >= limit

    @property
    def passed(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def line(self) -> str:
        mark = "ok  " if self.passed else "FAIL"
        sign = ">=" if self.at_least else "<="
        return f"[{mark}] {self.output}: {LABELS[self.name]} {_fmt(self.name, self.value)} {sign} {_fmt(self.name, self.limit)}"


LABELS = {"sqnr_db": "SQNR", "cosine": "cosine", "top1_agreement": "top-1 agreement", "max_abs_rel": "max abs / range"}


def _fmt(name: str, value: float) -> str:
    if name == "sqnr_db":
        return f"{value:.1f} dB"
    if name == "max_abs_rel":
        return f"{value:.2e}"
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


def compare(reference: list[list[np.ndarray]], candidate: list[list[np.ndarray]], *, output_names: tuple[str, ...],
            thresholds: Thresholds, candidate_name: str, reference_name: str) -> Comparison:
    """Metrics per output over all samples, then every configured threshold checked (none short-circuits).

    >>> compare(eager, pte, output_names=("logits",), thresholds=Thresholds(min_sqnr_db=15),
    ...         candidate_name="model.pte", reference_name="eager fp32").passed
    True
    """
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference samples vs {len(candidate)} candidate samples")
    metrics = tuple(output_metrics(name, [s[i] for s in reference], [s[i] for s in candidate])
                    for i, name in enumerate(output_names))
    checks = []
    for m in metrics:
        for name, limit, at_least in (("sqnr_db", thresholds.min_sqnr_db, True),
                                      ("cosine", thresholds.min_cosine, True),
                                      ("top1_agreement", thresholds.min_top1_agreement, True),
                                      ("max_abs_rel", thresholds.max_abs_rel, False)):
            value = getattr(m, name)
            if limit is not None and value is not None:
                checks.append(Check(name, m.name, value, limit, at_least))
    return Comparison(candidate_name, reference_name, len(reference), metrics, tuple(checks))


def output_metrics(name: str, reference: list[np.ndarray], candidate: list[np.ndarray]) -> OutputMetrics:
    ref = np.stack([np.asarray(r, np.float64).reshape(-1) for r in reference])
    cand = np.stack([np.asarray(c, np.float64).reshape(-1) for c in candidate])
    if ref.shape != cand.shape:
        raise ValueError(f"output '{name}': shapes differ, reference {ref.shape} vs candidate {cand.shape}")
    error = cand - ref
    noise = float(np.sum(error ** 2))
    signal = float(np.sum(ref ** 2))
    sqnr = SQNR_EXACT_DB if noise == 0 else min(SQNR_EXACT_DB, 10 * math.log10(max(signal, 1e-30) / noise))
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cosines = np.where(norms > 0, np.sum(ref * cand, axis=1) / np.maximum(norms, 1e-30), 1.0)
    span = float(ref.max() - ref.min()) or 1.0
    max_abs = float(np.abs(error).max())
    top1 = float(np.mean(ref.argmax(1) == cand.argmax(1))) if _is_classifier_like(reference[0]) else None
    return OutputMetrics(name, max_abs, float(np.abs(error).mean()), max_abs / span, float(cosines.mean()),
                         sqnr, top1)


def _is_classifier_like(output: np.ndarray) -> bool:
    """One row of scores per sample, e.g. [1, 1000] logits."""
    shape = np.shape(output)
    return len(shape) == 2 and shape[0] == 1 and shape[1] > 1


def accuracy(outputs: list[list[np.ndarray]], labels: list[int | None]) -> float | None:
    """Top-1 accuracy of the first output against labels; None when samples carry no labels."""
    pairs = [(o[0], y) for o, y in zip(outputs, labels) if y is not None]
    if not pairs or not _is_classifier_like(pairs[0][0]):
        return None
    return float(np.mean([int(np.argmax(o)) == y for o, y in pairs]))

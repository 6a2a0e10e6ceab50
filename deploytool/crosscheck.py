"""Cross-runtime parity matrix over one export: every artifact, each run in its own runtime.

Rows, on the same held-out real samples:
  * each artifact vs eager fp32 (gated by parity.fp32 / parity.int8);
  * each int8 artifact vs its own quantized reference, which isolates what lowering and int8 kernels changed
    from what quantization itself changed. Gated by parity.max_lowering_loss_db on the SQNR against eager the
    artifact lost compared with that reference (parity.lowering_check), never on an absolute SQNR between the
    two, which a deep int8 network makes meaningless:
      .pte        the XNNPACKQuantizer PT2E program it was lowered from;
      .int8.pt2   the X86InductorQuantizer PT2E program it was compiled from;
      .int8.onnx  the same QDQ graph run op by op in onnxruntime with graph optimizations off (int8
                  simulated in fp32); the fp32 .onnx would only repeat the vs-eager row;
  * int8 artifacts vs each other (information, no verdict: two quantizers legitimately round differently).
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deploytool.config import Thresholds

log = logging.getLogger("deploytool")

QUANTIZED_REFERENCES = {  # artifact format -> what its int8 artifact is checked against, besides eager
    "pte": "PT2E program (XNNPACK quantizer)",
    "aoti": "PT2E program (X86 Inductor quantizer)",
    "onnx": "QDQ graph, ORT optimizations off",
}


@dataclass(frozen=True)
class CrossRow:
    artifact: str  # "server/model.int8.onnx"
    precision: str
    runtime: str
    reference: str  # "eager fp32", a quantized reference, or another artifact
    sqnr_db: float | None  # worst output
    top1_agreement: float | None  # worst classifier-like output; None when no output is one
    max_abs_rel: float | None  # worst output
    verdict: str  # PASS / FAIL (thresholds applied), info (no thresholds), CRASH / HANG / ERROR (did not run)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def references_for(artifact, references, *, prepared, samples: list, timeout_s: float,
                   x86_int8: Callable[[], Any]):
    """The References one artifact is verified against: an int8 artifact gets the program it came from
    (`x86_int8` gives the X86 int8 program an int8 .pt2 was compiled from).

    >>> refs = references_for(Artifact(Path("model.int8.onnx"), "onnx", "int8"), references, prepared=prepared,
    ...                       samples=samples, timeout_s=300, x86_int8=lambda: x86_int8_program(prepared))
    """
    if artifact.precision != "int8":
        return references
    if artifact.format == "onnx":
        from deploytool.runtime import run_artifact

        run = run_artifact(artifact.path, "onnx-qdq-reference", samples, timeout_s=timeout_s)
        if not run.ok:
            log.warning("no quantized reference for %s: %s", artifact.path.name, run.error)
        return dataclasses.replace(references, int8=run.outputs)
    if artifact.format == "aoti":
        return dataclasses.replace(references, int8=prepared.outputs_of(x86_int8().module()))
    return references  # .pte (and formats lowered from the same XNNPACK program) keep the PT2E program


def matrix(reports: list) -> list[CrossRow]:
    """Rows for every distinct artifact run (copies with the same sha256 run by the same runtime, e.g. android
    and ios .pte, appear once; the same .pte in the native runner is a row of its own).

    >>> [row.verdict for row in matrix(reports)]
    ['PASS', 'PASS', 'PASS', 'info']
    """
    from deploytool.parity import compare
    from deploytool.runtime import failure_verdict

    first_copies: dict[tuple[str, str], Any] = {}
    for report in reports:
        first_copies.setdefault((report.sha256, report.format), report)
    unique = list(first_copies.values())
    rows: list[CrossRow] = []
    for report in unique:
        if report.run_error:
            rows.append(CrossRow(_label(report), report.precision, _runtime(report), "-", None, None, None,
                                 failure_verdict(report.run_error), report.run_error))
            continue
        for comparison in report.comparisons:
            reference = comparison.reference
            if reference == "quantized reference":  # a .pte's second runtime (pte-native, pte-arm64-...): its program
                reference = QUANTIZED_REFERENCES.get(report.format.split("-")[0], reference)
            rows.append(_row(report, reference, comparison, "PASS" if comparison.passed else "FAIL"))
    int8 = [r for r in unique if r.precision == "int8" and r.outputs is not None and r.comparisons]
    for first, second in itertools.combinations(int8, 2):
        if first.sha256 == second.sha256:  # one file in two runtimes: its own row against that run says more
            continue
        names = tuple(m.name for m in first.comparisons[0].outputs)
        comparison = compare(first.outputs, second.outputs, output_names=names, thresholds=Thresholds(),
                             candidate_name=_label(second), reference_name=_label(first))
        rows.append(_row(second, _label(first), comparison, "info"))
    return rows


def _row(report, reference: str, comparison, verdict: str) -> CrossRow:
    outputs = comparison.outputs
    top1 = [m.top1_agreement for m in outputs if m.top1_agreement is not None]
    return CrossRow(_label(report), report.precision, _runtime(report), reference,
                    min(m.sqnr_db for m in outputs), min(top1) if top1 else None,
                    max(m.max_abs_rel for m in outputs), verdict)


def _label(report) -> str:
    return f"{report.target}/{report.artifact_path.name}"


def _runtime(report) -> str:
    from deploytool.runtime import RUNNERS

    return RUNNERS.get(report.format).meta.get("runtime", report.format) if report.format in RUNNERS else report.format

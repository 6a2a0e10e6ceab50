"""The export step's parts: which formats each target gets, building one, and the files written next to them.

deploytool.api.export (and check) tell the step in order; these are the pieces they call. Each target folder
gets manifest.json (what an app needs to load the artifacts) and report.json (every parity row).

    >>> plan_formats(("android", "server"), ("ptl", "onnx"))
    {'android': ('ptl',), 'server': ('onnx',)}
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from deploytool.config import Precision
from deploytool.context import Prepared, batch_of_one, calibration_summary, is_image_data
from deploytool.errors import UsageError
from deploytool.export import Artifact
from deploytool.fsutil import atomic_write_bytes, atomic_write_json
from deploytool.report import ArtifactReport, target_report
from deploytool.steps.quantize import QuantizeResult, x86_int8_program
from deploytool.verify import References
from deploytool.versions import versions

log = logging.getLogger("deploytool")


def build(fmt: str, programs: Any, folder: Path, target: str) -> list[Artifact]:
    """Run one format's writer, its verifying runtime starting meanwhile; progress lines while it runs."""
    from deploytool.export import FORMATS
    from deploytool.progress import timed_stage
    from deploytool.runtime import RUNNERS, prestart

    if fmt in RUNNERS:
        prestart(fmt)  # the verifying runtime imports while the format is built
    with timed_stage(f"building {fmt} for {target}", log=log):
        return FORMATS.get(fmt).load()(programs, folder)


def prestart_first_runtime(plan: dict[str, tuple[str, ...]]) -> None:
    """Start the first format's verifying runtime now, so it imports (executorch: ~5 s) while the model loads and
    quantizes; the later formats' start while the one before them is verified (see build)."""
    from deploytool.runtime import RUNNERS, prestart

    first = next((fmt for formats in plan.values() for fmt in formats if fmt in RUNNERS), None)
    if first is not None:
        prestart(first)


def plan_formats(targets: tuple[str, ...], formats: tuple[str, ...] | None) -> dict[str, tuple[str, ...]]:
    """target -> formats to write. `--format` narrows each target to the formats it supports.

    >>> plan_formats(("android", "server"), ("ptl", "onnx"))
    {'android': ('ptl',), 'server': ('onnx',)}
    """
    from deploytool.export import FORMATS
    from deploytool.registry import ALL_TARGETS, TARGETS

    for fmt in formats or ():
        FORMATS.get(fmt)
    everything = ALL_TARGETS in targets
    if everything:
        targets = tuple(TARGETS.names())
    plan = {}
    for target in targets:
        meta = TARGETS.get(target).meta
        # Extra formats (android's legacy .ptl) are written only for --format naming them or --target all.
        extra = meta.get("extra_formats", ()) if formats or everything else ()
        supported = (*meta["formats"], *extra)
        plan[target] = tuple(f for f in supported if not formats or f in formats)
    if not any(plan.values()):
        raise UsageError(f"None of the formats {', '.join(formats or ())} is written for target(s) "
                         f"{', '.join(targets)}.", hint="`deploytool targets` lists each target's formats.")
    return {t: f for t, f in plan.items() if f}


def references_of(prepared: Prepared, quant: QuantizeResult | None) -> References:
    """What each artifact is checked against: eager's outputs, the int8 program's (when quantized), the truths."""
    return References(eager=prepared.eager_outputs(), int8=quant.outputs if quant else None,
                      labels=prepared.truths(), task=prepared.task_metric())


def copy_artifact(artifact: Artifact, folder: Path) -> Artifact:
    """A format built for one target, copied with its companions into another target's folder."""
    from deploytool.export import NotBuilt

    if isinstance(artifact, NotBuilt):  # nothing to copy: the other target gets the same failed row
        return artifact
    path = atomic_write_bytes(folder / artifact.path.name, artifact.path.read_bytes())
    companions = tuple(atomic_write_bytes(folder / c.name, c.read_bytes()) for c in artifact.companions)
    return replace(artifact, path=path, companions=companions)


def cross_matrix(reports: list[ArtifactReport]) -> list[dict[str, Any]]:
    """The cross-runtime matrix of the whole run; each target's report.json carries all of it."""
    from deploytool.crosscheck import matrix

    return [row.to_dict() for row in matrix(reports)]


def write_target_files(prepared: Prepared, folder: Path, target: str, reports: list[ArtifactReport],
                        quant: QuantizeResult | None, cross: list[dict[str, Any]]) -> None:
    """A target's manifest.json (when anything was built) and report.json, with the whole run's cross matrix."""
    from deploytool.hostcpu import host_cpu

    extra = {"calibration": calibration_summary(prepared), "model_adapted": list(prepared.notes),
             "host_cpu": host_cpu(),
             **({"verified_lengths": prepared.verified_lengths()} if prepared.varying else {}),
             "capture": {"method": quant.capture_method} if quant else None, "cross": cross,
             "quantization": quant.recipe if quant else None}
    atomic_write_json(folder / "manifest.json", manifest(prepared, reports))
    write_report(folder, target_report(reports, target=target, extra=extra))


def write_report(folder: Path, report: dict[str, Any]) -> None:
    """A target's report.json, and report.html drawn from the same dict."""
    from deploytool.report.page import write_target_html

    atomic_write_json(folder / "report.json", report)
    write_target_html(report, folder / "report.html")


def manifest(prepared: Prepared, reports: list[ArtifactReport]) -> dict:
    """What an app needs to run the artifacts: the files it can load, and (for `check`) what the export was asked
    for and could not build. No timestamps: the same inputs give the same bytes."""
    from deploytool.config import to_plain

    built = [r for r in reports if not r.build_error]
    artifacts = [{"file": r.artifact_path.name, "format": r.format, "sha256": r.sha256, "precision": r.precision,
                  **({"holds": {k: r.holds[k] for k in ("label", "reason", "int8_weight_share", "int8_compute_share",
                                                           "compute_unit")}} if r.holds else {}),
                  **({"fp32_bytes": r.fp32_bytes} if r.fp32_bytes is not None else {}),
                  **({"companions": r.companions} if r.companions else {})} for r in built]
    first = ({**artifacts[0], "backend": "xnnpack"} if built[0].format == "pte" else artifacts[0]) if built else None
    return {
        "schema": "deploytool.manifest/1",
        "model": prepared.config.model,
        **({"weights": str(prepared.config.path(prepared.config.weights))} if prepared.config.weights else {}),
        "inputs_hash": prepared.inputs_hash(Precision(reports[0].precision)),
        "artifact": first,  # the one an app loads; None when nothing could be built
        "artifacts": artifacts,
        "not_built": [{"file": r.artifact_path.name, "format": r.format, "precision": r.precision,
                       "error": r.build_error, "hint": r.build_hint} for r in reports if r.build_error],
        "inputs": [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype,
                    **({"dynamic": {str(axis): bound for axis, bound in axes.items()}} if axes else {})}
                   for i, axes in zip(prepared.inputs, prepared.varying or [{}] * len(prepared.inputs))],
        "outputs": [{"name": n, "shape": list(s), "dtype": "float32"}
                    for n, s in zip(prepared.output_names, prepared.output_shapes)],
        "preprocess": {"kind": "image", **to_plain(prepared.preprocess)} if is_image_data(prepared) else None,
        "labels": list(prepared.config.labels or prepared.split.calibration.labels or prepared.loaded.labels) or None,
        "versions": versions(),
    }


def onnx_int8_choice(prepared: Prepared, quantize: Any) -> tuple[bytes, tuple[str, ...]]:
    """The int8 ONNX onnxruntime makes with every op it supports quantized, unless its QDQ math (run op by op)
    already misses the int8 verdict against eager and quantizing only the weighted ops does better: then that
    one, with a note. `quantize(op_types)` makes the bytes.

    >>> data, notes = onnx_int8_choice(prepared, lambda ops: quantize_onnx(path, ..., op_types=ops))
    """
    from deploytool.quantize.onnx import WEIGHTED_OPS
    from deploytool.steps.quantize import judge

    def verdict(data: bytes) -> tuple[Any, tuple[float, float]]:
        from deploytool.fsutil import scratch
        from deploytool.runtime import run_artifact

        with scratch("qdq") as folder:
            path = atomic_write_bytes(Path(folder) / "model.int8.onnx", data)
            run = run_artifact(path, "onnx-qdq-reference", [batch_of_one(s, prepared.inputs)
                                                            for _, s in prepared.held_out()])
        if not run.ok:
            return None, (-1.0, -1.0)
        comparison, task = judge(prepared, run.outputs, "QDQ graph")
        return comparison, (task.candidate if task else 0.0, min(m.sqnr_db for m in comparison.outputs))

    every = quantize(None)
    comparison, score = verdict(every)
    if comparison is None or comparison.passed:
        return every, ()
    weighted = quantize(WEIGHTED_OPS)
    other, other_score = verdict(weighted)
    if other is None or (not other.passed and other_score <= score):
        return every, ()
    log.info("int8 ONNX: quantizing %s only (%.1f dB against eager, as QDQ math) does better than every op "
             "(%.1f dB)", ", ".join(WEIGHTED_OPS), other_score[1], score[1])
    return weighted, (f"only {', '.join(WEIGHTED_OPS)} quantized: with every op quantized, its QDQ math was "
                      f"{score[1]:.1f} dB from eager (int8 verdict failed); with the weighted ops only "
                      f"{other_score[1]:.1f} dB",)


def programs_for(prepared: Prepared, precision: Precision, quant: QuantizeResult | None):
    """What the writers lower from (deploytool.export.Programs): the run's programs, and the int8 forms other
    runtimes need, made by the quantize layer: writers never quantize.

    >>> programs = programs_for(prepared, Precision.INT8, api.quantize(config, prepared))
    """
    from deploytool.export import Programs

    def onnx_int8(fp32_path: Path) -> tuple[bytes, tuple[str, ...]]:
        from deploytool.progress import SILENCE_S, timed_stage
        from deploytool.quantize.onnx import quantize_onnx  # onnxruntime.quantization: 1.2 s, for ONNX only

        with timed_stage(f"quantizing {fp32_path.name} with onnxruntime (its own calibration pass)", log=log,
                         quiet_s=SILENCE_S):
            return onnx_int8_choice(prepared, lambda ops: quantize_onnx(
                fp32_path, recipe=prepared.config.quantize, calibration=prepared.split.calibration,
                inputs=prepared.inputs, op_types=ops))

    return Programs(prepared, precision=precision.value, int8_program=quant.program if quant else None,
                    int8_file=quant.program_path if quant else None,
                    int8_activations=quant.recipe.get("activations", "static") if quant else "static",
                    x86_int8=lambda: x86_int8_program(prepared), onnx_int8=onnx_int8)

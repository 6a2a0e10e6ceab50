"""The whole story in one page: prepare -> quantize -> export -> check.

Each step is a short function over the parts below it: the run context (deploytool.context), the steps'
parts (deploytool.steps), and the layers that quantize, write, run and verify. The CLI and notebooks call
these same functions:

    >>> from deploytool import api
    >>> config = api.load_config(overrides={"model": "zoo:digits"})
    >>> api.quantize(config)
    >>> reports = api.export(config, targets=("android",))
    >>> reports[0].passed
    True
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from deploytool import cache
from deploytool.config import Precision, ProjectConfig, load_config
from deploytool.context import QUANT_DIR, Prepared, batch_of_one, calibration_summary, default_preprocess, prepare
from deploytool.export import load_program, save_program
from deploytool.fsutil import atomic_write_json
from deploytool.lock import holds_output_lock
from deploytool.report import ArtifactReport, target_report
from deploytool.scale.jobs import JobResult, JobSpec, artifact_result, config_of
from deploytool.steps.export import plan_formats, prestart_first_runtime, references_of
from deploytool.steps.quantize import QuantizeResult, default_precision, recorded_config
from deploytool.steps.unchanged import forget_export, record_export, unchanged_export
from deploytool.verify import verify
from deploytool.versions import versions

log = logging.getLogger("deploytool")

__all__ = ["load_config", "prepare", "quantize", "diagnose", "export", "check", "Prepared", "QuantizeResult",
           "default_preprocess", "default_precision", "plan_formats", "prestart_first_runtime", "recorded_config",
           "unchanged_export", "QUANT_DIR"]


@holds_output_lock
def quantize(config: ProjectConfig, prepared: Prepared | None = None, *, executor: Any = None) -> QuantizeResult:
    """Capture, quantize to int8 on the calibration split, save the program for `export` to reuse.

    With a quality budget, the fp32 fallback's sensitivity candidates run as jobs on `executor`
    (deploytool.scale.executor) when one is given, else here one after another.

    >>> api.quantize(config, executor=executor_for("local", jobs=4)).fallback["kept_fp32"]
    ['features.0', 'features.3']
    """
    from deploytool.steps import quantize as step

    prepared = prepared or prepare(config)
    key = prepared.cache_key()
    if ("quantize", key, config.output_dir) in prepared.memo:  # export right after quantize, in one process
        return prepared.memo["quantize", key, config.output_dir]
    folder = config.output_dir / QUANT_DIR
    record = step.read_record(folder)
    program_path = folder / "program.pt2"
    judged: list[tuple[Any, list]] = []  # (variant program, its held-out outputs), as the search judged them
    if record and record.get("cache_key") == key and cache.intact(program_path):
        log.info("reusing the quantized program in %s (model, data and options unchanged)", folder)
        # Not loaded here (2-5 s): export finds its cached .pte by the file, and reads the file only on a miss.
        program, reused, method = None, True, record["capture_method"]
        recipe, fallback = record.get("recipe", {}), record.get("fallback")
    else:
        prepared.eager_outputs()  # eager's own NaN or Inf stops the run here, before any calibration
        captured = prepared.captured()
        started = time.perf_counter()
        quantized, searched, fallback = step.quantize_variants(prepared, executor, judged)
        recipe = step.recipe_record(config, fallback, searched)
        prepared.timings["quantize"] = time.perf_counter() - started
        program, reused, method = quantized.program, False, captured.method
        save_program(program, program_path)
    # The search ran the kept variant on the held-out samples already (MobileNetV2: 28% of quantize's time); a
    # repeated run reads them, with eager's, from the references its first run saved.
    refs_key = step.references_key(prepared, key)
    outputs = step.read_references(prepared, folder, refs_key) if reused else None
    if outputs is None:
        program = program or load_program(program_path)
        outputs = next((o for p, o in judged if p is program), None) or prepared.outputs_of(program.module())
        step.write_references(folder, refs_key, prepared.eager_outputs(), outputs)
    reference = step.judge(prepared, outputs, "quantized program (int8, before lowering)")[0]
    result = QuantizeResult(program_path, key, reused, len(prepared.split.calibration), len(prepared.split.held_out),
                            method, reference, recipe, fallback, program, outputs)
    prepared.memo["quantize", key, config.output_dir] = result
    if not reused:
        atomic_write_json(folder / "quantize.json", {
            "cache_key": key, "capture_method": method, "config": step.replayable(config),
            "calibration": calibration_summary(prepared), "recipe": recipe, "fallback": fallback,
            "versions": versions(),
        })
    return result


@holds_output_lock
def diagnose(config: ProjectConfig, prepared: Prepared | None = None, *, fallback: dict[str, Any] | None = None,
             search: dict[str, Any] | None = None, executor: Any = None) -> tuple[Any, Path]:
    """Per-layer diagnosis of the int8 recipe; writes <output>/diagnosis/report.json and report.html.

    The sensitivity candidates run as jobs on `executor` (deploytool.scale.executor) when one is given.

    >>> diagnosis, folder = diagnose(config)
    >>> diagnosis.jump.name
    'features.3'
    """
    from deploytool.quantize.diagnose import diagnose as diagnose_layers
    from deploytool.report.html import write_html
    from deploytool.steps.quantize import evaluate_many_on

    prepared = prepared or prepare(config)
    kept = tuple(fallback["kept_fp32"]) if fallback else ()
    diagnosis = diagnose_layers(prepared.session(config.quantize), keep_fp32=kept, fallback=fallback, search=search,
                                evaluate_many=evaluate_many_on(executor))
    folder = config.output_dir / "diagnosis"
    atomic_write_json(folder / "report.json", {**diagnosis.to_dict(), "versions": versions()})
    write_html(diagnosis, folder / "report.html")
    return diagnosis, folder


@holds_output_lock
def export(config: ProjectConfig, *, targets: tuple[str, ...] | None = None, formats: tuple[str, ...] | None = None,
           precision: Precision | None = None, prepared: Prepared | None = None,
           arm64: tuple[str, ...] | None = None) -> list[ArtifactReport]:
    """Write each target's artifacts, verify each in its real runtime, write manifest.json and report.json.

    A format shared by several targets (the .pte of android and ios) is lowered once and copied. A format
    whose writer fails (StageError) is a failed row of the report (report.not_built); the others go on.
    `arm64` (profile names; () for the default three) also runs each distinct .pte in the arm64 runtime under
    qemu-user (deploytool.steps.arm64).
    """
    from deploytool.crosscheck import references_for
    from deploytool.errors import StageError
    from deploytool.export import FORMATS, Artifact, NotBuilt
    from deploytool.report import not_built
    from deploytool.steps.export import build, copy_artifact, cross_matrix, programs_for, write_target_files
    from deploytool.steps.quantize import x86_int8_program

    from deploytool.steps.arm64 import arm64_setup, verify_arm64

    plan = plan_formats(targets or config.targets, formats)
    arm = arm64_setup(arm64) if arm64 is not None else None  # a missing emulator fails before any heavy work
    prestart_first_runtime(plan)  # a no-op where the caller started it before preparing (cli/export); zoo, gate
    forget_export(config)  # a run that fails halfway leaves no stamp vouching for its files
    prepared = prepared or prepare(config)
    precision = precision or default_precision(config)
    quant = quantize(config, prepared) if precision is Precision.INT8 else None
    programs = programs_for(prepared, precision, quant)
    references = references_of(prepared, quant)
    samples = [batch_of_one(s, prepared.inputs) for _, s in prepared.held_out()]
    built: dict[str, list[Artifact]] = {}
    failed: dict[str, StageError] = {}
    reports: list[ArtifactReport] = []
    per_target: dict[str, list[ArtifactReport]] = {}
    on_arm64: set[str] = set()
    for target, target_formats in plan.items():
        folder = config.output_dir / target
        target_reports = per_target[target] = []
        for fmt in target_formats:
            if fmt in built:
                artifacts = [copy_artifact(a, folder) for a in built[fmt]]
            elif fmt not in failed:
                try:
                    artifacts = built[fmt] = build(fmt, programs, folder, target)
                except StageError as exc:  # the other formats are still built, verified and written
                    failed[fmt] = exc
            if fmt in failed:
                target_reports.append(not_built(failed[fmt], model=config.model, target=target, format=fmt,
                                                precision=programs.precision,
                                                path=folder / FORMATS.get(fmt).meta["file"]))
                continue
            for artifact in artifacts:
                if isinstance(artifact, NotBuilt):
                    target_reports.append(not_built(artifact.error, model=config.model, target=target,
                                                    format=artifact.format, precision=artifact.precision,
                                                    path=folder / artifact.path.name))
                    continue
                own = references_for(artifact, references, prepared=prepared, samples=samples,
                                     timeout_s=config.parity.timeout_s,
                                     x86_int8=lambda: x86_int8_program(prepared))
                verify_args = dict(target=target, samples=samples, references=own, config=config,
                                   output_names=prepared.output_names,
                                   unverified=prepared.split.calibration.is_random, reuse_runs=True)
                target_reports.append(verify(artifact, **verify_args))
                if arm is not None and artifact.format == "pte" and target_reports[-1].sha256 not in on_arm64:
                    on_arm64.add(target_reports[-1].sha256)  # android's and ios's copies: one file, run once
                    target_reports += verify_arm64(artifact, target_reports[-1], arm, eager=references.eager,
                                                   activations=programs.int8_activations, **verify_args)
        reports.extend(target_reports)
    cross = cross_matrix(reports)
    for target, target_reports in per_target.items():
        write_target_files(prepared, config.output_dir / target, target, target_reports, quant, cross)
    if all(r.passed for r in reports) and arm is None:
        from deploytool.report import summary_table

        # The next export with nothing changed is answered from it.
        record_export(config, plan, precision, summary_table(reports))
    return reports


@holds_output_lock
def check(config: ProjectConfig, *, targets: tuple[str, ...] | None = None, native: bool = False,
          prepared: Prepared | None = None, arm64: tuple[str, ...] | None = None) -> list[ArtifactReport]:
    """Re-run parity on the artifacts already in the output folder (a CI gate).

    `native` also runs each .pte in the C++ runner (built on first use) and checks it against eager and
    against the Python runtime's outputs. `arm64` (profile names; () for the default three) runs each .pte in
    the arm64 runtime under qemu-user as well (deploytool.steps.arm64).
    """
    from deploytool.crosscheck import references_for
    from deploytool.errors import UsageError
    from deploytool.registry import ALL_TARGETS
    from deploytool.errors import StageError
    from deploytool.hostcpu import host_cpu
    from deploytool.report import not_built
    from deploytool.steps.check import (artifact_of, changed_since_export, native_runner_for, read_manifest,
                                        recorded_delegations, verify_native)
    from deploytool.steps.arm64 import arm64_setup, verify_arm64
    from deploytool.steps.export import cross_matrix, write_report
    from deploytool.steps.quantize import x86_int8_program

    if targets and ALL_TARGETS not in targets:
        folders = [config.output_dir / t for t in targets]
    else:  # every target exported into this output folder
        folders = sorted(p.parent for p in config.output_dir.glob("*/manifest.json"))
    missing = [f for f in folders if not (f / "manifest.json").is_file()]
    if missing or not folders:
        where = missing[0] if missing else config.output_dir
        raise UsageError(f"No exported artifacts in {where} (no manifest.json).", hint="Run `deploytool export` first.")
    manifests = {folder: read_manifest(folder) for folder in folders}
    if native:
        native_runner_for(manifests)
    arm = arm64_setup(arm64) if arm64 is not None else None
    prepared = prepared or prepare(config)
    int8 = any(a["precision"] == "int8" for m in manifests.values() for a in m["artifacts"] + m.get("not_built", []))
    quant = quantize(config, prepared) if int8 else None
    references = references_of(prepared, quant)
    samples = [batch_of_one(s, prepared.inputs) for _, s in prepared.held_out()]
    activations = quant.recipe.get("activations", "static") if quant else "static"
    reports = []
    on_arm64: set[str] = set()
    per_target: dict[Path, list[ArtifactReport]] = {}
    for folder, manifest in manifests.items():
        target_reports = per_target[folder] = []
        delegations = recorded_delegations(folder)
        for entry in manifest.get("not_built", []):  # promised by the export, never built: still a failure
            target_reports.append(not_built(StageError(entry["error"], hint=entry.get("hint")), model=config.model,
                                            target=folder.name, format=entry["format"],
                                            precision=entry["precision"], path=folder / Path(entry["file"]).name))
        for entry in manifest["artifacts"]:
            artifact = artifact_of(folder, entry, delegations)
            changed = changed_since_export(artifact, entry)
            if changed:
                target_reports.append(not_built(changed, model=config.model, target=folder.name,
                                                format=artifact.format, precision=artifact.precision,
                                                path=artifact.path))
                continue
            own = references_for(artifact, references, prepared=prepared, samples=samples,
                                 timeout_s=config.parity.timeout_s, x86_int8=lambda: x86_int8_program(prepared))
            verify_args = dict(target=folder.name, samples=samples, references=own, config=config,
                               output_names=prepared.output_names, unverified=prepared.split.calibration.is_random)
            target_reports.append(verify(artifact, **verify_args))
            x86 = target_reports[-1]
            if native and artifact.format == "pte":
                target_reports.append(verify_native(artifact, x86, **verify_args))
            if arm is not None and artifact.format == "pte" and x86.sha256 not in on_arm64:
                on_arm64.add(x86.sha256)
                target_reports += verify_arm64(artifact, x86, arm, eager=references.eager, activations=activations,
                                               **verify_args)
        reports.extend(target_reports)
    cross = cross_matrix(reports)
    for folder, target_reports in per_target.items():
        write_report(folder, target_report(target_reports, target=folder.name, extra={
            "calibration": calibration_summary(prepared), "host_cpu": host_cpu(), "cross": cross}))
    return reports


def export_job(spec: JobSpec) -> JobResult:
    """The `export` job kind (deploytool.scale.jobs): one target at one precision, exported and verified into
    the job's own folder, the int8 program quantized there."""
    reports = export(config_of(spec), targets=(spec.target,), precision=Precision(spec.recipe))
    return artifact_result(reports)

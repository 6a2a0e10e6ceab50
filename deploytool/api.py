"""The whole story in one place: load -> capture -> quantize -> lower -> verify -> report.

The CLI and notebooks call these same functions:

    >>> from deploytool import api
    >>> config = api.load_config(overrides={"model": "zoo:digits"})
    >>> api.quantize(config)
    >>> reports = api.export(config, targets=("android",))
    >>> reports[0].passed
    True
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from deploytool.config import IMAGENET, Color, InputSpec, Precision, Preprocess, ProjectConfig, load_config
from deploytool.data import Split, split
from deploytool.errors import DataError, ParityFailed, UsageError
from deploytool.fsutil import atomic_write_bytes, atomic_write_json, sha256_file
from deploytool.lock import holds_output_lock
from deploytool.export import Artifact
from deploytool.export import load_program as _load_program  # also read by export.aoti
from deploytool.report import ArtifactReport, target_report, versions
from deploytool.runtime import as_arrays, flat_outputs
from deploytool.verify import References, verify

log = logging.getLogger("deploytool")

__all__ = ["load_config", "prepare", "quantize", "diagnose", "export", "check", "Prepared", "QuantizeResult"]

QUANT_DIR = "quantized"


@dataclass
class Prepared:
    """The model with its data: everything the steps after loading need."""

    config: ProjectConfig
    loaded: Any  # deploytool.loading.Loaded
    inputs: tuple[InputSpec, ...]
    preprocess: Preprocess | None
    split: Split
    example_inputs: tuple  # torch tensors, batch 1, from the first calibration sample
    timings: dict[str, float] = field(default_factory=dict)
    # Computed once, read by every step after: held-out samples, eager outputs and shapes, quantize results.
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    def captured(self):
        """The model captured once per run (deploytool.capture): quantize, diagnose and the X86 int8 program
        all start from it."""
        if "captured" not in self.memo:
            from deploytool.capture import capture

            started = time.perf_counter()
            self.memo["captured"] = capture(self.loaded.module, self.example_inputs)
            self.timings["capture"] = time.perf_counter() - started
        return self.memo["captured"]

    def held_out(self) -> list:
        """The held-out (ref, sample) pairs, decoded once: references, runners and writers all read them."""
        if "held_out" not in self.memo:
            self.memo["held_out"] = list(self.split.held_out.samples())
        return self.memo["held_out"]

    def eager_outputs(self) -> list[list[np.ndarray]]:
        """The eager model's outputs on held_out(), one sample per call as the artifacts run them."""
        if "eager_outputs" not in self.memo:
            self.memo["eager_outputs"] = self.outputs_of(self.loaded.module)
        return self.memo["eager_outputs"]

    def outputs_of(self, module) -> list[list[np.ndarray]]:
        """`module`'s in-process outputs on held_out(), one sample per call as the artifacts run them.

        >>> len(prepared.outputs_of(program.module())) == len(prepared.held_out())
        True
        """
        import torch

        with torch.inference_mode():
            return [as_arrays(module(*_to_torch(s, self.inputs))) for _, s in self.held_out()]

    def truths(self) -> list[Any]:
        """Per held-out sample, what the task metric scores against: the zoo entry's truth (label_of), else the
        class label from the data, else None."""
        label_of = getattr(self.loaded.zoo_entry, "label_of", None)
        return [label_of(ref) if label_of else ref.label for ref, _ in self.held_out()]

    def task_metric(self) -> Any:
        """The deploytool.parity.TaskMetric that decides int8 verdicts: the zoo entry's own, else top-1 accuracy
        when the held-out samples carry labels, else None."""
        from deploytool.parity import TaskMetric, accuracy

        own = getattr(self.loaded.zoo_entry, "task_metric", None)
        if own is not None:
            return own
        if any(t is not None for t in self.truths()):
            return TaskMetric("top-1 accuracy", accuracy, max_drop=self.config.parity.max_accuracy_drop)
        return None

    def session(self, recipe) -> Any:
        """The quantize.session.Session for `recipe`, one per run: the search, the fp32 fallback and the diagnosis
        of `quantize --diagnose` share its one calibration, its eager outputs and its evaluations."""
        if ("session", recipe) not in self.memo:
            from deploytool.quantize.session import Session

            self.memo["session", recipe] = Session(self, self.captured(), recipe)
        return self.memo["session", recipe]

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(f"output_{i}" for i in range(len(self.eager_outputs_shape())))

    def eager_outputs_shape(self) -> list[tuple[int, ...]]:
        if "output_shapes" not in self.memo:
            import torch

            with torch.inference_mode():
                outputs = flat_outputs(self.loaded.module(*self.example_inputs))
            self.memo["output_shapes"] = [tuple(o.shape) for o in outputs]
        return self.memo["output_shapes"]

    def cache_key(self) -> str:
        """Changes whenever the model, the calibration data or any option that shapes the program changes.
        Computed once per run: it hashes every weight and calibration file."""
        if "cache_key" not in self.memo:
            parts = {"model": self.loaded.fingerprint(), "data": self.split.calibration.fingerprint(),
                     "quantize": self.config.quantize, "inputs": self.inputs, "preprocess": self.preprocess,
                     "batch": self.config.data.batch_size, "versions": versions()}
            self.memo["cache_key"] = hashlib.sha256(repr(sorted(parts.items())).encode()).hexdigest()[:20]
        return self.memo["cache_key"]

    def inputs_hash(self, precision: Precision) -> str:
        """What an export was made from, recorded in manifest.json: `deploytool check` re-exports when it changes.

        Model (weights, code, the spec as written), calibration files and every option that shapes an artifact.
        No absolute paths: two checkouts of one repository record the same hash and byte-identical manifests.

        >>> prepared.inputs_hash(Precision.INT8) == prepare(config).inputs_hash(Precision.INT8)
        True
        """
        from deploytool.config import to_plain as _to_plain

        if ("inputs_hash", precision) in self.memo:  # hashing weights and every calibration file is not free
            return self.memo["inputs_hash", precision]
        digest = hashlib.sha256(replace(self.loaded, spec=self.config.model or "").fingerprint().encode())
        digest.update(self.split.calibration.fingerprint().encode())
        options = {"precision": precision, "quantize": self.config.quantize, "inputs": self.inputs,
                   "preprocess": self.preprocess, "batch": self.config.data.batch_size,
                   "dynamic_batch": self.config.dynamic_batch, "torchscript_capture": self.config.torchscript_capture,
                   "versions": versions()}
        digest.update(json.dumps({k: _to_plain(v) for k, v in options.items()}, sort_keys=True).encode())
        self.memo["inputs_hash", precision] = digest.hexdigest()[:20]
        return self.memo["inputs_hash", precision]


@dataclass
class QuantizeResult:
    program_path: Path
    cache_key: str
    reused: bool
    calibration_samples: int
    held_out_samples: int
    capture_method: str
    reference_parity: Any  # Comparison of the quantized program vs eager, in-process
    recipe: dict[str, Any] = field(default_factory=dict)  # observer, granularity, layers kept in fp32
    fallback: dict[str, Any] | None = None  # the automatic fp32 fallback's steps, when a budget was set
    program: Any = field(default=None, repr=False)  # the int8 ExportedProgram when built or loaded in this run
    outputs: Any = field(default=None, repr=False)  # its in-process outputs on the held-out samples


def prepare(config: ProjectConfig) -> Prepared:
    """Load the model and open its data; check that samples and model fit together.

    The checks that need no model run first: building it can take minutes, a typo in --calib should not."""
    from deploytool.data.sources import RANDOM, check_calibration, open_dataset
    from deploytool.inputs import describe, named, sources
    from deploytool.loading import load
    from deploytool.quantize.sufficiency import sample_warnings

    if not config.model:
        raise UsageError("No model given.", hint="Pass --model (zoo:NAME, torchvision:NAME, file.py:factory, "
                                                 "pkg.module:factory or a .pt2), or set `model` in deploytool.toml.")
    calib = config.data.calib
    if calib is None and not config.model.startswith("zoo:"):  # only a zoo entry brings its own data
        raise DataError("No calibration data given.",
                        hint="Pass --calib DIR with real samples (images, .npy/.npz/.pt), or set data.calib. "
                             "`--calib random` works too, but then nothing is verified.")
    if calib not in (None, RANDOM):
        check_calibration(calib, base_dir=config.base_dir)
    started = time.perf_counter()
    loaded = load(config.model, base_dir=config.base_dir, weights=config.weights,
                  trust_checkpoint=config.trust_checkpoint)
    inputs = named(config.inputs, loaded.input_names) or loaded.inputs
    preprocess = config.preprocess or loaded.preprocess or default_preprocess(inputs)
    input_names = tuple(i.name for i in inputs) or loaded.input_names
    if calib is None:
        calib = str(loaded.zoo_entry.write_data(config.output_dir / "data" / loaded.zoo_entry.name))
        log.info("calibration data: %s", loaded.zoo_entry.data_note)
    dataset = open_dataset(calib, base_dir=config.base_dir, preprocess=preprocess, input_names=input_names,
                           inputs=inputs)
    parts = split(dataset, holdout=config.data.holdout, holdout_min=config.data.holdout_min,
                  calib_limit=config.data.calib_limit)
    first_ref, first = next(parts.calibration.samples())
    inputs = _check_inputs(inputs, input_names, first, first_ref.key, config)
    example_inputs = _to_torch(first, inputs)
    prepared = Prepared(config, loaded, inputs, preprocess, parts, example_inputs)
    _check_model_accepts(prepared, first_ref.key)
    prepared.timings["load"] = time.perf_counter() - started
    unused = f"; {parts.unused} not used: data.calib_limit = {config.data.calib_limit}" if parts.unused else ""
    log.info("loaded %s; data: %s (%d to calibrate, %d held out%s)", config.model, dataset.description,
             len(parts.calibration), len(parts.held_out), unused)
    inputs_from, preprocess_from = sources(config, loaded, first_ref.key)
    log.info("%s", describe(inputs, preprocess if _is_image_data(prepared) else None, inputs_from=inputs_from,
                            preprocess_from=preprocess_from))
    for warning in sample_warnings(parts, holdout_min=config.data.holdout_min):
        log.warning("%s", warning)
    return prepared


def default_preprocess(inputs: tuple[InputSpec, ...]) -> Preprocess:
    """ImageNet conventions (resize 256, crop 224, mean/std), fitted to a known NCHW input shape."""
    if not inputs or len(inputs[0].shape) != 4:
        return IMAGENET
    _, channels, height, width = inputs[0].shape
    if channels not in (1, 3):
        return IMAGENET
    return replace(IMAGENET, resize=round(min(height, width) * 256 / 224), center_crop=(height, width),
                   color=Color.L if channels == 1 else Color.RGB,
                   mean=IMAGENET.mean if channels == 3 else (0.449,), std=IMAGENET.std if channels == 3 else (0.226,))


@holds_output_lock
def quantize(config: ProjectConfig, prepared: Prepared | None = None, *, executor: Any = None) -> QuantizeResult:
    """Capture, quantize to int8 on the calibration split, save the program for `export` to reuse.

    With a quality budget, the fp32 fallback's sensitivity candidates run as jobs on `executor`
    (deploytool.scale.executor) when one is given, else here one after another.

    >>> api.quantize(config, executor=executor_for("local", jobs=4)).fallback["kept_fp32"]
    ['features.0', 'features.3']
    """
    from deploytool.quantize.pt2e import quantize as quantize_pt2e

    prepared = prepared or prepare(config)
    key = prepared.cache_key()
    if ("quantize", key, config.output_dir) in prepared.memo:  # export right after quantize, in one process
        return prepared.memo["quantize", key, config.output_dir]
    folder = config.output_dir / QUANT_DIR
    record = _read_record(folder)
    program_path = folder / "program.pt2"
    judged: list[tuple[Any, list]] = []  # (variant program, its held-out outputs), as the search judged them
    if record and record.get("cache_key") == key and program_path.is_file():
        log.info("reusing the quantized program in %s (model, data and options unchanged)", folder)
        # Not loaded here (2-5 s): export finds its cached .pte by the file, and reads the file only on a miss.
        program, reused, method = None, True, record["capture_method"]
        recipe, fallback = record.get("recipe", {}), record.get("fallback")
    else:
        captured = prepared.captured()
        started = time.perf_counter()
        quantized, searched, fallback = _quantize_variants(prepared, executor, judged)
        recipe = _recipe_record(config, fallback, searched)
        prepared.timings["quantize"] = time.perf_counter() - started
        program, reused, method = quantized.program, False, captured.method
        _save_program(program, program_path)
    # The search ran the kept variant on the held-out samples already (MobileNetV2: 28% of quantize's time); a
    # repeated run reads them, with eager's, from the references its first run saved.
    refs_key = hashlib.sha256(f"{key}|{prepared.split.held_out.fingerprint()}".encode()).hexdigest()[:20]
    outputs = _read_references(prepared, folder, refs_key) if reused else None
    if outputs is None:
        program = program or _load_program(program_path)
        outputs = next((o for p, o in judged if p is program), None) or prepared.outputs_of(program.module())
        _write_references(folder, refs_key, prepared.eager_outputs(), outputs)
    reference = _judge(prepared, outputs, "quantized program (int8, before lowering)")[0]
    result = QuantizeResult(program_path, key, reused, len(prepared.split.calibration), len(prepared.split.held_out),
                            method, reference, recipe, fallback, program, outputs)
    prepared.memo["quantize", key, config.output_dir] = result
    if not reused:
        atomic_write_json(folder / "quantize.json", {
            "cache_key": key, "capture_method": method, "config": _replayable(config),
            "calibration": _calibration_summary(prepared), "recipe": recipe, "fallback": fallback,
            "versions": versions(),
        })
    return result


def _quantize_variants(prepared: Prepared, executor: Any,
                       judged: list[tuple[Any, list]]) -> tuple[Any, Any, dict[str, Any] | None]:
    """The int8 program the recipe asks for: (program, SearchResult or None, fp32 fallback record or None).
    Each variant the search judges is appended to `judged` with its held-out outputs.

    activations = auto searches static, mixed, then dynamic int8 (quantize/search.py), all from one calibration
    (quantize/session.py); past them, a budget the user set runs the fp32 fallback over the same calibration.
    activations = static with a budget is the fp32 fallback alone, without one the plain static recipe; dynamic
    is the plain dynamic recipe.
    """
    from deploytool.config import Activations
    from deploytool.quantize.diagnose import noisiest_layers
    from deploytool.quantize.fallback import quantize_within_budget
    from deploytool.quantize.search import DYNAMIC, STATIC, search

    recipe = prepared.config.quantize
    session = prepared.session(recipe)
    if recipe.activations is Activations.STATIC and recipe.has_budget:
        quantized, fallback = quantize_within_budget(session, executor=executor)
        return quantized, None, fallback
    if recipe.activations is not Activations.AUTO and not recipe.has_budget:
        return session.quantized(STATIC if recipe.activations is Activations.STATIC else DYNAMIC), None, None

    def compare(program):
        judged.append((program, prepared.outputs_of(program.module())))
        return _judge(prepared, judged[-1][1], "int8 variant")

    searched = search(recipe, build=session.quantized, compare=compare, sensitive=lambda: noisiest_layers(session),
                      cost=lambda program: _pte_cost(prepared, program))
    if searched.met or not recipe.has_budget:
        return searched.program, searched, None
    quantized, fallback = quantize_within_budget(session, executor=executor)
    return quantized, searched, fallback


def _judge(prepared: Prepared, outputs: list[list[np.ndarray]], name: str) -> tuple[Any, Any]:
    """In-process outputs of a quantized program against eager, with the int8 verdict's thresholds and the task
    metric: (Comparison, TaskResult or None)."""
    from deploytool.parity import compare, task_result

    eager = prepared.eager_outputs()
    task = task_result(prepared.task_metric(), eager, outputs, prepared.truths())
    comparison = compare(eager, outputs, output_names=prepared.output_names, candidate_name=name,
                         reference_name="eager fp32", thresholds=prepared.config.parity.int8, task=task)
    return comparison, task


def _pte_cost(prepared: Prepared, program) -> tuple[float, int]:
    """The program's .pte latency (ms, median at batch 1) and size, lowered through the export's cache."""
    from deploytool.export.executorch import PTE_CACHE, pte_cost

    return pte_cost(program, cache_dir=prepared.config.output_dir / PTE_CACHE, example_inputs=prepared.example_inputs)


def _recipe_record(config: ProjectConfig, fallback: dict[str, Any] | None, searched: Any) -> dict[str, Any]:
    """What report.json says about how the program was quantized."""
    recipe = config.quantize
    activations = searched.activations if searched and not fallback else (
        "static" if fallback else recipe.activations.value)
    return {"quantizer": "XNNPACKQuantizer (PT2E)", "observer": recipe.observer.value,
            "weights": "per-channel" if recipe.per_channel else "per-tensor",
            "activations": activations,
            "activation_range": "symmetric" if recipe.symmetric_activations else "asymmetric",
            "keep_fp32": list(recipe.keep_fp32), "kept_fp32_by_fallback": fallback["kept_fp32"] if fallback else [],
            "search": searched.to_dict() if searched else None}


@holds_output_lock
def diagnose(config: ProjectConfig, prepared: Prepared | None = None, *, fallback: dict[str, Any] | None = None,
             search: dict[str, Any] | None = None, executor: Any = None) -> tuple[Any, Path]:
    """Per-layer diagnosis of the int8 recipe; writes <output>/diagnosis/report.json and report.html.

    The sensitivity candidates run as jobs on `executor` (deploytool.scale.executor) when one is given.

    >>> diagnosis, folder = diagnose(config)
    >>> diagnosis.jump.name
    'features.3'
    """
    from deploytool.report.html import write_html
    from deploytool.quantize.diagnose import diagnose as diagnose_layers

    prepared = prepared or prepare(config)
    diagnosis = diagnose_layers(prepared.session(config.quantize), keep_fp32=tuple(fallback["kept_fp32"]) if fallback else (),
                                fallback=fallback, search=search, executor=executor)
    folder = config.output_dir / "diagnosis"
    atomic_write_json(folder / "report.json", {**diagnosis.to_dict(), "versions": versions()})
    write_html(diagnosis, folder / "report.html")
    return diagnosis, folder


@holds_output_lock
def export(config: ProjectConfig, *, targets: tuple[str, ...] | None = None, formats: tuple[str, ...] | None = None,
           precision: Precision | None = None, prepared: Prepared | None = None) -> list[ArtifactReport]:
    """Write each target's artifacts, verify each in its real runtime, write manifest.json and report.json.

    A format shared by several targets (the .pte of android and ios) is lowered once and copied. A format
    whose writer fails (StageError) is a failed row of the report (report.not_built); the others go on.
    """
    from deploytool.crosscheck import references_for
    from deploytool.errors import StageError
    from deploytool.export import FORMATS, Programs
    from deploytool.report import not_built

    plan = plan_formats(targets or config.targets, formats)
    prepared = prepared or prepare(config)
    precision = precision or default_precision(config)
    quant = quantize(config, prepared) if precision is Precision.INT8 else None
    programs = Programs(prepared, precision=precision.value, int8_program=quant.program if quant else None,
                        int8_file=quant.program_path if quant else None,
                        int8_activations=quant.recipe.get("activations", "static") if quant else "static")
    references = _references(prepared, quant)
    samples = [_batch_of_one(s, prepared.inputs) for _, s in prepared.held_out()]
    built: dict[str, list[Artifact]] = {}
    failed: dict[str, StageError] = {}
    reports: list[ArtifactReport] = []
    per_target: dict[str, list[ArtifactReport]] = {}
    for target, target_formats in plan.items():
        folder = config.output_dir / target
        target_reports = per_target[target] = []
        for fmt in target_formats:
            if fmt in built:
                artifacts = [_copy_artifact(a, folder) for a in built[fmt]]
            elif fmt not in failed:
                try:
                    artifacts = built[fmt] = _build(fmt, programs, folder, target)
                except StageError as exc:  # the other formats are still built, verified and written
                    failed[fmt] = exc
            if fmt in failed:
                target_reports.append(not_built(failed[fmt], model=config.model, target=target, format=fmt,
                                                precision=programs.precision, folder=folder))
                continue
            for artifact in artifacts:
                # Named with its target: android's and ios's copies of one .pte each run in the runtime.
                log.info("verifying %s/%s in %s", target, artifact.path.name,
                         FORMATS.get(artifact.format).meta["runtime"])
                own = references_for(artifact, references, prepared=prepared, samples=samples,
                                     timeout_s=config.parity.timeout_s)
                target_reports.append(verify(artifact, target=target, samples=samples, references=own,
                                             config=config, output_names=prepared.output_names,
                                             unverified=prepared.split.calibration.is_random, reuse_runs=True))
        reports.extend(target_reports)
    cross = _cross(reports)
    for target, target_reports in per_target.items():
        _write_target_files(prepared, config.output_dir / target, target, target_reports, quant, cross)
    return reports


def _build(fmt: str, programs: Any, folder: Path, target: str) -> list[Artifact]:
    """Run one format's writer, its verifying runtime starting meanwhile; progress lines while it runs."""
    from deploytool.export import FORMATS
    from deploytool.progress import timed_stage
    from deploytool.runtime import RUNNERS, prestart

    if fmt in RUNNERS:
        prestart(fmt)  # the verifying runtime imports while the format is built
    with timed_stage(f"building {fmt} for {target}", log=log):
        return FORMATS.get(fmt).load()(programs, folder)


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


@holds_output_lock
def check(config: ProjectConfig, *, targets: tuple[str, ...] | None = None, native: bool = False,
          prepared: Prepared | None = None) -> list[ArtifactReport]:
    """Re-run parity on the artifacts already in the output folder (a CI gate).

    `native` also runs each .pte in the C++ runner (built on first use) and checks it against eager and
    against the Python runtime's outputs.
    """
    from deploytool.crosscheck import references_for
    from deploytool.export import Artifact
    from deploytool.registry import ALL_TARGETS

    if targets and ALL_TARGETS not in targets:
        folders = [config.output_dir / t for t in targets]
    else:  # every target exported into this output folder
        folders = sorted(p.parent for p in config.output_dir.glob("*/manifest.json"))
    missing = [f for f in folders if not (f / "manifest.json").is_file()]
    if missing or not folders:
        where = missing[0] if missing else config.output_dir
        raise UsageError(f"No exported artifacts in {where} (no manifest.json).", hint="Run `deploytool export` first.")
    manifests = {folder: json.loads((folder / "manifest.json").read_text()) for folder in folders}
    if native:
        _native_runner_for(manifests)
    prepared = prepared or prepare(config)
    int8 = any(a["precision"] == "int8" for m in manifests.values() for a in m["artifacts"])
    quant = quantize(config, prepared) if int8 else None
    references = _references(prepared, quant)
    samples = [_batch_of_one(s, prepared.inputs) for _, s in prepared.held_out()]
    reports = []
    per_target: dict[Path, list[ArtifactReport]] = {}
    for folder, manifest in manifests.items():
        target_reports = per_target[folder] = []
        delegations = _recorded_delegations(folder)
        for entry in manifest["artifacts"]:
            path = folder / entry["file"]
            companions = {folder / name: digest for name, digest in entry.get("companions", {}).items()}
            for file, digest in {path: entry["sha256"], **companions}.items():
                if not file.is_file() or sha256_file(file) != digest:
                    raise ParityFailed(f"{file} is missing or differs from the sha256 in its manifest; it changed "
                                       "after export.", hint="Re-run `deploytool export`.")
            artifact = Artifact(path, entry["format"], entry["precision"], delegations.get(entry["sha256"]),
                                companions=tuple(companions))
            own = references_for(artifact, references, prepared=prepared, samples=samples,
                                 timeout_s=config.parity.timeout_s)
            verify_args = dict(target=folder.name, samples=samples, references=own, config=config,
                               output_names=prepared.output_names, unverified=prepared.split.calibration.is_random)
            target_reports.append(verify(artifact, **verify_args))
            if native and artifact.format == "pte":
                target_reports.append(_verify_native(artifact, target_reports[-1], **verify_args))
        reports.extend(target_reports)
    cross = _cross(reports)
    for folder, target_reports in per_target.items():
        atomic_write_json(folder / "report.json", target_report(target_reports, target=folder.name, extra={
            "calibration": _calibration_summary(prepared), "cross": cross}))
    return reports


# --- verification and reporting -----------------------------------------------------------------------


def _native_runner_for(manifests: dict[Path, dict]) -> Path:
    """Build (or find cached) the native runner before any heavy work; --native needs a .pte to run."""
    from deploytool.runtime.native import ensure_runner

    if not any(a["format"] == "pte" for m in manifests.values() for a in m["artifacts"]):
        raise UsageError("--native runs .pte files, and none was exported here.",
                         hint="Export one with `deploytool export --target android` (or ios).")
    return ensure_runner()


def _recorded_delegations(folder: Path) -> dict[str, Any]:
    """sha256 -> Delegation from the export's report.json: lowering is what measured it, and check re-runs none."""
    from deploytool.export import Delegation

    try:
        artifacts = json.loads((folder / "report.json").read_text()).get("artifacts", [])
    except (OSError, json.JSONDecodeError, AttributeError):
        return {}
    return {a["sha256"]: Delegation.from_dict(d)
            for a in artifacts if isinstance(a, dict) and (d := a.get("delegation")) and a.get("sha256")}


def _verify_native(artifact: Artifact, python: ArtifactReport, **verify_args) -> ArtifactReport:
    """The .pte again in the C++ runner: vs eager (as every row) and vs the Python runtime's outputs."""
    from deploytool.parity import compare
    from deploytool.runtime.native import NOTE, RUNNER_FORMAT, SAME_PROGRAM

    report = verify(replace(artifact, format=RUNNER_FORMAT, notes=(NOTE,)), **verify_args)
    if report.outputs is not None and python.outputs is not None:
        report.comparisons.append(compare(python.outputs, report.outputs, output_names=verify_args["output_names"],
                                          thresholds=SAME_PROGRAM, reference_name="ExecuTorch Python runtime",
                                          candidate_name=f"{artifact.path.name} (native C++ runner)"))
    return report


def _references(prepared: Prepared, quant: QuantizeResult | None) -> References:
    return References(eager=prepared.eager_outputs(), int8=quant.outputs if quant else None,
                      labels=prepared.truths(), task=prepared.task_metric())


def _copy_artifact(artifact: Artifact, folder: Path) -> Artifact:
    path = atomic_write_bytes(folder / artifact.path.name, artifact.path.read_bytes())
    companions = tuple(atomic_write_bytes(folder / c.name, c.read_bytes()) for c in artifact.companions)
    return replace(artifact, path=path, companions=companions)


def _cross(reports: list[ArtifactReport]) -> list[dict[str, Any]]:
    """The cross-runtime matrix of the whole run; each target's report.json carries all of it."""
    from deploytool.crosscheck import matrix

    return [row.to_dict() for row in matrix(reports)]


def _write_target_files(prepared: Prepared, folder: Path, target: str, reports: list[ArtifactReport],
                        quant: QuantizeResult | None, cross: list[dict[str, Any]]) -> None:
    extra = {"calibration": _calibration_summary(prepared),
             "capture": {"method": quant.capture_method} if quant else None, "cross": cross,
             "quantization": quant.recipe if quant else None}
    written = [r for r in reports if not r.build_error]
    if written:  # the manifest lists files an app can load; a format not built has none
        atomic_write_json(folder / "manifest.json", _manifest(prepared, written))
    atomic_write_json(folder / "report.json", target_report(reports, target=target, extra=extra))


def _manifest(prepared: Prepared, reports: list[ArtifactReport]) -> dict:
    """What an app needs to run the artifacts. No timestamps: the same inputs give the same bytes."""
    from deploytool.config import to_plain as _to_plain

    shapes = prepared.eager_outputs_shape()
    artifacts = [{"file": r.artifact_path.name, "format": r.format, "sha256": r.sha256, "precision": r.precision,
                  **({"companions": r.companions} if r.companions else {})} for r in reports]
    return {
        "schema": "deploytool.manifest/1",
        "model": prepared.config.model,
        **({"weights": str(prepared.config.path(prepared.config.weights))} if prepared.config.weights else {}),
        "inputs_hash": prepared.inputs_hash(Precision(reports[0].precision)),
        "artifact": {**artifacts[0], "backend": "xnnpack"} if reports[0].format == "pte" else artifacts[0],
        "artifacts": artifacts,
        "inputs": [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in prepared.inputs],
        "outputs": [{"name": n, "shape": list(s), "dtype": "float32"} for n, s in zip(prepared.output_names, shapes)],
        "preprocess": {"kind": "image", **_to_plain(prepared.preprocess)} if _is_image_data(prepared) else None,
        "labels": list(prepared.config.labels or prepared.split.calibration.labels or prepared.loaded.labels) or None,
        "versions": versions(),
    }


def _is_image_data(prepared: Prepared) -> bool:
    return prepared.split.calibration.description.startswith("image folder")


def _calibration_summary(prepared: Prepared) -> dict[str, Any]:
    calibration = prepared.split.calibration
    return {"source": calibration.description, "samples": len(calibration),
            "held_out": len(prepared.split.held_out), "random": calibration.is_random,
            "unreadable": list(prepared.split.unreadable)}


# --- helpers --------------------------------------------------------------------------------------------


def default_precision(config: ProjectConfig) -> Precision:
    """The config's precision, else int8 once `quantize` has run in this output folder or when real calibration
    data is given (`export --calib DIR` quantizes and exports in one run), else fp32.

    >>> default_precision(load_config(overrides={"model": "m.py:build", "data.calib": "photos"}))
    <Precision.INT8: 'int8'>
    """
    from deploytool.data.sources import RANDOM

    if config.precision:
        return config.precision
    quantized = (config.output_dir / QUANT_DIR / "quantize.json").is_file()
    return Precision.INT8 if quantized or config.data.calib not in (None, RANDOM) else Precision.FP32


def recorded_config(output_dir: Path) -> dict[str, Any] | None:
    """The config the last `quantize` in this folder ran with, so `export` needs no repeated flags."""
    record = _read_record(output_dir / QUANT_DIR)
    return record.get("config") if record else None


def _read_record(folder: Path) -> dict[str, Any] | None:
    path = folder / "quantize.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        log.warning("ignoring unreadable %s", path)
        return None


def _replayable(config: ProjectConfig) -> dict[str, Any]:
    """The config with its paths made absolute, so it replays from any folder."""
    plain = config.to_dict()
    if config.model and ".py:" in config.model:
        file, _, factory = config.model.partition(":")
        plain["model"] = f"{config.path(file)}:{factory}"
    elif config.model and config.model.endswith(".pt2"):
        plain["model"] = str(config.path(config.model))
    if config.weights:
        plain["weights"] = str(config.path(config.weights))
    if config.data.calib and config.data.calib != "random":
        plain["data"]["calib"] = str(config.path(config.data.calib))
    plain["output"] = str(config.output_dir)
    return plain


REFERENCES = "references.npz"  # eager's and the quantized program's held-out outputs, for a repeated run


def _write_references(folder: Path, refs_key: str, eager: list, int8: list) -> None:
    """Save both output lists under `refs_key` (the quantize cache key and the held-out samples' content)."""
    import io

    arrays = {f"{name}/{i}/{j}": a for name, outputs in (("eager", eager), ("int8", int8))
              for i, sample in enumerate(outputs) for j, a in enumerate(sample)}
    buffer = io.BytesIO()
    np.savez(buffer, key=np.array(refs_key), counts=np.array([len(eager), len(eager[0]) if eager else 0]), **arrays)
    atomic_write_bytes(folder / REFERENCES, buffer.getvalue())


def _read_references(prepared: Prepared, folder: Path, refs_key: str) -> list | None:
    """The quantized program's held-out outputs saved under `refs_key` (eager's go to prepared.memo), else None:
    a changed model, data split or option changes the key."""
    try:
        with np.load(folder / REFERENCES) as saved:
            if str(saved["key"]) != refs_key:
                return None
            samples, per_sample = (int(n) for n in saved["counts"])
            lists = {name: [[saved[f"{name}/{i}/{j}"] for j in range(per_sample)] for i in range(samples)]
                     for name in ("eager", "int8")}
    except (OSError, KeyError, ValueError):  # absent, from an older release, or cut short
        return None
    log.info("reusing the held-out references in %s (eager and quantized outputs)", folder / REFERENCES)
    prepared.memo.setdefault("eager_outputs", lists["eager"])
    return lists["int8"]


def _save_program(program, path: Path) -> None:
    import io

    import torch

    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _batch_of_one(sample, inputs: tuple[InputSpec, ...]) -> tuple[np.ndarray, ...]:
    """A sample as the model's batch-1 inputs, in the configured dtypes."""
    return tuple(np.ascontiguousarray(a, dtype=spec.dtype)[None] for a, spec in zip(sample, inputs))


def _to_torch(sample, inputs: tuple[InputSpec, ...]) -> tuple:
    import torch

    return tuple(torch.from_numpy(a) for a in _batch_of_one(sample, inputs))


def _check_inputs(inputs: tuple[InputSpec, ...], names: tuple[str, ...], first, key: str,
                  config: ProjectConfig) -> tuple[InputSpec, ...]:
    """Configured shapes must match the data; with no configuration, the first sample defines them."""
    if len(first) != len(names):
        raise DataError(f"{key}: a sample holds {len(first)} input(s), the model takes {len(names)} ({', '.join(names)}).",
                        hint="For several inputs use .npz with one array per forward() argument name.")
    if not inputs:
        return tuple(InputSpec(n, (1, *a.shape), str(a.dtype) if a.dtype != np.float64 else "float32")
                     for n, a in zip(names, first))
    for spec, array in zip(inputs, first):
        if tuple(spec.shape[1:]) != tuple(array.shape):
            raise DataError(
                f"{key}: input '{spec.name}' has shape {list(array.shape)}, but its [[inputs]] shape expects "
                f"{list(spec.shape[1:])} per sample (model input {list(spec.shape)}).",
                hint=f'Fix shape in the [[inputs]] table with name = "{spec.name}", or set [preprocess] '
                     "resize/center_crop so images come out at that size.")
    return inputs


def _check_model_accepts(prepared: Prepared, key: str) -> None:
    """Run the first sample through the model: a DataError naming the sample if the model rejects it. The
    output shapes are kept, so eager_outputs_shape() does not run the same forward again."""
    import torch

    try:
        with torch.inference_mode():
            outputs = prepared.loaded.module(*prepared.example_inputs)
    except Exception as exc:  # the user's forward can raise anything on a wrong shape
        shapes = ", ".join(f"{i.name} {list(i.shape)} {i.dtype}" for i in prepared.inputs)
        first = prepared.inputs[0]
        dtype = "int64" if first.dtype == "float32" else "float32"  # token ids saved as floats, or the reverse
        fix = ("set resize and center_crop in [preprocess] so the images come out at the model's input size"
               if _is_image_data(prepared) else "reshape the arrays, or cast them with a dtype in deploytool.toml: "
               f'[[inputs]] with name = "{first.name}", shape = {list(first.shape)}, dtype = "{dtype}"')
        raise DataError(f"The model rejects the data's input shape or dtype ({shapes}, from {key}): "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                        hint=f"Make the data match the model: {fix}.") from exc
    prepared.memo["output_shapes"] = [tuple(o.shape) for o in flat_outputs(outputs)]  # eager_outputs_shape's


"""The quantize step's parts: which int8 variant to keep, how it is judged, and what a repeated run reuses.

deploytool.api.quantize tells the step in order; these are the pieces it calls. quantize.json and
references.npz in <output>/quantized/ are read and written here.

    >>> variant, searched, fallback = quantize_variants(prepared, executor=None, judged=[])
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploytool.config import Precision, ProjectConfig
from deploytool.context import QUANT_DIR, Prepared
from deploytool import cache

log = logging.getLogger("deploytool")

REFERENCES = "references.npz"  # eager's and the quantized program's held-out outputs, for a repeated run


@dataclass
class QuantizeResult:
    """What `quantize` made: the saved int8 program, whether it was reused, how it compares with eager."""

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


def quantize_variants(prepared: Prepared, executor: Any,
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

    def cost(program):
        return pte_cost_of(prepared, program)

    def fallback_over_static():
        return quantize_within_budget(session, evaluate_many=evaluate_many_on(executor), cost=cost)

    if recipe.activations is Activations.STATIC and recipe.has_budget:
        quantized, fallback = fallback_over_static()
        return quantized, None, fallback
    if recipe.activations is not Activations.AUTO and not recipe.has_budget:
        return session.quantized(STATIC if recipe.activations is Activations.STATIC else DYNAMIC), None, None

    def compare(program):
        judged.append((program, prepared.outputs_of(program.module())))
        return judge(prepared, judged[-1][1], "int8 variant")

    ahead = lower_ahead(prepared, session, DYNAMIC)
    dynamic = []  # the dynamic int8 program, once the search builds it: the one the child lowers

    def build(plan):
        quantized = session.quantized(plan)
        if plan == DYNAMIC:
            dynamic.append(quantized.program)
        return quantized

    def cost_after_ahead(program):
        if ahead is not None and any(program is p for p in dynamic):
            ahead.wait()  # same program, same cache key: the child's .pte is read, not lowered again
        return cost(program)

    try:
        with a_core_left_beside(ahead):
            searched = search(recipe, build=build, compare=compare, sensitive=lambda: noisiest_layers(session),
                              cost=cost_after_ahead)
    finally:
        if ahead is not None:
            ahead.stop()
    if searched.met or not recipe.has_budget:
        return searched.program, searched, None
    quantized, fallback = fallback_over_static()
    return quantized, searched, fallback


def lower_ahead(prepared: Prepared, session: Any, plan: Any) -> Any:
    """The search's last step, `plan` (dynamic int8), built and lowered in a forked child (export.background)
    while this process calibrates and judges the cheaper steps; stopped when the search ends. Trained MobileNetV2:
    static int8 misses the budget, dynamic is kept, and its ~20 s lowering overlaps the rest of the search."""
    from deploytool.export.background import can_fork, lower_in_background
    from deploytool.export.executorch import PTE_CACHE, lower_pte_cached

    if not can_fork():
        return None
    from executorch.backends.xnnpack.quantizer import xnnpack_quantizer  # noqa: F401  imported once, for both

    cache = prepared.config.output_dir / PTE_CACHE
    return lower_in_background(lambda: session.quantized(plan).program,
                               lambda program, claim: lower_pte_cached(program, cache_dir=cache, claim=claim),
                               cache_dir=cache, label=plan.name)


@contextlib.contextmanager
def a_core_left_beside(ahead: Any):
    """One torch thread fewer here while the background child lowers on a core of its own. With torch's default
    of a thread per core, OpenMP's barriers wait on the thread the child displaced: static int8's judging took
    267 s instead of ~6 s on MobileNetV2 (2 cores, load 4). Giving the threads back when the child ends, before
    the search does, was measured and gained nothing (MobileNetV2: it ends ~2 s before NNCF's step; digits:
    17.3-19.2 s either way), so they come back at the end of the search."""
    import torch

    threads = torch.get_num_threads()
    if ahead is not None:
        torch.set_num_threads(max(1, threads - 1))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def evaluate_many_on(executor: Any):
    """How the sensitivity candidates are evaluated: as jobs on `executor` (deploytool.scale), else None (in
    this process)."""
    if executor is None:
        return None
    from deploytool.scale.jobs import evaluate_candidates

    return functools.partial(evaluate_candidates, executor)


def judge(prepared: Prepared, outputs: list[list[np.ndarray]], name: str) -> tuple[Any, Any]:
    """In-process outputs of a quantized program against eager, with the int8 verdict's thresholds and the task
    metric: (Comparison, TaskResult or None)."""
    from deploytool.parity import compare, task_result

    eager = prepared.eager_outputs()
    task = task_result(prepared.task_metric(), eager, outputs, prepared.truths())
    comparison = compare(eager, outputs, output_names=prepared.output_names, candidate_name=name,
                         reference_name="eager fp32", thresholds=prepared.config.parity.int8, task=task)
    return comparison, task


def pte_cost_of(prepared: Prepared, program) -> tuple[float, int]:
    """The program's .pte latency (ms, median at batch 1) and size, lowered through the export's cache."""
    from deploytool.export.executorch import PTE_CACHE, pte_cost

    return pte_cost(program, cache_dir=prepared.config.output_dir / PTE_CACHE, example_inputs=prepared.example_inputs)


def recipe_record(config: ProjectConfig, fallback: dict[str, Any] | None, searched: Any) -> dict[str, Any]:
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
    record = read_record(output_dir / QUANT_DIR)
    return record.get("config") if record else None


def read_record(folder: Path) -> dict[str, Any] | None:
    """The folder's quantize.json as written by the last `quantize`, else None (absent or unreadable)."""
    path = folder / "quantize.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        log.warning("ignoring unreadable %s", path)
        return None


def replayable(config: ProjectConfig) -> dict[str, Any]:
    """The config with its paths made absolute, so it replays from any folder."""
    plain = config.to_dict()
    if config.model and ".py:" in config.model:
        file, _, factory = config.model.partition(":")
        plain["model"] = f"{config.path(file)}:{factory}"
    elif config.model and config.model.endswith(".pt2"):
        plain["model"] = str(config.path(config.model))
    if config.weights:
        plain["weights"] = str(config.path(config.weights))
    if config.quantize.metric and ".py:" in config.quantize.metric:
        file, _, function = config.quantize.metric.partition(":")
        plain["quantize"]["metric"] = f"{config.path(file)}:{function}"
    if config.data.calib and config.data.calib != "random":
        plain["data"]["calib"] = str(config.path(config.data.calib))
    plain["output"] = str(config.output_dir)
    return plain


def references_key(prepared: Prepared, cache_key: str) -> str:
    """What references.npz is saved under: the quantize cache key and the held-out samples' content."""
    return hashlib.sha256(f"{cache_key}|{prepared.split.held_out.fingerprint()}".encode()).hexdigest()[:20]


def write_references(folder: Path, refs_key: str, eager: list, int8: list) -> None:
    """Save both output lists under `refs_key` (the quantize cache key and the held-out samples' content)."""
    from deploytool.npz import pack

    cache.store(folder / REFERENCES, pack({"eager": eager, "int8": int8}, key=np.array(refs_key)))


def read_references(prepared: Prepared, folder: Path, refs_key: str) -> list | None:
    """The quantized program's held-out outputs saved under `refs_key` (eager's go to prepared.memo), else None:
    a changed model, data split or option changes the key."""
    from deploytool.npz import unpack

    data = cache.fetch(folder / REFERENCES)
    if data is None:
        return None
    try:
        with np.load(io.BytesIO(data)) as saved:
            if str(saved["key"]) != refs_key:
                return None
            lists = {name: unpack(saved, name) for name in ("eager", "int8")}
    except (OSError, KeyError, ValueError):  # from an older release
        return None
    log.info("reusing the held-out references in %s (eager and quantized outputs)", folder / REFERENCES)
    prepared.memo.setdefault("eager_outputs", lists["eager"])
    return lists["int8"]


X86_PROGRAM = "program.x86-inductor.pt2"
X86_RECORD = "x86-inductor.json"


def x86_int8_program(prepared: Prepared) -> Any:
    """The X86InductorQuantizer int8 program (deploytool.quantize.x86), reused from <output>/quantized/ while model,
    data and options match: what the AOTInductor writer compiles and its artifact is checked against.

    >>> program = x86_int8_program(prepared)
    """
    from deploytool.export import load_program, save_program
    from deploytool.fsutil import atomic_write_json
    from deploytool.progress import SILENCE_S, timed_stage
    from deploytool.quantize.x86 import RECIPE_REVISION, quantize_x86

    folder = prepared.config.output_dir / QUANT_DIR
    key = f"{prepared.cache_key()}-dynamic={prepared.config.dynamic_batch}-x86={RECIPE_REVISION}"
    if ("x86_int8", key, folder) in prepared.memo:  # the AOTI writer and the cross-check both ask, in one run
        return prepared.memo["x86_int8", key, folder]
    record_path, program_path = folder / X86_RECORD, folder / X86_PROGRAM
    if _cache_key_of(record_path) == key and cache.intact(program_path):
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401  registers the int8 fusions

        program = load_program(program_path)
    else:
        with timed_stage("quantizing for AOTInductor (X86InductorQuantizer, its own calibration pass)", log=log,
                         quiet_s=SILENCE_S):
            program = quantize_x86(prepared)
        save_program(program, program_path)
        atomic_write_json(record_path, {"cache_key": key, "quantizer": "X86InductorQuantizer",
                                        "calibration_samples": len(prepared.split.calibration)})
    prepared.memo["x86_int8", key, folder] = program
    return program


def _cache_key_of(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("cache_key") if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None

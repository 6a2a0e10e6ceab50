"""The run context: one model with its data, and what every step after loading reads from it.

`prepare(config)` loads the model, opens and splits its data and checks that the two fit; the `Prepared` it
returns carries the held-out samples, the eager outputs and a memo that each step fills once per run. It sits
below every step: quantizing, writers, runners, bench and cross-checks take a `Prepared`, none imports api.

    >>> prepared = prepare(load_config(overrides={"model": "zoo:digits"}))
    >>> len(prepared.held_out()), prepared.output_names
    (64, ('output_0',))
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from deploytool.config import IMAGENET, Color, InputSpec, Precision, Preprocess, ProjectConfig
from deploytool.data import Split, check_varying, split
from deploytool.errors import DataError, DeployError, UsageError
from deploytool.progress import SILENCE_S, timed_stage
from deploytool.runtime import as_arrays
from deploytool.versions import versions

log = logging.getLogger("deploytool")

QUANT_DIR = "quantized"  # under the output folder: the int8 programs `quantize` saves for the writers to reuse


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
    output_names: tuple[str, ...] = ("output_0",)  # the flat outputs' names (deploytool.normalize), as in manifests
    output_shapes: tuple[tuple[int, ...], ...] = ()  # at batch 1, from the first sample
    notes: tuple[str, ...] = ()  # how the model was adapted (deploytool.normalize), for report.json
    # Computed once, read by every step after: held-out samples, eager outputs and shapes, quantize results.
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    def captured(self):
        """The model captured once per run (deploytool.capture): quantize, diagnose and the X86 int8 program
        all start from it."""
        if "captured" not in self.memo:
            from deploytool.capture import capture

            started = time.perf_counter()
            with timed_stage("capturing with torch.export", log=log, quiet_s=SILENCE_S):
                self.memo["captured"] = capture(self.loaded.module, self.example_inputs, varying=self.varying)
            self.timings["capture"] = time.perf_counter() - started
        return self.memo["captured"]

    def held_out(self) -> list:
        """The held-out (ref, sample) pairs, decoded once: references, runners and writers all read them."""
        if "held_out" not in self.memo:
            self.memo["held_out"] = list(self.split.held_out.samples())
            if self.varying:
                first = next(self.split.calibration.samples())
                for ref, sample in self.memo["held_out"]:
                    check_varying(ref.key, sample, self.varying, like=first)
        return self.memo["held_out"]

    @property
    def varying(self) -> tuple[dict[int, int], ...]:
        """Per input, {axis: max} of its dynamic axes (config.dynamic_dims), in the inputs' order."""
        return self.split.calibration.varying

    def verified_lengths(self) -> dict[str, list[int]]:
        """'input axis N' -> the sorted lengths the held-out samples had there: what the verdicts cover."""
        found: dict[str, set[int]] = {}
        for _, sample in self.held_out():
            for spec, array, axes in zip(self.inputs, sample, self.varying):
                for axis in axes:
                    found.setdefault(f"{spec.name} axis {axis}", set()).add(int(array.shape[axis - 1]))
        return {name: sorted(lengths) for name, lengths in found.items()}

    def eager_outputs(self) -> list[list[np.ndarray]]:
        """The eager model's outputs on held_out(), one sample per call as the artifacts run them."""
        if "eager_outputs" not in self.memo:
            with timed_stage(f"running the eager model on {len(self.held_out())} held-out samples", log=log,
                             quiet_s=SILENCE_S):
                outputs = self.outputs_of(self.loaded.module)
            _check_finite(outputs, self.output_names, [ref.key for ref, _ in self.held_out()])
            self.memo["eager_outputs"] = outputs
        return self.memo["eager_outputs"]

    def outputs_of(self, module) -> list[list[np.ndarray]]:
        """`module`'s in-process outputs on held_out(), one sample per call as the artifacts run them.

        >>> len(prepared.outputs_of(program.module())) == len(prepared.held_out())
        True
        """
        import torch

        with torch.inference_mode():
            if module is not self.loaded.module:  # a program deploytool made: its failures are the step's
                return [as_arrays(module(*to_torch(s, self.inputs))) for _, s in self.held_out()]
            return [self._eager_forward(ref.key, s) for ref, s in self.held_out()]

    def _eager_forward(self, key: str, sample) -> list[np.ndarray]:
        """The user's forward() on one sample; what it raises, or a hang past parity.timeout_s, names the sample."""
        from deploytool.progress import Overdue, deadline

        try:
            with deadline(f"The model's forward() on held-out sample {key}", self.config.parity.timeout_s):
                return as_arrays(self.loaded.module(*to_torch(sample, self.inputs)))
        except Overdue as exc:
            raise DataError(f"{exc} (parity.timeout_s); it hangs on that input, or is far slower than expected.",
                            hint="Run the model on that sample in Python to see where it loops, or raise "
                                 "parity.timeout_s in deploytool.toml.") from None
        except Exception as exc:  # the user's forward can raise anything on one input
            raise DataError(f"The model's forward() raised {type(exc).__name__} on held-out sample {key}: "
                            f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}",
                            hint="Run the model on that sample in Python; fix the model, or remove the sample "
                                 "from the data.") from exc

    def truths(self) -> list[Any]:
        """Per held-out sample, what the task metric scores against: the zoo entry's truth (label_of), else the
        row of the data's `targets` array, else the class label from an image folder, else None."""
        if "truths" not in self.memo:
            from deploytool.data.arrays import targets_of

            label_of = getattr(self.loaded.zoo_entry, "label_of", None)
            refs = [ref for ref, _ in self.held_out()]
            targets = targets_of(refs) if label_of is None else [None] * len(refs)
            self.memo["truths"] = [label_of(ref) if label_of else target if target is not None else ref.label
                                   for ref, target in zip(refs, targets)]
        return self.memo["truths"]

    def task_metric(self) -> Any:
        """The deploytool.parity.TaskMetric that decides int8 verdicts: the user's own (quantize.metric), else the
        zoo entry's, else top-1 (per position for (batch, time, classes) outputs) when the held-out samples carry
        labels or targets, else None."""
        from deploytool.parity import TaskMetric, top1_metric

        if "task_metric" not in self.memo:
            recipe = self.config.quantize
            own = getattr(self.loaded.zoo_entry, "task_metric", None)
            if recipe.metric:
                from deploytool.metric import user_metric

                own = user_metric(recipe.metric, base_dir=self.config.base_dir, max_drop=recipe.max_metric_drop)
            elif own is None and any(t is not None for t in self.truths()):
                own = top1_metric(self.output_shapes[0], max_drop=self.config.parity.max_accuracy_drop)
            self.memo["task_metric"] = own
        return self.memo["task_metric"]

    def session(self, recipe) -> Any:
        """The quantize.session.Session for `recipe`, one per run: the search, the fp32 fallback and the diagnosis
        of `quantize --diagnose` share its one calibration, its eager outputs and its evaluations."""
        if ("session", recipe) not in self.memo:
            from deploytool.quantize.session import Session

            self.memo["session", recipe] = Session(self, self.captured(), recipe)
        return self.memo["session", recipe]

    def cache_key(self) -> str:
        """Changes whenever the model, the calibration data or any option that shapes the program changes.
        Computed once per run: it hashes every weight and calibration file."""
        if "cache_key" not in self.memo:
            parts = {"model": self.loaded.fingerprint(), "data": self.split.calibration.fingerprint(),
                     "quantize": self.config.quantize, "inputs": self.inputs, "preprocess": self.preprocess,
                     "batch": self.config.data.batch_size, "versions": versions(), "metric": self._metric_source()}
            self.memo["cache_key"] = hashlib.sha256(repr(sorted(parts.items())).encode()).hexdigest()[:20]
        return self.memo["cache_key"]

    def _metric_source(self) -> str:
        """The user's metric file's hash: a changed metric can change which variant the search keeps."""
        metric = self.config.quantize.metric
        file = self.config.path(metric.rpartition(":")[0]) if metric and ".py:" in metric else None
        return hashlib.sha256(file.read_bytes()).hexdigest() if file and file.is_file() else ""

    def inputs_hash(self, precision: Precision) -> str:
        """What an export was made from, recorded in manifest.json: `deploytool check` re-exports when it changes.

        Model (weights, code, the spec as written), calibration files and every option that shapes an artifact.
        No absolute paths: two checkouts of one repository record the same hash and byte-identical manifests.

        >>> prepared.inputs_hash(Precision.INT8) == prepare(config).inputs_hash(Precision.INT8)
        True
        """
        from deploytool.config import to_plain

        if ("inputs_hash", precision) in self.memo:  # hashing weights and every calibration file is not free
            return self.memo["inputs_hash", precision]
        digest = hashlib.sha256(replace(self.loaded, spec=self.config.model or "").fingerprint().encode())
        digest.update(self.split.calibration.fingerprint().encode())
        options = {"precision": precision, "quantize": self.config.quantize, "inputs": self.inputs,
                   "preprocess": self.preprocess, "batch": self.config.data.batch_size,
                   "dynamic_batch": self.config.dynamic_batch, "torchscript_capture": self.config.torchscript_capture,
                   "versions": versions()}
        digest.update(json.dumps({k: to_plain(v) for k, v in options.items()}, sort_keys=True).encode())
        self.memo["inputs_hash", precision] = digest.hexdigest()[:20]
        return self.memo["inputs_hash", precision]


def prepare(config: ProjectConfig) -> Prepared:
    """Load the model and open its data; check that samples and model fit together.

    The checks that need no model run first: building it can take minutes, a typo in --calib should not.

    >>> prepare(load_config(overrides={"model": "zoo:digits"})).example_inputs[0].shape
    torch.Size([1, 1, 8, 8])
    """
    from deploytool.data.sources import RANDOM, check_calibration, named_arrays, open_dataset
    from deploytool.inputs import check_inputs, describe, named, sources, varying_axes
    from deploytool.loading import load
    from deploytool.normalize import choose_inputs
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
    written = tool_folders(config.output_dir)  # never read as data, even with --calib DIR --output DIR
    started = time.perf_counter()
    with timed_stage(f"loading {config.model}", log=log, quiet_s=SILENCE_S):
        loaded = load(config.model, base_dir=config.base_dir, weights=config.weights,
                      trust_checkpoint=config.trust_checkpoint)
    if loaded.from_factory:  # another project's forward(): its arguments with defaults are inputs only when named
        configured = named(config.inputs, choose_inputs(loaded.module, provided=())) or loaded.inputs
        named_in_data = named_arrays(calib, base_dir=config.base_dir, skip=written) if calib else ()
        given = tuple(i.name for i in configured) + named_in_data
        loaded = replace(loaded, input_names=choose_inputs(loaded.module, provided=given,
                                                           where=f"The data ({calib}) or [[inputs]]"))
    inputs = named(config.inputs, loaded.input_names) or loaded.inputs
    preprocess = config.preprocess or loaded.preprocess or default_preprocess(inputs)
    input_names = tuple(i.name for i in inputs) or loaded.input_names
    if calib is None:
        calib = str(loaded.zoo_entry.write_data(config.output_dir / "data" / loaded.zoo_entry.name))
        log.info("calibration data: %s", loaded.zoo_entry.data_note)
    dataset = open_dataset(calib, base_dir=config.base_dir, preprocess=preprocess, input_names=input_names,
                           skip=written,
                           inputs=inputs)
    parts = split(dataset, holdout=config.data.holdout, holdout_min=config.data.holdout_min,
                  calib_limit=config.data.calib_limit)
    first_ref, first = next(parts.calibration.samples())
    inputs = check_inputs(inputs, input_names, first, first_ref.key, config)
    varying = varying_axes(config, inputs)
    if varying:  # batches group samples of one length; every sample is held to its axes' bounds
        parts = replace(parts, calibration=replace(parts.calibration, varying=varying),
                        held_out=replace(parts.held_out, varying=varying))
    example_inputs = to_torch(first, inputs)
    prepared = Prepared(config, loaded, inputs, preprocess, parts, example_inputs)
    normalized = _normalized(prepared, first_ref.key)
    prepared.loaded = replace(loaded, module=normalized.module)
    prepared.output_names, prepared.output_shapes = normalized.output_names, normalized.output_shapes
    prepared.notes = normalized.notes
    prepared.timings["load"] = time.perf_counter() - started
    unused = f"; {parts.unused} not used: data.calib_limit = {config.data.calib_limit}" if parts.unused else ""
    log.info("loaded %s; data: %s (%d to calibrate, %d held out%s)", config.model, dataset.description,
             len(parts.calibration), len(parts.held_out), unused)
    inputs_from, preprocess_from = sources(config, loaded, first_ref.key, images=is_image_data(prepared))
    log.info("%s", describe(inputs, preprocess if is_image_data(prepared) else None, inputs_from=inputs_from,
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


def batch_of_one(sample, inputs: tuple[InputSpec, ...]) -> tuple[np.ndarray, ...]:
    """A sample as the model's batch-1 inputs, in the configured dtypes: what every runtime is fed.

    >>> [a.shape for a in batch_of_one(prepared.held_out()[0][1], prepared.inputs)]
    [(1, 1, 8, 8)]
    """
    return tuple(np.ascontiguousarray(a, dtype=spec.dtype)[None] for a, spec in zip(sample, inputs))


def to_torch(sample, inputs: tuple[InputSpec, ...]) -> tuple:
    """batch_of_one as torch tensors (sharing the arrays' memory): what eager, traced and exported modules take.

    >>> module(*to_torch(sample, prepared.inputs))
    """
    import torch

    return tuple(torch.from_numpy(a) for a in batch_of_one(sample, inputs))


def _normalized(prepared: Prepared, key: str) -> Any:
    """The model made plain (deploytool.normalize) on the first sample: a DataError naming the sample if the model
    rejects it."""
    from deploytool.normalize import normalize
    from deploytool.progress import Overdue, deadline

    try:
        with deadline(f"The model's forward() on calibration sample {key}", prepared.config.parity.timeout_s):
            return normalize(prepared.loaded.module, input_names=tuple(i.name for i in prepared.inputs),
                             example=prepared.example_inputs)
    except DeployError:
        raise
    except Overdue as exc:
        raise DataError(f"{exc} (parity.timeout_s); it hangs on that input, or is far slower than expected.",
                        hint="Run the model on that sample in Python to see where it loops, or raise "
                             "parity.timeout_s in deploytool.toml.") from None
    except Exception as exc:  # the user's forward can raise anything on a wrong shape
        shapes = ", ".join(f"{i.name} {list(i.shape)} {i.dtype}" for i in prepared.inputs)
        first = prepared.inputs[0]
        dtype = "int64" if first.dtype == "float32" else "float32"  # token ids saved as floats, or the reverse
        about_dtype = re.search(r"dtype|scalar type|Long|Float|Int|Half|indices must be", str(exc))
        fix = ("set resize and center_crop in [preprocess] so the images come out at the model's input size"
               if is_image_data(prepared) else
               "cast them with a dtype in deploytool.toml: "
               f'[[inputs]] with name = "{first.name}", shape = {list(first.shape)}, dtype = "{dtype}"'
               if about_dtype else "save the arrays in the shape forward() expects, first axis = samples (the "
               "error above names the size it wanted)")
        raise DataError(f"The model rejects the data's input shape or dtype ({shapes}, from {key}): "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                        hint=f"Make the data match the model: {fix}.") from exc


def _check_finite(outputs: list[list[np.ndarray]], names: tuple[str, ...], keys: list[str]) -> None:
    """Eager's own NaN or Inf is a model problem: no artifact can be judged against it."""
    for key, sample in zip(keys, outputs):
        for name, array in zip(names, sample):
            bad = ~np.isfinite(array)
            if bad.any():
                kinds = " and ".join(k for k, found in (("NaN", np.isnan(array).any()), ("Inf", np.isinf(array).any()))
                                     if found)
                raise DataError(
                    f"The eager model's output '{name}' holds {kinds} ({int(bad.sum())} of {array.size} values) on "
                    f"held-out sample {key}: nothing can be compared with it.",
                    hint="Run the model on that sample in Python and fix what overflows or divides by zero (a log "
                         "or sqrt of a negative value, a division by a zero sum); or check that the data is "
                         "scaled as the model expects.")


def tool_folders(output_dir) -> tuple:
    """The folders deploytool writes into the output folder: caches, quantized programs, diagnosis, targets."""
    from deploytool.registry import TARGETS

    return tuple(output_dir / name for name in (".cache", QUANT_DIR, "diagnosis", *TARGETS.names()))


def is_image_data(prepared: Prepared) -> bool:
    """The data is an image folder: the manifest then records the preprocessing an app must repeat."""
    return prepared.split.calibration.description.startswith("image folder")


def calibration_summary(prepared: Prepared) -> dict[str, Any]:
    """What quantize.json and each report.json say about the data: source, sample counts, unreadable files."""
    calibration = prepared.split.calibration
    return {"source": calibration.description, "samples": len(calibration),
            "held_out": len(prepared.split.held_out), "random": calibration.is_random,
            "unreadable": list(prepared.split.unreadable)}


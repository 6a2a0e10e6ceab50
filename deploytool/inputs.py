"""Which input shapes and image preprocessing a run assumes, where each came from, and whether the data fits them
(configured shapes, dynamic axes).

A wrong assumption here (an ImageNet 224x224 crop for a model trained at 160) quietly ruins every later
number, so `prepare` says what it assumed, once, on stderr:

    inputs: x 1x3x224x224 float32 (from the first calibration sample, cat/001.jpg); preprocessing: resize 256,
    center crop 224x224, RGB, scale 1/255, mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225], NCHW
    (default ImageNet conventions); change with --input-shape or [[inputs]] and [preprocess] in deploytool.toml
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from deploytool.config import InputSpec, Preprocess, ProjectConfig
from deploytool.errors import ConfigError, DataError

CONFIGURED_INPUTS = "from --input-shape or [[inputs]] in the config"


def named(specs: tuple[InputSpec, ...], names: tuple[str, ...]) -> tuple[InputSpec, ...]:
    """Configured inputs given without a name (`--input-shape 1,3,160,160`) named after forward()'s arguments,
    in order.

    >>> named((InputSpec("", (1, 3, 160, 160)),), ("image",))[0].name
    'image'
    """
    return tuple(replace(spec, name=names[i] if i < len(names) else f"input_{i}") if not spec.name else spec
                 for i, spec in enumerate(specs))


def sources(config: Any, loaded: Any, first_key: str, *, images: bool = False) -> tuple[str, str]:
    """(where the input shapes came from, where the preprocessing came from), in the words the log uses. With
    `images`, a shape nobody configured is the preprocessing's crop, whatever size the files are."""
    if config.inputs:
        inputs_from = CONFIGURED_INPUTS
    elif loaded.inputs:
        inputs_from = ("from the zoo entry" if loaded.zoo_entry is not None else
                       "from the program's example inputs" if loaded.spec.endswith(".pt2") else
                       "from the model's own example inputs")
    elif images:
        inputs_from = "the preprocessing's crop, which every image is resized to"
    else:
        inputs_from = f"from the first calibration sample, {first_key}"
    if config.preprocess:
        preprocess_from = "from [preprocess] in the config"
    elif loaded.preprocess:
        preprocess_from = "the zoo entry's"
    else:
        preprocess_from = "default ImageNet conventions, fitted to the input shape"
    return inputs_from, preprocess_from


def describe(inputs: tuple[InputSpec, ...], preprocess: Preprocess | None, *, inputs_from: str,
             preprocess_from: str) -> str:
    """One log line: each input's shape and dtype, the image preprocessing (None: arrays, used as they are).

    >>> describe((InputSpec("x", (1, 1, 8, 8)),), None, inputs_from="from the zoo entry", preprocess_from="")
    'inputs: x 1x1x8x8 float32 (from the zoo entry); the arrays are used as they are; change with ...'
    """
    shapes = ", ".join(f"{i.name} {'x'.join(map(str, i.shape))} {i.dtype}" for i in inputs)
    line = f"inputs: {shapes} ({inputs_from}); "
    if preprocess is None:
        line += "the arrays are used as they are"
    else:
        p = preprocess
        steps = [f"resize {p.resize}" if p.resize else "no resize",
                 f"center crop {p.center_crop[0]}x{p.center_crop[1]}" if p.center_crop else "no crop",
                 p.color.value, f"scale {p.scale:.6g}" if p.scale != 1 / 255 else "scale 1/255",
                 f"mean {list(p.mean)}", f"std {list(p.std)}", p.layout.value]
        line += f"preprocessing: {', '.join(steps)} ({preprocess_from})"
    return line + "; change with --input-shape or [[inputs]] and [preprocess] in deploytool.toml"


def check_inputs(inputs: tuple[InputSpec, ...], names: tuple[str, ...], first, key: str,
                  config: ProjectConfig) -> tuple[InputSpec, ...]:
    """Configured shapes must match the data; with no configuration, the first sample defines them."""
    if len(first) != len(names):
        raise DataError(f"{key}: a sample holds {len(first)} input(s), the model takes {len(names)} ({', '.join(names)}).",
                        hint="For several inputs use .npz with one array per forward() argument name.")
    if not inputs:
        return tuple(InputSpec(n, (1, *a.shape), str(a.dtype) if a.dtype != np.float64 else "float32")
                     for n, a in zip(names, first))
    dynamic = {(d.input, d.axis) for d in config.dynamic_dims}
    for spec, array in zip(inputs, first):
        fixed = [i for i in range(1, len(spec.shape)) if (spec.name, i) not in dynamic]
        if len(spec.shape) - 1 != array.ndim or any(spec.shape[i] != array.shape[i - 1] for i in fixed):
            raise DataError(
                f"{key}: input '{spec.name}' has shape {list(array.shape)}, but its [[inputs]] shape expects "
                f"{list(spec.shape[1:])} per sample (model input {list(spec.shape)}).",
                hint=f'Fix shape in the [[inputs]] table with name = "{spec.name}", or set [preprocess] '
                     "resize/center_crop so images come out at that size.")
    return inputs


def varying_axes(config: ProjectConfig, inputs: tuple[InputSpec, ...]) -> tuple[dict[int, int], ...]:
    """config.dynamic_dims per input ({axis: max}), each checked against the inputs it names."""
    names = [spec.name for spec in inputs]
    for dim in config.dynamic_dims:
        if dim.input not in names:
            raise ConfigError(f"dynamic_dims names input '{dim.input}', which the model does not take; its inputs: "
                              f"{', '.join(names)}.", hint="Name one of them: --dynamic-dim INPUT:AXIS:MAX.")
        spec = inputs[names.index(dim.input)]
        if dim.axis >= len(spec.shape):
            raise ConfigError(f"dynamic_dims '{dim.input}': axis {dim.axis}, but the input has {len(spec.shape)} axes "
                              f"({list(spec.shape)}, batch first).")
    if not config.dynamic_dims:
        return ()
    return tuple({d.axis: d.max for d in config.dynamic_dims if d.input == spec.name} for spec in inputs)

"""Which input shapes and image preprocessing a run assumes, and where each came from.

A wrong assumption here (an ImageNet 224x224 crop for a model trained at 160) quietly ruins every later
number, so `prepare` says what it assumed, once, on stderr:

    inputs: x 1x3x224x224 float32 (from the first calibration sample, cat/001.jpg); preprocessing: resize 256,
    center crop 224x224, RGB, scale 1/255, mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225], NCHW
    (default ImageNet conventions); change with --input-shape or [[inputs]] and [preprocess] in deploytool.toml
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from deploytool.config import InputSpec, Preprocess

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

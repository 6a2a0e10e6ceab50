"""A model from another project, made plain: the inputs its data gives, named tensors out, plain weights.

Other projects' models arrive with habits of their own: optional forward() arguments (`attention_mask=None`,
`labels=None`), dict or `ModelOutput` outputs, nested tuples, `weight_norm` and other parametrizations. This is
the one place that handles them; every later step (capture, quantize, the writers, the runtimes) sees a module
that takes plain tensors in forward()'s order and returns a flat tuple of tensors, named in the manifest.

    >>> names = choose_inputs(model, provided=("input_ids", "attention_mask"))
    >>> normalized = normalize(model, input_names=names, example=(ids, mask))
    >>> normalized.output_names, normalized.notes
    (('logits',), ('forward() called with input_ids, attention_mask; labels, ... keep their defaults ...',))
"""
from __future__ import annotations

import copy
import difflib
import inspect
import logging
import types
from dataclasses import dataclass
from typing import Any

from deploytool.errors import DataError, ModelLoadError

log = logging.getLogger("deploytool")

TARGETS_ARRAY = "targets"  # an array of this name in the data is the metric's truth, never a model input
ADAPTED = "_deploytool_adapted"  # set on a module whose forward() deploytool replaced (normalize)


@dataclass(frozen=True)
class Normalized:
    module: Any  # called with tensors in input_names' order, returns a tensor or a flat tuple of tensors
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    output_shapes: tuple[tuple[int, ...], ...]  # at the example's batch
    notes: tuple[str, ...]  # every adaptation, once each: logged, and listed in report.json


def forward_parameters(module) -> list[inspect.Parameter]:
    """forward()'s arguments that can take a tensor (not self, *args or **kwargs)."""
    parameters = inspect.signature(module.forward).parameters.values()
    return [p for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def choose_inputs(module, *, provided: tuple[str, ...], where: str = "the data") -> tuple[str, ...]:
    """forward()'s arguments that become model inputs: those without a default, and those with one that `provided`
    (the data's array names, the config's [[inputs]]) names. With nothing named (a single array, images), the
    arguments without a default.

    >>> choose_inputs(bert, provided=("input_ids", "attention_mask"))
    ('input_ids', 'attention_mask')
    """
    parameters = forward_parameters(module)
    names = [p.name for p in parameters]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(module.forward).parameters.values())
    unknown = [n for n in provided if n not in names and n != TARGETS_ARRAY]
    if unknown == [n for n in provided if n != TARGETS_ARRAY] and len(unknown) == 1 and not takes_any:
        provided, unknown = (), []  # one array under any name (np.savez's arr_0): the first argument's
    required = [p.name for p in parameters if p.default is p.empty]
    if unknown and not takes_any:
        close = difflib.get_close_matches(unknown[0], names, n=1)
        missing = [n for n in required if n not in provided]
        raise DataError(f"{where} names arrays {', '.join(repr(n) for n in unknown)}, which forward() does not take; "
                        f"forward() takes {', '.join(names)}" + (f" (missing: {', '.join(missing)})" if missing else "")
                        + (f". Did you mean '{close[0]}'?" if close else "."),
                        hint="Name each array after a forward() argument; an array named 'targets' holds the "
                             "metric's truths and is never an input.")
    chosen = tuple(n for n in names if n in provided or n in required)
    if not chosen and names:  # everything has a default: the first argument takes the data
        chosen = (names[0],)
    return chosen + tuple(n for n in provided if n in unknown)  # **kwargs takes the rest, in the data's order


def normalize(module, *, input_names: tuple[str, ...], example: tuple) -> Normalized:
    """Fold parametrizations, call forward() with `input_names` by name, flatten and name the outputs.

    `example` is one batch of inputs, in `input_names`' order: it shows the outputs' structure (what forward()
    raises on it propagates). The module is adapted only where it needs to be: a plain forward(x) -> tensor is
    returned as it is.
    """
    import torch

    notes = fold_parametrizations(module) + as_linear(module)
    parameters = forward_parameters(module)
    positional = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    left_out = [p.name for p in parameters if p.name not in input_names]
    # No named arguments (a program's forward(*args)), or the first ones in order: called as they are.
    plain_inputs = not parameters or (not left_out and list(input_names) == positional[:len(input_names)])
    buffers = {name: buffer.clone() for name, buffer in module.named_buffers()}
    with torch.inference_mode():
        outputs = module(*example) if plain_inputs else module(**dict(zip(input_names, example)))
    changed = [name for name, buffer in module.named_buffers() if name in buffers
               and not torch.equal(buffer, buffers[name])]
    if changed:
        with torch.no_grad():
            for name, buffer in module.named_buffers():
                if name in buffers:
                    buffer.copy_(buffers[name])
        raise ModelLoadError(
            f"forward() changes the model's buffers ({', '.join(changed[:4])}"
            f"{f' and {len(changed) - 4} more' if len(changed) > 4 else ''}): each call's output depends on the "
            "calls before it, so no artifact can be compared with it sample by sample.",
            hint="Keep state out of forward() (e.g. BatchNorm in eval mode, no counters or caches in buffers), or "
                 "pass the state as an input.")
    named = named_outputs(outputs)
    if not named:
        raise ModelLoadError(f"forward() returned {type(outputs).__name__} with no tensor in it; nothing to export.",
                             hint="Return the model's output tensors (a tensor, a tuple or a dict of them).")
    plain_outputs = isinstance(outputs, torch.Tensor) or (type(outputs) in (tuple, list) and all(
        isinstance(o, torch.Tensor) for o in outputs))
    if left_out:
        notes.append(f"forward() called with {', '.join(input_names)}; {', '.join(left_out)} keep their defaults "
                     "(name an array in the data after one to feed it)")
    if not plain_outputs:
        notes.append(f"outputs flattened from {type(outputs).__name__} into named tensors: "
                     f"{', '.join(name for name, _ in named)}")
    for note in notes:
        log.info("%s", note)
    adapted = module if plain_inputs and plain_outputs else _adapted(module, tuple(input_names))
    return Normalized(adapted, tuple(input_names), tuple(name for name, _ in named),
                      tuple(tuple(tensor.shape) for _, tensor in named), tuple(notes))


def named_outputs(outputs: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """The tensors in `outputs`, in order, named by where they sit: `output_0` for a tensor or tuple item, a
    dict's keys (`logits`), dotted paths for nesting (`hidden_states.0`). None and non-tensor values are left out.

    >>> [n for n, _ in named_outputs({"logits": t, "hidden_states": (t, t)})]
    ['logits', 'hidden_states.0', 'hidden_states.1']
    """
    import torch

    if isinstance(outputs, torch.Tensor):
        return [(prefix or "output_0", outputs)]
    if isinstance(outputs, dict):
        items = [(str(key), value) for key, value in outputs.items()]
    elif isinstance(outputs, (tuple, list)):
        items = [(str(i) if prefix else f"output_{i}", value) for i, value in enumerate(outputs)]
    else:
        return []
    return [named for key, value in items for named in named_outputs(value, f"{prefix}.{key}" if prefix else key)]


def _adapted(module, input_names: tuple[str, ...]):
    """A shallow copy of `module` (same parameters, same names in the state_dict, so recipes and reports keep
    the user's layer names) whose forward() takes `input_names` positionally and returns a flat tuple."""
    own_forward = type(module).forward

    def forward(self, *tensors):
        return tuple(tensor for _, tensor in named_outputs(own_forward(self, **dict(zip(input_names, tensors)))))

    # torch.export binds inputs and dynamic shapes by this signature, not by *tensors.
    plain = inspect.Parameter.POSITIONAL_OR_KEYWORD
    forward.__signature__ = inspect.Signature([inspect.Parameter("self", plain),
                                               *(inspect.Parameter(n, plain) for n in input_names)])
    adapted = copy.copy(module)
    adapted.forward = types.MethodType(forward, adapted)
    setattr(adapted, ADAPTED, True)
    return adapted


def as_linear(module) -> list[str]:
    """transformers' `Conv1D` (GPT-2's projections: an addmm with the weight stored transposed) replaced, in
    place, by the nn.Linear it computes, so the int8 quantizers, which match linear layers, quantize it: GPT-2's
    int8 .pte held 6% of its weights in 8 bits before. One note."""
    import torch

    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child).__name__ != "Conv1D" or not type(child).__module__.startswith("transformers"):
                continue
            weight, bias = child.weight, child.bias  # weight: [in, out]
            linear = torch.nn.Linear(weight.shape[0], weight.shape[1], bias=bias is not None)
            with torch.no_grad():
                linear.weight.copy_(weight.t())
                if bias is not None:
                    linear.bias.copy_(bias)
            setattr(parent, name, linear.eval())
            replaced += 1
    return [f"transformers Conv1D replaced by the nn.Linear it computes ({replaced} layers), so it quantizes"] \
        if replaced else []


def fold_parametrizations(module) -> list[str]:
    """Fold weight_norm, spectral_norm and every torch.nn.utils.parametrize parametrization into plain weights,
    in place; one note per kind folded. The model is in eval mode, so each weight is the one eager uses."""
    import torch
    from torch.nn.utils import parametrize
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    folded: dict[str, int] = {}
    for submodule in module.modules():
        if parametrize.is_parametrized(submodule):
            for name in list(submodule.parametrizations):
                kinds = {type(p).__name__.strip("_") for p in submodule.parametrizations[name]}
                parametrize.remove_parametrizations(submodule, name, leave_parametrized=True)
                for kind in kinds:
                    folded[kind] = folded.get(kind, 0) + 1
        for hook in list(submodule._forward_pre_hooks.values()):
            if isinstance(hook, WeightNorm):
                torch.nn.utils.remove_weight_norm(submodule, hook.name)
                folded["weight_norm"] = folded.get("weight_norm", 0) + 1
            elif isinstance(hook, SpectralNorm):
                torch.nn.utils.remove_spectral_norm(submodule, hook.name)
                folded["spectral_norm"] = folded.get("spectral_norm", 0) + 1
    return [f"{kind} folded into plain weights ({count} tensor{'s' if count > 1 else ''})"
            for kind, count in folded.items()]

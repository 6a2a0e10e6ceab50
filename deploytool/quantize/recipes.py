"""A QuantConfig as an XNNPACKQuantizer: which observer, which weight granularity, which layers stay fp32.

All quantization math is torchao's and ExecuTorch's; this file only chooses their options. The observers
are subclasses that change what torchao's observers are fed, or how a range is picked, never the math:
`SampledHistogramObserver` feeds HistogramObserver a strided sample of each large activation (histc over
every value cost about 2x an eager forward on MobileNetV2), `PercentileObserver` picks the range from that
histogram at a percentile instead of by its error search (torchao has no percentile observer), and the
weight observers look at the first calibration batch only.
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
from collections.abc import Iterable, Sequence

from deploytool.config import Observer, QuantConfig
from deploytool.errors import ConfigError

TYPE_PREFIX = "type:"
EPS = 2 ** -12  # the floor on scales that ExecuTorch's XNNPACK configs use
HISTOGRAM_SAMPLE = 1 << 18  # values per activation and batch that feed a histogram: ~128 per bin of 2048


def build_quantizer(recipe: QuantConfig, *, keep_fp32: Sequence[str] = (), dynamic: bool = False,
                    dynamic_layers: Sequence[str] = ()):
    """deploytool's XNNPACKQuantizer (quantize/xnnpack.py) for the recipe; modules named in `keep_fp32` (and
    their children) stay fp32. `dynamic`: int8 weights with activation ranges measured per inference
    (ExecuTorch's dynamic config, whose activation observers only mark the tensors: nothing to calibrate);
    `dynamic_layers`: only those modules dynamic, the rest static.

    >>> quantizer = build_quantizer(QuantConfig(observer=Observer.MINMAX), keep_fp32=("classifier",))
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantizer import QuantizationConfig
    from torchao.quantization.pt2e.quantizer.utils import get_module_name_filter

    from deploytool.quantize.xnnpack import quantizer_class

    if dynamic:
        config = _dynamic_config()
    else:
        base = get_symmetric_quantization_config(is_per_channel=recipe.per_channel)
        activation = _activation_spec(base.input_activation, recipe)
        config = QuantizationConfig(activation, activation, _weight_spec(base.weight, recipe.per_channel), base.bias,
                                    base.is_qat)
    quantizer = quantizer_class()().set_global(config)
    for name in dynamic_layers:
        quantizer.set_module_name(name, _dynamic_config())
    if keep_fp32:
        # set_module_name(name, None) is refused by this XNNPACKQuantizer; its filter does the same job.
        kept = [get_module_name_filter(name) for name in keep_fp32]
        quantizer.set_filter_function(lambda node: not any(f(node) for f in kept))
    return quantizer


def _dynamic_config():
    """ExecuTorch's dynamic int8 config with deploytool's weight observer. Its weights are always per-channel:
    XNNPACK delegates no dynamic conv with per-tensor ones (the .pte then fails to lower), and per-channel costs
    nothing at run time."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantizer import QuantizationConfig

    base = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True)
    return QuantizationConfig(base.input_activation, base.output_activation, _weight_spec(base.weight, True),
                              base.bias, base.is_qat)


def _weight_spec(base, per_channel: bool):
    return dataclasses.replace(base, observer_or_fake_quant_ctr=weight_observer_class(per_channel).with_args(eps=EPS))


def _activation_spec(base, recipe: QuantConfig):
    import torch

    qscheme = torch.per_tensor_symmetric if recipe.symmetric_activations else torch.per_tensor_affine
    return dataclasses.replace(base, qscheme=qscheme, observer_or_fake_quant_ctr=observer_constructor(recipe))


def observer_constructor(recipe: QuantConfig):
    """The torchao observer class for the recipe's observer, with its arguments bound."""
    from torchao.quantization.pt2e.observer import MinMaxObserver, MovingAverageMinMaxObserver

    if recipe.observer is Observer.MINMAX:
        return MinMaxObserver.with_args(eps=EPS)
    if recipe.observer is Observer.MOVING_AVERAGE:
        return MovingAverageMinMaxObserver.with_args(eps=EPS)
    sampled, percentile = histogram_observer_classes()
    if recipe.observer is Observer.PERCENTILE:
        return percentile.with_args(eps=EPS, percentile=recipe.percentile)
    return sampled.with_args(eps=EPS)


@functools.cache
def weight_observer_class(per_channel: bool):
    """ExecuTorch's weight observer (per-channel or per-tensor min/max) that looks only at the first batch:
    weights do not change while calibrating, and the pass over every weight on every batch cost about 0.4x
    of an eager forward on a small model (digits)."""
    from torchao.quantization.pt2e.observer import MinMaxObserver, PerChannelMinMaxObserver

    class ConstantObserver(PerChannelMinMaxObserver if per_channel else MinMaxObserver):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.observed = False

        def forward(self, x_orig):
            if not self.observed:
                self.observed = True
                return super().forward(x_orig)
            return x_orig

    return ConstantObserver


@functools.cache
def histogram_observer_classes():
    """(SampledHistogramObserver, PercentileObserver), built on first use so importing this module stays free
    of torch."""
    import torch
    from torchao.quantization.pt2e.observer import HistogramObserver

    class SampledHistogramObserver(HistogramObserver):
        """torchao's HistogramObserver, fed in fewer, larger pieces.

        Each batch adds every `stride`-th value plus its exact min and max to a buffer, so the range still
        covers every value; torchao's histogram sees the buffer once ~HISTOGRAM_SAMPLE values are in it.
        Small activations (digits: 16k values a batch) then cost one histc per 16 batches instead of a
        histc and a re-binning of the histogram on every batch whose range grew.
        """

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.stride = 0  # fixed by the first batch, so each later batch weighs in by its size
            self.pending: list[torch.Tensor] = []

        def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
            if not self.stride:
                self.stride = max(1, x_orig.numel() // HISTOGRAM_SAMPLE) | 1  # odd: no lock-step with H*W
            flat = x_orig.detach().reshape(-1)
            if self.stride > 1:
                flat = torch.cat([flat[::self.stride], torch.stack(torch.aminmax(flat))])
            self.pending.append(flat.clone())  # the caller may reuse x_orig's memory
            if sum(t.numel() for t in self.pending) >= HISTOGRAM_SAMPLE:
                self.flush()
            return x_orig

        def flush(self) -> None:
            """Fold the buffered values into min_val, max_val and the histogram."""
            if self.pending:
                super().forward(torch.cat(self.pending))
                self.pending = []

        def calculate_qparams(self):
            self.flush()
            return super().calculate_qparams()

    class PercentileObserver(SampledHistogramObserver):
        """The sampled histogram; only the range choice differs."""

        def __init__(self, *args, percentile: float = 99.99, **kwargs):
            super().__init__(*args, **kwargs)
            self.percentile = percentile

        def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
            cdf = torch.cumsum(self.histogram, 0) / torch.clamp(self.histogram.sum(), min=1)
            edges = torch.linspace(float(self.min_val), float(self.max_val), self.bins + 1)
            share = 1 - self.percentile / 100
            low = edges[int(torch.searchsorted(cdf, torch.tensor(share)))]
            high = edges[min(int(torch.searchsorted(cdf, torch.tensor(1 - share))) + 1, self.bins)]
            return low.reshape(()), high.reshape(())

    return SampledHistogramObserver, PercentileObserver


def module_path(node) -> str:
    """The eager module path (`features.3`) of the innermost module a captured node comes from; "" for none."""
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0].removeprefix("L['self'].") if stack else ""


def module_names(graph_module) -> dict[str, str]:
    """Eager module path -> type name for every module the captured graph's nodes come from.

    PT2E nodes carry `nn_module_stack`, so these are the eager model's own names across re-exports.
    """
    found: dict[str, str] = {}
    for node in graph_module.graph.nodes:
        for path, type_name in (node.meta.get("nn_module_stack") or {}).values():
            path = path.removeprefix("L['self'].")
            if path:
                found.setdefault(path, type_name if isinstance(type_name, str) else type_name.__qualname__)
    return found


def resolve_layers(patterns: Iterable[str], modules: dict[str, str]) -> tuple[str, ...]:
    """Module paths matching `--keep-fp32` patterns: globs on the path, or `type:Name` on the class.

    >>> resolve_layers(["classifier", "type:ReLU"], {"classifier": "torch.nn.Linear", "act": "torch.nn.ReLU"})
    ('act', 'classifier')
    """
    matched: set[str] = set()
    for pattern in patterns:
        if pattern.startswith(TYPE_PREFIX):
            wanted = pattern[len(TYPE_PREFIX):]
            hits = {p for p, t in modules.items() if wanted in (t, t.rsplit(".", 1)[-1])}
            known = sorted({t.rsplit(".", 1)[-1] for t in modules.values()})
            candidates = [f"{TYPE_PREFIX}{t}" for t in known]
        else:
            hits = {p for p in modules if fnmatch.fnmatchcase(p, pattern)}
            candidates = sorted(modules)
        if not hits:
            near = difflib.get_close_matches(pattern, candidates, n=5, cutoff=0.4) or candidates[:8]
            raise ConfigError(f"quantize.keep_fp32: '{pattern}' matches no module of the model. "
                              f"Nearest: {', '.join(near)}.",
                              hint="Use eager module paths as in model.named_modules() (globs allowed, e.g. "
                                   "'classifier.*'), or type:ClassName.")
        matched |= hits
    # A parent covers its children: keep only the outermost names.
    return tuple(sorted(p for p in matched if not any(p.startswith(q + ".") for q in matched if q != p)))

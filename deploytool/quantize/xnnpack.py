"""The XNNPACKQuantizer deploytool uses: ExecuTorch's, set up for post-training quantization.

Three changes, the first two about which patterns are annotated:
- The QAT-only conv + BatchNorm patterns are dropped. prepare_pt2e folds BatchNorm into the conv before
  annotating, so they never match after an eval-mode capture, but building their pattern graphs cost
  about 1 s of each prepare.
- conv + ReLU6 (hardtanh) is annotated as one pattern, as ExecuTorch already does for conv + ReLU: the conv
  output is quantized once, after the clamp, and XNNPACK fuses the clamp into the int8 conv. Without it
  MobileNetV2 kept 35 separate clamps and each conv output was quantized on its unclamped range.
- ExecuTorch turns every scalar of an add or mul into a float32 tensor before annotating, integer arithmetic
  included; position ids and mask indices (transformers' BERT) then became floats and calibration died in
  aten.index. Those constants keep the integer dtype the graph computes in.
"""
from __future__ import annotations

import functools


@functools.cache
def quantizer_class():
    """The quantizer class (built on first use, so importing this module stays free of torch)."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer

    clamps = {torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default}

    class PostTrainingXNNPACKQuantizer(XNNPACKQuantizer):
        SUPPORTED_PATTERNS = [p for p in XNNPACKQuantizer.SUPPORTED_PATTERNS if not p.is_qat]

        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            # Dynamic int8 quantizes each conv input at run time: there is no output range to fuse a clamp into.
            dynamic = self.global_config is not None and getattr(self.global_config.input_activation,
                                                                 "is_dynamic", False)
            if self.global_config is not None and not dynamic:
                annotate_conv_clamp(model, self.global_config, clamps=clamps, keep=self._global_filter())
            return super().annotate(model)  # its annotators skip the nodes annotated here

        def transform_for_annotation(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().transform_for_annotation(model)
            if keep_integer_constants(model):
                model.recompile()
            return model

        def _global_filter(self):
            """The nodes the global config covers: the filter's, outside modules with their own config."""
            from torchao.quantization.pt2e.quantizer.utils import get_module_name_filter

            own = [get_module_name_filter(name) for name in self.module_name_config]
            return lambda node: (self.filter_fn is None or self.filter_fn(node)) and not any(f(node) for f in own)

    return PostTrainingXNNPACKQuantizer


def keep_integer_constants(model) -> int:
    """Cast each float constant that feeds only integer adds and muls (by the graph's own dtypes) to that integer
    dtype, in place. Returns how many were cast."""
    import torch

    cast = 0
    for node in model.graph.nodes:
        value = getattr(model, node.target, None) if node.op == "get_attr" else None
        if not isinstance(value, torch.Tensor) or not value.is_floating_point() or not node.users:
            continue
        wanted = {u.meta["val"].dtype for u in node.users if isinstance(u.meta.get("val"), torch.Tensor)}
        if len(wanted) != 1 or len(wanted) != len(node.users) or next(iter(wanted)).is_floating_point:
            continue
        value = value.to(next(iter(wanted)))
        model.register_buffer(node.target, value)
        node.meta["val"] = node.meta["val"].fake_mode.from_tensor(value, static_shapes=True)
        cast += 1
    return cast


def annotate_conv_clamp(model, config, *, clamps, keep=None) -> int:
    """Annotate each conv whose only user is a clamp in `clamps` like ExecuTorch's conv + ReLU pattern:
    int8 input, weight and bias on the conv, int8 output on the clamp. Returns how many were annotated."""
    from torch.fx import Node
    from torchao.quantization.pt2e.quantizer import (
        QuantizationAnnotation,
        get_bias_qspec,
        get_input_act_qspec,
        get_output_act_qspec,
        get_weight_qspec,
    )
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY
    from torchao.quantization.pt2e.utils import _is_conv_node

    annotated = 0
    for clamp in model.graph.nodes:
        conv = clamp.args[0] if clamp.op == "call_function" and clamp.target in clamps else None
        if not isinstance(conv, Node) or not _is_conv_node(conv) or len(conv.users) > 1:
            continue
        qspecs = {conv.args[0]: get_input_act_qspec(config), conv.args[1]: get_weight_qspec(config)}
        bias = conv.args[2] if len(conv.args) > 2 else None
        if isinstance(bias, Node):
            qspecs[bias] = get_bias_qspec(config)
        nodes = [clamp, conv, *(n for n in qspecs if n is not conv.args[0])]
        if any(Q_ANNOTATION_KEY in n.meta for n in nodes) or (keep and not all(keep(n) for n in nodes)):
            continue
        for node in nodes[2:]:  # weight and bias: taken, as the upstream annotators mark them
            node.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(_annotated=True)
        conv.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(input_qspec_map=qspecs, _annotated=True)
        clamp.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(output_qspec=get_output_act_qspec(config),
                                                              _annotated=True)
        annotated += 1
    return annotated

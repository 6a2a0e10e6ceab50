"""What is inside an artifact, read from the artifact file itself: which ops a backend runs, how many
quantize/dequantize boundaries, every stored tensor, and what it holds (int8 or float, by bytes and by compute).

    >>> from deploytool.report.inspect import holdings, inspect_artifact
    >>> print(inspect_artifact(Path("build/deploytool/android/model.pte")).text())
    >>> holdings(Path("build/deploytool/android/model.pte"), "pte", expected="int8").label
    'int8'

One decoder per format fills an `Inspection` (ops, every tensor, the conv / linear / matmul calls); `holdings`
sums it up. Each reads the file, never the recipe that was asked for: a model.int8.pt2 whose quantizer matched
nothing is "fp32" here, and its `reason` says so.

- .pte / .bpte: the program flatbuffer (instructions outside any delegate, constants) and each XNNPACK
  delegate's own graph (nodes, tensors with their datatypes, the constant table), read with the .fbs schemas
  executorch ships by a small flatbuffer reader: no torch import, no flatc process.
- .onnx: initializers and nodes as written (holdings), and for `inspect` the graph after onnxruntime's
  optimizations (which Q/DQ pairs became int8 kernels such as QLinearConv); shapes from ONNX shape inference.
- .pt2 (AOTInductor): each wrapper.cpp's constants table (name, dtype, stored size, shape) and the kernels it
  calls (qlinear / qconv pointwise are int8; mkldnn / addmm / convolution are float).
- .pt / .ptl (TorchScript): the tensor records of the zip's data and constants pickles, read without torch;
  ops from a .ptl's bytecode, or from a .pt's inlined forward graph (torch.jit.load).

One module per format (pte with its flatbuffer reader, onnx, aoti, torchscript) and the words they share
(types); this one picks the decoder by format and sums an inspection up into `Holdings`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

from deploytool.errors import UsageError
from deploytool.report.inspect.aoti import inspect_aoti
from deploytool.report.inspect.onnx import inspect_onnx
from deploytool.report.inspect.pte import inspect_bpte, inspect_pte
from deploytool.report.inspect.torchscript import inspect_ptl, inspect_torchscript
from deploytool.report.inspect.types import (DTYPE_BYTES, DTYPE_NAMES, EIGHT_BIT, FLOAT, FLOAT_LABELS, QDQ_WORDS,
                                             QUANT_WIDE, QUANTIZED, TOP_TENSORS, UNREAD, ComputeOp, Holdings,
                                             Inspection, TensorInfo, dtype_name, percent)

__all__ = ["DTYPE_BYTES", "DTYPE_NAMES", "EIGHT_BIT", "FLOAT", "FLOAT_LABELS", "QDQ_WORDS", "QUANT_WIDE", "QUANTIZED",
           "TOP_TENSORS", "UNREAD", "ComputeOp", "Holdings", "Inspection", "TensorInfo", "dtype_name", "holdings",
           "holdings_of", "inspect_aoti", "inspect_artifact", "inspect_bpte", "inspect_onnx", "inspect_pte",
           "inspect_ptl", "inspect_torchscript", "WEIGHED_BY_CONSTANTS", "stored_bytes"]

INT8_LABEL_SHARE = 0.5  # "int8" when at least this share of weight bytes is 8-bit ("most"); "mixed" when some is
NOTABLE_FLOAT_SHARE = 0.1  # an "int8" artifact with this share of float weights or compute says which stay float
TRACE_SHARE = 0.01  # under 1% of weight bytes and of compute in int8: a trace, labelled by its float type

FORMAT_ALIASES = {"pt2": "aoti", "pt": "torchscript"}  # suffixes for deploytool's format names


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt:
        return FORMAT_ALIASES.get(fmt, fmt)
    from deploytool.bench import guess_format

    return guess_format(path)[0]


INSPECT_FORMATS = ("pte", "onnx")  # what `deploytool inspect` reads; holdings() reads every format in DECODERS
DECODERS = {"pte": inspect_pte, "bpte": inspect_bpte, "aoti": inspect_aoti, "torchscript": inspect_torchscript,
            "ptl": inspect_ptl, "onnx": lambda path: inspect_onnx(path, optimized=None)}


def inspect_artifact(path: Path, fmt: str | None = None) -> Inspection:
    """Inspect a .pte or .onnx file; `fmt` defaults to the one its name says."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} does not exist.", hint="Pass an exported .pte or .onnx file.")
    fmt = _format_of(path, fmt)
    if fmt not in INSPECT_FORMATS:
        raise UsageError(f"`inspect` reads .pte and .onnx files; {path.name} is {fmt}.",
                         hint="Inspect the model.pte or model.onnx exported next to it.")
    found = inspect_pte(path) if fmt == "pte" else inspect_onnx(path)
    found.holdings = holdings_of(found, expected="int8" if ".int8." in path.name else None)
    return found


def holdings(path: Path, fmt: str | None = None, expected: str | None = None) -> Holdings:
    """What the artifact at `path` holds, read from the file: weight bytes by dtype, int8 shares, label, reason.

    `fmt` is deploytool's format name (pte, bpte, onnx, aoti / pt2, torchscript / pt, ptl); by default the one
    the file name says. `expected` is the precision the recipe asked for ("int8" or "fp32"): it only words the
    reason (an fp32 artifact meant to be int8 says why), never the measurement; by default "int8" when the
    file is named *.int8.*.

    >>> holdings(Path("build/deploytool/android/model.pte"), "pte", expected="int8").to_dict()["label"]
    'int8'
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} does not exist.", hint="Pass an exported artifact file.")
    fmt = _format_of(path, fmt)
    decoder = DECODERS.get(fmt)
    if decoder is None:
        raise UsageError(f"cannot measure what {path.name} holds: no inspector for the {fmt} format.")
    if expected is None and ".int8." in path.name:
        expected = "int8"
    return holdings_of(decoder(path), expected)


def holdings_of(found: Inspection, expected: str | None = None) -> Holdings:
    """Holdings from an inspection's tensors and compute ops (see `holdings`)."""
    weights = [t for t in found.tensors if t.constant and not t.qparam]
    by_dtype: Counter = Counter()
    for tensor in weights:
        by_dtype[tensor.dtype] += tensor.bytes
    eight = sum(n for dtype, n in by_dtype.items() if dtype in EIGHT_BIT)
    floats = sum(n for dtype, n in by_dtype.items() if dtype in FLOAT)
    wide = sum(n for dtype, n in by_dtype.items() if dtype in QUANT_WIDE)
    share = eight / (eight + floats + wide) if eight + floats + wide else 0.0

    compute = found.compute
    if not compute:
        unit, int8_compute, total_compute, compute_share = "", 0, 0, None
    else:
        unit = "MACs" if all(op.macs is not None for op in compute) else "ops"
        amount = (lambda op: op.macs) if unit == "MACs" else (lambda op: 1)
        total_compute = sum(amount(op) for op in compute)
        int8_compute = sum(amount(op) for op in compute if op.int8)
        compute_share = int8_compute / total_compute if total_compute else (
            sum(op.int8 for op in compute) / len(compute))
    float_compute = dict(Counter(op.kind for op in compute if not op.int8))

    traces_only = share < TRACE_SHARE and (compute_share or 0) < TRACE_SHARE
    if share >= INT8_LABEL_SHARE:
        label = "int8"
    elif eight and not traces_only:
        label = "mixed"
    else:
        top_float = max((d for d in by_dtype if d in FLOAT), key=lambda d: by_dtype[d], default="float32")
        label = FLOAT_LABELS.get(top_float, "fp32")
    measured = Holdings(found.format, dict(by_dtype.most_common()), share, compute_share, unit, label, None,
                        int8_compute, total_compute,
                        sum(t.bytes for t in found.tensors if t.constant and t.qparam), float_compute)
    unread = [note for note in found.notes if note.startswith(UNREAD)]
    reason = unread[0] if unread else _reason(measured, weights, found.compute, found.qdq_boundaries, expected)
    return replace(measured, reason=reason) if reason else measured


def _reason(measured: Holdings, weights: list[TensorInfo], compute: list[ComputeOp], qdq_boundaries: int,
            expected: str | None) -> str | None:
    """One line on why the label is not what a reader would assume; None when it is."""
    share, compute_share, label = measured.int8_weight_share, measured.int8_compute_share, measured.label
    float_weights = sorted((t for t in weights if t.dtype in FLOAT), key=lambda t: t.bytes, reverse=True)
    float_bytes = sum(t.bytes for t in float_weights)
    counted = float_bytes + sum(t.bytes for t in weights if t.dtype in QUANTIZED)
    runs_float = ", ".join(f"{kind} x{n}" for kind, n in sorted(measured.float_compute.items()))
    in_compute = "" if compute_share is None else f" and {percent(compute_share)} of {measured.compute_unit}"
    largest = f"the largest float weight, {_describe(float_weights[0])}" if float_weights else ""
    if label == "int8":
        parts = []
        if float_weights and float_bytes >= NOTABLE_FLOAT_SHARE * counted:
            parts.append(f"{percent(float_bytes / counted)} of weight bytes stay float: {largest}")
        if compute_share is not None and 1 - compute_share >= NOTABLE_FLOAT_SHARE:
            parts.append(f"{percent(1 - compute_share)} of {measured.compute_unit} run in float kernels "
                         f"({runs_float})")
        return "; ".join(parts) or None
    if label == "mixed":
        return "; ".join(part for part in (
            f"{percent(share)} of weight bytes{in_compute} are int8", largest,
            f"{runs_float} run in float kernels" if runs_float else "") if part)
    if share > 0:
        int8_kinds = Counter(op.kind for op in compute if op.int8)
        which = f" ({', '.join(f'{kind} x{n}' for kind, n in sorted(int8_kinds.items()))})" if int8_kinds else ""
        return "; ".join(part for part in (
            f"only {percent(share)} of weight bytes{in_compute} are int8{which}", largest,
            f"{runs_float} run in float kernels" if runs_float else "") if part)
    quantized_activations = qdq_boundaries or (compute_share or 0) > 0
    if quantized_activations:
        return ("no weight is stored in 8 bits: only activations are quantized "
                f"({qdq_boundaries} quantize/dequantize ops)")
    if expected == "int8":
        if not weights:
            return "no weight is stored in 8 bits: the model has no stored weights"
        return "no weight is stored in 8 bits: the quantizer matched no pattern in this model"
    return None


def _describe(tensor: TensorInfo) -> str:
    size = f"{tensor.bytes / 1024:.0f} KiB" if tensor.bytes >= 10 * 1024 else f"{tensor.bytes} B"
    shape = "x".join(str(d) for d in tensor.shape)
    return f"{tensor.name} ({shape}, {size}), stays {FLOAT_LABELS.get(tensor.dtype, 'fp32')}"


# An AOTInductor package is mostly compiled code for a small model (int8 kernels' code is larger than fp32's):
# its weights, not its file, say whether int8 stored anything twice.
WEIGHED_BY_CONSTANTS = ("aoti",)


def stored_bytes(path: Path, fmt: str) -> int:
    """What the size rule compares: the file's size, or for an AOTInductor package its constants' bytes.

    >>> stored_bytes(Path("server/model.int8.pt2"), "aoti") < Path("server/model.int8.pt2").stat().st_size
    True
    """
    if fmt not in WEIGHED_BY_CONSTANTS:
        return path.stat().st_size
    return sum(holdings(path, fmt).weight_bytes.values())

"""The words every inspector shares: dtypes and their families, one stored tensor (`TensorInfo`), one compute
call (`ComputeOp`), what an artifact holds (`Holdings`) and an artifact's op-level picture (`Inspection`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Op names (or parts of them) that are quantize / dequantize conversions, in every format's words.
QDQ_WORDS = ("quantize", "dequantize", "QuantizeLinear", "DequantizeLinear", "XNNConvert")
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4, "int16": 2, "int8": 1,
               "uint8": 1, "qint8": 1, "quint8": 1, "qcint8": 1, "qint32": 4, "qcint32": 4, "qdint8": 1, "qpint8": 1,
               "qcint4": 1, "qbint4": 1, "int4": 1, "uint4": 1, "bool": 1, "pfp32": 4}
# The .pte's ScalarType names and XNNPACK's datatypes in numpy's words (as manifest.json has them), so one
# tensor is not "float" outside the delegate and "fp32" inside it.
DTYPE_NAMES = {"float": "float32", "fp32": "float32", "half": "float16", "fp16": "float16", "bf16": "bfloat16",
               "double": "float64", "long": "int64", "int": "int32", "short": "int16", "char": "int8", "byte": "uint8"}
TOP_TENSORS = 8

# Weight dtypes by family. The int8 share is EIGHT_BIT bytes over FLOAT + EIGHT_BIT + QUANT_WIDE bytes; other
# integer constants (int64 position ids, shapes, int32 indices, bool masks) are counted in weight_bytes but left
# out of the share, and quantization parameters (scales, zero points) are counted apart (qparam_bytes).
EIGHT_BIT = frozenset({"int8", "uint8", "qint8", "quint8", "qcint8", "qdint8", "qpint8", "qcint4", "qbint4",
                       "int4", "uint4"})  # 8 bits or fewer: 4-bit weights count as quantized too
FLOAT = frozenset({"float32", "float16", "bfloat16", "float64", "pfp32"})
QUANT_WIDE = frozenset({"qint32", "qcint32"})  # int32 biases of int8 layers: quantized, but not 8-bit
QUANTIZED = EIGHT_BIT | QUANT_WIDE
FLOAT_LABELS = {"float16": "fp16", "bfloat16": "bf16", "float64": "fp64"}
# A decoder's note that starts with this: part of the weights could not be read, so holdings says so as its reason.
UNREAD = "weights not measured: could not read"


@dataclass
class TensorInfo:
    """One tensor an artifact stores or computes: name, shape, dtype, and its size in bytes."""

    name: str
    shape: list[int]
    dtype: str
    constant: bool  # a weight / initializer, as opposed to an activation
    stored_bytes: int | None = None  # what the artifact says it stores, where it says (packed or padded sizes)
    qparam: bool = False  # a quantization scale or zero point, not a weight

    @property
    def bytes(self) -> int:
        if self.stored_bytes is not None:
            return self.stored_bytes
        count = 1
        for dim in self.shape:
            count *= dim
        return count * DTYPE_BYTES.get(self.dtype, 4)


@dataclass(frozen=True)
class ComputeOp:
    """One conv / linear / matmul / attention call. `macs` is None where the artifact does not give its shapes."""

    kind: str  # conv, linear, matmul, attention, rnn
    op: str  # the artifact's own name for it: XNNConv2d, QLinearConv, aoti_torch_cpu__qlinear_pointwise_tensor...
    int8: bool  # runs in an int8 kernel (its weight and its input are quantized)
    macs: int | None = None


def dtype_name(name: str) -> str:
    """One spelling per dtype: ExecuTorch's ScalarType and XNNPACK's datatype names as numpy's.

    >>> dtype_name("FLOAT"), dtype_name("xnn_datatype_fp32"), dtype_name("xnn_datatype_qcint8")
    ('float32', 'float32', 'qcint8')
    """
    name = name.lower().removeprefix("xnn_datatype_")
    return DTYPE_NAMES.get(name, name)


@dataclass(frozen=True)
class Holdings:
    """What an artifact holds, measured from the artifact: weight bytes by dtype, the int8 share of weight bytes
    and of compute, and a label ("int8", "mixed", or the float type, e.g. "fp32") with a reason when it is not
    what a reader would assume.

    weight_bytes: every stored constant by dtype, quantization scales and zero points excepted (qparam_bytes).
    int8_weight_share: 8-bit (or narrower) bytes over float + 8-bit + quantized int32 (qint32 bias) bytes;
    integer constants that are not quantized data (int64 position ids, shapes) are left out of both.
    int8_compute_share: int8 MACs over all MACs of conv / linear / matmul / attention / rnn (compute_unit "MACs";
    MACs = output elements x reduction size), or int8 ops over all such ops ("ops") where the artifact does not
    give every shape; None when it has none. A layer counts as int8 when its kernel takes 8-bit weights and
    8-bit inputs (static, or dynamic: qdint8); weight-only int8 runs in float.
    label: "int8" when at least half the weight bytes are 8-bit; "mixed" when some are (and at least 1% of the
    weight bytes or of the compute is int8); else the dominant float type, "fp32".
    """

    format: str
    weight_bytes: dict[str, int] = field(hash=False)
    int8_weight_share: float
    int8_compute_share: float | None
    compute_unit: str  # "MACs", "ops", or "" when the artifact has no conv / linear / matmul
    label: str  # "int8", "mixed", or the float type: "fp32" (also "fp16", "bf16")
    reason: str | None = None
    compute_int8: int = 0  # in compute_unit
    compute_total: int = 0
    qparam_bytes: int = 0
    float_compute: dict[str, int] = field(default_factory=dict, hash=False)  # kind -> ops run in float kernels

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "reason": self.reason,
                "int8_weight_share": round(self.int8_weight_share, 6),
                "int8_compute_share": None if self.int8_compute_share is None else round(self.int8_compute_share, 6),
                "compute_unit": self.compute_unit, "compute_int8": self.compute_int8,
                "compute_total": self.compute_total, "weight_bytes": dict(self.weight_bytes),
                "qparam_bytes": self.qparam_bytes, "float_compute": dict(self.float_compute),
                "format": self.format}

    def summary(self) -> str:
        """One line for a table or a console: 'int8: 98% of weight bytes, 100% of MACs in int8 kernels'."""
        compute = ("" if self.int8_compute_share is None else
                   f", {percent(self.int8_compute_share)} of {self.compute_unit} in int8 kernels")
        line = f"{self.label}: {percent(self.int8_weight_share)} of weight bytes 8-bit{compute}"
        return f"{line} ({self.reason})" if self.reason else line


@dataclass
class Inspection:
    """An artifact's op-level picture. `delegated` maps backend -> op counts inside it."""

    path: Path
    format: str
    delegated: dict[str, dict[str, int]] = field(default_factory=dict)
    not_delegated: dict[str, int] = field(default_factory=dict)  # op -> count on the runtime's own kernels
    qdq_boundaries: int = 0  # quantize + dequantize ops anywhere: each is a conversion pass over a tensor
    tensors: list[TensorInfo] = field(default_factory=list)  # all of them, biggest first (text() shows the top 8)
    notes: list[str] = field(default_factory=list)
    compute: list[ComputeOp] = field(default_factory=list)
    holdings: Holdings | None = None

    def largest(self, count: int = TOP_TENSORS) -> list[TensorInfo]:
        return sorted(self.tensors, key=lambda t: t.bytes, reverse=True)[:count]

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "delegated": self.delegated,
                "not_delegated": self.not_delegated, "qdq_boundaries": self.qdq_boundaries,
                "tensors": [{**asdict(t), "bytes": t.bytes} for t in self.largest()], "notes": self.notes,
                "holdings": self.holdings.to_dict() if self.holdings else None}

    def text(self) -> str:
        lines = [f"{self.path} ({self.format})"]
        if self.holdings:
            lines.append(f"  holds: {self.holdings.summary()}")
        for backend, ops in self.delegated.items():
            lines.append(f"  {backend}: {sum(ops.values())} ops")
            lines += [f"    {op:<40} x{count}" for op, count in by_count(ops)]
        if self.format in ("pte", "bpte"):
            lines.append(f"  not delegated (ExecuTorch's own kernels): {sum(self.not_delegated.values())} ops")
            lines += [f"    {op:<40} x{count}" for op, count in by_count(self.not_delegated)]
        elif self.not_delegated:
            lines.append(f"  ops: {sum(self.not_delegated.values())}")
            lines += [f"    {op:<40} x{count}" for op, count in by_count(self.not_delegated)]
        lines.append(f"  quantize/dequantize boundaries: {self.qdq_boundaries}")
        lines.append("  largest tensors:")
        lines += [f"    {t.bytes / 1024:10.1f} KiB  {t.dtype:<14} {str(t.shape):<22} "
                  f"{'quant param' if t.qparam else 'weight' if t.constant else 'activation'}  {t.name}"
                  for t in self.largest()]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def percent(share: float) -> str:
    """98%, or 0.07% where a whole percent would round a trace to 0% (or to 100%)."""
    if 0 < share < 0.01 or 0.99 < share < 1:
        return f"{share:.2%}"
    return f"{share:.0%}"


def prod(values) -> int:
    """The product of a shape's dimensions (1 for an empty one)."""
    count = 1
    for value in values:
        count *= int(value)
    return count


def by_count(ops: dict[str, int]) -> list[tuple[str, int]]:
    """(op, count) pairs, most frequent first, ties by name."""
    return sorted(ops.items(), key=lambda item: (-item[1], item[0]))

"""Lowering steps: programs in, artifacts on disk out. One writer per format, registered by name.

This package holds what every writer shares (Artifact, Delegation, Programs, loading and saving programs) and
imports no writer: each writer module imports it, and FORMATS names the writers by import string.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

from deploytool.errors import LowerError
from deploytool.registry import Registry


@dataclass(frozen=True)
class Delegation:
    delegated_ops: int
    total_ops: int
    not_delegated: dict[str, int] = field(default_factory=dict)  # op type -> count left on the portable CPU path
    where: dict[str, tuple[str, ...]] = field(default_factory=dict)  # op type -> source lines that produced it
    # node -> why it was kept out of the delegate after XNNPACK failed on it (export.exclude)
    excluded: dict[str, str] = field(default_factory=dict)

    @property
    def share(self) -> float:
        return self.delegated_ops / self.total_ops if self.total_ops else 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Delegation:
        """From dataclasses.asdict (the lowering cache) or report.json (which adds `share`)."""
        return cls(data["delegated_ops"], data["total_ops"], data.get("not_delegated", {}),
                   {op: tuple(lines) for op, lines in data.get("where", {}).items()}, data.get("excluded", {}))


@dataclass(frozen=True)
class Artifact:
    path: Path
    format: str  # a FORMATS name; also picks the runtime that verifies it
    precision: str  # "fp32" or "int8"
    delegation: Delegation | None = None
    notes: tuple[str, ...] = ()  # what the report should tell the user about how it was built
    seconds: float = 0.0  # time to build it
    companions: tuple[Path, ...] = ()  # files that travel with the artifact (copied along, e.g. tolerances)
    # int8 only: bytes its fp32 form takes (the fp32 file, else the eager weights); the report fails a larger one
    fp32_bytes: int | None = None


@dataclass(frozen=True)
class NotBuilt:
    """An artifact a writer was asked for and could not make (model.int8.onnx when onnxruntime's quantizer fails):
    a failed row of the report, while the writer's other artifacts ship."""

    path: Path  # the file it would have been
    format: str
    precision: str
    error: Any  # the StageError that stopped it


class Programs:
    """What the writers lower from: the fp32 and (when quantized) int8 programs, static at batch 1."""

    def __init__(self, prepared: Any, *, precision: str, int8_program: Any = None, int8_file: Path | None = None,
                 int8_activations: str = "static", x86_int8: Callable[[], Any] | None = None,
                 onnx_int8: Callable[[Path], tuple[bytes, tuple[str, ...]]] | None = None):
        self.prepared = prepared
        # The int8 forms other runtimes need, made by the quantize layer and handed in (writers never quantize):
        # the X86InductorQuantizer program for AOTInductor, and onnxruntime's QDQ model from the fp32 .onnx file.
        self._x86_int8, self._onnx_int8 = x86_int8, onnx_int8
        self.precision = precision
        self._int8 = int8_program
        self.int8_file = int8_file  # where quantize saved the int8 program: read only when a writer needs it
        self.int8_activations = int8_activations  # the plan quantize.json recorded for the .pte
        # What writers make once per export and share, by name: the .pte bytes (.pte and .bpte), the TorchScript
        # module (.pt and .ptl). Each writer module fills its own entry (export.executorch.pte_of, ...).
        self.memo: dict[str, Any] = {}

    def x86_int8(self) -> Any:
        """The X86 int8 program the AOTInductor writer compiles."""
        if self._x86_int8 is None:
            raise LowerError("No X86 int8 program was handed to the writers (Programs(x86_int8=...)).")
        return self._x86_int8()

    def onnx_int8(self, fp32_path: Path) -> tuple[bytes, tuple[str, ...]]:
        """onnxruntime's int8 QDQ model of the fp32 .onnx file at `fp32_path`, and notes on how it was made."""
        if self._onnx_int8 is None:
            raise LowerError("No ONNX int8 quantizer was handed to the writers (Programs(onnx_int8=...)).")
        return self._onnx_int8(fp32_path)

    @property
    def int8(self) -> Any:
        """The int8 program: the one quantize built in this run, else loaded from `int8_file` on first use
        (MobileNetV2: 2-5 s, which a repeated export whose .pte is cached never pays)."""
        if self._int8 is None and self.int8_file is not None:
            self._int8 = load_program(self.int8_file)
        return self._int8

    def plan_difference(self, runtime: str) -> tuple[str, ...]:
        """A note for an int8 artifact whose runtime cannot follow the .pte's recorded plan, saying what it does.

        >>> Programs(prepared, precision="int8", int8_activations="dynamic").plan_difference("onnxruntime")
        ("differs from the .pte's plan (dynamic int8 activations, quantize.json): onnxruntime ...",)
        """
        if self.int8_activations == "static":
            return ()
        return (f"differs from the .pte's plan ({self.int8_activations} int8 activations, quantize.json): {runtime} "
                "gets static int8 activations calibrated on the same split, the nearest it supports",)

    @functools.cached_property
    def fp32(self) -> Any:
        from deploytool.capture import export

        prepared = self.prepared
        return export(prepared.loaded.module, prepared.example_inputs, strict=False, dynamic_batch=False,
                      varying=prepared.varying)

    @functools.cached_property
    def fp32_server(self) -> Any:
        """fp32 for the server formats: batch-dynamic when the config sets dynamic_batch, else `fp32`."""
        from deploytool.capture import export

        from deploytool.errors import CaptureError

        prepared = self.prepared
        if not prepared.config.dynamic_batch:
            return self.fp32
        try:
            return export(prepared.loaded.module, prepared.example_inputs, strict=False, dynamic_batch=True,
                          varying=prepared.varying)
        except Exception as exc:  # torch.export raises many types; all mean the batch cannot be dynamic
            raise CaptureError(f"dynamic_batch = true, but the model cannot be exported with a dynamic batch: "
                               f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}",
                               hint="Set dynamic_batch = false (server artifacts then take batch 1), or remove "
                                    "what pins the batch size in forward().") from exc

    @property
    def main(self) -> Any:
        """The program for single-program formats: int8 when quantizing, else fp32."""
        return self.int8 if self.precision == "int8" else self.fp32


def load_program(path: Path) -> Any:
    """An ExportedProgram that deploytool saved in the output folder, int8 ones included, read without pickle:
    a folder restored from a CI cache can hold a file altered to run code (deploytool.program_file).

    >>> program = load_program(Path("build/deploytool/quantized/program.pt2"))
    """
    import torchao.quantization.pt2e  # noqa: F401  registers the quantized_decomposed ops the program uses

    from deploytool.program_file import read_program

    return read_program(path, hint=f"deploytool never saves a program like that: {path} was altered, and its "
                                   "sha256 with it. Delete the folder (the next run quantizes again) and find out "
                                   "who wrote it.")


def save_program(program: Any, path: Path) -> None:
    """Save an ExportedProgram with torch.export.save, atomically: a reader never sees half a file.

    >>> save_program(quantized.program, folder / "program.pt2")
    """
    import io

    import torch

    from deploytool import cache

    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    cache.store(path, buffer.getvalue())  # its sha256 beside it: a damaged or altered file is not reused


FORMATS = Registry("format")
FORMATS.register("pte", "deploytool.export.executorch:write_pte", runtime="ExecuTorch runtime (XNNPACK)",
                 file="model.pte",
                 summary="ExecuTorch program for the Android and iOS libraries")
FORMATS.register("bpte", "deploytool.export.bundled:write_bpte",
                 runtime="ExecuTorch runtime (bundled-program verify + XNNPACK)",
                 file="model.bpte",
                 summary="ExecuTorch BundledProgram: the .pte plus held-out inputs and expected outputs for "
                         "on-device self-verification")
FORMATS.register("onnx", "deploytool.export.onnx:write_onnx", runtime="onnxruntime (CPU EP)",
                 file="model.onnx",
                 summary="model.onnx (fp32) and, when int8, model.int8.onnx (QDQ, onnxruntime static quantization)")
FORMATS.register("torchscript", "deploytool.export.torchscript:write_torchscript", runtime="torch.jit.load",
                 file="model.pt",
                 summary="TorchScript model.pt (fp32) for libtorch / Python servers")
FORMATS.register("ptl", "deploytool.export.torchscript:write_ptl", runtime="PyTorch Mobile lite interpreter",
                 file="model.ptl",
                 summary="legacy PyTorch Mobile model.ptl (fp32); deprecated in favour of ExecuTorch .pte")
FORMATS.register("aoti", "deploytool.export.aoti:write_aoti", runtime="AOTInductor (aoti_load_package)",
                 file="model.pt2",
                 summary="AOTInductor package model.pt2 (fp32) and, when int8, model.int8.pt2 (X86 Inductor int8)")

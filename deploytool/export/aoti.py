"""AOTInductor packages (.pt2): fp32, and int8 through PT2E with torchao's X86InductorQuantizer.

The int8 package runs oneDNN int8 kernels (qconv/qlinear) on x86-64; its quantized reference is the
X86 PT2E program (deploytool.quantize.x86), which the export hands in through Programs.x86_int8. oneDNN picks its
kernels by the CPU it runs on (VNNI, AMX or not); the program's 7-bit weights keep them equal on all of them.
"""
from __future__ import annotations

import io
import logging
import time
from pathlib import Path

from deploytool.errors import LowerError, StageError
from deploytool.export import Artifact, NotBuilt, Programs
from deploytool.fsutil import atomic_write_bytes
from deploytool.hostcpu import int8_isa
from deploytool.report.inspect import stored_bytes
from deploytool.quantize.x86 import WEIGHTS_NOTE

log = logging.getLogger("deploytool")



def write_aoti(programs: Programs, folder: Path) -> list[Artifact]:
    """`model.pt2` (fp32) and, when the run is int8, `model.int8.pt2`; both for aoti_load_package.

    >>> [a.path.name for a in write_aoti(programs, Path("build/server"))]
    ['model.pt2', 'model.int8.pt2']
    """
    prepared = programs.prepared
    batch_note = "batch dimension is dynamic" if prepared.config.dynamic_batch else "static batch 1"
    started = time.perf_counter()
    path = atomic_write_bytes(folder / "model.pt2", compile_package(programs.fp32_server))
    fp32 = Artifact(path, "aoti", "fp32", notes=(f"compiled for this machine's CPU (x86-64, gcc); {batch_note}",),
                    seconds=time.perf_counter() - started)
    if programs.precision != "int8":
        return [fp32]
    started = time.perf_counter()
    # Freezing is what turns q/dq patterns into oneDNN int8 kernels, but with a dynamic batch it gives wrong
    # outputs (torch 2.13 + torchao 0.18; this parity check caught it), so dynamic packages simulate int8 in fp32.
    freezing = not prepared.config.dynamic_batch
    kernels = ("oneDNN int8 kernels" if freezing else
               "int8 q/dq computed in fp32 (no oneDNN int8 kernels: Inductor's int8 fusion is wrong with a dynamic "
               "batch in this torch version)")
    try:
        data = compile_package(programs.x86_int8(), freezing=freezing)
    except StageError as exc:  # the fp32 package is built: it is verified and listed, the int8 one is a row
        return [fp32, NotBuilt(folder / "model.int8.pt2", "aoti", "int8", exc)]
    int8_path = atomic_write_bytes(folder / "model.int8.pt2", data)
    return [fp32, Artifact(int8_path, "aoti", "int8", seconds=time.perf_counter() - started,
                           fp32_bytes=stored_bytes(path, "aoti"), notes=(
        f"PT2E int8 with X86InductorQuantizer ({WEIGHTS_NOTE}), calibrated on "
        f"{len(prepared.split.calibration)} samples (the PT2E calibration split); {kernels}; {batch_note}",
        f"measured on {int8_isa()}; the verdict holds on x86-64 CPUs with and without VNNI or AMX: the 7-bit "
        "weights cannot saturate the non-VNNI kernels, and VNNI computes them exactly",
        "quantized reference: the X86InductorQuantizer PT2E program (not the XNNPACK one the .pte comes from)",
        *programs.plan_difference("AOTInductor")))]


def compile_package(program, *, freezing: bool = False) -> bytes:
    """AOTInductor package bytes. `freezing` folds weights as constants, which the int8 fusion passes need.

    With freezing, GRUs are compiled as loops: unrolled, freezing packed a copy of the recurrent weights for every
    time step (a GRU's int8 .pt2: 16 MiB and 4.5 ms a call, against 3.5 MiB and 1.2 ms as a loop). Without it the
    unrolled steps share one weight and run faster than the loop (0.8 against 1.0 ms), and Inductor cannot
    compile the loop with a dynamic batch (torch 2.13: KeyError on the batch symbol). LSTMs need neither: Inductor
    runs each layer as one oneDNN RNN op (torch/_decomp `mkldnn_one_layer_lstm`), smaller than the loop.

    >>> data = compile_package(torch.export.export(model, (x,)))
    """
    import torch
    import torch._inductor.config as inductor_config

    from deploytool.export.recurrent import recurrent_as_scan

    buffer = io.BytesIO()
    try:
        program = recurrent_as_scan(program, lstm=False) if freezing else program
        with torch.no_grad(), inductor_config.patch(freezing=freezing):
            torch._inductor.aoti_compile_and_package(program, package_path=buffer)
    except Exception as exc:  # inductor and the C++ compiler fail in many ways; all mean "no package"
        raise LowerError(f"AOTInductor compilation failed: {type(exc).__name__}: {str(exc).strip()[:500]}",
                         hint="AOTInductor needs a C++ compiler (gcc/g++) on PATH; add -v for the traceback, or "
                              "leave aoti out with --format.") from exc
    return buffer.getvalue()



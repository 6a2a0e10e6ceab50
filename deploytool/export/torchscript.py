"""TorchScript: model.pt for libtorch / Python servers, model.ptl for the legacy PyTorch Mobile lite interpreter."""
from __future__ import annotations

import io
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploytool.config import ScriptCapture
from deploytool.errors import LowerError
from deploytool.export import Artifact, Programs
from deploytool.fsutil import atomic_write_bytes

log = logging.getLogger("deploytool")

CHECK_SAMPLES = 2  # held-out samples the trace must reproduce; a data-dependent branch shows up on the second
DEPRECATED = ("PyTorch Mobile (the lite interpreter) is deprecated in favour of ExecuTorch: ship the .pte for new "
              "apps; this .ptl is for apps still on org.pytorch:pytorch_android_lite / LibTorch-Lite")


@dataclass
class Scripted:
    module: Any  # torch.jit.ScriptModule
    notes: tuple[str, ...]


def scripted_of(programs: Programs) -> Scripted:
    """TorchScript of the eager model, traced (or scripted) once per export for both .pt and .ptl.

    >>> scripted_of(programs).notes[0]
    'traced; checked against eager on 2 held-out inputs'
    """
    if "scripted" not in programs.memo:
        programs.memo["scripted"] = script_module(programs.prepared)
    return programs.memo["scripted"]


def write_torchscript(programs: Programs, folder: Path) -> list[Artifact]:
    """`model.pt` (fp32) for torch.jit.load.

    >>> write_torchscript(programs, Path("build/server"))[0].path.name
    'model.pt'
    """
    import torch

    started = time.perf_counter()
    scripted = scripted_of(programs)
    buffer = io.BytesIO()
    torch.jit.save(scripted.module, buffer)
    path = atomic_write_bytes(folder / "model.pt", buffer.getvalue())
    return [Artifact(path, "torchscript", "fp32", notes=scripted.notes + _fp32_only(programs),
                     seconds=time.perf_counter() - started)]


def write_ptl(programs: Programs, folder: Path) -> list[Artifact]:
    """`model.ptl` (fp32) saved for the lite interpreter, mobile-optimized when this torch build can.

    >>> write_ptl(programs, Path("build/android"))[0].path.name
    'model.ptl'
    """
    import torch
    import torch.backends.xnnpack

    started = time.perf_counter()
    scripted = scripted_of(programs)
    module, notes = scripted.module, [*scripted.notes, DEPRECATED]
    if torch.backends.xnnpack.enabled:
        from torch.utils.mobile_optimizer import optimize_for_mobile

        module = optimize_for_mobile(module)  # a copy: scripted_of(programs) stays as model.pt has it
        notes.append("optimize_for_mobile applied (conv/bn folding, XNNPACK prepacked ops)")
    else:
        notes.append("optimize_for_mobile skipped: this torch build has no XNNPACK "
                     "(torch.backends.xnnpack.enabled is False); the .ptl is unoptimized but runs the same")
    data = module._save_to_buffer_for_lite_interpreter()
    path = atomic_write_bytes(folder / "model.ptl", data)
    return [Artifact(path, "ptl", "fp32", notes=(*notes, *_fp32_only(programs)),
                     seconds=time.perf_counter() - started)]


def script_module(prepared) -> Scripted:
    """TorchScript of the eager model: traced (checked on held-out samples) or scripted, per the config.

    A trace that does not reproduce eager on the held-out samples falls back to scripting, with a note.

    >>> script_module(prepared).notes
    ('traced; checked against eager on 2 held-out samples',)
    """
    if prepared.config.torchscript_capture is ScriptCapture.SCRIPT:
        return Scripted(_script(prepared.loaded.module), ("scripted (torch.jit.script)",))
    try:
        return _trace(prepared)
    except Exception as trace_exc:  # TracingCheckError, or anything the tracer raises on this forward()
        reason = _first_line(trace_exc)
        log.warning("tracing failed its held-out check (%s); scripting instead", reason)
        try:
            module = _script(prepared.loaded.module)
        except LowerError as script_exc:
            raise LowerError(f"TorchScript capture failed both ways. trace: {reason}. script: {script_exc.message}",
                             hint="Leave TorchScript formats out with --format, or make forward() scriptable.") \
                from script_exc
        return Scripted(module, (f"scripted: the trace did not reproduce eager on held-out samples ({reason})",))


def _trace(prepared) -> Scripted:
    import torch

    from deploytool.context import to_torch

    checks = []
    for _, sample in prepared.held_out():
        checks.append(to_torch(sample, prepared.inputs))
        if len(checks) == CHECK_SAMPLES:
            break
    if prepared.config.dynamic_batch:  # the trace must not bake in batch 1
        checks.append(tuple(torch.cat([t] * 4) for t in checks[0]))
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always", torch.jit.TracerWarning)
        module = torch.jit.trace(prepared.loaded.module, prepared.example_inputs, check_inputs=checks,
                                 check_tolerance=1e-5)
    notes = [f"traced; checked against eager on {len(checks)} held-out inputs"
             f"{' (batch 1 and 4)' if prepared.config.dynamic_batch else ''}"]
    tracer = sorted({str(w.message).splitlines()[0][:200] for w in caught if issubclass(w.category,
                                                                                       torch.jit.TracerWarning)})
    if tracer:
        notes.append(f"tracer warnings (values frozen into the trace): {'; '.join(tracer[:3])}")
    return Scripted(module, tuple(notes))


def _script(module):
    import torch

    try:
        return torch.jit.script(module)
    except Exception as exc:  # the TorchScript compiler raises frontend errors of many types
        raise LowerError(f"torch.jit.script failed: {_first_line(exc)}",
                         hint="Use --capture trace (the default), or make forward() scriptable.") from exc


def _fp32_only(programs: Programs) -> tuple[str, ...]:
    if programs.precision != "int8":
        return ()
    return ("fp32 only: TorchScript int8 needs the deprecated eager-mode quantization; use the int8 .onnx, .pt2 "
            "or .pte",)


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__

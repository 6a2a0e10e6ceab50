"""ONNX for onnxruntime: fp32 through the dynamo exporter, int8 QDQ through onnxruntime's static quantizer."""
from __future__ import annotations

import time
from pathlib import Path

from deploytool.errors import LowerError, StageError
from deploytool.export import Artifact, NotBuilt, Programs
from deploytool.fsutil import atomic_write_bytes, scratch
from deploytool.hostcpu import int8_isa


OPSET = 18  # the dynamo exporter's own default; onnxruntime >= 1.16 runs it, QDQ per-channel needs >= 13


def write_onnx(programs: Programs, folder: Path) -> list[Artifact | NotBuilt]:
    """`model.onnx` (fp32) and, when the run is int8, `model.int8.onnx` calibrated on the same split as PT2E.

    >>> [a.path.name for a in write_onnx(programs, Path("build/server"))]
    ['model.onnx', 'model.int8.onnx']
    """
    prepared = programs.prepared
    started = time.perf_counter()
    fp32_bytes = export_onnx(programs.fp32_server, input_names=tuple(i.name for i in prepared.inputs),
                             output_names=prepared.output_names)
    fp32_path = atomic_write_bytes(folder / "model.onnx", fp32_bytes)
    batch_note = ("batch dimension is dynamic" if prepared.config.dynamic_batch
                  else "static batch 1 (set dynamic_batch = true for any batch size)")
    artifacts = [Artifact(fp32_path, "onnx", "fp32", notes=(f"opset {OPSET}; {batch_note}",),
                          seconds=time.perf_counter() - started)]
    if programs.precision == "int8":
        started = time.perf_counter()
        recipe = prepared.config.quantize
        try:
            int8_bytes, how = programs.onnx_int8(fp32_path)
        except StageError as exc:  # the fp32 model is built: it is verified and listed, the int8 one is a row
            return [*artifacts, NotBuilt(folder / "model.int8.onnx", "onnx", "int8", exc)]
        int8_path = atomic_write_bytes(folder / "model.int8.onnx", int8_bytes)
        artifacts.append(Artifact(int8_path, "onnx", "int8", seconds=time.perf_counter() - started,
                                  fp32_bytes=len(fp32_bytes), notes=(
            f"onnxruntime static int8, QDQ, uint8 activations and weights (U8U8: no 16-bit saturation on CPUs "
            f"without VNNI), {recipe.onnx_calibration.value} calibration on {len(prepared.split.calibration)} samples "
            f"(the PT2E calibration split), {'per-channel' if recipe.per_channel else 'per-tensor'} weights; "
            f"{batch_note}",
            f"measured on {int8_isa()}; the verdict holds on x86-64 CPUs with and without VNNI or AMX, and on Arm",
            "quantized reference: this QDQ graph run op by op (onnxruntime graph optimizations off)", *how,
            *programs.plan_difference("onnxruntime"))))
    return artifacts


def export_onnx(program, *, input_names: tuple[str, ...], output_names: tuple[str, ...]) -> bytes:
    """ONNX bytes from an ExportedProgram (its dynamic dims stay dynamic).

    >>> data = export_onnx(torch.export.export(model, (x,)), input_names=("x",), output_names=("logits",))
    """
    import torch

    try:
        with scratch("onnx") as folder:
            path = Path(folder) / "model.onnx"
            args = program.example_inputs[0] if program.example_inputs else ()
            onnx_program = torch.onnx.export(program, args, dynamo=True, opset_version=OPSET, verbose=False,
                                             input_names=list(input_names), output_names=list(output_names))
            onnx_program.save(path)
            return _single_file(path)
    except LowerError:
        raise
    except Exception as exc:  # the exporter raises many types; all mean "no ONNX for this program"
        raise LowerError(f"Exporting to ONNX failed: {type(exc).__name__}: {str(exc).strip()[:500]}",
                         hint="Leave onnx out (--format pte,torchscript,aoti) or add -v for the traceback.") from exc


def _single_file(path: Path) -> bytes:
    """The model as one file: weights over 2 GB would need external data, which one artifact file cannot hold."""
    siblings = [p.name for p in path.parent.iterdir() if p != path]
    if siblings:
        raise LowerError(f"The ONNX model keeps its weights in external data files ({', '.join(siblings)}), "
                         "which deploytool does not package yet.", hint="Leave onnx out with --format.")
    return path.read_bytes()

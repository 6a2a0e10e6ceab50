"""ExecuTorch BundledProgram (.bpte): the .pte plus held-out real inputs and their expected outputs.

An app (or a device test) loads `model.bpte`, runs the embedded program on the bundled inputs and
compares with the expected outputs (ExecuTorch's `verify_method_outputs`), which proves on the device
itself that its runtime and kernels compute what eager computed here. The bundle format has no field
for tolerances, so they travel in `model.bpte.json` next to it.

Tolerances are the parity check's, not the library defaults (rtol 1e-5 / atol 1e-8, which every int8
model fails): rtol 0 and an absolute tolerance scaled like `max_abs_rel`, i.e. by the output range.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploytool.bundle_format import METHOD, SIDECAR_SCHEMA, sidecar_path
from deploytool.config import ParityConfig
from deploytool.errors import LowerError
from deploytool.export import Artifact, Programs
from deploytool.export.executorch import pte_of
from deploytool import fsutil
from deploytool.fsutil import atomic_write_bytes, atomic_write_json

log = logging.getLogger("deploytool")

BUNDLED_CASES = 4  # enough to catch a broken kernel on a device, small enough to ship inside an app
# An int8 program may round differently from its quantized reference (lowering here, ARM kernels on a
# device). On the zoo digits model the lowered .pte moved outputs by at most 0.7x the reference's own
# int8 error, so twice that error leaves room without hiding a broken kernel.
INT8_ATOL_MARGIN = 2.0


@dataclass(frozen=True)
class Tolerance:
    """What `verify_method_outputs(method, bundle, case, rtol, atol)` is called with."""

    atol: float
    rtol: float
    basis: str  # how atol was derived, for the report


def write_bpte(programs: Programs, folder: Path) -> list[Artifact]:
    """`model.bpte`: the main program with BUNDLED_CASES held-out inputs and eager fp32 expected outputs.

    >>> write_bpte(programs, Path("build/deploytool/android"))[0].path.name
    'model.bpte'
    """
    started = time.perf_counter()
    prepared = programs.prepared
    inputs, expected = _cases(prepared)
    if not inputs:
        raise LowerError("No held-out samples to bundle into model.bpte.",
                         hint="Give more data or a larger --holdout, so that some samples are held out.")
    tolerance = tolerance_for(programs, inputs, expected, parity=prepared.config.parity)
    data, delegation = pte_of(programs)
    bundle = _serialize(data, inputs, expected)
    path = atomic_write_bytes(folder / "model.bpte", bundle)
    sidecar = atomic_write_json(sidecar_path(path), {
        "schema": SIDECAR_SCHEMA, "method": METHOD, "cases": len(inputs), "expected": "eager fp32",
        "atol": tolerance.atol, "rtol": tolerance.rtol, "atol_basis": tolerance.basis,
    })
    notes = (f"bundled {len(inputs)} held-out inputs with eager fp32 expected outputs; tolerances atol "
             f"{tolerance.atol:.3g} ({tolerance.basis}), rtol {tolerance.rtol:g}, in {sidecar.name}",
             _self_test_note(path))
    return [Artifact(path, "bpte", programs.precision, delegation, notes=notes,
                     seconds=time.perf_counter() - started, companions=(sidecar,))]


def tolerance_for(programs: Programs, inputs: list[tuple[np.ndarray, ...]], expected: list[list[np.ndarray]], *,
                  parity: ParityConfig) -> Tolerance:
    """fp32: `parity.fp32.max_abs_rel` x output range. int8: INT8_ATOL_MARGIN x the observed int8 error.

    >>> tolerance_for(programs, inputs, expected, parity=ParityConfig()).rtol
    0.0
    """
    span = max(float(np.ptp(np.stack([case[i] for case in expected]))) for i in range(len(expected[0]))) or 1.0
    if programs.precision != "int8":
        rel = parity.fp32.max_abs_rel or 1e-4  # switched off in the config: still bound it like the default
        return Tolerance(rel * span, 0.0, f"{rel:g} x output range {span:.3g}")
    module = programs.int8.module()
    reference = [_outputs(module, case) for case in inputs]
    observed = max(float(np.abs(r - e).max()) for ref, exp in zip(reference, expected) for r, e in zip(ref, exp))
    floor = (parity.fp32.max_abs_rel or 1e-4) * span  # an int8 program that happens to be exact still needs slack
    atol = max(INT8_ATOL_MARGIN * observed, floor)
    return Tolerance(atol, 0.0, f"{INT8_ATOL_MARGIN:g} x int8 error {observed:.3g} of the quantized reference")


def _cases(prepared) -> tuple[list[tuple[np.ndarray, ...]], list[list[np.ndarray]]]:
    """The first BUNDLED_CASES held-out samples at batch 1, with the eager model's outputs (computed once per
    run, for parity)."""
    from deploytool.context import batch_of_one

    inputs = [batch_of_one(sample, prepared.inputs) for _, sample in prepared.held_out()[:BUNDLED_CASES]]
    return inputs, prepared.eager_outputs()[:len(inputs)]


def _outputs(module, case: tuple[np.ndarray, ...]) -> list[np.ndarray]:
    import torch

    from deploytool.runtime import as_arrays

    with torch.inference_mode():
        return [o.astype(np.float32) for o in as_arrays(module(*(torch.from_numpy(a) for a in case)))]


def _serialize(pte: bytes, inputs: list[tuple[np.ndarray, ...]], expected: list[list[np.ndarray]]) -> bytes:
    import torch
    from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite
    from executorch.devtools.bundled_program.core import BundledProgram
    from executorch.devtools.bundled_program.serialize import serialize_from_bundled_program_to_flatbuffer

    # A numpy batch axis added with [None] has stride 0, which ExecuTorch's tensor serialization
    # rejects; a C-order copy has plain strides.
    cases = [MethodTestCase(inputs=tuple(torch.from_numpy(a.copy(order="C")) for a in case),
                            expected_outputs=tuple(torch.from_numpy(o.copy(order="C")) for o in outputs))
             for case, outputs in zip(inputs, expected)]
    # BundledProgram reads an existing .pte from a path; the program bytes go in unchanged.
    with fsutil.scratch("bpte") as scratch:
        program = Path(scratch) / "model.pte"
        program.write_bytes(pte)
        try:
            bundled = BundledProgram(None, [MethodTestSuite(METHOD, cases)], pte_file_path=str(program))
            return serialize_from_bundled_program_to_flatbuffer(bundled)
        except Exception as exc:  # executorch asserts and raises various types; all mean bundling failed
            raise LowerError(f"Bundling model.bpte failed: {type(exc).__name__}: {str(exc)[:300]}",
                             hint="-v for the traceback; --format pte writes the plain program.") from exc


def _self_test_note(path: Path, *, timeout_s: float = 120.0) -> str:
    """Run the bundle's own verification in a child process (a crash must not take the tool down)."""
    with fsutil.scratch("bpte") as scratch:
        result_path = Path(scratch) / "self_test.json"
        command = [sys.executable, "-m", "deploytool.runtime.bundled", str(path), str(result_path)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return f"bundled self-test did not finish within {timeout_s:.0f} s"
        if not result_path.is_file():
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            return f"bundled self-test did not run (exit {done.returncode}): {lines[-1][:300] if lines else ''}"
        result = json.loads(result_path.read_text())
    log.info("%s self-test: %s", path.name, result["summary"])
    return f"bundled self-test in the ExecuTorch runtime: {result['summary']}"

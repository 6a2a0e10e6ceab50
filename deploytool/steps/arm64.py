"""The .pte again on the phone's kernels: the arm64 ExecuTorch runtime under qemu-user, once per CPU profile
(deploytool.runtime.arm64), for `check --arm64` and `export --arm64`.

Each profile's run is a report row of its own, judged against eager like every row, and against the x86 run of
the same file: static int8 must be bit-exact there (XNNPACK's int8 kernels are exact integer arithmetic on every
family measured); fp32 within 100 dB; dynamic int8, whose per-call activation ranges round differently on
dot-product and i8mm kernels (MobileNetV2: 39 dB from x86, no worse against eager), may lose at most
parity.max_lowering_loss_db against eager compared with the x86 run.

    >>> arm = arm64_setup(None)                       # QEMU found, profiles checked, the runner built (cached)
    >>> rows = verify_arm64(artifact, x86_report, arm, activations="static", eager=eager, **verify_args)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from deploytool.export import Artifact
from deploytool.parity import Check, Comparison, lowering_check, output_metrics
from deploytool.report import ArtifactReport
from deploytool.verify import verify

log = logging.getLogger("deploytool")

FP32_VS_X86_DB = 100.0  # fp32 kernels of two ISAs differ in float summation order only (measured >= 123 dB)
X86_RUN = "x86 runtime"  # the reference name of the row against the x86 run, in the table and report.json


@dataclass(frozen=True)
class Arm64Setup:
    profiles: tuple[str, ...]
    qemu: Any  # deploytool.runtime.arm64.QemuInfo


def arm64_setup(requested: tuple[str, ...] | None) -> Arm64Setup:
    """QEMU, the profiles (`requested`, else NEON / dot product / i8mm) checked on it, the runner built or found
    in its cache, and one RUNNERS entry per profile: before any model is loaded, so a missing piece fails fast.
    Raises MissingDependencyError (exit 3) naming what to install, UsageError (exit 2) for a refused profile."""
    from deploytool.progress import timed_stage
    from deploytool.runtime import RUNNERS
    from deploytool.runtime.arm64 import ensure_arm64, runner_entries, runtime_label

    with timed_stage("arm64 check: finding QEMU and the arm64 runner", log=log, quiet_s=2.0):
        _, qemu, names = ensure_arm64(requested or None, progress=lambda line: log.info("arm64 setup: %s", line))
    for fmt, target, meta in runner_entries():
        RUNNERS.register(fmt, target, **{**meta, "runtime": runtime_label(meta["profile"], qemu)})
    log.info("arm64 check on %s, profiles: %s", qemu.short, ", ".join(names))
    return Arm64Setup(tuple(names), qemu)


def verify_arm64(artifact: Artifact, x86: ArtifactReport, arm: Arm64Setup, *, activations: str,
                 eager: list, **verify_args) -> list[ArtifactReport]:
    """One row per profile: `artifact` (a .pte) run in the arm64 runtime, compared with eager (as every row) and
    with `x86`, the same file's run in the x86 runtime (exactly, for static int8)."""
    from deploytool.runtime.arm64 import FORMAT_PREFIX, PROFILES

    rows = []
    for profile in arm.profiles:
        note = (f"{PROFILES[profile].kernels} kernels: the Linux build of the ExecuTorch runtime for arm64 under "
                f"qemu-user ({arm.qemu.short}, -cpu {PROFILES[profile].cpu}); not the Android AAR itself, and no "
                "timing (emulated time says nothing about a phone)")
        report = verify(replace(artifact, format=f"{FORMAT_PREFIX}{profile}", notes=(note,)), **verify_args)
        if report.outputs is not None and x86.outputs is not None:
            comparison = against_x86(eager, x86.outputs, report.outputs, output_names=verify_args["output_names"],
                                     precision=artifact.precision, activations=activations,
                                     candidate=f"{artifact.path.name} (arm64 {profile})",
                                     max_loss_db=verify_args["config"].parity.max_lowering_loss_db)
            report.comparisons.append(comparison)
            if not comparison.passed:
                report.notes.append(emulator_caution(profile, arm.qemu))
        rows.append(report)
    return rows


def against_x86(eager: list, x86: list, arm: list, *, output_names: tuple[str, ...], precision: str,
                activations: str, candidate: str, max_loss_db: float) -> Comparison:
    """The arm64 run against the x86 run of the same file: the number of elements that differ and the largest
    difference, per output, always; deciding for static int8 (must be 0), else SQNR (fp32) or the SQNR against
    eager lost compared with the x86 run (dynamic or mixed int8)."""
    exact = precision == "int8" and activations == "static"
    if precision == "int8" and not exact:
        base = lowering_check(eager, x86, arm, output_names=output_names, max_loss_db=max_loss_db,
                              candidate_name=candidate, reference_name=X86_RUN)
        metrics, checks = base.outputs, list(base.checks)
    else:
        metrics = tuple(output_metrics(name, [s[i] for s in x86], [s[i] for s in arm])
                        for i, name in enumerate(output_names))
        checks = [] if exact else [Check("sqnr_db", m.name, m.sqnr_db, FP32_VS_X86_DB, True) for m in metrics]
    for i, name in enumerate(output_names):
        want = np.concatenate([np.asarray(s[i]).reshape(-1) for s in x86])
        got = np.concatenate([np.asarray(s[i]).reshape(-1) for s in arm])
        differing = int(np.sum((want != got) & ~(np.isnan(want) & np.isnan(got))))
        largest = float(np.max(np.abs(want - got))) if want.size else 0.0
        checks.append(Check("differing", name, differing, 0, at_least=False, info=not exact,
                            detail=f" of {want.size} (largest difference {largest:.3g})",
                            label_text="elements not bit-equal to the x86 run"))
    return Comparison(candidate, X86_RUN, len(arm), tuple(metrics), tuple(checks))


def emulator_caution(profile: str, qemu: Any) -> str:
    """What a mismatch on the ARM path can also be, and which profile to try next."""
    from deploytool.runtime.arm64 import PROFILES, QEMU_ENV, default_profiles

    family = PROFILES[profile].kernels
    siblings = [p for p, spec in PROFILES.items() if spec.kernels == family and p != profile]
    others = [p for p in default_profiles(qemu) if p != profile]
    return (f"differs from the x86 run on {profile}: the ARM kernels, or the emulator ({qemu.short}; QEMU has had "
            f"bugs in newer CPU features), may be at fault. Try {', '.join(siblings or others)} "
            f"({'the same kernels' if siblings else 'another kernel family'}), or a newer QEMU via ${QEMU_ENV}")

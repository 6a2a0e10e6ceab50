"""Run a .pte in the arm64 ExecuTorch runtime under qemu-user: XNNPACK's ARM kernels, as on a phone, here.

The runner is the x86 one's C++ source, cross-compiled against the aarch64 executorch wheel (arm64_build.py),
run by `qemu-aarch64 -L SYSROOT -cpu MODEL` (no root, no binfmt_misc). The CPU model decides which kernels
XNNPACK picks (it reads the emulated CPU's feature bits), so each *profile* names the CPU it emulates and the
kernel family that exercises:

    >>> outputs = run_arm64("model.pte", samples, profile="cortex-a76")     # dot-product kernels
    >>> diff_outputs(outputs, x86_outputs).exact
    True

The emulator itself can be wrong: Debian 12's QEMU 7.2 gives SME kernels wrong results, so every profile carries
the oldest QEMU it was verified on, and a profile is refused on an older one. It covers the Linux/glibc build
of the runtime with the same XNNPACK kernels as the Android and iOS builds, not the Android AAR or its JNI;
emulated time says nothing about a phone's.

Only numpy is imported here (nothing pulls in torch or executorch); no process is started at import.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploytool.runtime.arm64_build import APT_INSTALL, Arm64Bundle, build_arm64_bundle

QEMU_ENV = "DEPLOYTOOL_QEMU_AARCH64"  # a qemu-aarch64 other than the one on PATH (a newer QEMU, unpacked)
QEMU_NAMES = ("qemu-aarch64-static", "qemu-aarch64")  # Debian 12 ships the first; Debian 13's qemu-user the second
FORMAT_PREFIX = "pte-arm64-"  # RUNNERS names: pte-arm64-cortex-a76, ...


@dataclass(frozen=True)
class Arm64Profile:
    """One emulated CPU: what QEMU is asked for, which XNNPACK kernels that selects, where it was verified."""

    name: str  # the CPU it emulates, as shown in the report
    cpu: str  # QEMU's -cpu value
    kernels: str  # the XNNPACK kernel family it exercises
    verified_qemu: tuple[int, int]  # oldest QEMU on which its results matched the x86 run (below)
    refused_because: str = ""  # what went wrong on QEMUs older than verified_qemu, when something did

    @property
    def model(self) -> str:
        """The QEMU CPU model that must exist (`-cpu help`) for this profile."""
        return self.cpu.split(",")[0]


# Verified with executorch 1.5.1 on QEMU 7.2.22 (Debian 12) and 10.0.2 (Debian 12 backports), x86 C++ runner as
# reference, real held-out inputs: static int8 digits (64 samples) and MobileNetV2 (16) gave every output element
# bit-equal to x86 on every profile, except `max` with SME on QEMU 7.2 (digits 637/640 elements wrong, 50 of 64
# top-1 changed; MobileNetV2 -2.4 dB vs x86, 16/16 top-1 changed); on QEMU 10.0 SME was bit-exact too.
# fp32: within 1.6e-5 (>= 123 dB; bit-exact where the same kernels run). Dynamic int8 MobileNetV2 is NOT
# bit-reproducible across kernel families (rounding in per-call activation quantization amplifies float-order
# differences): cortex-a53 exact; dot product, i8mm and SME 39 dB from x86 (max 0.16, one top-1 of 16 changed),
# the same on both QEMUs, so the kernels differ, not the emulator.
_SME_WRONG = ("QEMU 7.2's SME emulation gives XNNPACK's SME kernels wrong results (static int8 MobileNetV2: "
              "-2.4 dB against the x86 run, every top-1 changed); they were verified right on QEMU 10.0")
PROFILES: dict[str, Arm64Profile] = {p.name: p for p in (
    Arm64Profile("cortex-a53", "cortex-a53", "NEON (Armv8.0, no dot product)", (7, 2)),
    Arm64Profile("cortex-a55", "cortex-a55", "NEON dot product (Armv8.2)", (10, 0)),
    Arm64Profile("cortex-a76", "cortex-a76", "NEON dot product (Armv8.2)", (7, 2)),
    Arm64Profile("neoverse-n1", "neoverse-n1", "NEON dot product (Armv8.2)", (7, 2)),
    Arm64Profile("cortex-a710", "cortex-a710", "i8mm + bf16 + SVE2 (Armv9.0)", (10, 0)),
    Arm64Profile("neoverse-v1", "neoverse-v1", "i8mm + bf16 + SVE (Armv8.4)", (10, 0)),
    Arm64Profile("neoverse-n2", "neoverse-n2", "i8mm + bf16 + SVE2 (Armv9.0)", (10, 0)),
    # QEMU 7.2 has no Armv9 CPU model: its `max` CPU with SME off has the same i8mm/bf16/SVE2 features.
    Arm64Profile("armv9-no-sme", "max,sme=off", "i8mm + bf16 + SVE2 (QEMU max CPU, SME off)", (7, 2)),
    # QEMU 10.0's max CPU has SME but not SME2: XNNPACK's SME1 (KleidiAI) kernels run, its SME2 ones do not.
    Arm64Profile("max-sme", "max", "SME through KleidiAI (QEMU max CPU: SME1, i8mm, SVE2)", (10, 0), _SME_WRONG),
)}
# NEON, dot product, i8mm: the kernel families phones run. The i8mm one is cortex-a710 where QEMU has the model.
DEFAULT_PROFILES = ("cortex-a53", "cortex-a76", "cortex-a710")
_I8MM_FALLBACK = "armv9-no-sme"


class Arm64Error(RuntimeError):
    """The arm64 check cannot run as asked (a missing emulator, an unknown or refused profile) or failed."""

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class UnknownProfile(Arm64Error):
    """No profile has that name."""


class ProfileRefused(Arm64Error):
    """The profile is not known to give right results on this QEMU (or QEMU lacks its CPU model)."""


@dataclass(frozen=True)
class QemuInfo:
    """The qemu-aarch64 found: its path, version and CPU models."""

    path: Path
    version: tuple[int, ...]  # (7, 2, 22)
    cpus: frozenset[str]  # `-cpu help`

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))

    @property
    def short(self) -> str:
        """`qemu 7.2`: how report rows name the emulator."""
        return "qemu " + ".".join(map(str, self.version[:2]))


@dataclass(frozen=True)
class OutputDiff:
    """How an arm64 run's outputs differ from a reference run's, element by element."""

    elements: int
    differing: int  # elements not bit-equal (NaN == NaN counts as equal)
    max_abs: float  # largest absolute difference (inf where shapes or dtypes disagree)

    @property
    def exact(self) -> bool:
        return self.differing == 0


@functools.lru_cache(maxsize=8)
def _qemu_info(path: str) -> QemuInfo:
    def out(*args: str) -> str:
        try:
            return subprocess.run([path, *args], capture_output=True, text=True, timeout=30,
                                  stdin=subprocess.DEVNULL).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    m = re.search(r"version (\d+)\.(\d+)(?:\.(\d+))?", out("--version"))
    if not m:
        raise Arm64Error(f"{path} does not say its QEMU version (`{path} --version`)", hint=APT_INSTALL)
    cpus = frozenset(line.split()[0] for line in out("-cpu", "help").splitlines()[1:] if line.strip())
    return QemuInfo(Path(path), tuple(int(g) for g in m.groups() if g is not None), cpus)


def find_qemu() -> QemuInfo:
    """The aarch64 user-mode emulator: $DEPLOYTOOL_QEMU_AARCH64, else qemu-aarch64-static / qemu-aarch64 on PATH."""
    named = os.environ.get(QEMU_ENV)
    candidates = [named] if named else list(QEMU_NAMES)
    for name in candidates:
        path = shutil.which(name) if name else None
        if path:
            return _qemu_info(str(Path(path).resolve()))
    where = f"${QEMU_ENV} names {named}, which" if named else f"{' / '.join(QEMU_NAMES)}"
    raise Arm64Error(f"the arm64 check runs the runner under qemu-user; {where} was not found",
                     hint=APT_INSTALL)


def default_profiles(qemu: QemuInfo) -> tuple[str, ...]:
    """NEON, dot product and i8mm on this QEMU: cortex-a710 stands in by armv9-no-sme where QEMU lacks it."""
    return tuple(_I8MM_FALLBACK if name == "cortex-a710" and "cortex-a710" not in qemu.cpus else name
                 for name in DEFAULT_PROFILES)


def resolve_profile(name: str, qemu: QemuInfo, *, allow_unverified: bool = False) -> Arm64Profile:
    """The profile called `name`, if it can run right on `qemu`; else ProfileRefused saying why and what to use.

    >>> resolve_profile("max-sme", find_qemu()).cpu      # on QEMU 7.2: ProfileRefused (wrong SME results)
    """
    from deploytool.errors import did_you_mean

    profile = PROFILES.get(name)
    if profile is None:
        raise UnknownProfile(f"Unknown arm64 profile '{name}'. {did_you_mean(name, PROFILES)}")
    others = ", ".join(p for p in default_profiles(qemu) if p != name)
    if profile.model not in qemu.cpus:
        raise ProfileRefused(
            f"arm64 profile {name}: QEMU {qemu.version_text} ({qemu.path}) has no {profile.model} CPU model",
            hint=f"use {others}, or a newer QEMU (Debian 12: qemu-user from bookworm-backports) via ${QEMU_ENV}")
    if qemu.version[:2] < profile.verified_qemu and not allow_unverified:
        verified = ".".join(map(str, profile.verified_qemu))
        why = profile.refused_because or f"its results were verified on QEMU >= {verified} only"
        raise ProfileRefused(
            f"arm64 profile {name} is refused on QEMU {qemu.version_text}: {why}",
            hint=f"use {others}, or QEMU >= {verified} via ${QEMU_ENV}")
    return profile


def profile_status(qemu: QemuInfo) -> dict[str, str | None]:
    """Each profile's standing on `qemu`: None where it runs, else why not (for `deploytool setup arm64`)."""
    status: dict[str, str | None] = {}
    for name in PROFILES:
        try:
            resolve_profile(name, qemu)
            status[name] = None
        except ProfileRefused as exc:
            status[name] = exc.message
    return status


def _launcher(bundle: Arm64Bundle, qemu: QemuInfo, profile: Arm64Profile) -> Path:
    """A one-line script that runs the arm64 runner under `qemu -cpu`, so that native_runner.run_native (the
    x86 runner's file protocol, error and crash reporting) drives it unchanged. `exec`: a signal that kills the
    emulated program (qemu re-raises it) or a timeout's kill reaches qemu itself."""
    command = shlex.join([str(qemu.path), "-L", str(bundle.sysroot), "-cpu", profile.cpu, str(bundle.runner)])
    text = f"#!/bin/sh\n# {profile.name}: {profile.kernels}\nexec {command} \"$@\"\n"
    key = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = bundle.runner.parent / "launch" / f"{profile.name}-{key}.sh"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        tmp.write_text(text)
        tmp.chmod(0o755)
        os.replace(tmp, path)
    return path


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_arm64(
    pte: Path | str,
    samples: Sequence[Sequence[np.ndarray]],
    *,
    profile: str,
    bundle: Arm64Bundle | None = None,
    qemu: QemuInfo | None = None,
    allow_unverified: bool = False,
    jobs: int | None = None,
    timeout_s: float = 300.0,
) -> list[list[np.ndarray]]:
    """Every sample through `pte` in the arm64 runtime emulating `profile`: [sample][output].

    Builds the bundle on first use (arm64_build.build_arm64_bundle). The samples are shared among `jobs` emulated
    processes (default: one per core), each loading the program once. Raises ProfileRefused for a profile not verified on this QEMU (unless
    `allow_unverified`), Arm64Error when the runner fails or crashes (the runner's own message).
    """
    from deploytool.runtime.native_runner import NativeRunError, run_native_many

    qemu = qemu or find_qemu()
    chosen = resolve_profile(profile, qemu, allow_unverified=allow_unverified)
    bundle = bundle or build_arm64_bundle()
    launcher = _launcher(bundle, qemu, chosen)
    workers = max(1, min(jobs or _cores(), len(samples)))
    # One emulated process per worker, each with its share of the samples: the program loads once per process.
    shares = [list(range(len(samples)))[w::workers] for w in range(workers)]

    def share(indices: list[int]) -> list[list[np.ndarray]]:
        return run_native_many(launcher, Path(pte), [list(samples[i]) for i in indices], timeout_s=timeout_s)

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            done = list(pool.map(share, shares))
        outputs: list[list[np.ndarray]] = [[] for _ in samples]
        for indices, results in zip(shares, done):
            for i, result in zip(indices, results):
                outputs[i] = result
        return outputs
    except NativeRunError as exc:
        message = exc.message.replace("native runner", f"arm64 runner ({chosen.name}, {qemu.short})", 1)
        raise Arm64Error(message) from None


def diff_outputs(got: Sequence[Sequence[np.ndarray]], want: Sequence[Sequence[np.ndarray]]) -> OutputDiff:
    """Element-by-element comparison of two runs ([sample][output]): how many differ and by how much at most.

    >>> diff_outputs([[np.ones(3)]], [[np.array([1, 1, 1.5])]])
    OutputDiff(elements=3, differing=1, max_abs=0.5)
    """
    elements = differing = 0
    max_abs = 0.0
    if len(got) != len(want):
        return OutputDiff(max(len(got), len(want)), max(len(got), len(want)), float("inf"))
    for a_sample, b_sample in zip(got, want):
        if len(a_sample) != len(b_sample):
            n = max(len(a_sample), len(b_sample))
            elements, differing, max_abs = elements + n, differing + n, float("inf")
            continue
        for a, b in zip(a_sample, b_sample):
            a, b = np.asarray(a), np.asarray(b)
            if a.shape != b.shape or a.dtype != b.dtype:
                n = max(a.size, b.size)
                elements, differing, max_abs = elements + n, differing + n, float("inf")
                continue
            elements += a.size
            same = (a == b) | (np.isnan(a) & np.isnan(b)) if a.dtype.kind in "fc" else a == b
            delta = np.abs(a.astype(np.float64) - b.astype(np.float64))
            differing += int(np.count_nonzero(~same))
            if delta.size and not same.all():
                max_abs = max(max_abs, float(np.nanmax(np.where(same, 0.0, delta))))
    return OutputDiff(elements, differing, max_abs)


def runtime_label(profile: str, qemu: QemuInfo | None = None) -> str:
    """The report's runtime column: `ExecuTorch runtime (XNNPACK), arm64 cortex-a76, qemu 7.2`."""
    emulator = (qemu or find_qemu()).short
    return f"ExecuTorch runtime (XNNPACK), arm64 {profile}, {emulator}"


def _ident(profile: str) -> str:
    return "run_" + re.sub(r"\W", "_", profile)


def _runner_for(profile: str):
    def run(path: Path, samples: list[tuple[np.ndarray, ...]]) -> list[list[np.ndarray]]:
        try:
            return run_arm64(path, samples, profile=profile)
        except Arm64Error as exc:  # the worker reports one line: keep the one that names the failure
            raise RuntimeError(exc.message.splitlines()[0]) from None

    run.__name__ = run.__qualname__ = _ident(profile)
    run.__doc__ = f"The RUNNERS entry {FORMAT_PREFIX}{profile}: every sample under qemu -cpu {PROFILES[profile].cpu}."
    return run


# One module attribute per profile (run_cortex_a76, ...): RUNNERS entries are import strings, so each profile
# is its own `deploytool.runtime.arm64:run_<profile>`.
for _name in PROFILES:
    globals()[_ident(_name)] = _runner_for(_name)
del _name


def runner_entries() -> list[tuple[str, str, dict]]:
    """(format, import string, meta) for RUNNERS, one per profile; meta's `runtime` leaves out the QEMU version
    (unknown until QEMU is found: runtime_label adds it).

    >>> for fmt, target, meta in runner_entries():
    ...     RUNNERS.register(fmt, target, **meta)
    """
    return [(f"{FORMAT_PREFIX}{name}", f"{__name__}:{_ident(name)}",
             {"runtime": f"ExecuTorch runtime (XNNPACK), arm64 {name} (emulated)", "profile": name})
            for name in PROFILES]


def ensure_arm64(profiles: Sequence[str] | None = None, *, progress=None) -> tuple[Arm64Bundle, QemuInfo, list[str]]:
    """Check and set up everything an arm64 check needs, before any artifact is run: QEMU, each profile on it
    (`None`: the default NEON / dot product / i8mm three), the bundle (built on first use, with `progress`).

    Raises deploytool's errors: MissingDependencyError (exit 3) naming the missing piece with its install
    command, UsageError (exit 2) for an unknown or refused profile, StageError (exit 4) for a failed build.
    """
    from deploytool.errors import MissingDependencyError, StageError, UsageError
    from deploytool.runtime.native_build import NativeBuildError, NativeToolchainMissing

    try:
        qemu = find_qemu()
        names = list(profiles) if profiles else list(default_profiles(qemu))
        for name in names:
            resolve_profile(name, qemu)
    except (ProfileRefused, UnknownProfile) as exc:
        raise UsageError(exc.message, hint=exc.hint) from None
    except Arm64Error as exc:
        raise MissingDependencyError(exc.message, hint=exc.hint) from None
    try:
        bundle = build_arm64_bundle(progress=progress)
    except NativeToolchainMissing as exc:
        raise MissingDependencyError(exc.message, hint=exc.hint) from None
    except NativeBuildError as exc:
        raise StageError(f"Building the arm64 runner failed: {exc.message}",
                         hint="the compiler's error is quoted above; the x86 checks do not need it") from None
    return bundle, qemu, names

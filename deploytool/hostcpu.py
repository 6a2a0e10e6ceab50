"""The host CPU's int8 dot-product instructions, named from /proc/cpuinfo, so a report can say which CPUs its
int8 verdict was measured on and which it covers. Imports nothing heavy (no torch).

Why it matters: on x86-64 without VNNI, oneDNN and onnxruntime multiply u8 x s8 with VPMADDUBSW, whose 16-bit
pair sums saturate (oneDNN's "Nuances of int8 computations"); VNNI (VPDPBUSD) and AMX accumulate in 32 bits.
"""
from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")

# (flag in /proc/cpuinfo, name), best first: the first the CPU has names its int8 instruction set.
INT8_ISAS = (
    ("amx_int8", "AMX"),
    ("avx512_vnni", "AVX-512 VNNI"),
    ("avx_vnni", "AVX-VNNI"),
    ("avx512bw", "AVX-512 (no VNNI)"),
    ("avx2", "AVX2 (no VNNI)"),
    ("sse4_1", "SSE4.1 (no VNNI)"),
    ("i8mm", "Arm i8mm"),
    ("asimddp", "Arm dot product"),
)
SATURATING = frozenset({"AVX-512 (no VNNI)", "AVX2 (no VNNI)", "SSE4.1 (no VNNI)"})  # u8 x s8 via 16-bit sums


def read_cpuinfo() -> str:
    """/proc/cpuinfo's text, or "" where there is none (not Linux): nothing is then known."""
    try:
        return CPUINFO.read_text(errors="replace")
    except OSError:
        return ""


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The feature flags of the first CPU in /proc/cpuinfo text (x86 `flags`, Arm `Features`); empty if unknown.

    >>> sorted(cpu_flags("flags\\t\\t: fpu avx2 sse4_1\\n"))
    ['avx2', 'fpu', 'sse4_1']
    """
    for line in (read_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def int8_isa(flags: frozenset[str] | None = None) -> str:
    """The name of the best int8 dot-product instruction set among `flags` (default: this host's).

    >>> int8_isa(frozenset({"avx2", "avx512bw", "avx512_vnni"}))
    'AVX-512 VNNI'
    """
    flags = cpu_flags() if flags is None else flags
    return next((name for flag, name in INT8_ISAS if flag in flags), "unknown")


def saturates_u8s8(flags: frozenset[str] | None = None) -> bool:
    """Whether int8 kernels on this CPU sum u8 x s8 products in 16 bits (x86-64 without VNNI or AMX).

    >>> saturates_u8s8(frozenset({"avx2"}))
    True
    """
    return int8_isa(flags) in SATURATING


def host_cpu(cpuinfo: str | None = None) -> dict[str, str]:
    """What report.json says of the machine a verdict was measured on: its model and int8 instruction set.

    >>> host_cpu("model name\\t: AMD EPYC 7B13\\nflags\\t\\t: avx2 sse4_1\\n")
    {'model': 'AMD EPYC 7B13', 'int8': 'AVX2 (no VNNI)'}
    """
    cpuinfo = read_cpuinfo() if cpuinfo is None else cpuinfo
    model = next((line.partition(":")[2].strip() for line in cpuinfo.splitlines()
                  if line.split(":")[0].strip() in ("model name", "Hardware", "CPU part")), "unknown")
    return {"model": model, "int8": int8_isa(cpu_flags(cpuinfo))}

"""deploytool.hostcpu names the CPU's int8 instruction set from /proc/cpuinfo text, without torch."""
import subprocess
import sys

import pytest

from deploytool.hostcpu import INT8_ISAS, cpu_flags, int8_isa, saturates_u8s8

EPYC_AVX2 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse4_1 sse4_2 avx avx2 fma\n\nflags\t\t: x\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd asimddp\n"


@pytest.mark.parametrize(("flags", "name", "saturates"), [
    ({"sse4_1", "avx2", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8"}, "AMX", False),
    ({"avx2", "avx512bw", "avx512_vnni"}, "AVX-512 VNNI", False),
    ({"avx2", "avx_vnni"}, "AVX-VNNI", False),
    ({"avx2", "avx512bw"}, "AVX-512 (no VNNI)", True),
    ({"sse4_1", "avx2"}, "AVX2 (no VNNI)", True),
    ({"fp", "asimd", "asimddp"}, "Arm dot product", False),
    (set(), "unknown", False),
], ids=lambda v: v if isinstance(v, str) else None)
def test_int8_isa_names_the_best_instruction_set(flags, name, saturates):
    assert int8_isa(frozenset(flags)) == name
    assert saturates_u8s8(frozenset(flags)) is saturates


def test_cpu_flags_reads_the_first_cpu_of_x86_and_arm_cpuinfo():
    assert int8_isa(cpu_flags(EPYC_AVX2)) == "AVX2 (no VNNI)"
    assert cpu_flags(ARM) == {"fp", "asimd", "asimddp"}
    assert cpu_flags("model name : something\n") == frozenset()


def test_this_host_is_named_without_importing_torch():
    code = "import sys, deploytool.hostcpu as h; print(h.int8_isa()); assert 'torch' not in sys.modules"
    name = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert name in {n for _, n in INT8_ISAS} | {"unknown"}

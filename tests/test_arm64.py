"""The arm64 ExecuTorch runtime under qemu-user: XNNPACK's ARM kernels agree with the x86 run, and a wrong ARM
answer is caught.

The zoo digits model is quantized (static int8, on real digits) and exported for android with the tool; the .pte
then runs in the x86 C++ runner and, cross-compiled from the same source against the aarch64 executorch wheel,
under `qemu-aarch64 -cpu MODEL` once per kernel family (NEON, dot product, i8mm). Needs Debian's
`g++-aarch64-linux-gnu` and `qemu-user-static` (the tests that need them skip, saying so, without them); the
bundle is built once into the user's cache (~/.cache/deploytool/native/aarch64-linux-gnu).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_runner import Cli

from deploytool.errors import MissingDependencyError, UsageError
from deploytool.runtime import arm64
from deploytool.runtime.arm64_build import APT_INSTALL, NativeToolchainMissing, find_toolchain

N_SAMPLES = 16  # held-out digits through every runtime
FAMILIES = {"cortex-a53": "neon", "cortex-a76": "dotprod", "cortex-a710": "i8mm", "armv9-no-sme": "i8mm"}


def _missing() -> str | None:
    """Why the arm64 runs cannot happen here, or None."""
    try:
        arm64.find_qemu()
        find_toolchain()
    except (arm64.Arm64Error, NativeToolchainMissing) as exc:
        return f"{exc.message} (install: {exc.hint})"
    return None


needs_arm64 = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


@pytest.fixture(scope="module")
def qemu() -> arm64.QemuInfo:
    return arm64.find_qemu()


@pytest.fixture(scope="module")
def bundle():
    from deploytool.runtime.arm64_build import build_arm64_bundle

    return build_arm64_bundle()  # the user's cache: built (and the wheel downloaded) once per machine


@pytest.fixture(scope="module")
def digits_pte(digit_images, tmp_path_factory) -> Path:
    """zoo:digits, static int8 calibrated on real digits, exported for android by the tool."""
    folder = tmp_path_factory.mktemp("arm64")
    cli = Cli(folder)
    cli("quantize", "--model", "zoo:digits", "--calib", str(digit_images), "--calib-limit", "128",
        "--activations", "static")
    cli("export", "--target", "android")
    return folder / "build" / "deploytool" / "android" / "model.pte"


@pytest.fixture(scope="module")
def samples() -> list[tuple[np.ndarray]]:
    """Held-out digits (even indices: never trained on), preprocessed as the zoo entry does."""
    from sklearn.datasets import load_digits

    pixels = np.round(load_digits().images[0::2][:N_SAMPLES] * 255 / 16)
    x = ((pixels / 255 - 0.5) / 0.5).astype(np.float32)
    return [(image.reshape(1, 1, 8, 8),) for image in x]


@pytest.fixture(scope="module")
def x86(digits_pte, samples) -> list[list[np.ndarray]]:
    """The same .pte in the x86 C++ runner: the reference every ARM run must equal."""
    from deploytool.runtime.native_runner import build_runner, run_native

    runner = build_runner()
    return [run_native(runner, digits_pte, list(sample)) for sample in samples]


def _family_profiles() -> list:
    """NEON, dot product and i8mm as this QEMU offers them (armv9-no-sme where it has no cortex-a710)."""
    try:
        names = arm64.default_profiles(arm64.find_qemu())
    except arm64.Arm64Error:
        names = arm64.DEFAULT_PROFILES
    return [pytest.param(name, id=f"{FAMILIES[name]}-{name}") for name in names]


@needs_arm64
@pytest.mark.slow
@pytest.mark.parametrize("profile", _family_profiles())
def test_static_int8_digits_match_the_x86_run_exactly(digits_pte, samples, x86, bundle, qemu, profile):
    got = arm64.run_arm64(digits_pte, samples, profile=profile, bundle=bundle, qemu=qemu)
    diff = arm64.diff_outputs(got, x86)
    assert diff.elements == N_SAMPLES * 10
    assert diff.exact, f"{profile} on QEMU {qemu.version_text}: {diff}"
    # The outputs are real logits (not all equal or zero), and the emulated run still classifies the digits.
    logits = np.concatenate([sample[0] for sample in got])
    assert np.ptp(logits) > 1.0
    labels = np.asarray([int(np.argmax(row)) for row in logits])
    from sklearn.datasets import load_digits

    assert (labels == load_digits().target[0::2][:N_SAMPLES]).mean() >= 0.9


@needs_arm64
def test_sme_profile_is_refused_on_a_qemu_older_than_verified(qemu):
    profile = arm64.PROFILES["max-sme"]
    if qemu.version[:2] >= profile.verified_qemu:
        assert arm64.resolve_profile("max-sme", qemu) is profile  # verified here: allowed
        return
    with pytest.raises(arm64.ProfileRefused) as refused:
        arm64.resolve_profile("max-sme", qemu)
    assert f"QEMU {qemu.version_text}" in refused.value.message and "SME" in refused.value.message
    assert "cortex-a53" in refused.value.hint  # names the profiles that do run right here
    with pytest.raises(UsageError) as usage:  # what `check --arm64 max-sme` says (exit 2), before any build
        arm64.ensure_arm64(["max-sme"])
    assert usage.value.exit_code == 2 and "refused" in str(usage.value)


@needs_arm64
@pytest.mark.slow
def test_a_wrong_arm_answer_is_caught(digits_pte, samples, x86, bundle, qemu):
    """QEMU < 10 emulates SME wrongly: forced past the refusal, the run differs from x86 and the diff shows it."""
    if qemu.version[:2] >= arm64.PROFILES["max-sme"].verified_qemu:
        pytest.skip(f"QEMU {qemu.version_text} emulates SME right (nothing wrong to catch on the real path)")
    got = arm64.run_arm64(digits_pte, samples, profile="max-sme", bundle=bundle, qemu=qemu, allow_unverified=True)
    diff = arm64.diff_outputs(got, x86)
    assert not diff.exact and diff.differing > diff.elements // 2 and diff.max_abs > 1.0, diff


@needs_arm64
@pytest.mark.slow
def test_runners_entry_runs_in_a_child_process(digits_pte, samples, x86, monkeypatch):
    """The RUNNERS entry of a profile, as `check` would run it: in a worker child, by import string."""
    from deploytool.registry import Entry
    from deploytool.runtime import RUNNERS, run_artifact

    entries = {fmt: (target, meta) for fmt, target, meta in arm64.runner_entries()}
    fmt = f"{arm64.FORMAT_PREFIX}cortex-a76"
    target, meta = entries[fmt]
    monkeypatch.setitem(RUNNERS._entries, fmt, Entry(fmt, target, meta))
    result = run_artifact(digits_pte, fmt, samples[:4])
    assert result.ok, result.error
    assert arm64.diff_outputs(result.outputs, x86[:4]).exact


def test_an_altered_output_is_counted():
    want = [[np.linspace(-3, 3, 10, dtype=np.float32).reshape(1, 10)] for _ in range(3)]
    got = [[a.copy() for a in sample] for sample in want]
    got[1][0][0, 4] = np.nextafter(got[1][0][0, 4], np.float32(np.inf))  # one ulp on one element
    diff = arm64.diff_outputs(got, want)
    assert (diff.elements, diff.differing) == (30, 1) and 0 < diff.max_abs < 1e-6 and not diff.exact
    assert arm64.diff_outputs(want, want).exact
    assert arm64.diff_outputs([[want[0][0][:, :5]]], want[:1]).max_abs == float("inf")  # shape mismatch


def test_missing_emulator_and_compiler_name_the_package(tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    for name in (arm64.QEMU_ENV, "DEPLOYTOOL_ARM64_CXX"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(NativeToolchainMissing) as no_cxx:
        find_toolchain()
    assert "aarch64-linux-gnu-g++" in no_cxx.value.message and no_cxx.value.hint == APT_INSTALL
    with pytest.raises(MissingDependencyError) as no_qemu:
        arm64.ensure_arm64()
    assert no_qemu.value.exit_code == 3 and "qemu-aarch64" in str(no_qemu.value)
    assert "apt-get install" in no_qemu.value.hint and "qemu-user-static" in no_qemu.value.hint


def test_unknown_profile_suggests_a_name():
    qemu = arm64.QemuInfo(Path("qemu-aarch64"), (10, 0, 2), frozenset({"cortex-a53", "cortex-a76", "max"}))
    with pytest.raises(arm64.UnknownProfile, match="Did you mean 'cortex-a76'"):
        arm64.resolve_profile("cortex-a67", qemu)
    assert arm64.default_profiles(qemu) == ("cortex-a53", "cortex-a76", "armv9-no-sme")


def test_import_pulls_in_neither_torch_nor_executorch():
    code = ("import sys, deploytool.runtime.arm64, deploytool.runtime.arm64_build; "
            "print(sorted(m for m in ('torch', 'executorch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@needs_arm64
@pytest.mark.slow
def test_check_arm64_adds_a_row_per_kernel_family_each_exact_against_x86(digits_pte, qemu):
    """`deploytool check --arm64`: the .pte on NEON, dot product and i8mm, each a row against eager and against
    the x86 run, which static int8 must equal element for element."""
    import json

    folder = digits_pte.parents[3]
    result = Cli(folder)("check", "--target", "android", "--arm64")
    report = json.loads((digits_pte.parent / "report.json").read_text())
    arm_rows = [a for a in report["artifacts"] if a["format"].startswith(arm64.FORMAT_PREFIX)]
    assert [a["format"].removeprefix(arm64.FORMAT_PREFIX) for a in arm_rows] == list(arm64.default_profiles(qemu))
    for row in arm_rows:
        assert row["passed"], row["parity"]
        x86 = next(c for c in row["parity"]["comparisons"] if c["reference"] == "x86 runtime")
        (differing,) = [c for c in x86["checks"] if c["name"] == "differing"]
        assert differing["value"] == 0 and not differing["info"], differing
    runtimes = {c["runtime"] for c in report["cross"]}
    assert f"ExecuTorch runtime (XNNPACK), arm64 cortex-a76, {qemu.short}" in runtimes
    assert "elements not bit-equal to the x86 run 0 of" in result.stdout


def test_one_changed_element_on_the_arm_path_fails_static_int8_and_names_the_emulator():
    from deploytool.steps.arm64 import against_x86, emulator_caution

    rng = np.random.default_rng(0)
    eager = [[rng.standard_normal((1, 10)).astype(np.float32)] for _ in range(6)]
    x86 = [[e[0] + np.float32(0.01)] for e in eager]
    arm = [[x[0].copy()] for x in x86]
    arm[2][0][0, 3] += np.float32(0.5)  # what a wrong delegate output on the ARM path looks like
    static = against_x86(eager, x86, arm, output_names=("logits",), precision="int8", activations="static",
                         candidate="model.pte (arm64 cortex-a76)", max_loss_db=1.0)
    assert not static.passed and static.checks[-1].value == 1 and "largest difference 0.5" in static.checks[-1].detail
    rounded = [[x[0] + rng.normal(0, 0.002, x[0].shape).astype(np.float32)] for x in x86]
    dynamic = against_x86(eager, x86, rounded, output_names=("logits",), precision="int8", activations="dynamic",
                          candidate="model.pte (arm64 cortex-a76)", max_loss_db=1.0)
    assert dynamic.passed, "dynamic int8 rounds differently on ARM: judged by what it loses against eager"
    assert not against_x86(eager, x86, arm, output_names=("logits",), precision="int8", activations="dynamic",
                           candidate="model.pte (arm64 cortex-a76)", max_loss_db=1.0).passed
    qemu = arm64.QemuInfo(Path("qemu-aarch64"), (7, 2, 22), frozenset({"cortex-a53", "cortex-a76", "neoverse-n1"}))
    caution = emulator_caution("cortex-a76", qemu)
    assert "emulator (qemu 7.2" in caution and "neoverse-n1" in caution

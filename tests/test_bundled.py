"""`--format bpte`: an ExecuTorch BundledProgram that verifies itself in the ExecuTorch runtime.

The zoo digits model is quantized on real digit images and exported for android with
`--format pte,bpte`; the bundle's cases are run through ExecuTorch's own bundled-program verify.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_runner import Cli

from deploytool.api import plan_formats
from deploytool.bundle_format import sidecar_path
from deploytool.export.bundled import BUNDLED_CASES
from deploytool.runtime import run_artifact
from deploytool.runtime.bundled import self_test

pytestmark = pytest.mark.slow  # quantize + two lowerings + four runtime child processes: about a minute

SAMPLES = 16  # held-out digits pushed through both runtimes when comparing .bpte with .pte


@pytest.fixture(scope="module")
def android(digit_images, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bundled")
    cli = Cli(folder)
    cli("quantize", "--model", "zoo:digits", "--calib", str(digit_images), "--calib-limit", "128")
    cli("export", "--target", "android", "--format", "pte,bpte")
    return folder / "build" / "deploytool" / "android"


def test_bpte_is_asked_for_not_default():
    assert plan_formats(("android", "ios"), None) == {"android": ("pte",), "ios": ("pte",)}
    assert plan_formats(("android", "ios"), ("pte", "bpte")) == {"android": ("pte", "bpte"), "ios": ("pte", "bpte")}


def test_export_writes_both_and_the_bundle_passes_parity(android):
    report = json.loads((android / "report.json").read_text())
    rows = {a["file"]: a for a in report["artifacts"]}
    assert set(rows) == {"model.pte", "model.bpte"}
    assert all(row["passed"] for row in rows.values()), rows
    assert any(f"{BUNDLED_CASES}/{BUNDLED_CASES} cases pass" in note for note in rows["model.bpte"]["notes"])
    manifest = json.loads((android / "manifest.json").read_text())
    assert [a["format"] for a in manifest["artifacts"]] == ["pte", "bpte"]
    # The bundle carries exactly the program that the .pte row verified.
    assert (android / "model.pte").read_bytes() in (android / "model.bpte").read_bytes()


def test_bundle_verifies_with_parity_tolerances(android):
    check = self_test(android / "model.bpte")
    assert check.cases == BUNDLED_CASES and check.passed, check.summary
    assert check.rtol == 0.0 and 0 < check.atol < 1.0  # int8 digits logits span ~20; far tighter than that


def test_library_default_tolerances_fail_an_int8_bundle(android, tmp_path):
    bundle = _copy_bundle(android, tmp_path)
    sidecar = sidecar_path(bundle)
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "rtol": 1e-5, "atol": 1e-8}))
    assert not self_test(bundle).passed


def test_embedded_program_matches_the_pte(android, digit_images):
    samples = [(np.asarray(_digit(p), np.float32)[None, None],) for p in sorted(digit_images.rglob("*.png"))[:SAMPLES]]
    bundled = run_artifact(android / "model.bpte", "bpte", samples)
    plain = run_artifact(android / "model.pte", "pte", samples)
    assert bundled.ok and plain.ok, (bundled.error, plain.error)
    for b, p in zip(bundled.outputs, plain.outputs):
        np.testing.assert_array_equal(b[0], p[0])


def test_corrupted_expected_output_fails_verification(android, tmp_path):
    bundle = _copy_bundle(android, tmp_path)
    atol = json.loads(sidecar_path(bundle).read_text())["atol"]
    _shift_expected_output(bundle, case=1, by=3 * atol)
    check = self_test(bundle)
    assert check.failed == [1], check.summary
    run = run_artifact(bundle, "bpte", [])
    assert not run.ok and "bundled self-test failed" in run.error and "case(s) 1" in run.error


def test_check_refuses_a_bundle_whose_tolerances_changed_after_export(android):
    """The tolerances file travels with the bundle and is in the manifest: loosening it fails the CI gate."""
    project, sidecar = Cli(android.parents[2]), sidecar_path(android / "model.bpte")
    manifest = json.loads((android / "manifest.json").read_text())
    (bundle,) = [a for a in manifest["artifacts"] if a["format"] == "bpte"]
    assert set(bundle["companions"]) == {sidecar.name}
    original = sidecar.read_text()
    try:
        sidecar.write_text(json.dumps({**json.loads(original), "atol": 1e6}))
        result = project("check", "--target", "android", expect=1)
        assert f"{sidecar} differs from the sha256 in its manifest" in result.stdout + result.stderr
    finally:
        sidecar.write_text(original)
    project("check", "--target", "android")


def _copy_bundle(android: Path, folder: Path) -> Path:
    bundle = Path(shutil.copy(android / "model.bpte", folder / "model.bpte"))
    shutil.copy(sidecar_path(android / "model.bpte"), sidecar_path(bundle))
    return bundle


def _shift_expected_output(bundle: Path, *, case: int, by: float) -> None:
    """Move the top expected logit of one case by `by`: located with executorch's deserializer, patched in place."""
    from executorch.devtools.bundled_program.serialize import deserialize_from_flatbuffer_to_bundled_program

    data = bundle.read_bytes()
    schema = deserialize_from_flatbuffer_to_bundled_program(data)
    expected = bytes(schema.method_test_suites[0].test_cases[case].expected_outputs[0].val.data)
    assert data.count(expected) == 1  # the 40 bytes of 10 float32 logits occur once
    values = np.frombuffer(expected, np.float32).copy()
    values[int(np.argmax(values))] += by
    bundle.write_bytes(data.replace(expected, values.tobytes()))


def _digit(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L"), np.float32) / 255.0

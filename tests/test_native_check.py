"""`deploytool check --native`: each .pte also runs in the C++ runner, built here on first use.

The zoo digits model is exported for android twice (int8, quantized on real digits, and fp32); the
native rows must match eager within the parity thresholds and the Python runtime within 1e-6.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import Cli

from deploytool.runtime.native import RUNNER_FORMAT

SAME_PROGRAM_ATOL = 1e-6  # same program, kernels and delegate as the Python runtime


@pytest.fixture(scope="module")
def exported(digit_images, tmp_path_factory):
    """(cli, data flags): int8 in build/deploytool (quantize ran there), fp32 in fp32/."""
    folder = tmp_path_factory.mktemp("native")
    cli = Cli(folder)
    data = ("--model", "zoo:digits", "--calib", str(digit_images), "--calib-limit", "128")
    cli("quantize", *data)
    cli("export", "--target", "android")
    cli("export", *data, "--target", "android", "--precision", "fp32", "--output", "fp32")
    return cli, data


@pytest.mark.slow
@pytest.mark.parametrize("output, precision", [("build/deploytool", "int8"), ("fp32", "fp32")])
def test_native_runner_matches_python_runtime_and_eager(exported, output, precision):
    cli, data = exported
    rows = json.loads(cli("check", *data, "--native", "--json", "--output", output).stdout)
    python, native = (next(r for r in rows if r["format"] == fmt) for fmt in ("pte", RUNNER_FORMAT))
    assert python["precision"] == native["precision"] == precision
    assert native["passed"], native["parity"]
    comparisons = {c["reference"]: c for c in native["parity"]["comparisons"]}
    assert comparisons["eager fp32"]["passed"]
    same = comparisons["ExecuTorch Python runtime"]
    assert same["passed"] and same["samples"] > 100
    assert max(o["max_abs"] for o in same["outputs"]) <= SAME_PROGRAM_ATOL
    eager_python = python["parity"]["comparisons"][0]["outputs"][0]
    eager_native = comparisons["eager fp32"]["outputs"][0]
    assert eager_native["sqnr_db"] == pytest.approx(eager_python["sqnr_db"], abs=0.01)


def test_missing_cmake_is_a_missing_dependency(cli, tmp_path, monkeypatch):
    _write_manifest(tmp_path, "pte")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no cached runner to fall back on
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("DEPLOYTOOL_CMAKE", raising=False)
    result = cli("check", "--native", expect=3)
    assert "cmake" in result.stderr and "hint:" in result.stderr


def test_native_needs_a_pte(cli, tmp_path):
    _write_manifest(tmp_path, "onnx")
    result = cli("check", "--native", expect=2)
    assert "--native runs .pte files" in result.stderr


def _write_manifest(folder: Path, fmt: str) -> None:
    target = folder / "build" / "deploytool" / "android"
    target.mkdir(parents=True)
    (target / "manifest.json").write_text(json.dumps({"artifacts": [
        {"file": f"model.{fmt}", "format": fmt, "sha256": "0" * 64, "precision": "fp32"}]}))

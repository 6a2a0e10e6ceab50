"""Server and legacy-mobile formats: ONNX (fp32 + int8 QDQ), TorchScript, .ptl, AOTInductor, each run in its runtime."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from cli_runner import Cli

FP32_MAX_ABS_REL = 1e-4  # config.ParityConfig.fp32: lowering fp32 must be numerically transparent
SERVER_FILES = ("model.onnx", "model.int8.onnx", "model.pt", "model.pt2", "model.int8.pt2")


def _report(output: Path, target: str) -> dict:
    return json.loads((output / target / "report.json").read_text())


@pytest.mark.slow
def test_target_all_writes_every_format(exported_all):
    output, _ = exported_all
    for name in SERVER_FILES:
        assert (output / "server" / name).is_file(), name
    assert (output / "android" / "model.pte").is_file()
    assert (output / "android" / "model.ptl").is_file()
    manifest = json.loads((output / "server" / "manifest.json").read_text())
    assert {(a["file"], a["precision"]) for a in manifest["artifacts"]} == {
        ("model.onnx", "fp32"), ("model.int8.onnx", "int8"), ("model.pt", "fp32"), ("model.pt2", "fp32"),
        ("model.int8.pt2", "int8")}


@pytest.mark.slow
def test_every_artifact_runs_in_its_runtime_and_meets_its_thresholds(exported_all):
    output, _ = exported_all
    for target in ("android", "server"):
        for artifact in _report(output, target)["artifacts"]:
            name = f"{target}/{artifact['file']}"
            assert artifact["parity"]["run_error"] is None, name
            assert artifact["passed"], name
            vs_eager = artifact["parity"]["comparisons"][0]
            assert vs_eager["reference"] == "eager fp32"
            if artifact["precision"] == "fp32":
                assert vs_eager["outputs"][0]["max_abs_rel"] <= FP32_MAX_ABS_REL, name
            else:  # int8: also checked against the quantized program it came from
                assert [c["reference"] for c in artifact["parity"]["comparisons"]] == ["eager fp32",
                                                                                       "quantized reference"], name
                assert artifact["accuracy"]["artifact"] >= artifact["accuracy"]["eager_fp32"] - 0.02, name


@pytest.mark.slow
def test_parity_table_has_numbers_for_every_artifact(exported_all):
    output, stdout = exported_all
    table = stdout.split("cross-runtime parity")[1]
    for name in (*(f"server/{f}" for f in SERVER_FILES), "android/model.pte", "android/model.ptl"):
        rows = [line for line in table.splitlines() if line.startswith(name + " ")]
        assert rows, f"{name} missing from the cross table:\n{table}"
        assert all(re.search(r"\d+\.\d dB", row) for row in rows), rows
    cross = _report(output, "server")["cross"]
    assert cross == _report(output, "android")["cross"]
    pairs = {(row["artifact"], row["reference"]) for row in cross if row["verdict"] == "info"}
    assert ("server/model.int8.onnx", "android/model.pte") in pairs  # int8 artifacts vs each other
    own = {row["artifact"]: row["reference"] for row in cross if row["reference"] != "eager fp32"
           and row["verdict"] != "info"}
    assert own["android/model.pte"] == "PT2E program (XNNPACK quantizer)"
    assert own["server/model.int8.onnx"] == "QDQ graph, ORT optimizations off"
    assert own["server/model.int8.pt2"] == "PT2E program (X86 Inductor quantizer)"
    assert all(row["sqnr_db"] >= 15 for row in cross), cross


@pytest.mark.slow
def test_check_reruns_every_runtime_on_the_folder(exported_all, digit_images):
    output, _ = exported_all
    result = Cli(output.parent.parent)("check", "--target", "server")
    table = result.stdout.split("cross-runtime parity")[1]
    for name in SERVER_FILES:
        assert f"server/{name} " in table, table
    assert _report(output, "server")["cross"]


def test_default_android_is_pte_only_and_ptl_on_request():
    from deploytool.api import plan_formats

    assert "ptl" not in plan_formats(("android",), None)["android"]
    assert plan_formats(("android",), ("ptl",)) == {"android": ("ptl",)}
    plan = plan_formats(("all",), None)
    assert plan["server"] == ("onnx", "torchscript", "aoti") and "ptl" in plan["android"]


def test_ptl_says_pytorch_mobile_is_deprecated_and_whether_it_was_optimized(cli, digit_images):
    import torch.backends.xnnpack

    cli("export", "--model", "zoo:digits", "--calib", str(digit_images), "--target", "android", "--format", "ptl",
        "--precision", "fp32")
    (artifact,) = _report(cli.folder / "build" / "deploytool", "android")["artifacts"]
    assert artifact["file"] == "model.ptl" and artifact["passed"]
    notes = " ".join(artifact["notes"])
    assert "deprecated in favour of ExecuTorch" in notes
    expected = "optimize_for_mobile applied" if torch.backends.xnnpack.enabled else "optimize_for_mobile skipped"
    assert expected in notes


@pytest.fixture(scope="module")
def digits_prepared(digit_images):
    from deploytool import api

    return api.prepare(api.load_config(overrides={"model": "zoo:digits", "data.calib": str(digit_images)}))


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_onnx_int8_calibration_methods_run_in_onnxruntime(method, digits_prepared, tmp_path):
    from dataclasses import replace

    from deploytool.context import batch_of_one
    from deploytool.config import OnnxCalibration
    from deploytool.export import Programs
    from deploytool.export.onnx import export_onnx
    from deploytool.parity import compare
    from deploytool.quantize.onnx import quantize_onnx
    from deploytool.runtime import run_artifact

    prepared = digits_prepared
    fp32 = tmp_path / "model.onnx"
    fp32.write_bytes(export_onnx(Programs(prepared, precision="fp32").fp32, input_names=("x",),
                                 output_names=prepared.output_names))
    recipe = replace(prepared.config.quantize, onnx_calibration=OnnxCalibration(method))
    int8 = tmp_path / "model.int8.onnx"
    int8.write_bytes(quantize_onnx(fp32, recipe=recipe, calibration=prepared.split.calibration,
                                   inputs=prepared.inputs))
    samples = [batch_of_one(s, prepared.inputs) for _, s in prepared.held_out()]
    run = run_artifact(int8, "onnx", samples)
    assert run.ok, run.error
    comparison = compare(prepared.eager_outputs(), run.outputs, output_names=prepared.output_names,
                         thresholds=prepared.config.parity.int8, candidate_name=int8.name, reference_name="eager")
    assert comparison.passed, comparison.checklist()


def test_unknown_onnx_calibration_is_a_config_error_with_a_suggestion():
    from deploytool.config import load_config
    from deploytool.errors import ConfigError

    with pytest.raises(ConfigError, match="Did you mean 'entropy'"):
        load_config(overrides={"quantize.onnx_calibration": "entropi"})


BRANCHY = '''
import torch

class Branchy(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent: a trace keeps only the branch its example took
            return x * 2
        return x - 1

def build():
    return Branchy().eval()
'''


def test_trace_that_misses_a_branch_on_held_out_data_falls_back_to_script(tmp_path):
    import torch

    from deploytool import api
    from deploytool.export.torchscript import script_module

    (tmp_path / "branchy.py").write_text(BRANCHY)
    np.save(tmp_path / "x.npy", -np.abs(np.random.default_rng(0).normal(size=(16, 4))).astype(np.float32) - 0.1)
    prepared = api.prepare(api.load_config(tmp_path, overrides={"model": "branchy.py:build",
                                                                "data.calib": "x.npy"}))
    prepared.example_inputs = (torch.ones(1, 4),)  # the trace example takes the other branch than held-out data
    scripted = script_module(prepared)
    assert "scripted: the trace did not reproduce eager" in scripted.notes[0]
    negative = torch.full((1, 4), -1.0)
    assert torch.equal(scripted.module(negative), negative - 1)


@pytest.mark.slow
def test_dynamic_batch_server_artifacts_run_batches_of_1_and_4(tmp_path, digit_images, exported_all):
    import shutil

    from deploytool.runtime import run_artifact

    # `output` set here wins over the one recorded in the copied quantize.json.
    (tmp_path / "deploytool.toml").write_text(f'model = "zoo:digits"\noutput = "build/deploytool"\n'
                                              f'dynamic_batch = true\n[data]\ncalib = "{digit_images}"\n'
                                              'holdout = 0.5\n')
    # dynamic_batch does not change the PT2E program: reuse the one quantized for exported_all.
    shutil.copytree(exported_all[0] / "quantized", tmp_path / "build" / "deploytool" / "quantized")
    Cli(tmp_path)("export", "--target", "server", "--precision", "int8")
    from deploytool import api

    prepared = api.prepare(api.load_config(tmp_path))
    eager = np.concatenate([o[0] for o in prepared.eager_outputs()[:4]])
    batch4 = np.stack([s[0] for _, s in list(prepared.held_out())[:4]]).astype(np.float32)
    server = tmp_path / "build" / "deploytool" / "server"
    for name, fmt in (("model.onnx", "onnx"), ("model.int8.onnx", "onnx"), ("model.pt", "torchscript"),
                      ("model.pt2", "aoti"), ("model.int8.pt2", "aoti")):
        run = run_artifact(server / name, fmt, [(batch4[:1],), (batch4,)])
        assert run.ok, run.error
        one, four = run.outputs[0][0], run.outputs[1][0]
        assert one.shape == (1, 10) and four.shape == (4, 10), name
        np.testing.assert_allclose(four[:1], one, atol=1e-4, err_msg=name)  # batching does not change a sample
        if "int8" not in name:
            np.testing.assert_allclose(four, eager, atol=FP32_MAX_ABS_REL * np.ptp(eager), err_msg=name)
        else:
            assert (four.argmax(1) == eager.argmax(1)).all(), name

"""Fault matrix, lowering stage: ops XNNPACK cannot take are reported with their share and source line;
Ctrl-C while lowering exits 130 and leaves the previous artifact as it was."""
from __future__ import annotations

import json
import shutil

import pytest
from faultkit import assert_nothing_half_written, assert_untouched


def test_ops_left_outside_xnnpack_are_reported_with_share_and_source_line(cli, project):
    result = cli("export", "--model", "model.py:partly_delegated", "--calib", "calib.npy", "--precision", "fp32")
    assert "not delegated to XNNPACK (1 of 2 ops, 50%" in result.stdout
    assert "aten_cumsum_default x1 at model.py:" in result.stdout
    table_row = next(line for line in result.stdout.splitlines() if "model.pte" in line and "android" in line)
    assert "50%" in table_row  # the summary table's delegated column
    report = json.loads((project / "build" / "deploytool" / "android" / "report.json").read_text())
    delegation = report["artifacts"][0]["delegation"]
    assert delegation["not_delegated"] == {"aten_cumsum_default": 1}
    assert delegation["share"] == 0.5
    assert [line.split(":")[0] for line in delegation["where"]["aten_cumsum_default"]] == ["model.py"]


def test_ctrl_c_during_lowering(fault, previous_run, tmp_path, monkeypatch):
    import executorch.exir

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # what Ctrl-C raises in the main thread, here from inside the lowering step

    monkeypatch.setattr(executorch.exir, "to_edge_transform_and_lower", interrupted)
    # The previous run's lowering cache would skip the step being interrupted; the previous artifacts stay.
    shutil.rmtree(tmp_path / "out" / ".cache")
    previous_run = {name: data for name, data in previous_run.items() if not name.startswith("out/.cache/")}
    fault("export", "--output", "out", "--target", "android", error=KeyboardInterrupt, exit_code=130,
          fragments=("interrupted; nothing half-written was left behind",))
    assert_untouched(tmp_path, previous_run)
    assert_nothing_half_written(tmp_path)


BATCH_ONE = '''

class BatchOne(Tiny):
    def forward(self, x):
        return self.fc(x).reshape(1, 3)  # pins the batch to 1: no dynamic-batch export for the server formats


def batch_one():
    torch.manual_seed(0)
    return BatchOne().eval()
'''


def test_a_format_that_cannot_be_built_is_a_row_and_the_others_are_written(fault, project):
    from deploytool.errors import StageError
    from faultkit import MODELS

    (project / "model.py").write_text(MODELS + BATCH_ONE)
    (project / "deploytool.toml").write_text("dynamic_batch = true\n")  # onnx needs it; the .pte is batch 1 anyway
    result = fault("export", "--model", "model.py:batch_one", "--calib", "calib.npy", "--precision", "fp32",
                   "--target", "android,server", "--format", "pte,onnx", error=StageError, exit_code=4,
                   fragments=("Could not build onnx for server", "dynamic batch",
                              "The other artifacts are written", "hint: Set dynamic_batch = false"))
    out = project / "build" / "deploytool"
    manifest = json.loads((out / "android" / "manifest.json").read_text())
    assert [a["file"] for a in manifest["artifacts"]] == ["model.pte"]
    assert json.loads((out / "android" / "report.json").read_text())["passed"] is True
    server = json.loads((out / "server" / "report.json").read_text())
    (row,) = server["artifacts"]
    assert (row["format"], row["file"], row["passed"], server["passed"]) == ("onnx", None, False, False)
    assert "dynamic batch" in row["build"]["error"] and "dynamic_batch = false" in row["build"]["hint"]
    # Nothing loadable for server, and `check` must still see what the export was asked for and could not build.
    server_manifest = json.loads((out / "server" / "manifest.json").read_text())
    assert server_manifest["artifacts"] == [] and server_manifest["artifact"] is None
    assert [(m["file"], m["format"]) for m in server_manifest["not_built"]] == [("model.onnx", "onnx")]
    table_row = next(line for line in result.stdout.splitlines() if line.split()[1:2] == ["server"])
    assert "onnx (not built)" in table_row and "NOT BUILT" in table_row
    assert "[FAIL] model.onnx (onnx) could not be built" in result.stdout
    # Each build says when it starts and how long it took, on stderr.
    assert "building pte for android\n" in result.stderr and "building pte for android: done in" in result.stderr
    assert "building onnx for server: failed after" in result.stderr


def test_check_after_an_export_with_a_format_not_built_exits_like_the_export(fault, project):
    """The CI gate must notice what the export could not build: `check` read the manifest's built files only and
    exited 0 after `export` had exited 4."""
    from deploytool.errors import StageError
    from faultkit import MODELS

    (project / "model.py").write_text(MODELS + BATCH_ONE)
    (project / "deploytool.toml").write_text("dynamic_batch = true\n")
    args = ("--model", "model.py:batch_one", "--calib", "calib.npy", "--target", "android,server")
    fault("export", *args, "--precision", "fp32", "--format", "pte,onnx", error=StageError, exit_code=4,
          fragments=("Could not build onnx for server",))
    result = fault("check", *args, error=StageError, exit_code=4, fragments=("Could not build onnx for server",))
    assert "model.pte" in result.stdout and "PASS" in result.stdout

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

"""XNNPACK lowering that fails on some nodes: those nodes are left out of the delegate, the rest is lowered, and
the report says which and why (tests/face_model.py: a PReLU after a dense layer fails ChannelsLastTaggedReshapePass)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

FACE_MODEL = Path(__file__).with_name("face_model.py")
REASON = "ChannelsLastTaggedReshapePass: AssertionError: Attempting to convert non-NHWC compatible node to NHWC"


@pytest.mark.slow
def test_face_model_exports_for_android_with_the_failing_node_left_out(cli, tmp_path, photos):
    shutil.copy(FACE_MODEL, tmp_path / "face_model.py")
    cli("quantize", "--model", "face_model.py:build", "--calib", str(photos))
    result = cli("export", "--target", "android")  # exit 0: lowered, ran in ExecuTorch, parity passed
    report = json.loads((tmp_path / "build" / "deploytool" / "android" / "report.json").read_text())
    (artifact,) = report["artifacts"]
    assert artifact["passed"] and artifact["precision"] == "int8" and artifact["parity"]["run_error"] is None
    excluded = artifact["delegation"]["excluded"]
    assert list(excluded) == ["prelu_3"]  # the PReLU after the dense layer; the three conv PReLUs are delegated
    assert excluded["prelu_3"].startswith("aten.prelu.default at face_model.py:") and REASON in excluded["prelu_3"]
    assert 0.8 < artifact["delegation"]["share"] < 1.0
    table_row = next(line for line in result.stdout.splitlines() if "model.pte" in line and "android" in line)
    assert "(1 left out)" in table_row and "PASS" in table_row
    assert "left out of the XNNPACK delegate, because lowering failed with them:" in result.stdout
    assert "prelu_3: aten.prelu.default at face_model.py:" in result.stdout


@pytest.mark.slow
def test_bisection_finds_the_failing_node_when_the_traceback_names_none(monkeypatch, tmp_path):
    import torch

    import deploytool.export.exclude as exclude
    from deploytool.export.executorch import lower_pte
    from deploytool.fsutil import atomic_write_bytes
    from deploytool.runtime import run_artifact
    from face_model import build

    # Without the traceback's hint the partitioner's match groups are bisected, which finds the same node.
    monkeypatch.setattr(exclude, "_named_in_traceback", lambda exc: set())
    model, example = build()
    data, delegation = lower_pte(torch.export.export(model, example))
    (name, reason), = delegation.excluded.items()
    assert name == "prelu_3" and REASON in reason
    path = atomic_write_bytes(tmp_path / "model.pte", data)
    x = np.random.default_rng(0).standard_normal((1, 3, 24, 24)).astype(np.float32)
    run = run_artifact(path, "pte", [(x,)])
    with torch.inference_mode():
        eager = [o.numpy() for o in model(torch.from_numpy(x))]
    for got, want in zip(run.outputs[0], eager):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)  # fp32: same math, XNNPACK or portable

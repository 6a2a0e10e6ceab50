"""Sequence models: an LSTM lowers as a loop (not one copy per time step), and int8 is never larger than fp32."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deploytool.export import Artifact
from deploytool.export.recurrent import recurrent_as_scan
from deploytool.verify import oversize

STEPS, FEATURES = 160, 40  # the model: 160 time steps of 40 features

MODEL = """
import torch
from torch import nn


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(40, 256, num_layers=3, batch_first=True)
        self.head = nn.Linear(256, 12)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def build():
    torch.manual_seed(0)
    return Tagger().eval()
"""


def _graph_size(lstm: nn.LSTM, steps: int) -> tuple[int, torch.export.ExportedProgram]:
    x = torch.randn(1, steps, lstm.input_size)
    program = recurrent_as_scan(torch.export.export(lstm.eval(), (x,), strict=False)).run_decompositions()
    return len(program.graph.nodes), program


def test_lstm_graph_does_not_grow_with_the_sequence():
    lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True, bidirectional=True)  # covers both scan directions
    short, _ = _graph_size(lstm, 4)
    long, program = _graph_size(lstm, 64)
    assert short == long  # torch's own decomposition adds ~12 nodes per step and layer
    x = torch.randn(1, 64, 8)
    with torch.no_grad():
        expected = lstm(x)
    torch.testing.assert_close(program.module()(x), expected, rtol=1e-5, atol=1e-5)


def test_int8_larger_than_fp32_fails(tmp_path):
    path = tmp_path / "model.int8.onnx"
    path.write_bytes(bytes(2_000_000))
    message = oversize(Artifact(path, "onnx", "int8", fp32_bytes=1_500_000))
    assert message and "larger than its fp32 form" in message
    assert oversize(Artifact(path, "onnx", "int8", fp32_bytes=2_000_000)) is None  # same size: no gain, no loss
    assert oversize(Artifact(path, "onnx", "fp32", fp32_bytes=1_000)) is None


@pytest.mark.slow
def test_lstm_exports_for_android_and_server_int8(cli, tmp_path):
    (tmp_path / "tagger.py").write_text(MODEL)
    (tmp_path / "calib").mkdir()
    rng = np.random.default_rng(0)
    np.save(tmp_path / "calib" / "features.npy", rng.standard_normal((24, STEPS, FEATURES), dtype=np.float32))
    cli("quantize", "--model", "tagger.py:build", "--calib", "calib", "--holdout", "0.34")
    result = cli("export", "--target", "android,server", "--format", "pte,onnx", expect=None)
    assert result.exit_code in (0, 1), result.stderr
    out = Path(tmp_path / "build" / "deploytool")
    rows = {(target, a["format"], a["precision"]): a for target in ("android", "server")
            for a in json.loads((out / target / "report.json").read_text())["artifacts"]}
    for row in rows.values():  # built, or a row that says why not
        assert row["file"] or row["build"]["error"], row
        assert "size_error" not in row, row["size_error"]
    pte = rows["android", "pte", "int8"]
    weights_fp32 = 4 * sum(p.numel() for p in nn.LSTM(40, 256, num_layers=3).parameters())
    assert pte["size_bytes"] < weights_fp32 * 1.05  # was 7.2 MB (unrolled) for 5.4 MB of fp32 weights
    assert pte["parity"]["comparisons"][0]["passed"], pte["parity"]

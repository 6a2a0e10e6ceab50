"""Sequence models: an LSTM lowers as a loop (not one copy per time step), and int8 is never larger than fp32.

The whole flow on recurrent models, android and server, int8: the corpus's lstm_seq and gru_text (test_corpus)."""
from __future__ import annotations

import torch
from torch import nn

from deploytool.export import Artifact
from deploytool.export.recurrent import recurrent_as_scan
from deploytool.verify import oversize

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
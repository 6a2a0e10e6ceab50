"""`diagnose` on models shaped like other projects' (timm's MobileViT): attention over a conv feature map.

Such a model reads its batch and spatial sizes in forward (`x.shape`, `x.size(0)`), so the batch-dynamic capture
holds symbolic size nodes, whose outputs are plain ints that torchao's numeric debugger cannot compare. The tests
that make the debugger fail outright inject the fault: after the fix no known model makes it fail, and a model
from elsewhere still may.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_quant_quality import write_project


def attention_digits():
    """A conv stem, one MobileViT-style attention block (flatten(2).transpose, reshape(B, C, H, W)), a head."""
    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, channels: int):
            super().__init__()
            self.qkv = nn.Linear(channels, 3 * channels)
            self.proj = nn.Linear(channels, channels)

        def forward(self, x):
            batch, channels, height, width = x.shape
            tokens = x.flatten(2).transpose(1, 2)
            q, k, v = self.qkv(tokens).chunk(3, dim=-1)
            weights = torch.softmax(q @ k.transpose(1, 2) / channels ** 0.5, dim=-1)
            return x + self.proj(weights @ v).transpose(1, 2).reshape(batch, channels, height, width)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU())
            self.block = Attention(16)
            self.head = nn.Linear(16, 10)

        def forward(self, x):
            x = self.block(self.stem(x))
            return self.head(x.reshape(x.size(0), 16, -1).mean(-1))

    torch.manual_seed(0)
    return Net().eval()


@pytest.fixture
def project(tmp_path, digit_images) -> Path:
    return write_project(tmp_path, f"{Path(__file__).resolve()}:attention_digits", digit_images, holdout=0.1)


WEIGHTED = {"stem.0", "block.qkv", "block.proj", "head"}


def test_diagnose_compares_every_layer_behind_symbolic_sizes(cli, project):
    result = cli("diagnose")  # exited 70 on the sym_size nodes' int outputs
    report = json.loads((project / "build/deploytool/diagnosis/report.json").read_text())
    layers = {layer["name"]: layer["sqnr_db"] for layer in report["layers"]}
    assert WEIGHTED <= set(layers) and all(db > 20 for db in layers.values()), report["layers"]
    assert report["uncompared"] == []
    assert "block.qkv" in result.stdout and "not compared" not in result.stdout


def test_one_node_the_debugger_cannot_pair_costs_only_its_layer(project, monkeypatch):
    from torchao.quantization.pt2e import _numeric_debugger

    from deploytool import api
    from deploytool.config import QuantConfig, load_config
    from deploytool.quantize.diagnose import layer_errors

    session = api.prepare(load_config(project)).session(QuantConfig())
    assert any("sym_size" in str(node.target) for node in session.captured.program.graph.nodes)
    compare = _numeric_debugger.compare_results

    def compare_but_proj(ref, actual):
        if any("block.proj" in str(stack) for _, stack, _ in ref.values()):
            raise ValueError("Cannot compare tensors with different shapes")
        return compare(ref, actual)

    monkeypatch.setattr(_numeric_debugger, "compare_results", compare_but_proj)
    errors, uncompared = layer_errors(session)
    assert {"stem.0", "block.qkv", "head"} <= {e.name for e in errors} and "block.proj" not in {e.name for e in errors}
    assert [u.name for u in uncompared] == ["block.proj"]
    assert "different shapes" in uncompared[0].reason and "node " in uncompared[0].reason


def test_a_debugger_that_fails_outright_leaves_a_partial_diagnosis(cli, project, monkeypatch):
    from torchao.quantization.pt2e import _numeric_debugger

    def fail(model):
        raise RuntimeError("cannot insert loggers")

    monkeypatch.setattr(_numeric_debugger, "prepare_for_propagation_comparison", fail)
    result = cli("diagnose")
    folder = project / "build/deploytool/diagnosis"
    report = json.loads((folder / "report.json").read_text())
    assert report["layers"] == [] and [u["name"] for u in report["uncompared"]] == ["(all layers)"]
    assert "RuntimeError: cannot insert loggers" in report["uncompared"][0]["reason"]
    # What does not need the debugger is all there: output metrics and the sensitivity of each weighted layer.
    assert report["outputs"][0]["sqnr_db"] > 20 and {s["name"] for s in report["sensitivity"]} == WEIGHTED
    assert "(all layers)" in result.stdout and "cannot insert loggers" in result.stdout
    assert "Layers not compared" in (folder / "report.html").read_text()

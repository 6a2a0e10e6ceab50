"""Variable-length inputs (--dynamic-dim INPUT:AXIS:MAX): every held-out sample runs at its own length in every
runtime, and the report says which lengths were verified."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

MODEL = textwrap.dedent('''
    import torch
    from torch import nn


    class Encoder(nn.Module):
        """Token ids of any length -> Embedding -> mean -> Linear: a serving loop's one unpadded sentence."""

        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(500, 32)
            self.head = nn.Linear(32, 8)

        def forward(self, token_ids):
            return self.head(self.embed(token_ids).mean(dim=1))


    def build():
        torch.manual_seed(0)
        return Encoder().eval()
''')


def _sentences(folder: Path, lengths) -> Path:
    import torch

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, length in enumerate(lengths):
        torch.save({"token_ids": torch.from_numpy(rng.integers(1, 500, int(length)))}, folder / f"s{i:03d}.pt")
    return folder


@pytest.fixture
def project(cli):
    (cli.folder / "model.py").write_text(MODEL)
    _sentences(cli.folder / "sentences", np.random.default_rng(1).integers(4, 25, 60))
    return cli


def test_samples_of_many_lengths_export_and_verify_at_each_length(project):
    result = project("export", "--model", "model.py:build", "--calib", "sentences", "--target", "android",
                     "--dynamic-dim", "token_ids:1:32")
    out = project.folder / "build/deploytool/android"
    report = json.loads((out / "report.json").read_text())
    assert report["passed"], result.stdout
    lengths = report["verified_lengths"]["token_ids axis 1"]
    assert len(lengths) >= 5 and min(lengths) >= 4 and max(lengths) <= 24, lengths
    (entry,) = json.loads((out / "manifest.json").read_text())["inputs"]
    assert entry["name"] == "token_ids" and entry["dtype"] == "int64" and entry["dynamic"] == {"1": 32}


def test_without_a_dynamic_dim_the_error_says_what_to_type(project):
    result = project("quantize", "--model", "model.py:build", "--calib", "sentences", expect=2)
    assert "Samples differ in shape" in result.stderr and "--dynamic-dim INPUT:1:MAX" in result.stderr, result.stderr


def test_a_sample_longer_than_its_bound_is_named(project):
    result = project("quantize", "--model", "model.py:build", "--calib", "sentences", "--dynamic-dim",
                     "token_ids:1:16", expect=2)
    assert "above its dynamic bound 16" in result.stderr and ".pt" in result.stderr, result.stderr

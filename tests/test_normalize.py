"""deploytool.normalize on models written the way other projects write them: optional arguments, dict and nested
outputs, weight_norm and other parametrizations. Every later step must see plain tensors in and named tensors out."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from deploytool.errors import DataError
from deploytool.normalize import choose_inputs, fold_parametrizations, named_outputs, normalize


class Tagger(nn.Module):
    """forward() with optional arguments, as transformers writes them, and a dict output."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, input_ids, attention_mask=None, labels=None, return_hidden: bool = False):
        hidden = self.embed(input_ids)
        if attention_mask is not None:
            hidden = hidden * attention_mask.unsqueeze(-1).to(hidden.dtype)
        logits = self.head(hidden.mean(1))
        return {"logits": logits, "extras": (hidden, None), "loss": None}


def test_arguments_with_defaults_are_inputs_only_when_the_data_names_them():
    model = Tagger()
    assert choose_inputs(model, provided=()) == ("input_ids",)
    assert choose_inputs(model, provided=("attention_mask", "input_ids", "targets")) == ("input_ids", "attention_mask")


def test_an_unknown_array_name_is_an_error_with_a_suggestion():
    with pytest.raises(DataError, match=r"names arrays 'attention_masks', which forward\(\) does not take.*Did you "
                                        r"mean 'attention_mask'"):
        choose_inputs(Tagger(), provided=("input_ids", "attention_masks"))


def test_a_single_array_under_any_name_feeds_the_first_argument():
    assert choose_inputs(Tagger(), provided=("arr_0",)) == ("input_ids",)


def test_outputs_are_flattened_and_named_by_where_they_sit():
    torch.manual_seed(0)
    model = Tagger().eval()
    ids, mask = torch.randint(0, 50, (1, 6)), torch.ones(1, 6, dtype=torch.long)
    normalized = normalize(model, input_names=("input_ids", "attention_mask"), example=(ids, mask))
    assert normalized.output_names == ("logits", "extras.0")
    assert normalized.output_shapes == ((1, 3), (1, 6, 8))
    outputs = normalized.module(ids, mask)
    assert isinstance(outputs, tuple) and torch.equal(outputs[0], model(ids, mask)["logits"])
    assert any("labels, return_hidden keep their defaults" in note for note in normalized.notes), normalized.notes
    # The same parameters under the same names: recipes and reports keep the user's layer names.
    assert list(normalized.module.state_dict()) == list(model.state_dict())


def test_the_adapted_module_captures_with_named_inputs_and_flat_outputs():
    from deploytool.capture import capture

    model = Tagger().eval()
    ids, mask = torch.randint(0, 50, (1, 6)), torch.ones(1, 6, dtype=torch.long)
    normalized = normalize(model, input_names=("input_ids", "attention_mask"), example=(ids, mask))
    captured = capture(normalized.module, (ids, mask))
    inputs = [s.arg.name for s in captured.program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    assert inputs == ["input_ids", "attention_mask"]
    assert len(captured.program.graph_signature.user_outputs) == 2


def test_a_plain_model_is_left_as_it_is():
    model = nn.Sequential(nn.Linear(4, 2)).eval()
    normalized = normalize(model, input_names=("input",), example=(torch.zeros(1, 4),))
    assert normalized.module is model and normalized.output_names == ("output_0",) and not normalized.notes


def test_nested_tuples_are_named_by_position():
    tensor = torch.zeros(1)
    assert [n for n, _ in named_outputs((tensor, (tensor, [tensor, None])))] == ["output_0", "output_1.0",
                                                                              "output_1.1.0"]


class Normed(nn.Module):
    def __init__(self):
        super().__init__()
        self.old = torch.nn.utils.weight_norm(nn.Conv1d(4, 4, 3, padding=1))
        self.new = torch.nn.utils.parametrizations.weight_norm(nn.Conv1d(4, 4, 3, padding=1))
        self.spectral = torch.nn.utils.parametrizations.spectral_norm(nn.Linear(4, 4))

    def forward(self, x):
        return self.spectral(self.new(self.old(x)).transpose(1, 2))


def test_parametrizations_fold_into_plain_weights_with_the_same_outputs():
    torch.manual_seed(0)
    model = Normed().eval()
    x = torch.randn(2, 4, 5)
    with torch.no_grad():
        before = model(x)
    notes = fold_parametrizations(model)
    assert sorted(notes) == ["SpectralNorm folded into plain weights (1 tensor)",
                             "WeightNorm folded into plain weights (1 tensor)",
                             "weight_norm folded into plain weights (1 tensor)"]
    names = set(model.state_dict())
    assert {"old.weight", "new.weight", "spectral.weight"} <= names
    assert not any("weight_g" in n or "weight_v" in n or "parametrizations" in n or "original" in n for n in names)
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-6)


USERS_MODEL = textwrap.dedent('''
    import torch
    from torch import nn


    class Heads(nn.Module):
        """A conv1d front-end with weight_norm, an optional argument, and a dict of two heads."""

        def __init__(self):
            super().__init__()
            self.conv = nn.utils.parametrizations.weight_norm(nn.Conv1d(1, 8, 5, padding=2))
            self.norm = nn.LayerNorm([8, 32])
            self.pitch = nn.Linear(8 * 32, 12)
            self.voiced = nn.Linear(8 * 32, 1)

        def forward(self, audio, _h_emb=None):
            hidden = torch.relu(self.norm(self.conv(audio))).flatten(1)
            return {"pitch": self.pitch(hidden), "voiced": torch.sigmoid(self.voiced(hidden))}


    def build():
        torch.manual_seed(0)
        return Heads().eval()
''')


def test_a_users_model_with_optional_argument_dict_output_and_weight_norm_exports_and_passes(cli):
    (cli.folder / "model.py").write_text(USERS_MODEL)
    t = np.arange(32, dtype=np.float32) / 16000
    frames = np.stack([np.sin(2 * np.pi * f * t + p)[None] for f, p in zip(np.linspace(200, 900, 48),
                                                                             np.linspace(0, 3, 48))])
    np.savez(cli.folder / "frames.npz", audio=frames.astype(np.float32))
    result = cli("export", "--model", "model.py:build", "--calib", "frames.npz", "--target", "android")
    manifest = json.loads((cli.folder / "build/deploytool/android/manifest.json").read_text())
    assert [o["name"] for o in manifest["outputs"]] == ["pitch", "voiced"]
    assert [i["name"] for i in manifest["inputs"]] == ["audio"]
    report = json.loads((cli.folder / "build/deploytool/android/report.json").read_text())
    assert report["passed"], result.stdout
    assert "weight_norm" in result.stderr or "WeightNorm" in result.stderr

"""Fault matrix, load stage: bad model specs, factories and checkpoints fail with exit 2 and say what to fix.

Checkpoints load with weights_only=True: a pickle is refused unless --trust-checkpoint says otherwise.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from deploytool.errors import ModelLoadError, UsageError
from deploytool.loading import load


def _state(**changes) -> dict:
    state = {"fc.weight": torch.ones(3, 4), "fc.bias": torch.zeros(3)}
    state.update(changes)
    return {k: v for k, v in state.items() if v is not None}


def _save(folder: Path, value) -> str:
    torch.save(value, folder / "ckpt.pt")
    return "ckpt.pt"


def _write(folder: Path, name: str, data: bytes) -> str:
    (folder / name).write_bytes(data)
    return name


# (id, --model, setup(folder) -> --weights or None, error, fragments). Every case exits 2.
CASES = [
    pytest.param("model.py:explode", None, ModelLoadError,
                 ("The model factory model.py:explode raised ValueError: weights server unreachable",),
                 id="factory-raises"),
    pytest.param("model.py:not_a_module", None, ModelLoadError, ("returned dict, not a torch.nn.Module",),
                 id="factory-returns-non-module"),
    pytest.param("model.py:biuld", None, ModelLoadError, ("'biuld' is not a callable", "Did you mean 'build'?"),
                 id="factory-name-typo"),
    pytest.param("nope.py:build", None, ModelLoadError, ("nope.py does not exist",), id="model-file-missing"),
    pytest.param("broken.py:build", lambda d: _write(d, "broken.py", b"import torch\ndef build(:\n") and None,
                 ModelLoadError, ("Importing", "broken.py failed: SyntaxError"), id="model-file-syntax-error"),
    pytest.param("needy.py:build", lambda d: _write(d, "needy.py", b"import not_installed_pkg\n") and None,
                 ModelLoadError, ("needy.py failed: ModuleNotFoundError", "not_installed_pkg"),
                 id="model-file-import-error"),
    pytest.param("not_a_package_xyz.models:build", None, ModelLoadError,
                 ("Cannot import module 'not_a_package_xyz.models'",), id="module-not-installed"),
    pytest.param("zoo:digit", None, UsageError, ("Unknown zoo model 'digit'", "Did you mean 'digits'?"),
                 id="zoo-name-typo"),
    pytest.param("resnet", None, UsageError, ("Cannot read model spec 'resnet'",), id="unreadable-spec"),
    pytest.param("program.pt2", lambda d: _write(d, "program.pt2", b"PK\x03\x04 not a zip") and None,
                 ModelLoadError, ("program.pt2: not a loadable torch.export program",), id="corrupt-pt2"),
    pytest.param("model.py:build", lambda d: _save(d, _state(**{"fc.bias": None})), ModelLoadError,
                 ("does not fit the model", "missing keys (1): fc.bias"), id="checkpoint-missing-keys"),
    pytest.param("model.py:build", lambda d: _save(d, _state(**{"head.weight": torch.ones(2)})), ModelLoadError,
                 ("unexpected keys (1): head.weight",), id="checkpoint-unexpected-keys"),
    pytest.param("model.py:build", lambda d: _save(d, _state(**{"fc.weight": torch.ones(5, 4)})), ModelLoadError,
                 ("shape mismatches (1): fc.weight: checkpoint (5, 4) vs model (3, 4)",),
                 id="checkpoint-shape-mismatch"),
    pytest.param("model.py:build", lambda d: _save(d, {"state_dict": _state(), "args": argparse.Namespace(lr=0.1)}),
                 ModelLoadError, ("needs full pickle to load", "refused under weights_only=True",
                                  "hint:", "--trust-checkpoint"), id="checkpoint-needs-pickle"),
    pytest.param("model.py:build", lambda d: _save(d, [torch.ones(3, 4), torch.zeros(3)]), ModelLoadError,
                 ("holds list, not a state_dict of tensors",), id="checkpoint-not-a-state-dict"),
    pytest.param("model.py:build", lambda d: _write(d, "ckpt.pt", b"\x00garbage" * 64), ModelLoadError,
                 ("ckpt.pt: not a readable checkpoint",), id="checkpoint-corrupt"),
    pytest.param("model.py:build", lambda d: _write(d, "ckpt.pt", b""), ModelLoadError,
                 ("ckpt.pt: not a readable checkpoint",), id="checkpoint-empty"),
    pytest.param("model.py:build", lambda d: "missing.pt", ModelLoadError, ("missing.pt does not exist",),
                 id="checkpoint-missing"),
]


@pytest.mark.parametrize("model, make_weights, error, fragments", CASES)
def test_load_fault(fault, project, model, make_weights, error, fragments):
    weights = make_weights(project) if make_weights else None
    args = ("--weights", weights) if weights else ()
    fault("quantize", "--model", model, "--calib", "calib.npy", *args, error=error, exit_code=2, fragments=fragments)
    assert not (project / "build").exists(), "a failed load leaves no lock file or empty output folder behind"


def test_trust_checkpoint_loads_a_pickled_checkpoint(project):
    """The escape hatch the refusal names: with trust, the same file loads and its weights are used."""
    torch.save({"state_dict": _state(), "args": argparse.Namespace(lr=0.1)}, project / "ckpt.pt")
    with pytest.raises(ModelLoadError, match="refused under weights_only=True") as refused:
        load("model.py:build", base_dir=project, weights="ckpt.pt")
    assert "--trust-checkpoint" in refused.value.hint
    loaded = load("model.py:build", base_dir=project, weights="ckpt.pt", trust_checkpoint=True)
    assert torch.equal(loaded.module.fc.weight, torch.ones(3, 4))


def test_weights_only_refusal_runs_no_code_from_the_file(project):
    """A checkpoint whose unpickling would run code: refused, and the code never runs."""
    marker = project / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"fc.weight": torch.ones(3, 4), "fc.bias": torch.zeros(3), "x": Payload()}, project / "evil.pt")
    with pytest.raises(ModelLoadError, match="refused under weights_only=True"):
        load("model.py:build", base_dir=project, weights="evil.pt")
    assert not marker.exists()


def test_pt2_program_loads_with_torchs_loader(project):
    """A .pt2 spec goes through torch.export.load (no pickle of arbitrary objects) and keeps its input specs."""
    loaded = load("model.py:build", base_dir=project)
    program = torch.export.export(loaded.module, (torch.zeros(1, 4),))
    torch.export.save(program, project / "tiny.pt2")
    from_program = load("tiny.pt2", base_dir=project)
    assert from_program.input_names == ("x",)
    assert from_program.inputs[0].shape == (1, 4)
    assert torch.allclose(from_program.module(torch.ones(1, 4)), loaded.module(torch.ones(1, 4)))

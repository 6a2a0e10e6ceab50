"""Fault matrix, the three holes: a loaded program that runs code, NaN passing parity, a symlinked lock.

Each is tried end to end through the CLI as a hostile file would arrive, and none may leave its marker behind.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from deploytool.lock import UnsafeLock
from deploytool.program_file import UnsafeProgram, pickled_parts, read_program


class _Payload:
    """A pickle that touches `marker` when loaded, then returns what sample inputs should be (so a run that
    executes it looks perfectly normal: the reported hole)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        code = (f"(__import__('pathlib').Path({str(self.marker)!r}).touch(), "
                "((__import__('torch').zeros(1, 4),), {}))[1]")
        return eval, (code,)


def _program(path: Path) -> Path:
    torch.manual_seed(0)
    torch.export.save(torch.export.export(torch.nn.Linear(4, 3).eval(), (torch.zeros(1, 4),)), path)
    return path


def _poison(path: Path, marker: Path, *, member: str = "data/sample_inputs/model.pt") -> Path:
    """Replace one member of a saved program with the payload pickle, the rest byte for byte."""
    buffer = io.BytesIO()
    torch.save(_Payload(marker), buffer)
    with zipfile.ZipFile(path) as source:
        entries = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w") as target:
        for info, data in entries:
            target.writestr(info, buffer.getvalue() if info.filename.endswith(member) else data)
    return path


def _mark_weight_pickled(path: Path) -> Path:
    """Flag the first weight `use_pickle` in the weights config: torch.export.load then unpickles it freely."""
    with zipfile.ZipFile(path) as source:
        entries = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w") as target:
        for info, data in entries:
            if info.filename.endswith("_weights_config.json"):
                data = data.replace(b'"use_pickle": false', b'"use_pickle": true', 1)
            target.writestr(info, data)
    return path


def test_a_saved_program_is_refused_when_its_sample_inputs_need_pickle(tmp_path):
    marker = tmp_path / "payload-ran"
    path = _poison(_program(tmp_path / "evil.pt2"), marker)
    with pytest.raises(UnsafeProgram, match=r"evil\.pt2 was refused.*sample_inputs/model\.pt: does not load"):
        read_program(path)
    assert not marker.exists()


def test_a_saved_program_is_refused_when_a_weight_is_stored_as_a_pickle(tmp_path):
    path = _mark_weight_pickled(_program(tmp_path / "evil.pt2"))
    parts = pickled_parts(path.read_bytes())
    assert parts and "is stored as a pickle (use_pickle)" in parts[0], parts


def test_a_clean_program_loads(tmp_path):
    path = _program(tmp_path / "clean.pt2")
    assert pickled_parts(path.read_bytes()) == []
    program = read_program(path)
    assert program.module()(torch.ones(1, 4)).shape == (1, 3)


def test_cli_refuses_a_program_that_would_run_code(project, fault):
    marker = project / "payload-ran"
    _poison(_program(project / "evil.pt2"), marker)
    fault("quantize", "--model", "evil.pt2", "--calib", "calib.npy", error=UnsafeProgram, exit_code=2,
          fragments=("evil.pt2 was refused", "sample_inputs/model.pt"))
    assert not marker.exists(), "the payload ran"


def test_a_poisoned_cached_program_is_never_loaded(previous_run, tmp_path, cli):
    """A restored CI cache whose quantized program was altered: its sha256 no longer matches, so the next export
    quantizes again instead of loading it (the digest rewritten too: test_faults_reuse, refused by the pickle
    check)."""
    marker = tmp_path / "payload-ran"
    _poison(tmp_path / "out" / "quantized" / "program.pt2", marker)
    (tmp_path / "out" / "quantized" / "references.npz").unlink()  # so the export has to read the program itself
    result = cli("export", "--target", "android", "--output", "out")
    assert "ignoring the cached" in result.stderr and "program.pt2" in result.stderr
    assert not marker.exists(), f"the payload ran\n{result.stderr}"


def test_nan_in_one_output_element_fails_the_artifact():
    from deploytool.config import Thresholds
    from deploytool.parity import compare

    rng = np.random.default_rng(0)
    eager = [[rng.standard_normal((1, 10)).astype(np.float32)] for _ in range(8)]
    close = [[o[0] + np.float32(1e-4)] for o in eager]
    close[3][0][0, 2] = np.nan
    comparison = compare(eager, close, output_names=("logits",), thresholds=Thresholds(min_sqnr_db=20),
                         candidate_name="model.pte", reference_name="eager fp32")
    assert not comparison.passed
    failed = [c for c in comparison.checks if not c.passed]
    assert [c.name for c in failed] == ["nonfinite"], comparison.checklist()
    assert "sample 3" in failed[0].describe(), failed[0].describe()
    metrics = comparison.outputs[0]
    assert metrics.nonfinite == 1 and np.isfinite(metrics.sqnr_db) and metrics.sqnr_db < 150


def test_nan_fails_even_where_a_task_metric_decides():
    from deploytool.config import Thresholds
    from deploytool.parity import TaskMetric, TaskResult, compare

    eager = [[np.eye(1, 10, k=i % 10, dtype=np.float32) * 5] for i in range(8)]
    broken = [[o[0].copy()] for o in eager]
    broken[0][0][0, 0] = np.inf
    task = TaskResult(TaskMetric("top-1 accuracy", lambda o, t: 1.0, max_drop=1.0), 1.0, 1.0, 8)
    comparison = compare(eager, broken, output_names=("logits",), thresholds=Thresholds(min_sqnr_db=20),
                         candidate_name="model.pte", reference_name="eager fp32", task=task)
    assert not comparison.passed, comparison.checklist()


def test_a_zero_candidate_against_a_nonzero_reference_has_cosine_zero():
    from deploytool.parity import output_metrics

    metrics = output_metrics("y", [np.ones((1, 4), np.float32)], [np.zeros((1, 4), np.float32)])
    assert metrics.cosine == 0.0


NAN_HEAD = '''
import torch
from torch import nn


class LogHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return torch.log(self.fc(x) - 100.0)  # every output NaN: a broken model, not a broken artifact


def build():
    torch.manual_seed(0)
    return LogHead().eval()
'''


def test_cli_export_of_a_model_whose_eager_outputs_are_nan_stops_with_the_sample(project, fault):
    from deploytool.errors import DataError

    (project / "nan_head.py").write_text(NAN_HEAD)
    result = fault("export", "--model", "nan_head.py:build", "--calib", "calib.npy", "--target", "android",
                   error=DataError, exit_code=2, fragments=("eager model", "NaN", "output_0"))
    assert "PASS" not in result.stdout
    assert not (project / "build" / "deploytool" / "android" / "model.pte").exists()


def test_a_symlinked_lock_is_refused_and_its_target_untouched(project, fault):
    victim = project / "victim.txt"
    victim.write_text("precious\n")
    out = project / "out"
    out.mkdir()
    (out / ".lock").symlink_to(victim)
    fault("quantize", "--model", "model.py:build", "--calib", "calib.npy", "--output", "out",
          error=UnsafeLock, exit_code=2, fragments=(".lock", "symbolic link"))
    assert victim.read_text() == "precious\n"
    assert (out / ".lock").is_symlink(), "the link is the user's to look at, not ours to remove"


def test_a_lock_that_is_not_a_regular_file_is_refused(tmp_path):
    import os

    from deploytool.lock import output_lock

    (tmp_path / "out").mkdir()
    os.mkfifo(tmp_path / "out" / ".lock")
    with pytest.raises(UnsafeLock, match="not a regular file"):
        with output_lock(tmp_path / "out", timeout_s=1):
            pass

"""A repeated `export` with nothing changed runs no artifact again and loads no program; a changed artifact runs
again in its runtime, and changed thresholds judge the recorded outputs anew."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from deploytool.export import Artifact
from deploytool.verify import RUNS_CACHE, recorded_run


@pytest.fixture
def runs(monkeypatch) -> list[str]:
    """Every artifact run in a runtime child, by file name: the real run_artifact, counted."""
    from deploytool import runtime

    ran: list[str] = []
    real = runtime.run_artifact
    monkeypatch.setattr(runtime, "run_artifact", lambda path, fmt, samples, **kw: ran.append(path.name) or
                        real(path, fmt, samples, **kw))
    return ran


def _scale_onnx(path, factor: float) -> Artifact:
    """A one-op ONNX model (y = x * factor) at `path`: a real artifact its real runtime runs in a second."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "k"], ["y"])], "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor("k", TensorProto.FLOAT, [1], [factor])])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return Artifact(path, "onnx", "fp32")


def _sha(path) -> str:
    from deploytool.fsutil import sha256_file

    return sha256_file(path)


def test_a_run_is_reused_only_for_the_same_file_inputs_and_place(tmp_path, runs):
    cache = tmp_path / "out" / RUNS_CACHE
    artifact = _scale_onnx(tmp_path / "out" / "server" / "model.onnx", 2.0)
    samples = [(np.ones((1, 3), np.float32),), (np.arange(3, dtype=np.float32)[None],)]

    first, ran_at = recorded_run(artifact, samples, sha256=_sha(artifact.path), timeout_s=60, cache_dir=cache)
    assert ran_at is None and runs == ["model.onnx"]
    again, ran_at = recorded_run(artifact, samples, sha256=_sha(artifact.path), timeout_s=60, cache_dir=cache)
    assert ran_at is not None and len(runs) == 1  # read back, not run
    np.testing.assert_array_equal(again.outputs[1][0], first.outputs[1][0])

    changed = _scale_onnx(artifact.path, 3.0)  # other bytes at the same place
    run, ran_at = recorded_run(changed, samples, sha256=_sha(changed.path), timeout_s=60, cache_dir=cache)
    assert ran_at is None and len(runs) == 2
    np.testing.assert_allclose(run.outputs[1][0], [[0.0, 3.0, 6.0]])  # the new file's own outputs

    other_inputs = [(np.full((1, 3), 5, np.float32),)]
    assert recorded_run(changed, other_inputs, sha256=_sha(changed.path), timeout_s=60, cache_dir=cache)[1] is None
    (tmp_path / "out" / "ios").mkdir()
    copy = Artifact(Path(shutil.copy(changed.path, tmp_path / "out" / "ios" / "model.onnx")), "onnx", "fp32")
    assert recorded_run(copy, samples, sha256=_sha(copy.path), timeout_s=60, cache_dir=cache)[1] is None
    assert len(runs) == 4  # each copy of one file runs once in the runtime itself
    assert recorded_run(artifact, samples, sha256=_sha(artifact.path), timeout_s=60, cache_dir=None)[1] is None
    assert len(runs) == 5  # without a cache folder (check) it always runs


def test_a_crashed_run_is_not_recorded(tmp_path, misbehaving, runs):
    artifact = Artifact(misbehaving, "segfault", "fp32")
    samples = [(np.zeros((1, 2), np.float32),)]
    for _ in range(2):
        run, ran_at = recorded_run(artifact, samples, sha256=_sha(misbehaving), timeout_s=60,
                                   cache_dir=tmp_path / RUNS_CACHE)
        assert not run.ok and ran_at is None
    assert len(runs) == 2


def _without_run_details(report: dict) -> dict:
    """report.json less what a repeat may change: when it was written, timings, the note on the reused run."""
    report = {k: v for k, v in report.items() if k != "created_at"}
    report["artifacts"] = [{k: v for k, v in a.items() if k not in ("timings_s", "notes")} for a in report["artifacts"]]
    return report


def test_a_repeated_export_reuses_the_run_and_a_changed_artifact_or_threshold_verifies_again(
        cli, digit_images, runs, monkeypatch):
    import deploytool.export
    from deploytool import api

    shutil.copytree(digit_images, cli.folder / "data")
    args = ("export", "--model", "zoo:digits", "--calib", "data", "--calib-limit", "64", "--target", "android",
            "--no-search")
    cli(*args)
    out = cli.folder / "build" / "deploytool" / "android"
    assert runs == ["model.pte"]
    first = {name: (out / name).read_bytes() for name in ("model.pte", "manifest.json")}
    first_report = json.loads((out / "report.json").read_text())

    # An option that shapes no artifact: the export runs again (deploytool.steps.unchanged sees a new stamp),
    # and finds every artifact and run it needs in the caches.
    (cli.folder / "deploytool.toml").write_text("[parity]\ntimeout_s = 301.0\n")
    loads = []
    with monkeypatch.context() as patch:  # the int8 program is not read: the .pte is found by its file
        patch.setattr(api, "load_program", loads.append)
        patch.setattr(deploytool.export, "load_program", loads.append)
        repeat = cli(*args)
    assert runs == ["model.pte"] and loads == []
    assert "reusing model.pte's runtime outputs from its run at" in repeat.stderr
    assert {name: (out / name).read_bytes() for name in first} == first
    report = json.loads((out / "report.json").read_text())
    assert _without_run_details(report) == _without_run_details(first_report)
    (note,) = report["artifacts"][0]["notes"]
    assert note.startswith("runtime outputs reused from its run at 20")
    runs.clear()

    fp32 = (*args[:-1], "--precision", "fp32")  # another .pte at the same place runs in the runtime
    cli(*fp32)
    assert runs == ["model.pte"]
    assert (out / "model.pte").read_bytes() != first["model.pte"]

    # Thresholds no float32 result meets unless bit-identical: the recorded outputs are judged by them.
    (cli.folder / "deploytool.toml").write_text("[parity.fp32]\nmin_sqnr_db = 300.0\n")
    stricter = cli(*fp32, expect=1)
    assert runs == ["model.pte"]
    assert "reusing model.pte's runtime outputs" in stricter.stderr
    assert not json.loads((out / "report.json").read_text())["passed"]

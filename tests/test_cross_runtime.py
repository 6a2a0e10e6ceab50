"""The cross-runtime matrix: artifacts that fail to load or crash are failed rows, never a crash of the tool."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest

from deploytool.export import Artifact
from deploytool.fsutil import atomic_write_bytes
from deploytool.registry import Entry

def write_corrupt_onnx(programs, folder: Path) -> list[Artifact]:
    """A writer whose .onnx is not a model: onnxruntime refuses to load it."""
    return [Artifact(atomic_write_bytes(folder / "model.onnx", b"not an onnx model"), "onnx", "fp32")]


def test_corrupt_artifact_is_a_failed_row_and_the_others_still_verify(cli, digit_images, monkeypatch):
    from deploytool.export import FORMATS
    from deploytool.registry import TARGETS

    monkeypatch.setitem(FORMATS._entries, "corrupt-onnx", Entry(
        "corrupt-onnx", "test_cross_runtime:write_corrupt_onnx", {"runtime": "onnxruntime", "summary": "test"}))
    monkeypatch.setitem(TARGETS._entries, "broken", Entry("broken", "", {"formats": ("corrupt-onnx",),
                                                                          "summary": "test"}))
    result = cli("export", "--model", "zoo:digits", "--calib", str(digit_images), "--target", "broken,server",
                 "--format", "corrupt-onnx,torchscript", "--precision", "fp32", expect=1)
    table = result.stdout.split("cross-runtime parity")[1]
    (broken,) = [line for line in table.splitlines() if line.startswith("broken/model.onnx")]
    assert "ERROR: model.onnx: the onnx runtime failed" in broken  # it failed to load; no signal
    (good,) = [line for line in table.splitlines() if line.startswith("server/model.pt ")]
    assert good.rstrip().endswith("PASS")
    report = json.loads((cli.folder / "build" / "deploytool" / "broken" / "report.json").read_text())
    assert report["passed"] is False
    assert report["artifacts"][0]["parity"]["run_error"].startswith("model.onnx: the onnx runtime failed")
    assert [row["verdict"] for row in report["cross"]] == ["ERROR", "PASS"]


def test_segfaulting_runtime_is_a_failed_row_naming_the_signal(misbehaving):
    from deploytool.config import ParityConfig, ProjectConfig
    from deploytool.crosscheck import matrix
    from deploytool.report import cross_table
    from deploytool.verify import References, verify

    artifact = Artifact(misbehaving, "segfault", "fp32")
    samples = [(np.zeros((1, 4), np.float32),)]
    report = verify(artifact, target="test", samples=samples, config=ProjectConfig(parity=ParityConfig()),
                    references=References(eager=[[np.zeros((1, 4), np.float32)]], int8=None),
                    output_names=("output_0",))
    assert not report.passed
    assert f"crashed with {signal.SIGSEGV.name}" in report.run_error
    (row,) = matrix([report])
    assert row.verdict == "CRASH" and "SIGSEGV" in cross_table([row])


@pytest.fixture
def reports():
    """Hand-made reports: two copies of one .pte, an int8 .onnx, and an fp32 .pt."""
    from deploytool.config import ParityConfig, Precision
    from deploytool.parity import compare
    from deploytool.report import ArtifactReport

    rng = np.random.default_rng(0)
    eager = [[rng.normal(size=(1, 10)).astype(np.float32)] for _ in range(20)]

    def report(target, name, precision, sha, noise):
        outputs = [[o[0] + rng.normal(scale=noise, size=o[0].shape).astype(np.float32)] for o in eager]
        thresholds = ParityConfig().for_precision(Precision(precision))
        comparison = compare(eager, outputs, output_names=("output_0",), thresholds=thresholds,
                             candidate_name=name, reference_name="eager fp32")
        return ArtifactReport("m", target, name.split(".")[-1], precision, Path(name), 1, sha, None, [comparison],
                              None, outputs=outputs)

    return [report("android", "model.pte", "int8", "a", 0.05), report("ios", "model.pte", "int8", "a", 0.05),
            report("server", "model.int8.onnx", "int8", "b", 0.05), report("server", "model.pt", "fp32", "c", 0.0)]


def test_matrix_lists_each_file_once_and_compares_int8_artifacts_with_each_other(reports):
    from deploytool.crosscheck import matrix

    rows = matrix(reports)
    assert [(r.artifact, r.reference, r.verdict) for r in rows] == [
        ("android/model.pte", "eager fp32", "PASS"),
        ("server/model.int8.onnx", "eager fp32", "PASS"),
        ("server/model.pt", "eager fp32", "PASS"),
        ("server/model.int8.onnx", "android/model.pte", "info"),
    ]
    cross = rows[-1]
    assert 10 < cross.sqnr_db < rows[0].sqnr_db  # two independent int8 errors add up
    pairs = zip(reports[0].outputs, reports[2].outputs)
    assert cross.top1_agreement == pytest.approx(np.mean([a[0].argmax() == b[0].argmax() for a, b in pairs]))

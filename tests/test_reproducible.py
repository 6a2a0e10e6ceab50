"""Reproducibility: the same model, data and options give byte-identical artifacts and manifests.

Two independent runs (separate folders, as on two CI machines) quantize and export digits. Every artifact each
manifest lists (.pte, model.onnx, model.int8.onnx) and the manifests themselves must match byte for byte; only
report.json carries timestamps and timings.

Known exception, checked as far as it can be: quantized/program.pt2 (the cache between `quantize` and `export`,
never shipped). torch.export.save writes a random `serialization_id` and graph metadata holding Python object ids
(`graph_id`, `nn_module_stack`), so its bytes differ run to run; its weight tensors (the quantization result) must
still be identical.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

EXPORT = ("export", "--target", "android,server", "--format", "pte,onnx")


def _run(cli_class, folder: Path) -> Path:
    cli = cli_class(folder)
    cli("quantize", "--model", "zoo:digits", "--calib-limit", "64", "--holdout", "0.05")
    cli(*EXPORT)
    return folder / "build" / "deploytool"


def _weights(program: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(program) as archive:
        return {name: archive.read(name) for name in archive.namelist() if "/data/weights/" in name}


@pytest.mark.slow
def test_two_runs_give_byte_identical_artifacts_and_manifests(cli, tmp_path_factory):
    first = _run(type(cli), tmp_path_factory.mktemp("run1"))
    second = _run(type(cli), tmp_path_factory.mktemp("run2"))
    compared = []
    for manifest in sorted(first.glob("*/manifest.json")):
        target = manifest.parent.name
        assert manifest.read_bytes() == (second / target / "manifest.json").read_bytes(), f"{target}/manifest.json"
        for entry in json.loads(manifest.read_text())["artifacts"]:
            name = f"{target}/{entry['file']}"
            assert (first / name).read_bytes() == (second / name).read_bytes(), f"{name} differs between runs"
            compared.append(name)
    assert {"android/model.pte", "server/model.onnx", "server/model.int8.onnx"} <= set(compared), compared
    weights = _weights(first / "quantized" / "program.pt2")
    assert weights and weights == _weights(second / "quantized" / "program.pt2")


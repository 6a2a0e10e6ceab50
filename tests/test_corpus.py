"""The corpus of models from other projects (tests/corpus/): each goes through the README's one command,

    deploytool export --model model.py:build --calib DATA --target android,server

from a folder holding a copy of its model.py (and metric.py) and the data its data.py writes, with the defaults,
and must end in a verdict: exit 0, or 1 with the failing rows, never 2 (usage), 4 (nothing built) or 70 (internal
error). Each artifact's verdict is compared with the one stored in tests/corpus/expected.json, so a regression on
any format of any model fails here; the manifests' input and output names too, where expected.json gives them; and,
for the entries marked `check`, `deploytool check` afterwards must end in the same exit code as the export.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_runner import Cli

CORPUS = Path(__file__).parent / "corpus"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())
NAMES = sorted(name for name in EXPECTED if not name.startswith("_"))
VERDICT_EXITS = (0, 1)  # 0 every artifact passed, 1 one failed (with its row): both are verdicts
# The file a row stands for, also for a row whose format could not be built (report.json gives it no file).
FILES = {("pte", "int8"): "model.pte", ("pte", "fp32"): "model.pte", ("onnx", "fp32"): "model.onnx",
         ("onnx", "int8"): "model.int8.onnx", ("torchscript", "fp32"): "model.pt", ("aoti", "fp32"): "model.pt2",
         ("aoti", "int8"): "model.int8.pt2"}


def _skip_without_requirements(name: str) -> None:
    missing = [package for package in EXPECTED[name].get("requires", ()) if importlib.util.find_spec(package) is None]
    if missing:
        pytest.skip(f"{name} needs {', '.join(missing)} (pip install {' '.join(missing)})")


def verdicts(output: Path) -> dict[str, str]:
    """{artifact file: PASS or FAIL} over every target's report.json under `output`."""
    found: dict[str, str] = {}
    for report in sorted(output.glob("*/report.json")):
        for row in json.loads(report.read_text())["artifacts"]:
            name = row["file"] or FILES.get((row["format"], row["precision"]), f"{row['format']}/{row['precision']}")
            found[name] = "PASS" if row["passed"] else "FAIL"
    return found


def manifest_names(output: Path) -> dict[str, tuple[list[str], list[str]]]:
    """{target: (input names, output names)} from every target's manifest.json under `output`."""
    found = {}
    for manifest in sorted(output.glob("*/manifest.json")):
        data = json.loads(manifest.read_text())
        found[manifest.parent.name] = ([i["name"] for i in data.get("inputs", [])],
                                       [o["name"] for o in data.get("outputs", [])])
    return found


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_corpus_model_ends_in_its_expected_verdicts(name, tmp_path):
    entry = EXPECTED[name]
    _skip_without_requirements(name)
    for file in ("model.py", "metric.py"):  # what the user's folder holds; data.py is the test's, not theirs
        if (CORPUS / name / file).exists():
            shutil.copy(CORPUS / name / file, tmp_path / file)
    data = importlib.import_module(f"corpus.{name}.data").write_data(tmp_path / "data")
    cli = Cli(tmp_path)
    args = ["export", "--model", "model.py:build", "--calib", str(data.relative_to(tmp_path)),
            "--target", "android,server", *entry.get("args", ())]
    if (tmp_path / "metric.py").exists():  # the user's own metric; the classifiers' targets use the built-in top-1
        args += ["--metric", "metric.py:metric"]

    result = cli(*args, expect=None)

    assert result.exit_code in VERDICT_EXITS, (
        f"deploytool {' '.join(args)} ended in exit {result.exit_code}, not a verdict (0 or 1)\n"
        f"stderr:\n{result.stderr[-4000:]}")
    found = verdicts(tmp_path / "build" / "deploytool")
    assert found == entry["expected"], (
        f"{name}: verdicts per artifact differ from tests/corpus/expected.json\n  found:    {found}\n"
        f"  expected: {entry['expected']}\n  why expected: {entry.get('why', '')}\nstdout:\n{result.stdout[-4000:]}")
    assert result.exit_code == (0 if all(v == "PASS" for v in found.values()) else 1)
    for target, (inputs, outputs) in manifest_names(tmp_path / "build" / "deploytool").items():
        assert inputs == entry.get("inputs", inputs), f"{name}/{target}: manifest inputs {inputs}"
        assert outputs == entry.get("outputs", outputs), f"{name}/{target}: manifest outputs {outputs}"
        if "first_output" in entry:
            assert outputs[:1] == [entry["first_output"]], f"{name}/{target}: manifest outputs {outputs}"

    if not entry.get("check"):
        return
    check = cli("check", expect=None)  # the CI gate over what export wrote: the same class of exit code
    assert check.exit_code == result.exit_code, (
        f"deploytool check exited {check.exit_code} after export exited {result.exit_code}\n"
        f"stdout:\n{check.stdout[-3000:]}\nstderr:\n{check.stderr[-2000:]}")


def _flat_tensors(value) -> list:
    """A model's outputs as a flat list of tensors, first output first: what the metric contract hands over."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if hasattr(value, "to_tuple"):  # a transformers ModelOutput: its fields that are set, in order
        value = value.to_tuple()
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flat_tensors(v)]
    return []  # a cache object or another non-tensor


WITH_METRIC = sorted(name for name in NAMES if (CORPUS / name / "metric.py").exists())


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if EXPECTED[n].get("requires") else n
                                  for n in WITH_METRIC])
def test_corpus_metric_gives_eager_full_marks(name, tmp_path):
    """Each model's metric.py, on eager's own outputs for its data, is 1.0 (0.95 for the pitch tracker: its
    targets are true pitches, not eager's decisions), with or without a batch axis of 1 per sample."""
    import torch

    from corpus.samples import load_model

    _skip_without_requirements(name)
    data = np.load(importlib.import_module(f"corpus.{name}.data").write_data(tmp_path))
    metric = importlib.import_module(f"corpus.{name}.metric").metric
    targets = data["targets"]
    module = load_model(CORPUS / name).build()
    inputs = {key: torch.from_numpy(data[key]) for key in data.files if key != "targets"}
    with torch.no_grad():
        outputs = tuple(t.numpy() for t in _flat_tensors(module(**inputs)))
    per_sample = tuple(o[:, None] for o in outputs)  # [samples, 1, ...]: each sample run as a batch of one
    floor = 0.95 if name == "pitch_conv1d" else 1.0
    assert metric(outputs, targets) >= floor
    assert metric(per_sample, targets) >= floor
    assert metric(outputs[0], targets) >= floor
    decided = targets[~np.isnan(targets)] if targets.dtype.kind == "f" else targets[targets >= 0]
    assert decided.size >= 0.3 * targets.size, f"{name}: eager decided too few targets to judge int8 by"

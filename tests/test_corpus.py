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
    assert_pass_holds_by_hand(name, tmp_path, data)
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


def assert_pass_holds_by_hand(name: str, folder: Path, data: Path) -> None:
    """What the tool called PASS holds when the artifacts run in their runtimes by code of the test's own: plain
    onnxruntime sessions and ExecuTorch's Python runtime, fed every sample of the data by input name, compared
    with the eager model (built from the same model.py, outputs flattened in order)."""
    import onnxruntime as ort
    import torch
    from executorch.runtime import Runtime

    from corpus.samples import load_model

    out = folder / "build" / "deploytool"
    rows = {row["file"]: row for target in ("android", "server")
            for row in json.loads((out / target / "report.json").read_text())["artifacts"]}
    inputs = json.loads((out / "server" / "manifest.json").read_text())["inputs"]
    arrays = dict(np.load(data)) if data.suffix == ".npz" else None
    if arrays is None:  # a folder of one-sample files (variable lengths): the first dozen
        files = sorted(data.glob("*.pt"))[:12]
        samples = [tuple(torch.load(f)[i["name"]].numpy()[None] for i in inputs) for f in files]
    else:
        samples = [tuple(arrays[i["name"]][k:k + 1] for i in inputs) for k in range(len(arrays[inputs[0]["name"]]))]
    module = load_model(CORPUS / name).build()
    with torch.no_grad():
        eager = [_flat_tensors(module(**{i["name"]: torch.from_numpy(a) for i, a in zip(inputs, sample)}))[0].numpy()
                 for sample in samples]

    def sqnr(got: list[np.ndarray]) -> float:
        noise = sum(float(np.sum((g - e) ** 2)) for g, e in zip(got, eager))
        return 10 * np.log10(sum(float(np.sum(e ** 2)) for e in eager) / max(noise, 1e-30))

    sessions = {file: ort.InferenceSession(str(out / "server" / file), providers=["CPUExecutionProvider"])
                for file in ("model.onnx", "model.int8.onnx")}
    method = Runtime.get().load_program(str(out / "android" / "model.pte")).load_method("forward")
    measured = {file: sqnr([session.run(None, {i["name"]: a for i, a in zip(inputs, sample)})[0]
                            for sample in samples]) for file, session in sessions.items()}
    measured["model.pte"] = sqnr([method.execute([torch.from_numpy(a) for a in sample])[0].numpy()
                                  for sample in samples])
    for file, value in measured.items():
        row = rows[file]
        if not row["passed"]:
            continue
        tool = min(o["sqnr_db"] for o in row["parity"]["comparisons"][0]["outputs"])
        if row["precision"] == "fp32":
            assert value >= 40, f"{name}/{file}: the tool said PASS, by hand {value:.1f} dB from eager"
        else:  # int8: the same program on other samples (all of them, not only the held-out ones)
            assert value >= tool - 3, f"{name}/{file}: the tool measured {tool:.1f} dB, by hand {value:.1f} dB"

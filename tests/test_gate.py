"""The CI gate: [[models]] configs, stored baselines, JUnit, the pytest plugin, on a copy of examples/model-repo.

The slow tests run the real chain (quantize, lower, run the .pte in the ExecuTorch runtime) as a model
repository's CI would: `deploytool check` and `pytest --deploytool` in subprocesses, inside a copy of the
example, with this venv's deploytool installed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from deploytool.gate.baseline import METRICS, SCHEMA, Difference, compare, metrics_of, read_baseline
from deploytool.config import BaselineConfig, ConfigError, load_config, load_projects

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "model-repo"
MODELS = ("digitnet", "digitmlp")
# `deploytool check` names the model, the target, the metric, the baseline and the allowance.
SQNR_REGRESSION = re.compile(r"digitnet/android int8: SQNR [\d.]+ dB, baseline [\d.]+ dB \(-[\d.]+ dB, allowed -1\.0\)")
DEGRADE = ("data.calib_limit = 1  # one calibration image: int8 ranges fitted to a single digit\n"
           'quantize.activations = "static"  # no search: its dynamic step would not depend on calibration\n')


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- config: [[models]] -----------------------------------------------------------------------------------


def test_models_entries_inherit_top_level_defaults_and_write_to_their_own_folders(tmp_path):
    write(tmp_path / "deploytool.toml", """
targets = ["android"]
output = "out"
[data]
calib = "data"
holdout = 0.5
[baseline]
sqnr_db = 2.0
[[models]]
name = "big"
model = "big.py:build"
targets = ["android", "ios"]
data.calib_limit = 8
[[models]]
name = "small"
model = "small.py:build"
""")
    big, small = load_projects(tmp_path, overrides={"data.holdout": 0.25})
    assert (big.name, big.model, big.targets) == ("big", "big.py:build", ("android", "ios"))
    assert (small.name, small.targets) == ("small", ("android",))
    assert big.data.calib == small.data.calib == "data"  # tables merge key by key
    assert big.data.calib_limit == 8 and small.data.calib_limit == 256
    assert big.data.holdout == small.data.holdout == 0.25  # flags win over the file
    assert big.baseline.sqnr_db == small.baseline.sqnr_db == 2.0
    assert big.output_dir == (tmp_path / "out" / "big").resolve()
    assert small.output_dir == (tmp_path / "out" / "small").resolve()


def test_a_config_without_models_loads_exactly_as_before(tmp_path):
    write(tmp_path / "deploytool.toml", 'model = "zoo:digits"\ntargets = ["ios"]\n')
    assert load_projects(tmp_path) == [load_config(tmp_path)]
    assert load_projects(tmp_path)[0].output == "build/deploytool"


@pytest.mark.parametrize("entries, fragment", [
    ('[[models]]\nname = "a"\nmodle = "x.py:f"\n', "unknown key 'modle'. Did you mean 'model'?"),
    ('[[models]]\nname = "a"\n[models.data]\ncalib_limt = 3\n', "unknown key 'data.calib_limt'. Did you mean"),
    ('[[models]]\nmodel = "x.py:f"\n', "[[models]] entry 1 needs name"),
    ('[[models]]\nname = "a b"\n', "[[models]] entry 1 needs name"),
    ('[[models]]\nname = "a"\n[[models]]\nname = "a"\n', "two [[models]] entries are named 'a'"),
    ('models = "a"\n', "'models' must be a non-empty list of tables"),
    ('[baseline]\nsqnr = 2.0\n[[models]]\nname = "a"\n', "unknown key 'baseline.sqnr'. Did you mean 'sqnr_db'?"),
    ('[baseline]\nsqnr_db = -1\n[[models]]\nname = "a"\n', "baseline.sqnr_db = -1.0: a tolerance, at least 0"),
])
def test_models_entries_are_validated_naming_the_file_and_entry(tmp_path, entries, fragment):
    write(tmp_path / "deploytool.toml", entries)
    with pytest.raises(ConfigError) as error:
        load_projects(tmp_path)
    assert fragment in str(error.value)
    assert str(tmp_path / "deploytool.toml") in str(error.value)


def test_single_model_commands_say_that_a_multi_model_config_needs_check(tmp_path):
    write(tmp_path / "deploytool.toml", '[[models]]\nname = "a"\nmodel = "a.py:f"\n')
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path)
    assert "declares several models ([[models]])" in error.value.message
    assert "deploytool check" in error.value.hint


# --- baselines -----------------------------------------------------------------------------------------------


def _report(eager: np.ndarray, artifact: np.ndarray, *, size: int = 9000, tmp_path: Path):
    """An ArtifactReport from real parity metrics of two output sets (no runtime needed for the arithmetic)."""
    from deploytool.config import Thresholds
    from deploytool.export import Delegation
    from deploytool.parity import compare as compare_outputs
    from deploytool.report import ArtifactReport

    reference, candidate = [[row[None]] for row in eager], [[row[None]] for row in artifact]
    comparison = compare_outputs(reference, candidate, output_names=("logits",), thresholds=Thresholds(),
                                 candidate_name="model.pte (int8)", reference_name="eager fp32")
    return ArtifactReport("m.py:f", "android", "pte", "int8", tmp_path / "model.pte", size, "0" * 64,
                          Delegation(9, 10), [comparison], None)


def test_difference_lines_name_model_target_metric_change_and_allowance():
    sqnr = next(m for m in METRICS if m.key == "sqnr_db")
    worse = Difference("mobilenet/android int8", sqnr, 27.9, 31.0, 1.0)
    assert worse.line() == "mobilenet/android int8: SQNR 27.9 dB, baseline 31.0 dB (-3.1 dB, allowed -1.0)"
    assert worse.regressed and not worse.improved
    within = Difference("m/android int8", sqnr, 30.2, 31.0, 1.0)
    assert not within.regressed and not within.improved
    better = Difference("m/android int8", sqnr, 33.0, 31.0, 1.0)
    assert better.improved and not better.regressed  # reported, never a failure


def test_metrics_are_compared_with_their_own_tolerance_and_direction(tmp_path):
    rng = np.random.default_rng(0)
    eager = rng.normal(size=(40, 10))
    report = _report(eager, eager + rng.normal(scale=0.03, size=eager.shape), size=10_000, tmp_path=tmp_path)
    values = metrics_of(report)
    assert values["delegated_share"] == 0.9 and values["size_bytes"] == 10_000
    assert values["sqnr_db"] > 25 and values["top1_agreement"] >= 0.9
    recorded = {**values, "precision": "int8", "size_bytes": 9_000, "delegated_share": 1.0,
                "sqnr_db": values["sqnr_db"] - 5}
    by_metric = {d.metric.key: d for d in compare("m/android int8", values, recorded, BaselineConfig())}
    assert by_metric["size_bytes"].regressed  # 11% larger, 5% allowed
    assert "(+11.1%, allowed +5%)" in by_metric["size_bytes"].line()
    assert by_metric["delegated_share"].regressed  # an op left the delegate
    assert by_metric["sqnr_db"].improved and not by_metric["sqnr_db"].regressed
    assert not by_metric["top1_agreement"].regressed
    loose = BaselineConfig(size_growth=0.2, delegated_share=0.2)
    assert not any(d.regressed for d in compare("m/android int8", values, recorded, loose))


def test_baseline_file_round_trip_and_unreadable_file(tmp_path):
    path = tmp_path / "deploytool.baseline.json"
    assert read_baseline(path).models == {}  # no file yet: nothing to compare, nothing fails
    baseline = read_baseline(path)
    eager = np.eye(10)[np.arange(20) % 10] * 5
    baseline.record("digitnet", "android", [_report(eager, eager * 1.01, tmp_path=tmp_path)])
    baseline.record("gone", "android", [])
    baseline.keep_only({"digitnet"})
    baseline.write()
    stored = json.loads(path.read_text())
    assert stored["schema"] == SCHEMA and list(stored["models"]) == ["digitnet"]
    entry = read_baseline(path).entry("digitnet", "android", "model.pte", "int8")
    assert entry["precision"] == "int8" and entry["top1_agreement"] == 1.0
    assert read_baseline(path).entry("digitnet", "android", "model.pte", "fp32") is None
    write(path, "{not json")
    with pytest.raises(ConfigError, match="not a readable baseline"):
        read_baseline(path)


# --- the pytest plugin, without any model ----------------------------------------------------------------


def _clean_env() -> dict[str, str]:
    """The user's environment, minus this pytest run's own variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DEPLOYTOOL_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=folder, env=_clean_env(), capture_output=True, text=True,
                          timeout=900)


def test_pytest_loads_the_plugin_in_every_run_without_importing_torch(tmp_path):
    write(tmp_path / "test_plain.py", "import sys\n\n\ndef test_plain(request):\n"
                                      "    assert request.config.pluginmanager.has_plugin('deploytool')\n"
                                      "    assert 'torch' not in sys.modules\n")
    result = _run(tmp_path, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--markers")
    assert "@pytest.mark.deploytool" in result.stdout
    result = _run(tmp_path, "-m", "pytest", "-q", "-p", "no:cacheprovider")
    assert result.returncode == 0, result.stdout + result.stderr


def test_pytest_deploytool_without_a_config_is_a_usage_error(tmp_path):
    result = _run(tmp_path, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--deploytool")
    assert result.returncode == 4, result.stdout + result.stderr  # pytest's usage-error exit code
    assert "no deploytool.toml or [tool.deploytool]" in result.stderr


# --- the example model repository, end to end ------------------------------------------------------------


@dataclass
class Repo:
    folder: Path
    first: subprocess.CompletedProcess  # `deploytool check --junit` in the fresh copy

    def check(self, *args: str) -> subprocess.CompletedProcess:
        return _run(self.folder, "-m", "deploytool", "check", *args)

    def pytest(self, *args: str) -> subprocess.CompletedProcess:
        return _run(self.folder, "-m", "pytest", "-v", "-p", "no:cacheprovider", *args)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    folder = tmp_path_factory.mktemp("ci") / "model-repo"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("build", "__pycache__", ".pytest_cache", "*.xml"))
    first = _run(folder, "-m", "deploytool", "check", "--junit", "junit.xml")
    return Repo(folder, first)


@pytest.mark.slow
def test_check_in_a_copy_of_the_example_exports_passes_and_writes_junit(repo):
    assert repo.first.returncode == 0, repo.first.stdout + repo.first.stderr
    table = repo.first.stdout
    for model in MODELS:
        row = next(line for line in table.splitlines() if line.startswith(f"{model} "))
        assert "model.pte" in row and " ok " in row and row.rstrip().endswith("PASS"), table
        manifest = json.loads((repo.folder / "build" / "deploytool" / model / "android" / "manifest.json").read_text())
        assert len(manifest["inputs_hash"]) == 20  # what the next check compares to skip re-export
    root = ET.parse(repo.folder / "junit.xml").getroot()
    cases = list(root.iter("testcase"))
    assert root.tag == "testsuites" and int(root.get("tests")) == len(cases)
    assert int(root.get("failures")) == 0 and int(root.get("errors")) == 0
    assert [s.get("name") for s in root.iter("testsuite")] == list(MODELS)
    assert {c.get("classname") for c in cases} == {f"{m}.android" for m in MODELS}
    names = {(c.get("classname"), c.get("name")) for c in cases}
    for model in MODELS:
        for check in ("runs in its runtime", "vs eager fp32: output_0 SQNR", "vs baseline: SQNR",
                      "vs baseline: top-1 accuracy", "vs baseline: delegated share"):
            assert (f"{model}.android", f"model.pte (int8) {check}") in names, sorted(names)


@pytest.mark.slow
def test_degraded_int8_parity_fails_against_the_baseline_in_check_and_in_pytest(repo):
    assert repo.first.returncode == 0, repo.first.stdout + repo.first.stderr
    config = repo.folder / "deploytool.toml"
    original = config.read_text()
    degraded = original.replace('model = "digitnet/model.py:build_cnn"\n',
                                'model = "digitnet/model.py:build_cnn"\n' + DEGRADE)
    assert degraded != original
    write(config, degraded)

    failed = repo.check("--name", "digitnet")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert SQNR_REGRESSION.search(failed.stdout), failed.stdout
    assert "WORSE: SQNR" in failed.stdout
    assert "checks failed: digitnet-android-int8" in failed.stderr

    pte = repo.folder / "build" / "deploytool" / "digitnet" / "android" / "model.pte"
    exported_at = pte.stat().st_mtime_ns
    tests = repo.pytest("--deploytool")
    assert tests.returncode == 1, tests.stdout + tests.stderr
    assert pte.stat().st_mtime_ns == exported_at  # inputs unchanged since that check: re-verified, not re-exported
    out = tests.stdout
    assert "deploytool.toml::deploytool[digitnet-android-int8] FAILED" in out, out
    assert "deploytool.toml::deploytool[digitmlp-android-int8] PASSED" in out, out
    assert "tests/test_export.py::test_digitnet_ships_to_android FAILED" in out, out
    assert "2 failed, 1 passed" in out, out
    assert len(SQNR_REGRESSION.findall(out)) >= 2, out  # the checklist, once per failing test
    assert "Traceback" not in out and "def runtest" not in out, out

    write(config, original)
    passed = repo.check("--name", "digitnet", "--json")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    (case,) = json.loads(passed.stdout)["cases"]
    assert (case["id"], case["passed"], case["exported"]) == ("digitnet-android-int8", True, True)
    assert case["baseline"] == {"regressions": [], "improvements": [], "missing": []}


# --- check and bench after `zoo run`: the model the manifests record ---------------------------------------


def test_check_and_bench_take_the_model_from_the_manifests_zoo_run_wrote(cli, tmp_path):
    weights = Path(__file__).resolve().parent.parent / "model_zoo/digits/digits_cnn.pt"  # the entry's own
    # Into build/zoo/digits/fp32; the manifest records the weights file, so check and bench load the same model.
    cli("zoo", "run", "digits", "--target", "android", "--precision", "fp32", "--weights", str(weights))
    said = f"model from build/zoo/digits/fp32/android/manifest.json: zoo:digits (weights {weights})"
    checked = cli("check", "--json")  # was `error: No model given.`
    assert said in checked.stderr
    (report,) = json.loads(checked.stdout)
    assert report["passed"] and report["format"] == "pte" and report["precision"] == "fp32"
    benched = cli("bench", "--json", "--threads", "1", "--runs", "2", "--warmup", "1")
    assert said in benched.stderr
    assert [row["name"] for row in json.loads(benched.stdout)][0] == "eager (zoo:digits)"

    # A second output folder under build/: check cannot choose, and says which --output picks each.
    shutil.copytree(tmp_path / "build/zoo/digits/fp32", tmp_path / "build/other")
    ambiguous = cli("check", expect=2)
    assert "--output build/other (zoo:digits)" in ambiguous.stderr
    assert "--output build/zoo/digits/fp32 (zoo:digits)" in ambiguous.stderr
    assert "`deploytool check --output build/other`" in ambiguous.stderr  # the first, as the hint's example
    picked = cli("check", "--output", "build/other")
    assert "model from build/other/android/manifest.json: zoo:digits (weights" in picked.stderr

"""Executors: a matrix of real digits jobs gives the same reports and byte-identical artifacts whether it runs
in local worker processes or as Ray tasks, and a failing or crashing job is one failed row.

Jobs are digits-sized: fp32 exports, plus one int8 export so quantization is also shown to be the same in
every process (its scales come from calibration run in the worker).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploytool.errors import MissingDependencyError, UsageError
from deploytool.scale.executor import LocalExecutor, RayExecutor, executor_for, table
from deploytool.scale.jobs import JobSpec, comparable

RAISING_MODEL = "def build():\n    raise RuntimeError('this model spec raises on purpose')\n"
CRASHING_MODEL = "import os, signal\n\ndef build():\n    os.kill(os.getpid(), signal.SIGKILL)\n"
# Small enough that a job takes seconds, large enough that parity has held-out samples to compare.
DIGITS_DATA = {"calib_limit": 64, "holdout": 0.1}


def _specs(root: Path, digit_images: Path, models: Path) -> list[JobSpec]:
    """Three digits jobs and one whose model raises; each job owns a folder under `root`."""
    digits = {"model": "zoo:digits", "data": {"calib": str(digit_images), **DIGITS_DATA}}
    rows = [("zoo:digits", "android", "fp32", digits), ("zoo:digits", "ios", "fp32", digits),
            ("zoo:digits", "android", "int8", digits),
            ("raises.py:build", "android", "fp32", {"model": "raises.py:build", "data": digits["data"]})]
    return [JobSpec("export", model, target=target, recipe=recipe, output=str(root / f"{i}-{target}-{recipe}"),
                    config=config, base_dir=str(models)) for i, (model, target, recipe, config) in enumerate(rows)]


def _artifacts(root: Path) -> dict[str, bytes]:
    """Every manifest and the files it lists, by path under `root` (report.json holds timings: left out)."""
    files = {}
    for manifest in sorted(root.glob("*/*/manifest.json")):
        files[str(manifest.relative_to(root))] = manifest.read_bytes()
        for entry in json.loads(manifest.read_text())["artifacts"]:
            path = manifest.parent / entry["file"]
            files[str(path.relative_to(root))] = path.read_bytes()
    return files


@pytest.fixture
def models(tmp_path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "raises.py").write_text(RAISING_MODEL)
    (folder / "crashes.py").write_text(CRASHING_MODEL)
    return folder


@pytest.mark.slow
def test_ray_matrix_matches_the_local_executor(tmp_path, digit_images, models, local_ray):
    local_root, ray_root = tmp_path / "local", tmp_path / "ray"
    finished = []

    local = LocalExecutor(jobs=2).run(_specs(local_root, digit_images, models), on_done=finished.append)
    assert len(finished) == 4

    on_ray = RayExecutor().run(_specs(ray_root, digit_images, models))
    assert local_ray.is_initialized(), "the executor shut down a Ray instance it did not start"

    print(table(local), table(on_ray), sep="\n")
    assert [r["job"] for r in on_ray] == [s.label for s in _specs(ray_root, digit_images, models)]  # submit order
    assert [r["passed"] for r in on_ray] == [True, True, True, False], table(on_ray)
    assert "this model spec raises on purpose" in on_ray[3]["error"]
    strip = lambda reports, root: [json.loads(json.dumps(comparable(r)).replace(str(root), "<root>"))  # noqa: E731
                                   for r in reports]
    assert strip(on_ray, ray_root) == strip(local, local_root)
    local_files, ray_files = _artifacts(local_root), _artifacts(ray_root)
    assert {"2-android-int8/android/model.pte", "1-ios-fp32/ios/model.pte"} <= set(local_files), sorted(local_files)
    assert ray_files.keys() == local_files.keys()
    assert [name for name in local_files if local_files[name] != ray_files[name]] == []


def test_a_crashing_worker_fails_only_its_own_job(tmp_path, models):
    data = {"calib": "random"}
    specs = [JobSpec("export", f"{name}.py:build", target="android", recipe="fp32", output=str(tmp_path / name),
                     config={"model": f"{name}.py:build", "data": data}, base_dir=str(models))
             for name in ("crashes", "raises", "crashes")]
    reports = LocalExecutor(jobs=2).run(specs)
    assert [r["passed"] for r in reports] == [False, False, False]
    assert "worker process died" in reports[0]["error"] and "worker process died" in reports[2]["error"]
    assert "ModelLoadError" in reports[1]["error"] or "raises on purpose" in reports[1]["error"], reports[1]["error"]


def test_sequential_reports_come_in_submission_order_with_errors_as_rows(tmp_path, models):
    specs = [JobSpec("export", "raises.py:build", target=t, recipe="fp32", output=str(tmp_path / t),
                     config={"model": "raises.py:build", "data": {"calib": "random"}}, base_dir=str(models))
             for t in ("android", "ios")]
    seen = []
    reports = LocalExecutor().run(specs, on_done=seen.append)
    assert [r["job"] for r in reports] == ["raises.py:build/android/fp32", "raises.py:build/ios/fp32"]
    assert seen == reports and all(not r["passed"] and r["error"] for r in reports)
    relative = JobSpec("export", "m", target="android", recipe="fp32", output="relative/out", base_dir=str(models))
    assert "must be absolute" in LocalExecutor().run([relative])[0]["error"]


def test_executor_options_are_checked():
    with pytest.raises(UsageError, match="Did you mean 'ray'"):
        executor_for("rya")
    with pytest.raises(UsageError, match="--jobs"):
        executor_for("ray", jobs=4)
    with pytest.raises(UsageError, match="--executor ray"):
        executor_for("local", ray_address="auto")
    assert isinstance(executor_for("local", jobs=3), LocalExecutor)


def test_missing_ray_names_the_install_command(monkeypatch):
    import sys

    from deploytool.scale.executor import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when it is not installed
    with pytest.raises(MissingDependencyError) as raised:
        import_ray()
    assert raised.value.exit_code == 3 and "pip install 'deploytool[ray]'" in raised.value.hint


def test_a_gate_model_that_fails_is_an_error_case_per_target(tmp_path, models):
    from deploytool.config import parse_config
    from deploytool.gate import check_models_on

    config = parse_config({"name": "broken", "model": "raises.py:build", "targets": ["android", "ios"],
                           "data": {"calib": "random"}, "output": str(tmp_path / "out")}, base_dir=models)
    [cases] = check_models_on(LocalExecutor(), [config], targets=None, export=True)
    assert [(c.id, c.passed) for c in cases] == [("broken-android-int8", False), ("broken-ios-int8", False)]
    assert all("raises on purpose" in c.error for c in cases), [c.error for c in cases]


def test_workers_end_with_a_killed_parent(tmp_path, models):
    import signal
    import subprocess
    import sys

    from processes import ended, wait_until

    # Each job's model writes its worker's pid, then never returns; the parent is SIGTERMed mid-matrix.
    (models / "endless.py").write_text("import os, pathlib, time\n\ndef build():\n"
                                       f"    pathlib.Path({str(tmp_path)!r}, f'worker-{{os.getpid()}}').touch()\n"
                                       "    time.sleep(600)\n")
    script = tmp_path / "parent.py"
    script.write_text(
        "from deploytool.scale.executor import LocalExecutor\n"
        "from deploytool.scale.jobs import JobSpec\n"
        f"specs = [JobSpec('export', 'endless.py:build', target=t, recipe='fp32', output={str(tmp_path)!r} + '/' + t,"
        " config={'model': 'endless.py:build', 'data': {'calib': 'random'}},"
        f" base_dir={str(models)!r}) for t in ('android', 'ios')]\n"
        "if __name__ == '__main__':  # spawned workers import this file again\n"
        "    LocalExecutor(jobs=2).run(specs)\n")
    parent = subprocess.Popen([sys.executable, str(script)])
    try:
        wait_until(lambda: len(list(tmp_path.glob("worker-*"))) == 2, "the two workers never started", 120)
    finally:
        parent.send_signal(signal.SIGTERM)
        parent.wait()
    workers = [int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")]
    wait_until(lambda: all(ended(pid) for pid in workers), f"workers {workers} outlived their SIGTERMed parent")

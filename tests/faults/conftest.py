"""Fixtures for the fault matrix: a tiny project folder (model file + real-shaped arrays) and a failure runner."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import click
import numpy as np
import pytest
from faultkit import CALIB_SAMPLES, MODELS, assert_fails, assert_nothing_half_written


@pytest.fixture
def project(tmp_path) -> Path:
    """tmp_path (where the `cli` fixture runs) with model.py and calib.npy: 40 real-shaped float32 samples."""
    (tmp_path / "model.py").write_text(MODELS)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "calib.npy", rng.standard_normal((CALIB_SAMPLES, 4)).astype(np.float32))
    return tmp_path


@pytest.fixture
def fault(cli, monkeypatch):
    """Run `deploytool ARGS` through the real main() and check everything a failing run must get right.

    `error` is the exception class that reached the CLI (DeployError subclass, or KeyboardInterrupt for Ctrl-C);
    its exit code must be the one the user sees.
    """
    import deploytool.cli

    raised: list[BaseException] = []
    group_main = deploytool.cli.cli.main

    def spy(*args, **kwargs):
        try:
            return group_main(*args, **kwargs)
        except BaseException as exc:
            raised.append(exc)
            raise

    monkeypatch.setattr(deploytool.cli.cli, "main", spy)

    def run(*args: str, error: type[BaseException], exit_code: int, fragments: tuple[str, ...], folder: Path | None = None):
        runner = type(cli)(folder) if folder else cli  # another folder: same runner class
        raised.clear()
        result = runner(*args, expect=None)
        assert_fails(result, exit_code, *fragments)
        assert raised, "the run raised nothing"
        reached = raised[-1].__cause__ if isinstance(raised[-1], click.exceptions.Abort) else raised[-1]  # Ctrl-C
        assert isinstance(reached, error), f"expected {error.__name__}, got {raised[-1]!r}"
        assert getattr(error, "exit_code", 130) == exit_code, "the class's exit code is the one the user sees"
        assert_nothing_half_written(runner.folder)
        return result

    return run


@pytest.fixture
def shared_folder():
    """A world-accessible project folder, for tests that drop root privileges (tmp_path is root-only)."""
    folder = Path(tempfile.mkdtemp(prefix="deploytool-faults-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def exported_project(tmp_path_factory) -> Path:
    """A tiny project already quantized and exported (int8 .pte) into ./out: the 'previous good run'."""
    from deploytool import api
    from deploytool.config import Precision

    folder = tmp_path_factory.mktemp("exported")
    (folder / "model.py").write_text(MODELS)
    np.save(folder / "calib.npy", np.random.default_rng(0).standard_normal((CALIB_SAMPLES, 4)).astype(np.float32))
    config = api.load_config(folder, overrides={"model": "model.py:build", "data.calib": "calib.npy", "output": "out"})
    api.export(config, targets=("android",), precision=Precision.INT8)
    return folder


@pytest.fixture
def previous_run(exported_project, tmp_path) -> dict[str, bytes]:
    """A copy of `exported_project` in tmp_path; returns the bytes of every file the previous run wrote."""
    shutil.copytree(exported_project, tmp_path, dirs_exist_ok=True)
    return {str(p.relative_to(tmp_path)): p.read_bytes() for p in sorted((tmp_path / "out").rglob("*")) if p.is_file()}


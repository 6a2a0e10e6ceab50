"""Shared fixtures: real data and a full export written once per session, a CLI runner that works in a
folder, and runtimes that crash or hang."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from cli_runner import Cli

# Test-only runtimes that misbehave the way native runtimes do, and a writer for their (dummy) artifacts.
MISBEHAVING = textwrap.dedent("""
    import os, signal, time
    from deploytool.export import Artifact


    def segfault(path, samples):
        os.kill(os.getpid(), signal.SIGSEGV)


    def abort(path, samples):
        os.abort()


    def hang(path, samples):
        time.sleep(3600)


    def write_segv(programs, folder):
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "model.segv"
        path.write_bytes(b"an artifact whose runtime segfaults")
        return [Artifact(path, "segv", programs.precision)]
""")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: absent under -p no:xdist
def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker per core this process may run on (xdist would count the host's physical cores, which
    a container or taskset can exceed); on one core none, so the suite runs in-process, without a worker's cost."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    cores = _cores()
    return cores if cores > 1 else 0


def pytest_configure(config):
    """Under pytest-xdist, each worker gets its share of the cores for torch's (OpenMP's) intra-op pool.

    Two workers at torch's default of one thread per core oversubscribe the CPU: on 2 cores (shared, load ~3), 6 slow
    tests on 2 workers took 12:49 at 2 threads each and 6:28 at 1 (CPU time 14:02 and 6:31). Set before any test
    module imports torch (collection comes after this hook) and inherited by the runtimes' child processes; a
    thread count the user exported wins.
    """
    workers = getattr(config, "workerinput", {}).get("workercount")
    if workers:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _cores() // workers)))


@pytest.fixture
def misbehaving(tmp_path, monkeypatch):
    """Register the runners (and a `segv` format on a `crashy` target) for this test only.

    The child process finds the module through PYTHONPATH: the worker imports runners by their import string.
    """
    from deploytool.export import FORMATS
    from deploytool.registry import TARGETS, Entry
    from deploytool.runtime import RUNNERS

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "misbehaving_runtime.py").write_text(MISBEHAVING)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])))
    for name in ("segfault", "abort", "hang"):
        monkeypatch.setitem(RUNNERS._entries, name, Entry(name, f"misbehaving_runtime:{name}", {"runtime": name}))
    monkeypatch.setitem(RUNNERS._entries, "segv", Entry("segv", "misbehaving_runtime:segfault", {"runtime": "segv"}))
    monkeypatch.setitem(FORMATS._entries, "segv", Entry("segv", "misbehaving_runtime:write_segv",
                                                         {"runtime": "a runtime that segfaults", "summary": "test"}))
    monkeypatch.setitem(TARGETS._entries, "crashy", Entry("crashy", "", {"formats": ("segv", "pte"),
                                                                          "summary": "test target"}))
    artifact = tmp_path / "model.bin"
    artifact.write_bytes(b"\0" * 16)
    return artifact


@pytest.fixture(scope="session")
def digit_images(tmp_path_factory) -> Path:
    """899 real 8x8 digits (never used to train the zoo model) as PNGs, one folder per class."""
    from model_zoo.digits.images import write_digit_images

    return write_digit_images(tmp_path_factory.mktemp("data") / "digits")


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """48 real photo crops from scikit-learn's bundled sample images."""
    from model_zoo.photos import write_photos

    return write_photos(tmp_path_factory.mktemp("data") / "photos", 48)


@pytest.fixture(scope="session")
def exported_all(tmp_path_factory, digit_images) -> tuple[Path, str]:
    """zoo:digits quantized on real digits, then `export --target all`: the output folder and stdout.

    Shared by the server-format, bench and holdings tests; a test that writes into an output folder copies it first.
    Made once per suite run, not once per pytest-xdist worker: the first worker to need it builds it under a lock in
    the run's shared temp folder, the others wait and read it.
    """
    from deploytool.lock import output_lock

    shared = tmp_path_factory.getbasetemp()
    shared = shared.parent if os.environ.get("PYTEST_XDIST_WORKER") else shared
    folder = shared / "exported_all"
    with output_lock(folder / "lock", timeout_s=1800):
        done = folder / "stdout.txt"
        if not done.is_file():
            cli = Cli(folder)
            cli("quantize", "--model", "zoo:digits", "--calib", str(digit_images), "--holdout", "0.5")
            done.write_text(cli("export", "--target", "all").stdout)
    return folder / "build" / "deploytool", done.read_text()


@pytest.fixture
def cli(tmp_path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def local_ray():
    """A Ray instance of 2 CPUs started for the test; executors use it and leave it running."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'deploytool[ray]')")
    # address="local": a new instance on loopback, never a cluster someone started on this machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture
def calibration_passes(monkeypatch) -> list[int]:
    """Counts every calibration pass (quantize.pt2e.feed: the only code that runs samples through observers)."""
    from deploytool.quantize import pt2e

    passes: list[int] = []
    real_feed = pt2e.feed

    def counting_feed(*args, **kwargs):
        passes.append(1)
        return real_feed(*args, **kwargs)

    monkeypatch.setattr(pt2e, "feed", counting_feed)
    return passes

"""Fault matrix, what one run leaves for the next: caches, manifests, temporary files; and the model's own faults
(a forward() that raises on one sample, hangs, or changes its buffers), and stdout under --json.

A damaged cache entry is a miss (rebuilt, one line says so), never an internal error or a wrong artifact.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from faultkit import MODELS

from deploytool.errors import DataError, ModelLoadError, UsageError


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zero(path: Path) -> None:
    path.write_bytes(b"")


def _flip_last_weight_byte(path: Path) -> None:
    """One bit of the file changed well inside it (an int8 weight of a .pte): the bytes still parse."""
    data = bytearray(path.read_bytes())
    data[len(data) * 3 // 4] ^= 0x01
    path.write_bytes(bytes(data))


# The cases of the fault matrix: (a glob under the output folder, the damage). A truncated .pte was reused on every
# run (exit 1 or 70), a flipped bit in a cached int8 weight shipped silently, a truncated .npz or program gave exit
# 70 (BadZipFile), a zero-byte one exit 130 ("interrupted").
DAMAGED = [
    pytest.param(".cache/pte/*.pte", _truncate, id="truncated-lowered-pte"),
    pytest.param(".cache/pte/*.pte", _flip_last_weight_byte, id="bit-flipped-int8-weight-in-lowered-pte"),
    pytest.param(".cache/runs/*.npz", _truncate, id="truncated-recorded-runs"),
    pytest.param("quantized/references.npz", _truncate, id="truncated-references"),
    pytest.param("quantized/program.pt2", _truncate, id="truncated-quantized-program"),
    pytest.param("quantized/references.npz", _zero, id="zero-byte-references"),
]


@pytest.mark.parametrize("entry, damage", DAMAGED)
def test_a_damaged_cache_entry_is_rebuilt_not_reused(cli, previous_run, tmp_path, entry, damage):
    (target,) = sorted((tmp_path / "out").glob(entry))
    damage(target)
    result = cli("export", "--output", "out", "--target", "android")
    assert f"ignoring the cached {target}" in result.stderr and "building it again" in result.stderr, result.stderr
    assert (tmp_path / "out/android/model.pte").read_bytes() == previous_run["out/android/model.pte"]
    assert json.loads((tmp_path / "out/android/report.json").read_text())["passed"]


def test_a_poisoned_program_whose_sha256_was_rewritten_too_is_refused(fault, previous_run, tmp_path):
    """Whoever can rewrite the cache can rewrite the digest beside it: the pickle check still stands."""
    import hashlib

    from test_faults_security import _poison

    from deploytool.program_file import UnsafeProgram

    marker = tmp_path / "payload-ran"
    program = tmp_path / "out/quantized/program.pt2"
    _poison(program, marker)
    (tmp_path / "out/quantized/program.pt2.sha256").write_text(hashlib.sha256(program.read_bytes()).hexdigest())
    (tmp_path / "out/quantized/references.npz").unlink()
    for cached in (tmp_path / "out/.cache").rglob("*"):
        if cached.is_file():
            cached.unlink()
    fault("export", "--target", "android", "--output", "out", error=UnsafeProgram, exit_code=2,
          fragments=("program.pt2 was refused", "was altered"))
    assert not marker.exists()


MANIFEST_FAULTS = [
    pytest.param(lambda text: text[: len(text) // 2], ("manifest.json is not readable JSON", "Re-run `deploytool "
                                                       "export`"), id="manifest-truncated"),
    pytest.param(lambda text: text.replace('"sha256"', '"sha_256"'), ("lacks 'sha256'",), id="manifest-without-sha256"),
    pytest.param(lambda text: text.replace('"file": "model.pte"', '"file": "../../../../etc/hostname"'),
                 ("names '../../../../etc/hostname', which lies outside",), id="manifest-path-outside-its-folder"),
]


@pytest.mark.parametrize("edit, fragments", MANIFEST_FAULTS)
def test_a_damaged_manifest_is_a_usage_error_naming_the_file(fault, previous_run, tmp_path, edit, fragments):
    manifest = tmp_path / "out/android/manifest.json"
    manifest.write_text(edit(manifest.read_text()))
    fault("check", "--output", "out", error=UsageError, exit_code=2, fragments=fragments)


def test_a_file_missing_since_export_is_a_failed_row_and_the_others_are_checked(fault, previous_run, tmp_path):
    from deploytool.errors import StageError

    (tmp_path / "out/android/model.pte").unlink()
    fault("check", "--output", "out", error=StageError, exit_code=4, fragments=("model.pte is missing",))


def test_stale_temp_files_of_a_killed_write_are_removed_under_the_lock(cli, previous_run, tmp_path):
    """kill -9 inside an atomic write left .model.pte.XXXX.tmp forever."""
    stale = tmp_path / "out/android/.model.pte.k1ll3d.tmp"
    stale.write_bytes(b"half a program")
    cli("check", "--output", "out")
    assert not stale.exists()


def test_scratch_folders_of_dead_runs_are_removed_and_live_ones_kept():
    from deploytool.fsutil import SCRATCH_PREFIX, remove_dead_scratch

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root = Path(tempfile.gettempdir())
    orphan = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}run-{dead.pid}-", dir=root))
    (orphan / "inputs.npz").write_bytes(b"held-out inputs")
    alive = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}run-{os.getpid()}-", dir=root))
    try:
        assert remove_dead_scratch() >= 1
        assert not orphan.exists() and alive.exists()
    finally:
        alive.rmdir()


def test_sigterm_removes_the_scratch_folder_of_a_running_artifact(tmp_path):
    """A run stopped with SIGTERM (a CI timeout) unwinds like Ctrl-C: no deploytool-run-* folder is left behind."""
    script = tmp_path / "slow.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        from deploytool.cli import main
        from deploytool import fsutil
        import deploytool.cli as cli

        def hang():
            with fsutil.scratch("run") as folder:
                print(folder, flush=True)
                time.sleep(60)

        cli._exit_cleanly_on_terminate()
        hang()
    """))
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    folder = Path(child.stdout.readline().strip())
    assert folder.is_dir()
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == 128 + signal.SIGTERM
    assert not folder.exists()


USERS_FAULTS = textwrap.dedent('''

    class Moody(Tiny):
        def forward(self, x):
            if float(x[0, 0]) > 1.5:  # raises on some inputs only
                raise ValueError("cannot handle this frame")
            return self.fc(x)


    def moody():
        torch.manual_seed(0)
        return Moody().eval()


    class Stuck(Tiny):
        def forward(self, x):
            if float(x[0, 0]) > 1.5:
                import time
                time.sleep(3600)  # a data-dependent hang
            return self.fc(x)


    def stuck():
        torch.manual_seed(0)
        return Stuck().eval()


    class Counter(Tiny):
        def __init__(self):
            super().__init__()
            self.register_buffer("calls", torch.zeros(1))

        def forward(self, x):
            self.calls += 1  # state that every call changes
            return self.fc(x) + self.calls


    def counter():
        torch.manual_seed(0)
        return Counter().eval()


    def chatty():
        print("loading my model, version 3")  # a user's print, which used to land in --json's stdout
        torch.manual_seed(0)
        return Tiny().eval()
''')


def _spiky_calib(folder: Path) -> None:
    """The first calibration sample is ordinary; some held-out ones start with 3.0."""
    import numpy as np

    rng = np.random.default_rng(0)
    data = rng.uniform(-1, 1, (40, 4)).astype(np.float32)
    data[::5, 0] = 3.0
    np.save(folder / "calib.npy", data)


def test_a_forward_that_raises_on_one_sample_names_it(fault, project):
    (project / "model.py").write_text(MODELS + USERS_FAULTS)
    _spiky_calib(project)
    fault("quantize", "--model", "model.py:moody", "--calib", "calib.npy", error=DataError, exit_code=2,
          fragments=("forward() raised ValueError on held-out sample calib.npy#", "cannot handle this frame"))


def test_a_forward_that_hangs_is_stopped_naming_the_stage_and_sample(fault, project):
    (project / "model.py").write_text(MODELS + USERS_FAULTS)
    (project / "deploytool.toml").write_text("[parity]\ntimeout_s = 3\n")
    _spiky_calib(project)
    started = time.monotonic()
    fault("quantize", "--model", "model.py:stuck", "--calib", "calib.npy", error=DataError, exit_code=2,
          fragments=("forward() on held-out sample calib.npy#", "did not finish within 3 s", "parity.timeout_s"))
    assert time.monotonic() - started < 120


def test_a_model_that_changes_its_buffers_is_refused(fault, project):
    (project / "model.py").write_text(MODELS + USERS_FAULTS)
    fault("quantize", "--model", "model.py:counter", "--calib", "calib.npy", error=ModelLoadError, exit_code=2,
          fragments=("forward() changes the model's buffers (calls)",))


def test_json_output_stays_json_when_the_model_prints(cli, project):
    (project / "model.py").write_text(MODELS + USERS_FAULTS)
    result = cli("export", "--model", "model.py:chatty", "--calib", "calib.npy", "--precision", "fp32", "--json")
    rows = json.loads(result.stdout)
    assert rows[0]["passed"] and "loading my model, version 3" in result.stderr


def test_an_output_folder_inside_the_data_folder_is_not_read_as_data(cli, project):
    """`--calib data --output data`: the second run read the tool's own cached .npz files as samples."""
    import re

    import numpy as np

    (project / "data").mkdir()
    np.save(project / "data/calib.npy", np.load(project / "calib.npy"))
    args = ("quantize", "--model", "model.py:build", "--calib", "data", "--output", "data")
    runs = [cli(*args), cli(*args, "--calib-limit", "30")]  # the second changes an option, so it loads the data
    assert list((project / "data/quantized").glob("*.npz")), "the tool's own .npz files are in the data folder"
    for result in runs:
        counts = re.search(r"\((\d+) to calibrate, (\d+) held out", result.stderr)
        assert counts and int(counts[1]) + int(counts[2]) == 40, result.stderr


def test_a_checkpoint_asking_for_a_blocked_global_says_not_to_load_it(fault, project):
    import torch

    class Payload:
        def __reduce__(self):
            return os.system, ("true",)

    torch.save({"fc.weight": torch.zeros(3, 4), "fc.bias": Payload()}, project / "ckpt.pt")
    result = fault("quantize", "--model", "model.py:build", "--weights", "ckpt.pt", "--calib", "calib.npy",
                   error=ModelLoadError, exit_code=2, fragments=("asks for posix.system", "hint: Do not load this file"))
    assert "weights_only` set to `False` will likely succeed" not in result.stderr


def test_the_hang_watchdog_works_where_sigint_starts_ignored():
    """`deploytool ... &` from a script (and a test runner's workers) starts with SIGINT ignored; the watchdog's
    signal was lost there and a hung forward() ran forever."""
    code = ("import signal, time\nfrom deploytool.progress import Overdue, deadline\n"
            "assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN\n"
            "try:\n    with deadline('the eager model on sample calib.npy#3', 1):\n        time.sleep(60)\n"
            "except Overdue as exc:\n    print(exc)\n"
            "assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN, 'the ignored SIGINT is restored'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert done.returncode == 0, done.stderr
    assert "calib.npy#3 did not finish within 1 s" in done.stdout

"""Fault matrix, output stage: unwritable folders, a full disk, Ctrl-C mid-write or mid-calibration, and two
runs on one folder. Each: a clear message, the right exit code, no temp files, the previous artifacts intact."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time

import pytest
from faultkit import assert_untouched

from deploytool import fsutil
from deploytool.fsutil import OutputError
from deploytool.lock import OutputBusy


def test_output_folder_not_writable(fault, project):
    """The output's parent is a file, so the folder cannot exist (chmod cannot stop root; this can)."""
    (project / "blocker").write_text("a file where a folder should be")
    fault("quantize", "--model", "model.py:build", "--calib", "calib.npy", "--output", "blocker/out",
          error=OutputError, exit_code=2, fragments=("Cannot write into", "blocker/out", "hint: Choose a writable"))


def _fsync_raising(exc: BaseException):
    def fsync(fd):
        raise exc

    return fsync


WRITE_FAULTS = [
    pytest.param(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), OutputError, 2,
                 ("model.pte failed: No space left on device", "previous file (if any) is untouched",
                  "hint: Free disk space"), id="disk-full-while-writing"),
    pytest.param(OSError(errno.EIO, os.strerror(errno.EIO)), OutputError, 2,
                 ("model.pte failed: Input/output error",), id="io-error-while-writing"),
    pytest.param(KeyboardInterrupt(), KeyboardInterrupt, 130,
                 ("interrupted; nothing half-written was left behind",), id="ctrl-c-while-writing"),
]


@pytest.mark.parametrize("raised, error, exit_code, fragments", WRITE_FAULTS)
def test_fault_while_writing_the_artifact(fault, previous_run, tmp_path, monkeypatch, raised, error, exit_code,
                                          fragments):
    """The write of model.pte fails at fsync, after its bytes went to the temp file: the old model.pte stays."""
    monkeypatch.setattr(fsutil.os, "fsync", _fsync_raising(raised))
    fault("export", "--output", "out", "--target", "android", error=error, exit_code=exit_code, fragments=fragments)
    assert_untouched(tmp_path, previous_run)


def test_ctrl_c_during_calibration(fault, previous_run, tmp_path, monkeypatch):
    from deploytool.progress import Progress

    def interrupted(self, count=1):
        raise KeyboardInterrupt  # Ctrl-C between two calibration batches

    monkeypatch.setattr(Progress, "advance", interrupted)
    # A new calibration limit changes the cache key, so quantize re-calibrates instead of reusing the program.
    fault("quantize", "--output", "out", "--calib-limit", "16", error=KeyboardInterrupt, exit_code=130,
          fragments=("interrupted; nothing half-written was left behind",))
    assert_untouched(tmp_path, previous_run)


HOLDER = textwrap.dedent("""
    import fcntl, os, sys, time
    handle = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
    fcntl.flock(handle, fcntl.LOCK_EX)
    os.write(handle, f"{os.getpid()}\\n".encode())
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
""")


def _hold_lock(folder, seconds: float) -> subprocess.Popen:
    """Another process holding <folder>/.lock, as a concurrent deploytool run does."""
    folder.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder / ".lock"), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_second_run_on_a_locked_folder_fails_after_the_timeout(fault, previous_run, tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYTOOL_LOCK_TIMEOUT", "1")
    holder = _hold_lock(tmp_path / "out", 60)
    try:
        started = time.monotonic()
        result = fault("export", "--output", "out", "--target", "android", error=OutputBusy, exit_code=2,
                       fragments=(f"Another deploytool run (pid {holder.pid}) is still using", "after waiting 1 s",
                                  "hint: Let it finish, or pass a different --output",
                                  "DEPLOYTOOL_LOCK_TIMEOUT"))
        assert time.monotonic() - started < 30
        assert f"waiting for another deploytool run (pid {holder.pid})" in result.stderr
    finally:
        holder.kill()
        holder.wait()
    assert_untouched(tmp_path, previous_run)


def test_second_run_waits_for_the_first_then_proceeds(cli, previous_run, tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYTOOL_LOCK_TIMEOUT", "60")
    holder = _hold_lock(tmp_path / "out", 2)
    try:
        result = cli("quantize", "--output", "out")  # unchanged inputs: reuses the program once the lock is free
    finally:
        holder.wait()
    assert "waiting for another deploytool run" in result.stderr
    assert "is free now; continuing" in result.stderr
    assert "reused" in result.stdout


def test_lock_timeout_must_be_a_number(fault, project, monkeypatch):
    monkeypatch.setenv("DEPLOYTOOL_LOCK_TIMEOUT", "soon")
    from deploytool.errors import ConfigError

    fault("quantize", "--model", "model.py:build", "--calib", "calib.npy", error=ConfigError, exit_code=2,
          fragments=("DEPLOYTOOL_LOCK_TIMEOUT='soon': must be a number of seconds",))


def test_export_in_an_empty_folder_says_quantize_first_and_writes_nothing(fault, tmp_path):
    from deploytool.errors import UsageError

    fault("export", "--target", "android", error=UsageError, exit_code=2,
          fragments=("No model given", "hint: Run `deploytool quantize --model"))
    assert not any(tmp_path.iterdir())


def test_a_run_that_waited_on_a_removed_lock_file_locks_the_one_at_the_path(tmp_path):
    """The first run created the folder, wrote nothing and removed it with its lock file; the waiting run must
    hold a lock on the file now at <folder>/.lock, or a third run could lock that one alongside it."""
    import fcntl
    import threading

    from deploytool.lock import output_lock

    folder = tmp_path / "fresh" / "out"
    holding, release = threading.Event(), threading.Event()

    def first_run():
        with output_lock(folder, timeout_s=30):
            holding.set()
            release.wait(30)

    first = threading.Thread(target=first_run)
    first.start()
    assert holding.wait(30)
    threading.Timer(0.5, release.set).start()  # while the second run below waits
    with output_lock(folder, timeout_s=30):
        first.join(30)
        assert not first.is_alive()
        probe = os.open(folder / ".lock", os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(probe)

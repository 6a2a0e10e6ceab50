"""One run at a time per output folder: an exclusive `flock` on `<output>/.lock`.

`quantize`, `export` and `check` hold it while they read and write the folder, so two runs (two CI jobs,
two terminals) never interleave their writes. A second run waits, saying who it waits for, up to
`DEPLOYTOOL_LOCK_TIMEOUT` seconds, then fails with `OutputBusy`. The kernel drops the lock when its
process exits, even on SIGKILL, so a crashed run never leaves a stale lock behind. A run that created the
folder and wrote nothing into it (a usage error) removes the lock file and the folders it created.

    >>> with output_lock(Path("build/deploytool")):
    ...     write_artifacts()
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from deploytool.errors import ConfigError, UsageError
from deploytool.fsutil import OutputError, remove_stale_temp_files

log = logging.getLogger("deploytool")

LOCK_FILE = ".lock"
TIMEOUT_ENV = "DEPLOYTOOL_LOCK_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0  # outlasts a typical export of an ImageNet-size model; CI jobs rarely wait longer
POLL_S = 0.2  # how often a waiting run retries; cheap, and short enough that waiting adds little

_held = threading.local()  # folders this thread holds: export holds the lock and calls quantize, which takes it again

F = TypeVar("F", bound=Callable)


class OutputBusy(UsageError):
    """Another run holds the output folder's lock for longer than we wait."""


class UnsafeLock(UsageError):
    """`<output>/.lock` is a symbolic link or not a regular file: writing our PID into it could destroy the file
    it points at, so it is refused."""


@contextlib.contextmanager
def output_lock(folder: Path, *, timeout_s: float | None = None) -> Iterator[None]:
    """Hold `<folder>/.lock` exclusively for the block; re-entrant within one thread.

    >>> with output_lock(Path("build/deploytool"), timeout_s=5):
    ...     ...
    """
    folder = Path(folder).resolve()
    held = _held.__dict__.setdefault("folders", set())
    if folder in held:
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: no flock; runs on one folder are not serialised there
        yield
        return
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    handle = _open_locked(fcntl, folder, _timeout(timeout_s))
    try:
        os.ftruncate(handle, 0)
        os.write(handle, f"{os.getpid()}\n".encode())  # names the holder in a waiting run's message
        if remove_stale_temp_files(folder):  # a run killed mid-write (kill -9) left them; none is ours yet
            log.info("removed half-written files a killed run left in %s", folder)
        held.add(folder)
        try:
            yield
        finally:
            held.discard(folder)
            _remove_if_unused(folder, created)
    finally:
        os.close(handle)  # closing the descriptor releases the lock


def _open_locked(fcntl, folder: Path, timeout_s: float) -> int:
    """Open and lock <folder>/.lock; again when the run we waited for removed that file (_remove_if_unused)."""
    deadline = time.monotonic() + timeout_s
    while True:
        path = folder / LOCK_FILE
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # Never through a link (it would truncate what it points at); non-blocking, so a FIFO cannot stall us.
            handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
        except OSError as exc:
            if path.is_symlink():
                raise UnsafeLock(f"{path} is a symbolic link (to {os.readlink(path)}); deploytool never follows it.",
                                 hint=f"Remove the link (rm {path}); the next run creates a plain lock file.") from None
            raise OutputError.cannot_write(folder, exc) from None
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            os.close(handle)
            raise UnsafeLock(f"{path} is not a regular file; deploytool writes its PID into that file.",
                             hint=f"Remove it (rm -r {path}); the next run creates a plain lock file.")
        try:
            _acquire(fcntl, handle, folder, timeout_s, deadline)
            if _is_file_at(handle, folder / LOCK_FILE):
                return handle
        except BaseException:
            os.close(handle)
            raise
        os.close(handle)


def _is_file_at(handle: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle), os.lstat(path))
    except FileNotFoundError:
        return False


def _remove_if_unused(folder: Path, created: list[Path]) -> None:
    """Remove the lock file and the folders this run created, when the run wrote nothing into them."""
    try:
        if not created or os.listdir(folder) != [LOCK_FILE]:
            return
        (folder / LOCK_FILE).unlink()
        for path in created:
            path.rmdir()
    except OSError:  # a folder is not empty, or already gone: what lives there now is not ours to remove
        return


def holds_output_lock(function: F) -> F:
    """Decorator for steps whose first argument is the ProjectConfig: run them under its output folder's lock."""

    @functools.wraps(function)
    def locked(config, *args, **kwargs):
        with output_lock(config.output_dir):
            return function(config, *args, **kwargs)

    return locked  # type: ignore[return-value]


def _acquire(fcntl, handle: int, folder: Path, timeout_s: float, deadline: float) -> None:
    waiting = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if waiting:
                log.warning("%s is free now; continuing", folder)
            return
        except BlockingIOError:
            pass
        holder = _holder(handle)
        if time.monotonic() >= deadline:
            raise OutputBusy(f"Another deploytool run{holder} is still using {folder} after waiting {timeout_s:g} s.",
                             hint=f"Let it finish, or pass a different --output; {TIMEOUT_ENV}=SECONDS sets the wait.")
        if not waiting:
            log.warning("waiting for another deploytool run%s to finish with %s (up to %g s) ...", holder, folder,
                        timeout_s)
            waiting = True
        time.sleep(POLL_S)


def _holder(handle: int) -> str:
    try:
        pid = os.pread(handle, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


def _timeout(timeout_s: float | None) -> float:
    if timeout_s is not None:
        return timeout_s
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r}: must be a number of seconds, 0 or more.")
    return value

"""Atomic writes: a temp file in the same folder, fsync, then rename over the target.

A crash or Ctrl-C mid-write leaves the previous file untouched and never a half-written one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from deploytool.errors import UsageError


class OutputError(UsageError):
    """The output folder cannot be created or written."""

    @classmethod
    def cannot_write(cls, folder: Path, exc: OSError) -> OutputError:
        return cls(f"Cannot write into {folder}: {exc.strerror}.",
                   hint="Choose a writable folder with --output, or fix its permissions.")


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError.cannot_write(path.parent, exc) from None
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, _file_mode(path))
        os.replace(temp, path)
    except BaseException as exc:  # includes KeyboardInterrupt: never leave the temp file behind
        Path(temp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"Writing {path} failed: {exc.strerror}; the previous file (if any) is untouched.",
                              hint="Free disk space or choose another --output.") from None
        raise
    return path


def _file_mode(path: Path) -> int:
    """The mode a plain open() would give: the old file's, else 0o666 less the umask (mkstemp makes 0o600)."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, value: Any) -> Path:
    return atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False) + "\n")


def sha256_file(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


SCRATCH_PREFIX = "deploytool-"


def scratch(kind: str) -> tempfile.TemporaryDirectory:
    """A temporary folder named `deploytool-KIND-PID-...`: removed when the block ends (SIGTERM included, see
    deploytool.cli), and by the next run's `remove_dead_scratch` when this process was killed outright.

    >>> with scratch("run") as folder:
    ...     save_samples(Path(folder) / "inputs.npz", samples)
    """
    return tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{kind}-{os.getpid()}-")


def remove_dead_scratch() -> int:
    """Remove the scratch folders of deploytool processes that no longer run (kill -9 leaves them, with held-out
    inputs inside); returns how many. A folder whose process still runs, or of another user, is left alone."""
    import re
    import shutil

    removed = 0
    root = Path(tempfile.gettempdir())
    try:
        names = [n for n in os.listdir(root) if n.startswith(SCRATCH_PREFIX)]
    except OSError:
        return 0
    for name in names:
        found = re.match(rf"{SCRATCH_PREFIX}[a-z0-9]+-(\d+)-", name)
        if found and not _alive(int(found.group(1))) and (root / name).is_dir():
            shutil.rmtree(root / name, ignore_errors=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temp_files(folder: Path) -> int:
    """Remove atomic writes' `.NAME.XXXX.tmp` files under `folder`, left by a run killed mid-write. Only called
    with the folder's lock held, when no other deploytool writes there."""
    removed = 0
    for path in Path(folder).rglob(".*.tmp"):
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed += 1
    return removed

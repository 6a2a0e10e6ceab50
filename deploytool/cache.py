"""Files one run leaves for the next to reuse, each checked against its sha256 before it is reused.

The lowered .pte files (<output>/.cache/pte), the recorded runtime outputs (.cache/runs), the quantized programs
and the held-out references (<output>/quantized/) are written with `store`, which keeps the digest of the bytes
beside them (NAME.sha256), and read with `fetch`. A truncated, zero-byte, bit-flipped or hand-edited entry is a
miss: it is removed, one line says so, and the caller builds it again. A restored CI cache can make a run skip
work, never make it reuse bytes that are not the ones it wrote.

    >>> store(folder / "references.npz", data)
    >>> fetch(folder / "references.npz") == data
    True
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from deploytool.fsutil import atomic_write_bytes

log = logging.getLogger("deploytool")

DIGEST_SUFFIX = ".sha256"


def digest_path(path: Path) -> Path:
    """Where the sha256 of the entry at `path` is kept."""
    return path.with_name(path.name + DIGEST_SUFFIX)


def store(path: Path, data: bytes) -> Path:
    """Write `data` to `path` atomically, then its digest (last: an entry without one is incomplete)."""
    atomic_write_bytes(path, data)
    atomic_write_bytes(digest_path(path), hashlib.sha256(data).hexdigest().encode())
    return path


def fetch(path: Path) -> bytes | None:
    """The bytes stored at `path` when they match their digest; None when absent. A damaged entry is removed
    (with its digest) and logged once, so the caller rebuilds it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return _discard(path, f"unreadable ({exc.strerror})")
    try:
        recorded = digest_path(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return _discard(path, "no sha256 recorded beside it")
    if hashlib.sha256(data).hexdigest() != recorded:
        return _discard(path, "its bytes do not match the sha256 recorded when it was written")
    return data


def intact(path: Path) -> bool:
    """`path` holds an entry whose bytes match their digest (a damaged one is removed)."""
    return fetch(path) is not None


def files_of(path: Path) -> list[Path]:
    """The entry's files, for a caller that claims or removes them together."""
    return [path, digest_path(path)]


def _discard(path: Path, why: str) -> None:
    log.warning("ignoring the cached %s: %s; building it again", path, why)
    for file in files_of(path):
        file.unlink(missing_ok=True)
    return None

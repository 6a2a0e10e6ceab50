"""Watching processes from a test: whether a pid has ended, and waiting for a condition with a deadline."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def state(pid: int) -> str:
    """The process state letter from /proc (Z: a zombie, exited and not yet reaped); "" when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return ""


def ended(pid: int) -> bool:
    """Gone, or a zombie: it runs no more, only its reaper's wait is left."""
    return state(pid) in ("", "Z")


def wait_until(condition: Callable[[], bool], failure: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.05)

"""Lowering a program in a forked child while this process goes on: `lower_pte_cached` then finds its .pte.

Lowering is single-threaded Python (trained MobileNetV2: ~20 s), so on a machine with a second core the child
lowers the variant the search will probably keep while this process calibrates and judges the cheaper ones. The
child writes `<key>.lowering` (its pid) next to the .pte it is making; `lower_pte_cached` waits for it on a miss
of that key. The child starts at the lowest priority, so the parent's own work keeps its cores.

    >>> ahead = lower_in_background(lambda: session.quantized(DYNAMIC).program, cache_dir=out / PTE_CACHE)
    >>> ...  # judge static int8; lower_pte_cached(dynamic program) waits for the child instead of lowering
    >>> ahead.stop()
"""
from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("deploytool")

MARKER = ".lowering"  # <key>.lowering: a child is lowering the program with this key; holds its pid

_reaped: set[int] = set()  # children waited for: their pids may be reused, so they are never signalled again


@dataclass
class Background:
    pid: int
    cache_dir: Path
    label: str

    def stop(self) -> None:
        """End the child if it is still running (its .pte was not needed) and reap it; idempotent."""
        import signal

        if self.pid not in _reaped:
            os.kill(self.pid, signal.SIGKILL)  # an exited child is a zombie until reaped: the pid is still ours
            _reap(self.pid)
        for marker in self.cache_dir.glob(f"*{MARKER}"):  # a killed child leaves its marker and temp files
            if _pid_in(marker) == self.pid:
                marker.unlink(missing_ok=True)
                for partial in self.cache_dir.glob(f".{marker.stem}.*.tmp"):
                    partial.unlink(missing_ok=True)


def can_fork() -> bool:
    """Linux with a second usable core: fork is cheap and safe there for torch with one thread in the child."""
    return sys.platform.startswith("linux") and len(os.sched_getaffinity(0)) >= 2


def lower_in_background(build: Callable[[], Any], *, cache_dir: Path, label: str) -> Background | None:
    """Fork a child that builds a program with `build()` and lowers it into `cache_dir`; None where it cannot
    fork (see can_fork)."""
    if not can_fork():
        return None
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # else the child's first write would repeat the parent's buffered lines
    pid = os.fork()
    if pid:
        log.info("lowering %s in the background (pid %d) while the search goes on", label, pid)
        return Background(pid, cache_dir, label)
    os._exit(_child(build, cache_dir))


def wait_for(key: str, cache_dir: Path) -> None:
    """Block until a background child lowering the program `key` into `cache_dir` is done (no-op without one)."""
    marker = cache_dir / f"{key}{MARKER}"
    pid = _pid_in(marker)
    if pid is None:
        return
    started = time.perf_counter()
    log.info("waiting for the background lowering of this program (pid %d)", pid)
    _reap(pid)
    log.info("background lowering done; waited %.1f s", time.perf_counter() - started)


def _child(build: Callable[[], Any], cache_dir: Path) -> int:
    """The child's work; returns its exit code. Never returns into the parent's code (os._exit)."""
    try:
        import torch

        from deploytool.export.executorch import lower_pte_cached, program_fingerprint

        os.nice(19)
        torch.set_num_threads(1)  # OpenMP's pool does not survive fork; one thread never enters it
        logging.disable(logging.CRITICAL)  # the parent's output stays the parent's
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        program = build()
        marker = cache_dir / f"{program_fingerprint(program)}{MARKER}"
        cache_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(os.getpid()))
        try:
            lower_pte_cached(program, cache_dir=cache_dir)
        finally:
            marker.unlink(missing_ok=True)
        return 0
    except BaseException:  # the parent lowers it again and reports the error itself
        return 1


def _pid_in(marker: Path) -> int | None:
    try:
        return int(marker.read_text().strip())
    except (OSError, ValueError):
        return None


def _reap(pid: int) -> None:
    if pid in _reaped:
        return
    try:
        os.waitpid(pid, 0)
        _reaped.add(pid)
    except ChildProcessError:  # not our child: a marker another run left
        pass

"""Lowering a program in a forked child while this process goes on; the child's .pte lands in the lowering cache.

Lowering is single-threaded Python (trained MobileNetV2: ~20 s), so on a machine with a second core the child
lowers the variant the search will probably keep while this process calibrates and judges the cheaper ones.
Before lowering that variant itself, the search waits for the child (`Background.wait`): the same program gives
the same cache key, and export.executorch.lower_pte_cached then reads the child's .pte. A child whose .pte is not
needed is stopped. It runs at the parent's priority: a niced child starved on a busy machine while the parent
waited for it (one-command MobileNetV2 export 264 s at load 6, nice 10).

A stopped child leaves nothing behind: before writing a cache entry it sends the entry's paths up a pipe
(`claim`), and `stop` removes what was claimed. A child that finished first otherwise left an unused .pte.

    >>> ahead = lower_in_background(lambda: session.quantized(DYNAMIC).program,
    ...                             lambda program, claim: lower_pte_cached(program, cache_dir=cache, claim=claim),
    ...                             cache_dir=cache, label="dynamic int8")
    >>> ...            # judge static int8
    >>> ahead.wait()   # dynamic int8 is needed: its .pte is (or is about to be) in the cache
    >>> ahead.stop()   # when the search ends, whatever it kept
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploytool.lifetime import end_with_parent

log = logging.getLogger("deploytool")

Claim = Callable[[list[Path]], None]  # the child names the files it is about to write, before writing them


@dataclass
class Background:
    pid: int
    claims: int  # the pipe's read end: the paths the child claimed, a line each
    cache_dir: Path
    label: str
    started: float
    reaped: bool = False  # once reaped, the pid may belong to another process: never signal it again

    def wait(self) -> None:
        """Block until the child is done (its .pte written, or it failed and the caller lowers it)."""
        if not self.reaped:
            log.info("waiting for the background lowering of %s (started %.0f s ago)", self.label,
                     time.perf_counter() - self.started)
            self._reap()
            os.close(self.claims)  # what it wrote is wanted: its claims no longer matter

    def stop(self) -> None:
        """End the child if it still runs (its .pte was not needed), reap it, and remove every file it wrote."""
        if self.reaped:
            return
        os.kill(self.pid, signal.SIGKILL)  # an exited child stays a zombie until reaped: the pid is still ours
        self._reap()
        with os.fdopen(self.claims, encoding="utf-8") as claimed:  # the child is gone: this read ends at EOF
            for line in claimed.read().splitlines():
                Path(line).unlink(missing_ok=True)
        for partial in self.cache_dir.glob(".*.tmp"):  # fsutil's atomic writes in flight (the parent writes none now)
            partial.unlink(missing_ok=True)

    def _reap(self) -> None:
        os.waitpid(self.pid, 0)
        self.reaped = True


def can_fork() -> bool:
    """Linux with a second usable core: fork is cheap and safe there for torch with one thread in the child."""
    return sys.platform.startswith("linux") and len(os.sched_getaffinity(0)) >= 2


def lower_in_background(build: Callable[[], Any], lower: Callable[[Any, Claim], Any], *, cache_dir: Path,
                        label: str) -> Background | None:
    """Fork a child that runs `lower(build(), claim)` (lowering into `cache_dir`; `claim` before each new file);
    None where it cannot fork (see can_fork)."""
    if not can_fork():
        return None
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # else the child's first write would repeat the parent's buffered lines
    claims, claim_end = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid:
        os.close(claim_end)
        log.info("lowering %s in the background (pid %d) while the search goes on", label, pid)
        return Background(pid, claims, cache_dir, label, time.perf_counter())
    os.close(claims)
    os._exit(_child(build, lower, claim_end, parent))


def _child(build: Callable[[], Any], lower: Callable[[Any, Claim], Any], claim_end: int, parent: int) -> int:
    """The child's work; returns its exit code. Never returns into the parent's code (os._exit)."""

    def claim(paths: list[Path]) -> None:
        os.write(claim_end, "".join(f"{path}\n" for path in paths).encode())  # a few lines: within the pipe's buffer

    try:
        end_with_parent(parent)  # a killed deploytool leaves no lowering behind
        import torch

        torch.set_num_threads(1)  # OpenMP's pool does not survive fork; one thread never enters it
        logging.disable(logging.CRITICAL)  # the parent's output stays the parent's
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        lower(build(), claim)
        return 0
    except BaseException:  # the parent lowers it again and reports the error itself
        return 1

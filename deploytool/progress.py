"""A tiny progress line on stderr: redrawn in place on a terminal, a few plain lines otherwise."""
from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time


class Progress:
    def __init__(self, label: str, total: int | None, *, stream=None):
        self.label, self.total, self.done = label, total, 0
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.started = time.perf_counter()
        self._next_report = 0.25

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self.interactive:
            self.stream.write(f"\r{self._line()}")
            self.stream.flush()
        elif self.total and self.done / self.total >= self._next_report:
            self.stream.write(self._line() + "\n")
            self._next_report += 0.25

    def close(self) -> None:
        if self.interactive:
            self.stream.write(f"\r{self._line()}\n")

    def _line(self) -> str:
        elapsed = time.perf_counter() - self.started
        of = f"/{self.total}" if self.total else ""
        return f"{self.label}: {self.done}{of} ({elapsed:.1f} s)"


SILENCE_S = 5.0  # a stage that may run longer than this says so; shorter ones stay off the screen


@contextlib.contextmanager
def timed_stage(label: str, *, log: logging.Logger, every_s: float = 30.0, quiet_s: float = 0.0):
    """Log `label` when the block starts, every `every_s` seconds while it runs (a long lowering is not silent),
    and how long it took when it ends or fails. With `quiet_s`, nothing is said of a stage that ends sooner: the
    first line comes after `quiet_s` seconds, for the many short stages that are sometimes long.

    >>> with timed_stage("building pte for android", log=log):
    ...     write_pte(programs, folder)
    building pte for android
    building pte for android: done in 14.2 s
    """
    started = time.perf_counter()
    done = threading.Event()
    announced = threading.Event()

    def tick() -> None:
        if quiet_s and not done.wait(quiet_s):
            log.info("%s ...", label)
            announced.set()
        while not done.wait(every_s):
            log.info("%s: still running (%.0f s)", label, time.perf_counter() - started)

    if not quiet_s:
        log.info("%s", label)
        announced.set()
    ticker = threading.Thread(target=tick, name="deploytool-progress", daemon=True)
    ticker.start()
    try:
        yield
    except Exception:
        done.set()
        ticker.join()
        if announced.is_set():
            log.info("%s: failed after %.1f s", label, time.perf_counter() - started)
        raise
    finally:
        done.set()
        ticker.join()
    if announced.is_set():
        log.info("%s: done in %.1f s", label, time.perf_counter() - started)


@contextlib.contextmanager
def quiet_native_stderr(log: logging.Logger):
    """What native libraries write straight to file descriptor 2 (XNNPACK's cpuinfo warnings on every runtime
    start) is dropped, unless the run is verbose (-v). Python's own logging is untouched outside the block.

    >>> with quiet_native_stderr(log):
    ...     Runtime.get().load_program(data)
    """
    import os
    import tempfile

    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class Overdue(Exception):
    """A `deadline` block ran past its time; raised in the thread that ran it."""


@contextlib.contextmanager
def deadline(label: str, timeout_s: float):
    """Raise Overdue in this (the main) thread when the block runs longer than `timeout_s`: a user's forward() that
    hangs on one sample is stopped, and the message names `label` (the stage and the sample). It works like
    Ctrl-C, so a call stuck inside a native kernel is stopped when it returns to Python.

    >>> with deadline("the eager model on held-out sample calib.npy#7", 300):
    ...     module(*inputs)
    """
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = threading.Event()
    done = threading.Event()
    main = threading.main_thread().ident

    def watch() -> None:
        if not done.wait(timeout_s):
            fired.set()
            # A real signal to the main thread: it also wakes a blocking call (sleep, a lock wait), which
            # _thread.interrupt_main does not.
            signal.pthread_kill(main, signal.SIGINT)

    # A background job of a non-interactive shell (`deploytool ... &`, a test runner's workers) starts with SIGINT
    # ignored, and Python then installs no handler: the watchdog's signal would be lost and the hang go on.
    previous = signal.getsignal(signal.SIGINT)
    ignored = previous in (signal.SIG_IGN, signal.SIG_DFL, None)
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher = threading.Thread(target=watch, name="deploytool-deadline", daemon=True)
    watcher.start()
    try:
        yield
    except KeyboardInterrupt:
        if fired.is_set():
            raise Overdue(f"{label} did not finish within {timeout_s:g} s") from None
        raise
    finally:
        done.set()
        watcher.join()
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)

"""A tiny progress line on stderr: redrawn in place on a terminal, a few plain lines otherwise."""
from __future__ import annotations

import sys
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

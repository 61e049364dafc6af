"""A dependency-free progress bar on stderr, advanced between C++ calls."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, label: str, enabled: bool = True, stream=None):
        self.total, self.label, self.enabled = total, label, enabled
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.done = 0

    def advance(self, note: str = "") -> None:
        self.done += 1
        if not self.enabled:
            return
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        elapsed = time.perf_counter() - self.start
        bar = "#" * filled + "." * (width - filled)
        end = "\n" if self.done >= self.total else ""
        self.stream.write(f"\r{self.label} {self.done}/{self.total} [{bar}] {elapsed:6.1f}s {note}{end}")
        self.stream.flush()

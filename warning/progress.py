"""A progress bar for long commands: redrawn in place on a terminal, a line per quarter otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 28


def _human(n: int, unit: str) -> str:
    if unit != "B":
        return f"{n:,}"
    size = float(n)
    for suffix in ("B", "KB", "MB", "GB"):
        if size < 1024 or suffix == "GB":
            return f"{size:.0f} {suffix}" if suffix == "B" else f"{size:.1f} {suffix}"
        size /= 1024
    return f"{n} B"


class ProgressBar:
    """Shows `label [#####-----]  45%  12.3 MB / 27.0 MB  3.2 s` on stderr; silent when `enabled` is false."""

    def __init__(
        self, label: str, *, unit: str = "", stream: TextIO | None = None, enabled: bool = True
    ) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._last_quarter = -1
        self._drawn = False

    def update(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        fraction = min(done / total, 1.0) if total else None
        if self.tty:
            if now - self._last_draw < 0.1 and (fraction or 0) < 1.0:
                return
            self._last_draw = now
            self.stream.write("\r" + self._line(done, total, fraction, now) + "\x1b[K")
            self._drawn = True
        elif fraction is not None and int(fraction * 4) > self._last_quarter:
            self._last_quarter = int(fraction * 4)
            self.stream.write(self._line(done, total, fraction, now) + "\n")
        self.stream.flush()

    def _line(self, done: int, total: int | None, fraction: float | None, now: float) -> str:
        elapsed = f"{now - self._start:.1f} s"
        if fraction is None:
            return f"{self.label}  {_human(done, self.unit)}  {elapsed}"
        filled = int(fraction * _WIDTH)
        bar = "#" * filled + "-" * (_WIDTH - filled)
        amount = f"{_human(done, self.unit)} / {_human(total or 0, self.unit)}"
        return f"{self.label} [{bar}] {fraction * 100:5.1f}%  {amount}  {elapsed}"

    def close(self) -> None:
        if self.enabled and self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()

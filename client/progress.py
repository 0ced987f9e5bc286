"""A one-line progress bar on stderr, for downloads and waits that take a while.

Small on purpose (no tqdm dependency): it draws only when its stream is a
terminal, so pipes, logs and tests see nothing but the command's own output,
and it redraws at most ten times a second, so a fast download does not spend
its time writing escape codes.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

__all__ = ["ProgressBar", "human_bytes"]

_MIN_REDRAW_S = 0.1
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(count: float) -> str:
    """A byte count for people: ``532 B``, ``1.4 MiB``."""
    value = float(count)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError  # pragma: no cover - the loop returns at the last unit


class ProgressBar:
    """A progress line ``label [#####-----]  50% text`` redrawn in place.

    Parameters
    ----------
    label
        What is progressing, shown first.
    stream
        Where to draw; stderr by default, so stdout stays clean for scripts.
    enabled
        Whether to draw; by default only when ``stream`` is a terminal.
    width
        Characters of the bar itself.
    """

    def __init__(
        self, label: str, *, stream: TextIO | None = None, enabled: bool | None = None, width: int = 30
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _isatty(self.stream) if enabled is None else enabled
        self.width = width
        self._last_draw = 0.0
        self._drawn = False

    def update(self, fraction: float | None, text: str = "", *, force: bool = False) -> None:
        """Show ``fraction`` (0-1; None when the total is unknown) and a short text."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < _MIN_REDRAW_S:
            return
        self._last_draw = now
        if fraction is None:
            bar, percent = "?" * self.width, "   ?"
        else:
            clamped = min(max(fraction, 0.0), 1.0)
            filled = round(clamped * self.width)
            bar, percent = "#" * filled + "-" * (self.width - filled), f"{clamped * 100:3.0f}%"
        line = f"{self.label} [{bar}] {percent}" + (f" {text}" if text else "")
        self.stream.write(f"\r\x1b[2K{line}")
        self.stream.flush()
        self._drawn = True

    def bytes(self, done: int, total: int | None) -> None:
        """Show a download's progress in bytes (a callback for `UWSClient.download`)."""
        shown = human_bytes(done) + (f" of {human_bytes(total)}" if total else "")
        self.update(done / total if total else None, shown, force=total is not None and done >= total)

    def close(self) -> None:
        """End the line, so that what follows starts on a new one."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or minimal stream
        return False

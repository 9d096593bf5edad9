"""A one-line progress display: a live bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Show updates, validation error and active clients while a run trains.

    Parameters
    ----------
    total_updates : int or None
        The stopping rule's max_updates (for the bar), if any.
    mode : {"auto", "on", "off"}
        ``auto``: a redrawn bar on a terminal, a line every ``log_every_s`` otherwise.
    """

    def __init__(
        self,
        total_updates: int | None,
        *,
        mode: str = "auto",
        stream: TextIO | None = None,
        log_every_s: float = 5.0,
    ) -> None:
        self.total = total_updates
        self.stream = stream or sys.stderr
        self.live = mode == "on" or (mode == "auto" and self.stream.isatty())
        self.quiet = mode == "off"
        self.log_every_s = log_every_s
        self._last_log = -float("inf")
        self._start = time.monotonic()
        self._last = (0, 0.0)

    def update(self, updates: int, validation_error: float, clients: int) -> None:
        """Redraw (or log) with the latest aggregate numbers."""
        if self.quiet:
            return
        now = time.monotonic()
        elapsed = now - self._start
        last_updates, last_time = self._last
        rate = (updates - last_updates) / (elapsed - last_time) if elapsed > last_time else 0.0
        self._last = (updates, elapsed)
        if self.total:
            fraction = min(updates / self.total, 1.0)
            bar = "#" * int(24 * fraction) + "-" * (24 - int(24 * fraction))
            head = f"[{bar}] {updates:,}/{self.total:,} updates"
        else:
            head = f"{updates:,} updates"
        line = (
            f"{head} | validation error {100 * validation_error:5.2f}% | clients {clients:3d} | "
            f"{rate:7,.0f} upd/s | {elapsed:6.1f} s"
        )
        if self.live:
            self.stream.write("\r" + line)
            self.stream.flush()
        elif now - self._last_log >= self.log_every_s:
            self._last_log = now
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        """End the live line."""
        if self.live and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()

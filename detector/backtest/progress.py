"""The backtest's progress on stderr: a bar redrawn in place on a terminal, or a plain
line every ``every_s`` seconds of wall time (and at the end) when stderr is a file or a
pipe, so CI logs get a few lines instead of thousands of carriage returns.

The wall clock is injected (``monotonic``); this module never sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

BAR = 30


class Progress:
    def __init__(
        self,
        stream: TextIO,
        *,
        total_ms: int,
        label: str,
        is_tty: bool | None = None,
        every_s: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.total_ms = max(1, total_ms)
        self.label = label
        self.is_tty = stream.isatty() if is_tty is None else is_tty
        self.every_s = every_s
        self.monotonic = monotonic
        self._t0 = monotonic()
        self._last = -float("inf")
        self._drawn = False

    def _text(self, done_ms: int, detail: str) -> str:
        frac = min(1.0, max(0.0, done_ms / self.total_ms))
        days = done_ms / 86_400_000
        total_days = self.total_ms / 86_400_000
        return (
            f"{self.label}: {frac:4.0%} ({days:.1f} of {total_days:.1f} days, "
            f"{self.monotonic() - self._t0:.0f}s){' ' + detail if detail else ''}"
        )

    def update(self, done_ms: int, detail: str = "") -> None:
        """``done_ms`` of the range has been replayed."""
        now = self.monotonic()
        if self.is_tty:
            frac = min(1.0, max(0.0, done_ms / self.total_ms))
            full = round(frac * BAR)
            self.stream.write(
                f"\r[{'#' * full}{'.' * (BAR - full)}] {self._text(done_ms, detail)}\x1b[K"
            )
            self.stream.flush()
            self._drawn = True
        elif now - self._last >= self.every_s:
            self.stream.write(self._text(done_ms, detail) + "\n")
            self.stream.flush()
            self._last = now

    def close(self, detail: str = "") -> None:
        if self.is_tty:
            if self._drawn:
                self.stream.write("\r\x1b[K")
            self.stream.write(self._text(self.total_ms, detail) + "\n")
        else:
            self.stream.write(self._text(self.total_ms, detail) + "\n")
        self.stream.flush()

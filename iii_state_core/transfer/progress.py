"""Show migration progress: a redrawn bar on a terminal, plain timestamped lines otherwise."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import TextIO

from .errors import show
from .migration import Progress

_BAR = 24
_REDRAW = 0.1  # seconds between redraws of the terminal bar


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class ProgressDisplay:
    """A :data:`~iii_state_core.transfer.migration.ProgressCallback` that writes to ``stream``.

    :param tty: redraw one line with a bar (default: whether ``stream`` is a terminal).
    :param interval: seconds between plain lines when not a terminal (``0``: every page).
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        tty: bool | None = None,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.interval = interval
        self._clock = clock
        self._phase: str | None = None
        self._phase_start = 0.0
        self._phase_done = 0
        self._last_shown = float("-inf")
        self._drawn = False

    def rate(self, done: int) -> float:
        """Entries per second in the current phase (counting only this run's entries)."""
        elapsed = self._clock() - self._phase_start
        return (done - self._phase_done) / elapsed if elapsed > 0 else 0.0

    def __call__(self, event: Progress) -> None:
        now = self._clock()
        first = event.phase != self._phase
        if first:
            self._end_line()
            self._phase, self._phase_start, self._phase_done = event.phase, now, event.done
        wait = _REDRAW if self.tty else self.interval
        if not (first or event.finished or now - self._last_shown >= wait):
            return
        self._last_shown = now
        if self.tty:
            self._draw(event)
            if event.finished:
                self._end_line()
        else:
            self.stream.write(self.line(event) + "\n")
            self.stream.flush()

    def _numbers(self, event: Progress) -> tuple[str, str]:
        """The rate and ETA texts; empty until this phase has moved (no "0 entries/s")."""
        rate = self.rate(event.done)
        if rate <= 0:
            return "", ""
        eta = ""
        if event.total and not event.finished:
            eta = f"ETA {_clock(max(0, event.total - event.done) / rate)}"
        return f"{rate:,.0f} entries/s", eta

    def line(self, event: Progress) -> str:
        """The plain log line for an event (also what a non-terminal gets)."""
        rate, eta = self._numbers(event)
        if event.total is None:
            text = f"{event.phase}: {event.done} entries read"
        else:
            share = 100 * min(event.done, event.total) / event.total if event.total else 100.0
            text = f"{event.phase}: {event.done}/{event.total} entries ({share:.1f}%)"
        for part in (rate, eta):
            if part:
                text += f", {part}"
        if event.finished:
            text += ", done"
        elif event.scope is not None:
            text += f", scope {show(event.scope, 40)}"
        return text

    def _draw(self, event: Progress) -> None:
        rate, eta = self._numbers(event)
        if event.total:
            filled = int(_BAR * min(event.done, event.total) / event.total)
            counts = f"[{'#' * filled}{'.' * (_BAR - filled)}] {event.done:,}/{event.total:,}"
        else:
            counts = f"{event.done:,} entries"
        parts = [f"{event.phase:<6}", counts, rate, eta]
        if event.scope is not None and not event.finished:
            parts.append(show(event.scope, 30))
        width = shutil.get_terminal_size((80, 24)).columns - 1
        text = "  ".join(p for p in parts if p)[:width]
        self.stream.write("\r" + text.ljust(width))
        self.stream.flush()
        self._drawn = True

    def _end_line(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def close(self) -> None:
        """Finish a half-drawn bar line so later messages start on a fresh line."""
        self._end_line()

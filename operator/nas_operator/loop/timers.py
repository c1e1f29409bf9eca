"""Time in a search: the clock of running time, the deadline, and the attempts' watchdogs.

Why apart from the loop: these are asyncio timer handles and arithmetic on
seconds; the loop decides what an expiry means (``on_deadline``, ``on_silent``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

WATCHDOG_GRACE = 30.0
"""Seconds past ``activeDeadlineSeconds`` before the loop itself ends a silent attempt."""


@dataclass
class Clock:
    """Seconds the search has been running (suspended time excluded)."""

    active_seconds: float = 0.0
    running_since: float | None = None

    def run(self, now: float | None = None) -> None:
        if self.running_since is None:
            self.running_since = time.time() if now is None else now

    def pause(self) -> None:
        if self.running_since is not None:
            self.active_seconds += max(0.0, time.time() - self.running_since)
            self.running_since = None

    def elapsed(self) -> float:
        extra = time.time() - self.running_since if self.running_since is not None else 0.0
        return self.active_seconds + max(0.0, extra)


class Timers:
    """The deadline timer and one watchdog per active attempt."""

    def __init__(self, on_deadline: Callable[[], None],
                 on_silent: Callable[[str, int], None], grace: float = WATCHDOG_GRACE) -> None:
        self.on_deadline = on_deadline
        self.on_silent = on_silent
        self.grace = grace
        self._deadline: asyncio.TimerHandle | None = None
        self._watchdogs: dict[str, asyncio.TimerHandle] = {}

    # --- deadline -----------------------------------------------------------------
    def schedule_deadline(self, seconds: float | None, clock: Clock) -> None:
        """Fire ``on_deadline`` once ``clock`` reaches ``seconds`` (None: no deadline)."""
        self.cancel_deadline()
        if seconds is None or clock.running_since is None:
            return
        remaining = seconds - clock.elapsed()
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(max(0.0, remaining), self._deadline_hit, seconds, clock)

    def _deadline_hit(self, seconds: float, clock: Clock) -> None:
        if clock.elapsed() + 1e-3 < seconds:  # the timer ran early
            self.schedule_deadline(seconds, clock)
            return
        self.on_deadline()

    def cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    # --- watchdogs ----------------------------------------------------------------
    def arm(self, trial: str, attempt: int, started: float | None, limit: int | None) -> None:
        """Watch an attempt that must end ``limit`` seconds after ``started`` (plus the grace)."""
        if limit is None:
            return
        self.clear(trial)
        begun = started or time.time()
        delay = max(0.0, begun + limit + self.grace - time.time())
        loop = asyncio.get_running_loop()
        self._watchdogs[trial] = loop.call_later(delay, self._silent, trial, attempt)

    def _silent(self, trial: str, attempt: int) -> None:
        self._watchdogs.pop(trial, None)
        self.on_silent(trial, attempt)

    def clear(self, trial: str) -> None:
        handle = self._watchdogs.pop(trial, None)
        if handle is not None:
            handle.cancel()

    def cancel_all(self) -> None:
        self.cancel_deadline()
        for handle in self._watchdogs.values():
            handle.cancel()
        self._watchdogs.clear()

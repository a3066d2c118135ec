"""Time, injected.

Every time-dependent path in portalauth reads a :class:`Clock`: challenge expiry, session idle and
absolute limits, throttles, flow-token age. Times are POSIX seconds as ``float`` (UTC by
definition), never naive datetimes and never ``time.monotonic()``, so they persist and compare the
same way in every store.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FrozenClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Something that says what time it is, in POSIX seconds."""

    def now(self) -> float: ...


class SystemClock:
    """The wall clock."""

    def now(self) -> float:
        return time.time()

    def __repr__(self) -> str:
        return "SystemClock()"


class FrozenClock:
    """A clock that moves only when told to: for tests and simulations.

    Thread-safe, so race tests can share one.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock by ``seconds`` (negative moves it back) and return the new time."""
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, when: float) -> None:
        with self._lock:
            self._now = float(when)

    def __repr__(self) -> str:
        return f"FrozenClock({self._now!r})"

"""Throttles: how often a client, a destination or a portal may do something.

Limits are written in the ``limits`` library's notation (``"20/minute"``, ``"5/hour"``) and
counted with its fixed-window strategy. The counts live in the portalauth store (through
:class:`StoreCounters`, a ``limits`` storage over :meth:`Store.incr_counter`), so every app server
sharing a store shares the limits, and the injected clock decides the windows (tests move time).

Keys are always canonical (an e-mail key, an E.164 number, a client's
:func:`~portalauth.client.ip_key`), so case, Unicode and format variants of one identifier share
one bucket (R10).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import limits
from limits.storage import Storage
from limits.strategies import FixedWindowRateLimiter

from .clock import Clock
from .errors import ConfigError, Throttled
from .events import Emitter
from .stores.base import Store

__all__ = ["StoreCounters", "Throttles"]


class StoreCounters(Storage):
    """A ``limits`` storage that keeps its counters in a portalauth :class:`Store`."""

    STORAGE_SCHEME = None

    def __init__(self, store: Store, clock: Clock) -> None:
        super().__init__()
        self._store = store
        self._clock = clock

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ()

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = self._clock.now()
        count, _ = self._store.incr_counter(f"rl:{key}", amount, now + expiry, now)
        return count

    def get(self, key: str) -> int:
        return self._store.get_counter(f"rl:{key}", self._clock.now())[0]

    def get_expiry(self, key: str) -> float:
        count, expires_at = self._store.get_counter(f"rl:{key}", self._clock.now())
        return expires_at if count else self._clock.now()

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        return None

    def clear(self, key: str) -> None:
        self._store.clear_counter(f"rl:{key}")


def parse_limit(text: object) -> tuple[limits.RateLimitItem, ...]:
    """``"5/hour"`` or ``"3/minute;20/hour"`` → limit items (all of them apply); a malformed
    limit is a :class:`ConfigError`."""
    if not isinstance(text, str):
        raise ConfigError(f"A rate limit is text such as '5/hour', not {type(text).__name__}.")
    try:
        items = tuple(limits.parse_many(text))
    except ValueError:
        items = ()
    if not items:
        raise ConfigError(f"Not a rate limit: {text!r} (write e.g. '5/hour').")
    return items


def _escape(part: str) -> str:
    # limits joins key parts with "/": escape it (and the escape character) so that
    # ("a/b", "c") and ("a", "b/c") can never share a bucket.
    return part.replace("%", "%25").replace("/", "%2F")


class _Window(NamedTuple):
    """One fixed window of a limit, with the parts of its counter key worked out once."""

    amount: int
    expiry: int
    namespace: str
    tail: str

    @classmethod
    def of(cls, item: limits.RateLimitItem) -> _Window:
        tail = f"{item.amount}/{item.multiples}/{item.GRANULARITY.name}"
        return cls(item.amount, item.get_expiry(), item.namespace, tail)


class Throttles:
    """Named limits, checked and counted against canonical keys."""

    def __init__(self, store: Store, clock: Clock, emitter: Emitter) -> None:
        self._clock = clock
        self._emitter = emitter
        self._storage = StoreCounters(store, clock)
        self._store = store
        self._limiter = FixedWindowRateLimiter(self._storage)
        self._parsed: dict[str, tuple[limits.RateLimitItem, ...]] = {}
        self._windows: dict[str, tuple[_Window, ...]] = {}

    def _items(self, limit: str) -> tuple[limits.RateLimitItem, ...]:
        items = self._parsed.get(limit) if isinstance(limit, str) else None
        if items is None:
            items = self._parsed[limit] = parse_limit(limit)
        return items

    def hit(self, limit: str, *key: str, cost: int = 1, **event: Any) -> None:
        """Count one use of ``key`` against ``limit``; raise :class:`Throttled` once it is over.

        The use is counted even when refused, so hammering a throttled key keeps it throttled.
        ``event`` fields (portal, method, ip...) go on the ``throttled`` event.
        """
        windows = self._windows.get(limit) if isinstance(limit, str) else None
        if windows is None:
            windows = self._windows[limit] = tuple(map(_Window.of, self._items(limit)))
        parts = [_escape(k) for k in key]
        now = self._clock.now()
        retry = 0
        for window in windows:
            # What limits' FixedWindowRateLimiter.hit does, on the same counter key, without
            # rebuilding the key and re-reading the expiry through its storage layer per call.
            count, reset = self._store.incr_counter(
                "rl:" + "/".join([window.namespace, *parts, window.tail]),
                cost,
                now + window.expiry,
                now,
            )
            if count > window.amount:
                retry = max(retry, 1, math.ceil(reset - now))
        if retry:
            self._emitter.emit(
                "throttled", detail={"limit": limit, "bucket": key[0] if key else ""}, **event
            )
            raise Throttled(retry_after=retry)

    def test(self, limit: str, *key: str) -> bool:
        """Whether one more use of ``key`` would be allowed (counts nothing)."""
        parts = [_escape(k) for k in key]
        return all(self._limiter.test(item, *parts) for item in self._items(limit))

    def clear(self, limit: str, *key: str) -> None:
        parts = [_escape(k) for k in key]
        for item in self._items(limit):
            self._limiter.clear(item, *parts)

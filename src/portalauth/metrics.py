"""SMS conversion: codes verified per code sent, by country and by number prefix (R17).

SMS pumping shows as texts to number ranges that never answer: many codes sent to one country
or one prefix (a number without its last four digits), few verified. :class:`SmsConversion` is
a plugin that listens to the events every SMS code already produces (``message.sent`` with the
SMS's ``country`` and ``prefix``; ``verification.succeeded`` with ``channel="sms"``) and keeps the
two counts in memory, per process::

    conversion = SmsConversion()
    auth = Auth(keys, store, sms=..., plugins=[conversion])
    ...
    for row in conversion.rows(min_sent=20):
        if row.ratio < 0.2:
            alert(row)

A verification is credited to the route of the last SMS code sent to that identity. Counts are
per process and start at zero; export them to your metrics system for a fleet-wide view.
"""

from __future__ import annotations

import threading
from collections import Counter

from attrs import frozen

from .events import Event
from .hooks import hookimpl

__all__ = ["ConversionRow", "SmsConversion"]


@frozen
class ConversionRow:
    """One route: a country (``prefix=None``) or a number prefix within it."""

    country: str
    prefix: str | None
    sent: int
    verified: int

    @property
    def ratio(self) -> float:
        """Verified per sent (0.0 when nothing was sent)."""
        return self.verified / self.sent if self.sent else 0.0


class SmsConversion:
    """A ``portalauth_event`` plugin counting SMS codes sent and verified per route."""

    def __init__(self, *, max_pending: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._sent: Counter[tuple[str, str | None]] = Counter()
        self._verified: Counter[tuple[str, str | None]] = Counter()
        # identity -> route of its last SMS code, bounded so a flood cannot grow it forever.
        self._pending: dict[str, tuple[str, str]] = {}
        self._max_pending = max_pending

    @hookimpl
    def portalauth_event(self, event: Event) -> None:
        detail = event.detail
        if event.kind == "message.sent" and detail.get("channel") == "sms":
            route = (str(detail.get("country", "ZZ")), str(detail.get("prefix", "")))
            with self._lock:
                self._sent[(route[0], None)] += 1
                self._sent[route] += 1
                if event.identity_id:
                    self._pending.pop(event.identity_id, None)
                    self._pending[event.identity_id] = route
                    if len(self._pending) > self._max_pending:
                        del self._pending[next(iter(self._pending))]
        elif event.kind == "verification.succeeded" and detail.get("channel") == "sms":
            with self._lock:
                route = self._pending.pop(event.identity_id or "", ("", ""))
                if route[0]:
                    self._verified[(route[0], None)] += 1
                    self._verified[route] += 1

    def rows(self, *, min_sent: int = 1) -> list[ConversionRow]:
        """Every route with at least ``min_sent`` codes sent, worst ratio first."""
        with self._lock:
            rows = [
                ConversionRow(country, prefix, sent, self._verified[(country, prefix)])
                for (country, prefix), sent in self._sent.items()
                if sent >= min_sent
            ]
        return sorted(rows, key=lambda r: (r.ratio, -r.sent, r.country, r.prefix or ""))

    def __repr__(self) -> str:
        return f"SmsConversion(<{len(self._sent)} routes>)"

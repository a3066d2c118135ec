"""Typed audit events.

Every state change emits one :class:`Event` through the ``portalauth_event`` hook: a challenge
issued, a verification failed, a sign-in, a session revoked, a throttle tripped... An event never
carries a secret (codes, PINs, tokens, passwords, hashes); ``detail`` holds only small, safe
values such as a reason class or a masked destination. Identifiers typed by a client are never put
in events raw: unknown ones appear as a keyed digest so logs cannot become an enumeration list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from attrs import field, frozen

from .clock import Clock

__all__ = ["EVENT_KINDS", "Emitter", "Event"]

_log = logging.getLogger("portalauth.events")

#: Every kind of event the core and the built-in strategies emit.
EVENT_KINDS = frozenset(
    {
        "portal.saved",
        "identity.added",
        "identity.updated",
        "identity.disabled",
        "identity.deleted",
        "challenge.issued",
        "challenge.revoked",
        "share_code.issued",
        "share_code.revoked",
        "invitation.sent",
        "pin.issued",
        "pin.revoked",
        "message.sent",
        "message.failed",
        "verification.failed",
        "verification.succeeded",
        "throttled",
        "signed_in",
        "session.created",
        "session.revoked",
        "password.set",
        "password.upgraded",
        "flow.started",
    }
)


def _safe_detail(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


@frozen(kw_only=True)
class Event:
    """One audit event. ``at`` is POSIX seconds (UTC)."""

    kind: str
    at: float
    portal: str | None = None
    identity_id: str | None = None
    method: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    actor: str | None = None
    detail: Mapping[str, Any] = field(factory=dict, converter=_safe_detail)


class Emitter:
    """Builds events and hands them to a sink (the ``portalauth_event`` hook).

    Emitting never fails the operation that emits: an audit sink that raises is logged (without
    the event's detail) and ignored, so a broken log shipper cannot block sign-ins.
    """

    __slots__ = ("_clock", "_sink")

    def __init__(self, sink: Callable[[Event], None], clock: Clock) -> None:
        self._sink = sink
        self._clock = clock

    def emit(self, kind: str, **fields: Any) -> Event:
        event = Event(kind=kind, at=self._clock.now(), **fields)
        try:
            self._sink(event)
        except Exception:  # an audit sink must not break authentication
            _log.exception("portalauth_event hook raised for %s", kind)
        return event

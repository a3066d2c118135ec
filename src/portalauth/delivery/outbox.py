"""The outbox: messages recorded in the store instead of (or as well as) being delivered.

In simulate mode a portal sends nothing: every message is kept here, listable per portal and per
identity, so staff can read a simulated code to a client as the eCourtDate help page describes, and
tests can read codes without ever reading a secret from the store (the store holds digests only).
An :class:`Outbox` is also what portalauth uses for a channel that has no sender configured.
"""

from __future__ import annotations

from ..clock import Clock
from ..config import PortalSettings
from ..records import Message
from ..stores.base import Store

__all__ = ["Outbox"]


class Outbox:
    """Records messages in the store: a :class:`~portalauth.delivery.base.Sender` for any
    channel."""

    def __init__(self, store: Store, clock: Clock, channel: str = "email") -> None:
        self._store = store
        self._clock = clock
        self.channel = channel

    def send(self, message: Message, *, portal: PortalSettings) -> None:
        """Record ``message`` as it is (the dispatcher marks it simulated)."""
        self._store.add_message(message)

    def messages(
        self, portal: str, *, identity: str | None = None, limit: int = 100
    ) -> list[Message]:
        """The portal's recorded messages, newest first (optionally only one identity's)."""
        return self._store.list_messages(portal, identity_id=identity, limit=limit)

    def latest(self, portal: str, *, identity: str | None = None) -> Message | None:
        found = self._store.list_messages(portal, identity_id=identity, limit=1)
        return found[0] if found else None

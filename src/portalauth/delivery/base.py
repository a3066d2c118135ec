"""The sender protocol: how a rendered message leaves portalauth.

A sender delivers one :class:`~portalauth.records.Message` on one channel (``"email"`` or
``"sms"``). It raises :class:`~portalauth.errors.DeliveryFailed` when the provider refuses or
cannot be reached; the caller then withdraws the secret the message carried, so a failed
delivery never leaves a usable challenge behind.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..config import PortalSettings
from ..records import Message

__all__ = ["Sender"]


@runtime_checkable
class Sender(Protocol):
    """Delivers messages on one channel."""

    #: ``"email"`` or ``"sms"``.
    channel: str

    def send(self, message: Message, *, portal: PortalSettings) -> None:
        """Deliver ``message`` for ``portal`` (whose name brands it) or raise ``DeliveryFailed``."""

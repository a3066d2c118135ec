"""Dispatch: render a message with the portal's branding and hand it to the right place.

Strategies never talk to a sender. They ask the :class:`Dispatcher` to send a template to an
identity on a channel; it renders the template (Jinja2, or a ``portalauth_build_message`` plugin),
picks the destination **from the identity record** (never from what a client typed), refuses
contacts that are missing, opted out or invalid, and then either records the message in the outbox
(simulate mode, or no sender configured for the channel) or delivers it. A delivery failure raises
:class:`~portalauth.errors.DeliveryFailed`; the caller withdraws the secret the message carried.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from ..clock import Clock
from ..config import PortalSettings
from ..errors import DeliveryFailed
from ..events import Emitter
from ..records import Identity, Message
from ..rendering import Renderer
from .base import Sender
from .outbox import Outbox

__all__ = ["Dispatcher"]

CHANNELS = ("email", "sms")


class Dispatcher:
    """Renders and sends (or records) messages to identities."""

    def __init__(
        self,
        renderer: Renderer,
        outbox: Outbox,
        senders: Mapping[str, Sender | None],
        clock: Clock,
        emitter: Emitter,
    ) -> None:
        self._renderer = renderer
        self._outbox = outbox
        self._senders = dict(senders)
        self._clock = clock
        self._emitter = emitter

    def can_reach(self, identity: Identity, channel: str) -> bool:
        """Whether ``identity`` has a usable (present, valid, opted-in) contact on ``channel``."""
        if channel == "email":
            return identity.email_usable
        if channel == "sms":
            return identity.phone_usable
        return False

    def notify_address(
        self,
        address: str,
        portal: PortalSettings,
        *,
        template: str,
        context: Mapping[str, Any],
        purpose: str,
        method: str | None = None,
    ) -> Message:
        """Send a notice to an address that belongs to no identity (the opt-in "no account
        here" mail). ``address`` must be the checked address from
        :func:`~portalauth.contacts.normalize_email`; it never carries a secret."""
        stand_in = Identity(id="", portal=portal.slug, name="", email=address)
        return self.send(
            stand_in,
            portal,
            channel="email",
            template=template,
            context=context,
            purpose=purpose,
            method=method,
        )

    def send(
        self,
        identity: Identity,
        portal: PortalSettings,
        *,
        channel: str,
        template: str,
        context: Mapping[str, Any],
        purpose: str,
        method: str | None = None,
    ) -> Message:
        """Render ``template`` and send it to the identity's contact on ``channel``.

        Raises :class:`DeliveryFailed` if the contact is not usable or the sender fails.
        """
        to = identity.email if channel == "email" else identity.phone
        if to is None or not self.can_reach(identity, channel):
            raise DeliveryFailed("This contact cannot receive messages.")
        rendered = self._renderer.render(
            template,
            channel,
            {
                "portal_name": portal.name,
                "support_phone": portal.support_phone,
                "base_url": portal.base_url,
                "identity_name": identity.name,
                **context,
            },
            portal,
        )
        sender = self._senders.get(channel)
        simulated = portal.simulate or sender is None
        message = Message(
            id=secrets.token_urlsafe(12),
            portal=portal.slug,
            identity_id=identity.id or None,
            channel=channel,
            to=to,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            purpose=purpose,
            created_at=self._clock.now(),
            simulated=simulated,
        )
        try:
            (self._outbox if sender is None or simulated else sender).send(message, portal=portal)
        except DeliveryFailed:
            self._emitter.emit(
                "message.failed",
                portal=portal.slug,
                identity_id=identity.id,
                method=method,
                detail={"channel": channel, "purpose": purpose},
            )
            raise
        self._emitter.emit(
            "message.sent",
            portal=portal.slug,
            identity_id=identity.id,
            method=method,
            detail={"channel": channel, "purpose": purpose, "simulated": simulated},
        )
        return message

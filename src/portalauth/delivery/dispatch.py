"""Dispatch: render a message with the portal's branding and hand it to the right place.

Strategies never talk to a sender. They ask the :class:`Dispatcher` to send a template to an
identity on a channel; it renders the template (Jinja2, or a ``portalauth_build_message`` plugin),
picks the destination **from the identity record** (never from what a client typed), refuses
contacts that are missing, opted out or invalid, and then either records the message in the outbox
(simulate mode, or no sender configured for the channel) or delivers it.

Client-facing messages go through the :mod:`delivery queue <portalauth.delivery.queue>`, and a
request for an unknown identifier queues a no-op job through :meth:`Dispatcher.send_nothing`, so
known and unknown identifiers cost the request the same work (R32). A failed delivery emits
``message.failed`` and calls the caller's ``on_failure`` (which withdraws the secret the message
carried); with an inline queue it also raises :class:`~portalauth.errors.DeliveryFailed` to the
caller. Staff-facing sends (invitations) pass ``wait=True``: they run at once and raise, so
staff learn that an invitation did not go out.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any

from ..clock import Clock
from ..config import PortalSettings
from ..contacts import sms_route
from ..errors import DeliveryFailed
from ..events import Emitter
from ..records import Identity, Message
from ..rendering import Renderer
from .base import Sender
from .outbox import Outbox
from .queue import DeliveryQueue, InlineQueue

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
        queue: DeliveryQueue | None = None,
    ) -> None:
        self._renderer = renderer
        self._outbox = outbox
        self._senders = dict(senders)
        self._clock = clock
        self._emitter = emitter
        self.queue: DeliveryQueue = queue if queue is not None else InlineQueue()

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
        on_failure: Callable[[], object] | None = None,
        wait: bool = False,
    ) -> Message:
        """Render ``template`` and send it to the identity's contact on ``channel``.

        Raises :class:`DeliveryFailed` at once if the contact is not usable. The delivery itself
        runs on the queue (``wait=True``: now, in this thread); if it fails, ``message.failed``
        is emitted, ``on_failure`` is called, and :class:`DeliveryFailed` reaches the caller
        unless the queue runs the delivery later.
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
        target: Sender = self._outbox if sender is None or simulated else sender
        detail = {"channel": channel, "purpose": purpose}
        if channel == "sms":
            # Where the SMS went, for toll-fraud monitoring (R13, R17); never the whole number.
            detail["country"], detail["prefix"] = sms_route(to)
        raises = wait or not self.queue.deferred

        def deliver() -> None:
            try:
                target.send(message, portal=portal)
            except DeliveryFailed:
                self._emitter.emit(
                    "message.failed",
                    portal=portal.slug,
                    identity_id=identity.id,
                    method=method,
                    detail=detail,
                )
                if on_failure is not None:
                    on_failure()
                if raises:
                    raise
                return
            self._emitter.emit(
                "message.sent",
                portal=portal.slug,
                identity_id=identity.id,
                method=method,
                detail={**detail, "simulated": simulated},
            )

        if wait:
            deliver()
        else:
            self.queue.put(deliver)
        return message

    def send_nothing(
        self,
        portal: PortalSettings,
        *,
        channel: str,
        template: str,
        context: Mapping[str, Any],
    ) -> None:
        """The work of :meth:`send` for an identifier that has no account, minus the message:
        render the same template and queue a job that sends nothing (R32)."""
        self._renderer.render(
            template,
            channel,
            {
                "portal_name": portal.name,
                "support_phone": portal.support_phone,
                "base_url": portal.base_url,
                "identity_name": "",
                **context,
            },
            portal,
        )
        self.queue.put(_nothing)


def _nothing() -> None:
    """A no-op delivery job."""

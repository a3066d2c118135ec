"""Built-in senders, offered through the ``portalauth_add_senders`` hook like any plugin's.

``smtp://user:password@host:587?from=portal@firm.example`` (STARTTLS) and ``smtps://...`` (TLS
from the start) deliver e-mail. ``twilio://SID:TOKEN@api.twilio.com?from=%2B15005550006``
delivers SMS through a Twilio-shaped HTTP API (``pip install portalauth[sms]``; ``twilio+http://``
only for a loopback test server). Without a sender for a channel, messages are recorded in the
outbox (simulate mode).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..hooks import hookimpl
from .base import Sender

__all__ = ["Sender"]


def _smtp(uri: str) -> Sender:
    from .smtp import SmtpSender

    return SmtpSender.from_uri(uri)


def _twilio(uri: str) -> Sender:
    from .sms import TwilioSmsSender

    return TwilioSmsSender.from_uri(uri)


@hookimpl
def portalauth_add_senders() -> Mapping[str, Callable[[str], Sender]]:
    return {"smtp": _smtp, "smtps": _smtp, "twilio": _twilio, "twilio+http": _twilio}

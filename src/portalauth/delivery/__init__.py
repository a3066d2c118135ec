"""Built-in senders, offered through the ``portalauth_add_senders`` hook like any plugin's.

``smtp://user:password@host:587?from=portal@firm.example`` (STARTTLS) and ``smtps://...`` (TLS
from the start) deliver e-mail; without a sender for a channel, messages are recorded in the
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


@hookimpl
def portalauth_add_senders() -> Mapping[str, Callable[[str], Sender]]:
    return {"smtp": _smtp, "smtps": _smtp}

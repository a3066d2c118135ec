"""Links: e-mailed URLs that carry a one-time token (sign-in, invitation, reset, confirmation).

A link token has 256 bits (R3), is stored only as a keyed lookup digest, and is read only in its
exact issued form. Looking at a link (:func:`link_status`) has no side effect, so a mail scanner's
GET changes nothing; using it is a separate, atomic consume. Links are always built on the portal's
configured ``base_url``, never on a host taken from a request (R37).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote

from attrs import frozen

from .challenges import Challenges
from .config import PortalSettings
from .errors import ConfigError, DeliveryFailed, NotReady
from .records import ChallengeRecord, Identity
from .tokens import is_canonical

if TYPE_CHECKING:
    from .auth import Auth

__all__ = ["LinkStatus", "find_link", "link_status", "link_url", "send_invitation"]

#: The longest link token accepted (``secrets.token_urlsafe(32)`` is 43 characters).
TOKEN_MAX = 64


@frozen
class LinkStatus:
    """What a link is, without using it: ``state`` is ``valid``, ``superseded`` (a newer link
    was sent), ``expired``, ``used`` or ``invalid``."""

    state: str
    purpose: str | None = None
    expires_at: float | None = None

    @property
    def valid(self) -> bool:
        return self.state == "valid"


def link_url(portal: PortalSettings, path: str, token: str) -> str:
    """``{base_url}{path}?token=...``; ``ConfigError`` when the portal has no ``base_url``."""
    if not portal.base_url:
        raise ConfigError("Set the portal's base_url to send links.")
    return f"{portal.base_url.rstrip('/')}{path}?token={quote(token)}"


def find_link(
    challenges: Challenges, portal: str, purposes: Sequence[str], token: object
) -> ChallengeRecord | None:
    """The challenge a link token names (any state), trying ``purposes`` in order."""
    if not is_canonical(token, max_length=TOKEN_MAX, parts=1):
        return None
    for purpose in purposes:
        record = challenges.lookup(portal, purpose, token)
        if record is not None:
            return record
    return None


def link_status(record: ChallengeRecord | None, now: float) -> LinkStatus:
    if record is None:
        return LinkStatus(state="invalid")
    if record.state == "superseded":
        state = "superseded"
    elif record.state == "consumed":
        state = "used"
    elif record.state != "live":
        state = "invalid"
    elif now >= record.expires_at:
        state = "expired"
    else:
        state = "valid"
    return LinkStatus(state=state, purpose=record.purpose, expires_at=record.expires_at)


def send_invitation(
    auth: Auth,
    party: Identity,
    portal: PortalSettings,
    *,
    method: str,
    purpose: str,
    template: str,
    path: str,
    days: int,
    actor: str | None = None,
) -> float:
    """E-mail ``party`` a single-use invitation link valid ``days`` days; return its expiry.

    Refused with ``NotReady`` while the portal's required fields are missing and with
    ``DeliveryFailed`` when the address cannot receive mail. The link is issued (superseding an
    earlier invitation of the same purpose), sent, and withdrawn again if sending fails, so a
    failed invitation never leaves a live link; the invitation is recorded for staff and
    ``invitation.sent`` emitted.
    """
    readiness = auth.directory.readiness(party)
    if not readiness.ready:
        raise NotReady(missing=readiness.missing)
    if not party.email_usable:
        raise DeliveryFailed("This person's e-mail address cannot receive the invitation.")
    token = auth.challenges.new_token()
    record = auth.challenges.issue(
        portal=portal.slug,
        subject=party.id,
        purpose=purpose,
        secret=auth.challenges.new_token(),  # nothing to type: the link is the proof
        lookup_secret=token,
        ttl=days * 86400,
        max_attempts=1,
        method=method,
    )
    try:
        auth.dispatcher.send(
            party,
            portal,
            channel="email",
            template=template,
            context={"link": link_url(portal, path, token), "days": days},
            purpose=purpose,
            method=method,
            wait=True,  # staff see at once whether the invitation went out
        )
    except DeliveryFailed:
        auth.challenges.revoke(portal.slug, party.id, purposes=[purpose])
        raise
    auth.directory.record_invitation(party, method)
    auth.emitter.emit(
        "invitation.sent",
        portal=portal.slug,
        identity_id=party.id,
        method=method,
        actor=actor,
        detail={"expires_at": record.expires_at},
    )
    return record.expires_at

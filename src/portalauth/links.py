"""Links: e-mailed URLs that carry a one-time token (sign-in, invitation, reset, confirmation).

A link token has 256 bits (R3), is stored only as a keyed lookup digest, and is read only in its
exact issued form. Looking at a link (:func:`link_status`) has no side effect, so a mail scanner's
GET changes nothing; using it is a separate, atomic consume. Links are always built on the portal's
configured ``base_url``, never on a host taken from a request (R37).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from attrs import frozen

from .challenges import Challenges
from .config import PortalSettings
from .errors import ConfigError
from .records import ChallengeRecord
from .tokens import is_canonical

__all__ = ["LinkStatus", "find_link", "link_status", "link_url"]

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

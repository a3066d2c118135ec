"""The records a store keeps: immutable values, the vocabulary between services and stores.

Fields that hold secret-derived material (digests, password hashes) are left out of ``repr()``
so a record can be logged or shown in a traceback without leaking them.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs
from attrs import field, frozen

__all__ = [
    "CONTACT_STATUSES",
    "ChallengeRecord",
    "Identity",
    "Message",
    "SessionRecord",
]

#: A contact may be used (``valid``), was opted out by its owner (``opted_out``: never send), or
#: is known to bounce or be wrong (``invalid``: never send).
CONTACT_STATUSES = ("valid", "opted_out", "invalid")


def _frozen_map(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


@frozen(kw_only=True)
class Identity:
    """A person who may sign in to one portal (a case party, a client, a court-date recipient).

    ``email`` is the address messages go to (as entered, validated and normalised);
    ``email_key`` is its canonical form, unique within the portal, used for matching.
    ``phone`` is E.164. ``invited_method`` / ``invited_at`` record the last invitation.
    """

    id: str
    portal: str
    name: str
    email: str | None = None
    email_key: str | None = None
    email_status: str = "valid"
    phone: str | None = None
    phone_status: str = "valid"
    disabled: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0
    last_sign_in_at: float | None = None
    last_sign_in_method: str | None = None
    invited_method: str | None = None
    invited_at: float | None = None
    email_confirmed: bool = True
    tax_id_digest: bytes | None = field(default=None, repr=False)
    password_hash: str | None = field(default=None, repr=False)
    password_changed_at: float | None = None
    attributes: Mapping[str, Any] = field(factory=dict, converter=_frozen_map)

    def evolve(self, **changes: Any) -> Identity:
        return attrs.evolve(self, **changes)

    @property
    def email_usable(self) -> bool:
        """Whether a message may be sent to the e-mail address."""
        return bool(self.email) and self.email_status == "valid" and not self.disabled

    @property
    def phone_usable(self) -> bool:
        """Whether an SMS may be sent to the phone number."""
        return bool(self.phone) and self.phone_status == "valid" and not self.disabled


#: The states of a challenge. Only ``live`` can verify.
CHALLENGE_STATES = ("live", "consumed", "superseded", "revoked")


@frozen(kw_only=True)
class ChallengeRecord:
    """One issued one-time secret, stored as a keyed digest.

    ``subject`` is the identity id, or for a decoy issued for an unknown identifier a keyed
    digest shaped like an identity id (so unknown identifiers behave exactly like known ones).
    ``scope`` narrows the purpose (a case, a destination); newest-wins supersede applies per
    ``(portal, subject, purpose, scope)``. ``lookup`` is set for secrets found by value (share
    codes, link tokens) rather than by challenge id.
    """

    id: str
    portal: str
    subject: str
    purpose: str
    scope: str = ""
    digest: bytes = field(repr=False)
    lookup: bytes | None = field(default=None, repr=False)
    created_at: float
    expires_at: float
    attempts: int = 0
    max_attempts: int = 5
    state: str = "live"
    consumed_at: float | None = None
    data: Mapping[str, Any] = field(factory=dict, converter=_frozen_map)

    def evolve(self, **changes: Any) -> ChallengeRecord:
        return attrs.evolve(self, **changes)

    def usable_at(self, now: float) -> bool:
        """Live, not expired (``now >= expires_at`` is expired) and with attempts left."""
        return self.state == "live" and now < self.expires_at and self.attempts < self.max_attempts


@frozen(kw_only=True)
class SessionRecord:
    """The server-side record of a signed-in session; the store keys it by a digest of its id."""

    key: bytes = field(repr=False)
    identity_id: str
    portal: str
    method: str
    scope: str = ""
    created_at: float
    last_seen_at: float
    idle_expires_at: float
    absolute_expires_at: float
    claims: Mapping[str, Any] = field(factory=dict, converter=_frozen_map)

    def evolve(self, **changes: Any) -> SessionRecord:
        return attrs.evolve(self, **changes)

    def live_at(self, now: float) -> bool:
        return now < self.idle_expires_at and now < self.absolute_expires_at


@frozen(kw_only=True)
class Message:
    """A rendered message (e-mail or SMS), as sent or as recorded in the simulated feed."""

    id: str
    portal: str
    identity_id: str | None
    channel: str  # "email" or "sms"
    to: str
    subject: str
    text: str = field(repr=False)
    html: str | None = field(default=None, repr=False)
    purpose: str = ""
    created_at: float = 0.0
    simulated: bool = True

"""The directory: the people who may sign in to a portal, their contacts and their readiness.

Staff add and change identities here. Contacts are checked and canonicalised by
:mod:`portalauth.contacts`; e-mail and phone are unique within a portal (the store enforces it
atomically). Changing a contact, disabling or deleting an identity withdraws every outstanding
one-time secret for it and ends its sessions, so a code sent to an old address dies with it.
"""

from __future__ import annotations

import csv
import io
import secrets
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from attrs import frozen

from .clock import Clock
from .config import PortalSettings
from .contacts import is_mobile, looks_like_email, normalize_email, normalize_phone
from .errors import InvalidInput, NotFound
from .events import Emitter
from .keys import Keyring
from .portals import Portals
from .records import CONTACT_STATUSES, Identity
from .stores.base import Store

__all__ = ["Contact", "Directory", "Readiness", "new_id"]

NAME_MAX = 200
_UNSET: Any = object()


def new_id() -> str:
    """A new random record id (96 bits, URL-safe, 16 characters)."""
    return secrets.token_urlsafe(12)


def _check_name(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput("Please enter a name.", field="name")
    text = unicodedata.normalize("NFC", value.strip())
    if not text or len(text) > NAME_MAX:
        raise InvalidInput(f"A name is 1 to {NAME_MAX} characters.", field="name")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs") for ch in text):
        raise InvalidInput("A name cannot contain control characters.", field="name")
    return text


def _check_status(value: object, field: str) -> str:
    if value not in CONTACT_STATUSES:
        raise InvalidInput(f"{field} must be one of {', '.join(CONTACT_STATUSES)}.", field=field)
    return str(value)


def _check_last4(value: object) -> str:
    if not isinstance(value, str) or len(value) != 4 or not value.isascii() or not value.isdigit():
        raise InvalidInput("Enter the last four digits.", field="tax_id_last4")
    return value


_EXPORT_COLUMNS = (
    "name",
    "email",
    "phone",
    "ready",
    "missing",
    "invited_method",
    "invited_at",
    "last_sign_in_at",
    "last_sign_in_method",
)


def _cell(value: str) -> str:
    # A leading = + - @ (or tab/CR) makes spreadsheets evaluate the cell (CSV injection).
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _iso(at: float | None) -> str:
    if at is None:
        return ""
    return datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="seconds")


@frozen
class Readiness:
    """Whether an identity has every field its portal requires before it is invited."""

    ready: bool
    missing: tuple[str, ...] = ()


@frozen
class Contact:
    """A contact a client typed, read as e-mail or phone: ``channel`` and the canonical key."""

    channel: str  # "email" or "sms"
    key: str  # e-mail key or E.164 number


class Directory:
    """Identities and their contacts, per portal."""

    def __init__(
        self, store: Store, clock: Clock, keyring: Keyring, emitter: Emitter, portals: Portals
    ) -> None:
        self._store = store
        self._clock = clock
        self._keyring = keyring
        self._emitter = emitter
        self._portals = portals

    # -- staff side -------------------------------------------------------------------------
    def add(
        self,
        portal: str,
        name: str,
        *,
        email: str | None = None,
        phone: str | None = None,
        email_status: str = "valid",
        phone_status: str = "valid",
        tax_id_last4: str | None = None,
        email_confirmed: bool = True,
        attributes: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> Identity:
        """Add a person to ``portal``. Raises ``InvalidContact``, ``InvalidInput`` or
        ``ContactTaken`` (another identity of the portal has that e-mail or phone)."""
        settings = self._portals.get(portal)
        now = self._clock.now()
        identity_id = new_id()
        address, key = normalize_email(email) if email is not None else (None, None)
        identity = Identity(
            id=identity_id,
            portal=settings.slug,
            name=_check_name(name),
            email=address,
            email_key=key,
            email_status=_check_status(email_status, "email_status"),
            phone=normalize_phone(phone, settings.default_region) if phone is not None else None,
            phone_status=_check_status(phone_status, "phone_status"),
            email_confirmed=bool(email_confirmed),
            tax_id_digest=self._tax_digest(settings.slug, identity_id, tax_id_last4),
            created_at=now,
            updated_at=now,
            attributes=attributes,
        )
        self._store.add_identity(identity)
        self._emitter.emit(
            "identity.added", portal=identity.portal, identity_id=identity.id, actor=actor
        )
        return identity

    def update(
        self,
        identity_id: str,
        *,
        name: str = _UNSET,
        email: str | None = _UNSET,
        phone: str | None = _UNSET,
        email_status: str = _UNSET,
        phone_status: str = _UNSET,
        tax_id_last4: str | None = _UNSET,
        email_confirmed: bool = _UNSET,
        disabled: bool = _UNSET,
        attributes: Mapping[str, Any] = _UNSET,
        actor: str | None = None,
    ) -> Identity:
        """Change an identity. A changed e-mail or phone, or disabling, withdraws every
        outstanding one-time secret and session of the identity (R29)."""
        current = self.get(identity_id)
        settings = self._portals.get(current.portal)
        changes: dict[str, Any] = {}
        if name is not _UNSET:
            changes["name"] = _check_name(name)
        if email is not _UNSET:
            address, key = normalize_email(email) if email is not None else (None, None)
            changes.update(email=address, email_key=key)
        if phone is not _UNSET:
            changes["phone"] = (
                normalize_phone(phone, settings.default_region) if phone is not None else None
            )
        if email_status is not _UNSET:
            changes["email_status"] = _check_status(email_status, "email_status")
        if phone_status is not _UNSET:
            changes["phone_status"] = _check_status(phone_status, "phone_status")
        if tax_id_last4 is not _UNSET:
            changes["tax_id_digest"] = self._tax_digest(current.portal, current.id, tax_id_last4)
        if email_confirmed is not _UNSET:
            changes["email_confirmed"] = bool(email_confirmed)
        if disabled is not _UNSET:
            changes["disabled"] = bool(disabled)
        if attributes is not _UNSET:
            changes["attributes"] = attributes
        updated = current.evolve(updated_at=self._clock.now(), **changes)
        self._store.update_identity(updated)
        contact_changed = (updated.email_key, updated.phone) != (current.email_key, current.phone)
        if contact_changed or (updated.disabled and not current.disabled):
            self._withdraw(updated)
        kind = (
            "identity.disabled" if updated.disabled and not current.disabled else "identity.updated"
        )
        self._emitter.emit(
            kind,
            portal=updated.portal,
            identity_id=updated.id,
            actor=actor,
            detail={"fields": sorted(k for k in changes if k != "tax_id_digest")},
        )
        return updated

    def delete(self, identity_id: str, *, actor: str | None = None) -> bool:
        """Delete an identity with its sessions and challenges. True if it existed."""
        existing = self._store.get_identity(identity_id)
        deleted = self._store.delete_identity(identity_id)
        if deleted and existing is not None:
            self._emitter.emit(
                "identity.deleted", portal=existing.portal, identity_id=identity_id, actor=actor
            )
        return deleted

    def _withdraw(self, identity: Identity) -> None:
        challenges = self._store.revoke_challenges(identity.portal, identity.id)
        sessions = self._store.delete_sessions(identity.id)
        if challenges:
            self._emitter.emit(
                "challenge.revoked",
                portal=identity.portal,
                identity_id=identity.id,
                detail={"count": challenges, "why": "account_changed"},
            )
        if sessions:
            self._emitter.emit(
                "session.revoked",
                portal=identity.portal,
                identity_id=identity.id,
                detail={"count": sessions, "why": "account_changed"},
            )

    def _tax_digest(self, portal: str, identity_id: str, last4: str | None) -> bytes | None:
        if last4 is None:
            return None
        return self._keyring.digest("tax_id_last4", portal, identity_id, _check_last4(last4))

    # -- reading ----------------------------------------------------------------------------
    def get(self, identity_id: str) -> Identity:
        """The identity; raises :class:`NotFound`."""
        found = self._store.get_identity(identity_id) if isinstance(identity_id, str) else None
        if found is None:
            raise NotFound("No such person.")
        return found

    def find(self, identity_id: str) -> Identity | None:
        """The identity, or ``None`` (for strategies: an unknown subject is a failed sign-in)."""
        return self._store.get_identity(identity_id) if isinstance(identity_id, str) else None

    def record_invitation(self, identity: Identity, method: str) -> Identity:
        """Note that ``identity`` was invited by ``method`` now (shown to staff)."""
        current = self.get(identity.id)
        updated = current.evolve(invited_method=method, invited_at=self._clock.now())
        self._store.update_identity(updated)
        return updated

    def list(self, portal: str) -> list[Identity]:
        return self._store.list_identities(portal)

    def find_by_email(self, portal: str, email: str) -> Identity | None:
        """The portal's identity with that e-mail (after normalisation), or ``None``.
        Raises ``InvalidContact`` for a malformed address."""
        return self._store.find_identity(portal, email_key=normalize_email(email).key)

    def find_by_email_key(self, portal: str, key: str) -> Identity | None:
        """The portal's identity with that canonical e-mail key (see :mod:`portalauth.contacts`)."""
        return self._store.find_identity(portal, email_key=key)

    def find_by_phone(self, portal: str, phone: str) -> Identity | None:
        settings = self._portals.get(portal)
        return self._store.find_identity(
            portal, phone=normalize_phone(phone, settings.default_region)
        )

    def read_contact(self, settings: PortalSettings, value: str) -> Contact:
        """Read what a client typed as an e-mail address or a phone number (``InvalidContact``)."""
        if looks_like_email(value):
            return Contact(channel="email", key=normalize_email(value).key)
        return Contact(channel="sms", key=normalize_phone(value, settings.default_region))

    def find_contact(self, portal: str, contact: Contact) -> Identity | None:
        if contact.channel == "email":
            return self._store.find_identity(portal, email_key=contact.key)
        return self._store.find_identity(portal, phone=contact.key)

    def readiness(self, identity: Identity | str) -> Readiness:
        """Which fields the portal requires that this identity still lacks."""
        if isinstance(identity, str):
            identity = self.get(identity)
        settings = self._portals.get(identity.portal)
        missing = []
        for required in sorted(settings.required_fields):
            if required == "email" and not identity.email_usable:
                missing.append("email")
            elif required == "mobile" and not (
                identity.phone_usable and identity.phone is not None and is_mobile(identity.phone)
            ):
                missing.append("mobile")
            elif required == "tax_id_last4" and identity.tax_id_digest is None:
                missing.append("tax_id_last4")
        return Readiness(ready=not missing, missing=tuple(missing))

    def export_access_status(self, portal: str, out: TextIO | None = None) -> str:
        """Every identity's portal access status as CSV (Firm360's export), for staff.

        Columns: name, email, phone, ready, missing, invited_method, invited_at,
        last_sign_in_at, last_sign_in_method. Times are ISO 8601 UTC. Cells that a spreadsheet
        would run as a formula (starting with ``= + - @``, tab or CR) are prefixed with ``'``
        (CSV injection). Written to ``out`` when given; the text is returned either way.
        """
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(_EXPORT_COLUMNS)
        for identity in self.list(portal):
            readiness = self.readiness(identity)
            writer.writerow(
                _cell(value)
                for value in (
                    identity.name,
                    identity.email or "",
                    identity.phone or "",
                    "yes" if readiness.ready else "no",
                    " ".join(readiness.missing),
                    identity.invited_method or "",
                    _iso(identity.invited_at),
                    _iso(identity.last_sign_in_at),
                    identity.last_sign_in_method or "",
                )
            )
        text = buffer.getvalue()
        if out is not None:
            out.write(text)
        return text

    def check_tax_id(self, identity: Identity, last4: str) -> bool:
        """Whether ``last4`` matches the stored last four digits (constant time, any key)."""
        if identity.tax_id_digest is None:
            return False
        try:
            value = _check_last4(last4)
        except InvalidInput:
            return False
        return self._keyring.matches(
            identity.tax_id_digest, "tax_id_last4", identity.portal, identity.id, value
        )

    def replace_password_hash(
        self, identity: Identity, new_hash: str, *, expected: str | None, changed: bool = False
    ) -> bool:
        """Compare-and-swap the identity's password hash (see
        :meth:`Store.replace_password_hash`); ``changed`` stamps ``password_changed_at``."""
        return self._store.replace_password_hash(
            identity.id, new_hash, expected=expected, now=self._clock.now(), changed=changed
        )

    def record_sign_in(self, identity: Identity, method: str) -> Identity:
        """Note a successful sign-in on the identity (shown to staff). Only the last-sign-in
        fields are written, so a concurrent staff change is never reverted."""
        now = self._clock.now()
        self._store.record_sign_in(identity.id, now, method)
        return identity.evolve(last_sign_in_at=now, last_sign_in_method=method)

"""``composite://?records=<uri>&hot=<uri>``: portals and identities in one store, the hot records
in another.

The usual set-up for many app servers keeps the records that must last (portals and
identities) in SQL and the short-lived, busy ones (challenges, sessions, throttle and failure
counters, the outbox feed) in Redis, chosen by one setting::

    from urllib.parse import quote

    records = "sqlite:////var/lib/portal/portal.db"
    hot = "redis://10.0.0.5:6379/0?prefix=portal"
    Auth(keys, store=f"composite://?records={quote(records, safe='')}&hot={quote(hot, safe='')}")

Both inner URIs are percent-encoded query values (so their own ``?`` and ``&`` survive); any
store scheme may be used for either, except another composite. ``CompositeStore(records=...,
hot=...)`` takes store objects instead.

What it guarantees: each operation goes to exactly one store, so every atomic operation keeps
the atomicity of the store that holds it. Two operations span both stores, in an order that fails
closed:

- :meth:`delete_identity` deletes the identity's sessions and challenges in the hot store, then
  the identity, then the hot records once more (sessions created meanwhile). If the hot store is
  down nothing is deleted and the call raises :class:`StoreUnavailable`.
- :meth:`create_session` checks, after writing the session, that its identity still exists in
  the records store; if not (deleted meanwhile), it deletes the session again and raises
  :class:`StoreUnavailable`, as the SQL store's foreign key does.

``purge_expired`` purges both (a Redis hot store has nothing to purge).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

from ..config import PortalSettings
from ..errors import ConfigError, PortalAuthError, StoreUnavailable
from ..records import ChallengeRecord, Identity, Message, SessionRecord
from .base import Store, batch

__all__ = ["CompositeStore"]


@runtime_checkable
class _SubjectPurging(Protocol):
    def delete_subject(self, subject: str) -> None: ...


def _open_inner(uri: str, role: str) -> Store:
    scheme = urlsplit(uri).scheme
    if scheme == "composite":
        raise ConfigError("A composite store cannot contain another composite store.")
    from . import portalauth_add_stores

    factory = portalauth_add_stores().get(scheme)
    if factory is None:  # a third party's store, through the plugin entry points
        from ..plugins import Plugins

        factory = Plugins().store_factory(scheme)
    if factory is None:
        raise ConfigError(f"No store for the composite's {role} URI scheme {scheme!r}.")
    return factory(uri)


def _parse_uri(uri: object) -> tuple[str, str]:
    if not isinstance(uri, str):
        raise ConfigError("The store URI must be a string such as composite://?records=...&hot=...")
    parts = urlsplit(uri)
    if parts.scheme != "composite" or parts.netloc or parts.path not in ("", "/"):
        raise ConfigError("A composite store URI is composite://?records=<uri>&hot=<uri>.")
    found: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in ("records", "hot"):
            raise ConfigError(f"A composite store URI takes records and hot, not {name!r}.")
        if name in found:
            raise ConfigError(f"The composite store URI sets {name} twice.")
        found[name] = value
    if not found.get("records") or not found.get("hot"):
        raise ConfigError("A composite store URI needs both records=<uri> and hot=<uri>.")
    return found["records"], found["hot"]


class CompositeStore:
    """A :class:`~portalauth.stores.base.Store` that keeps portals and identities in ``records``
    and challenges, sessions, messages and counters in ``hot``. Closing it closes both."""

    def __init__(self, *, records: Store, hot: Store) -> None:
        self.records = records
        self.hot = hot

    @classmethod
    def from_uri(cls, uri: str) -> CompositeStore:
        """Open both inner stores of a ``composite://`` URI (the records store first)."""
        records_uri, hot_uri = _parse_uri(uri)
        records = _open_inner(records_uri, "records")
        try:
            hot = _open_inner(hot_uri, "hot")
        except BaseException:
            records.close()
            raise
        return cls(records=records, hot=hot)

    def __repr__(self) -> str:
        return f"CompositeStore(records={self.records!r}, hot={self.hot!r})"

    @property
    def native_ttl(self) -> bool:
        """Whether the hot store expires records by itself (then ``purge_expired`` may find
        nothing to do): the contract suite's capability flag of the same name."""
        return bool(getattr(self.hot, "native_ttl", False))

    # -- lifecycle --------------------------------------------------------------------------
    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Both inner stores' batches (see :func:`portalauth.stores.base.batch`)."""
        with batch(self.records), batch(self.hot):
            yield

    def close(self) -> None:
        try:
            self.hot.close()
        finally:
            self.records.close()

    # -- portals ----------------------------------------------------------------------------
    def put_portal(self, settings: PortalSettings, now: float) -> None:
        self.records.put_portal(settings, now)

    def get_portal(self, slug: str) -> PortalSettings | None:
        return self.records.get_portal(slug)

    def list_portals(self) -> list[PortalSettings]:
        return self.records.list_portals()

    # -- identities -------------------------------------------------------------------------
    def add_identity(self, identity: Identity) -> None:
        self.records.add_identity(identity)

    def update_identity(self, identity: Identity) -> None:
        self.records.update_identity(identity)

    def record_sign_in(self, identity_id: str, at: float, method: str) -> None:
        self.records.record_sign_in(identity_id, at, method)

    def get_identity(self, identity_id: str) -> Identity | None:
        return self.records.get_identity(identity_id)

    def find_identity(
        self, portal: str, *, email_key: str | None = None, phone: str | None = None
    ) -> Identity | None:
        return self.records.find_identity(portal, email_key=email_key, phone=phone)

    def list_identities(self, portal: str) -> list[Identity]:
        return self.records.list_identities(portal)

    def _purge_hot(self, identity: Identity) -> None:
        if isinstance(self.hot, _SubjectPurging):
            self.hot.delete_subject(identity.id)
            return
        # A hot store without delete_subject: its challenges cannot be found by subject alone,
        # so they are made unusable instead (revoked), and the sessions deleted.
        self.hot.delete_sessions(identity.id)
        self.hot.revoke_challenges(identity.portal, identity.id)

    def delete_identity(self, identity_id: str) -> bool:
        """Delete the identity, its sessions and its challenges (see the module notes for the
        order). An unknown id changes nothing: it may be a decoy subject."""
        identity = self.records.get_identity(identity_id)
        if identity is None:
            return False
        self._purge_hot(identity)
        deleted = self.records.delete_identity(identity_id)
        self._purge_hot(identity)
        return deleted

    def replace_password_hash(
        self,
        identity_id: str,
        new_hash: str,
        *,
        expected: str | None,
        now: float,
        changed: bool = False,
    ) -> bool:
        return self.records.replace_password_hash(
            identity_id, new_hash, expected=expected, now=now, changed=changed
        )

    # -- challenges -------------------------------------------------------------------------
    def issue_challenge(self, record: ChallengeRecord, *, supersede: bool) -> None:
        self.hot.issue_challenge(record, supersede=supersede)

    def get_challenge(self, challenge_id: str) -> ChallengeRecord | None:
        return self.hot.get_challenge(challenge_id)

    def find_challenge(
        self, portal: str, purpose: str, lookups: Sequence[bytes]
    ) -> ChallengeRecord | None:
        return self.hot.find_challenge(portal, purpose, lookups)

    def latest_challenge(
        self, portal: str, subject: str, purpose: str, scope: str = ""
    ) -> ChallengeRecord | None:
        return self.hot.latest_challenge(portal, subject, purpose, scope)

    def spend_attempt(self, challenge_id: str, now: float) -> tuple[bool, ChallengeRecord | None]:
        return self.hot.spend_attempt(challenge_id, now)

    def consume_challenge(self, challenge_id: str, now: float) -> bool:
        return self.hot.consume_challenge(challenge_id, now)

    def revoke_challenges(
        self,
        portal: str,
        subject: str,
        *,
        purposes: Sequence[str] | None = None,
        scope: str | None = None,
    ) -> int:
        return self.hot.revoke_challenges(portal, subject, purposes=purposes, scope=scope)

    # -- sessions ---------------------------------------------------------------------------
    def create_session(self, record: SessionRecord) -> None:
        """Create the session in the hot store, then make sure its identity still exists."""
        self.hot.create_session(record)
        try:
            exists = self.records.get_identity(record.identity_id) is not None
        except BaseException:
            with contextlib.suppress(PortalAuthError):  # best effort: the first error wins
                self.hot.delete_session(record.key)
            raise
        if not exists:
            self.hot.delete_session(record.key)
            raise StoreUnavailable()

    def get_session(self, key: bytes) -> SessionRecord | None:
        return self.hot.get_session(key)

    def touch_session(self, key: bytes, last_seen_at: float, idle_expires_at: float) -> None:
        self.hot.touch_session(key, last_seen_at, idle_expires_at)

    def delete_session(self, key: bytes) -> bool:
        return self.hot.delete_session(key)

    def delete_sessions(self, identity_id: str, *, keep: bytes | None = None) -> int:
        return self.hot.delete_sessions(identity_id, keep=keep)

    def list_sessions(self, identity_id: str) -> list[SessionRecord]:
        return self.hot.list_sessions(identity_id)

    # -- simulated messages -----------------------------------------------------------------
    def add_message(self, message: Message) -> None:
        self.hot.add_message(message)

    def list_messages(
        self, portal: str, *, identity_id: str | None = None, limit: int = 100
    ) -> list[Message]:
        return self.hot.list_messages(portal, identity_id=identity_id, limit=limit)

    # -- counters ---------------------------------------------------------------------------
    def incr_counter(
        self, key: str, amount: int, expires_at: float, now: float, *, extend: bool = False
    ) -> tuple[int, float]:
        return self.hot.incr_counter(key, amount, expires_at, now, extend=extend)

    def get_counter(self, key: str, now: float) -> tuple[int, float]:
        return self.hot.get_counter(key, now)

    def clear_counter(self, key: str) -> None:
        self.hot.clear_counter(key)

    # -- housekeeping -----------------------------------------------------------------------
    def purge_expired(self, now: float, *, batch: int = 1000) -> int:
        """Purge the hot store, then the records store with what is left of ``batch``."""
        removed = self.hot.purge_expired(now, batch=batch)
        if batch - removed > 0:
            removed += self.records.purge_expired(now, batch=batch - removed)
        return removed

"""The store protocol: everything portalauth persists, behind one interface.

A store keeps portals, identities (with their contacts), challenges, sessions, simulated messages
and counters. The services above it (directory, challenges, sessions, throttles) hold all policy;
a store only has to keep records and make the few operations below **atomic**. Every store,
including a third party's, proves that with the contract suite in :mod:`portalauth.testing`.

A store may also offer ``batch()``, a context manager around one sign-in step's calls from one
thread (the SQL store borrows one pooled PostgreSQL connection for the step rather than one per
statement). It must not change what any call does or undo anything when the block raises.
:func:`batch` uses it when it is there; a store without it loses nothing but speed.

Times are POSIX seconds (``float``). ``now >= expires_at`` means expired. A store raises
:class:`portalauth.errors.StoreUnavailable` when its backend cannot be reached or fails
mid-operation; it never returns a partial result instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Protocol, cast, runtime_checkable

from ..config import PortalSettings
from ..records import ChallengeRecord, Identity, Message, SessionRecord

__all__ = ["Store", "batch"]


@runtime_checkable
class Store(Protocol):
    """What portalauth needs from persistence. Methods are thread-safe."""

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Release connections. The store is not used afterwards."""

    # -- portals ----------------------------------------------------------------------------
    def put_portal(self, settings: PortalSettings, now: float) -> None:
        """Create or replace the portal ``settings.slug``."""

    def get_portal(self, slug: str) -> PortalSettings | None: ...

    def list_portals(self) -> list[PortalSettings]:
        """Every portal, ordered by slug."""

    # -- identities -------------------------------------------------------------------------
    def add_identity(self, identity: Identity) -> None:
        """Insert a new identity.

        Raises :class:`~portalauth.errors.ContactTaken` (``field`` = ``"email"`` or ``"phone"``)
        when another identity of the same portal has the same ``email_key`` or ``phone``; the
        check and the insert are one atomic step (a unique index), so two concurrent adds of one
        address create exactly one identity.
        """

    def update_identity(self, identity: Identity) -> None:
        """Replace the identity with the same id (same uniqueness rule as :meth:`add_identity`),
        **except** ``password_hash`` and ``password_changed_at`` (written only by
        :meth:`replace_password_hash`) and ``last_sign_in_at`` / ``last_sign_in_method``
        (written only by :meth:`record_sign_in`), which keep their stored values: a staff edit
        made from a stale read can never undo a password change or reset.

        Raises :class:`~portalauth.errors.NotFound` when there is no such identity.
        """

    def record_sign_in(self, identity_id: str, at: float, method: str) -> None:
        """Set only ``last_sign_in_at`` and ``last_sign_in_method`` (no other field is
        written, so a concurrent staff change is never reverted). Unknown ids are ignored."""

    def get_identity(self, identity_id: str) -> Identity | None: ...

    def find_identity(
        self, portal: str, *, email_key: str | None = None, phone: str | None = None
    ) -> Identity | None:
        """The identity of ``portal`` whose ``email_key`` (or ``phone``) equals the argument."""

    def list_identities(self, portal: str) -> list[Identity]:
        """Every identity of ``portal``, ordered by name then id."""

    def delete_identity(self, identity_id: str) -> bool:
        """Delete an identity; its sessions and challenges go with it. True if it existed."""

    def replace_password_hash(
        self,
        identity_id: str,
        new_hash: str,
        *,
        expected: str | None,
        now: float,
        changed: bool = False,
    ) -> bool:
        """Compare-and-swap the password hash: write ``new_hash`` only if the stored hash is
        still ``expected`` (``None`` matches "no password yet"). Returns whether it wrote. A
        hash upgrade passes ``changed=False``; a new password passes ``changed=True``, which also
        sets ``password_changed_at = now``. A concurrent change is never overwritten."""

    # -- challenges -------------------------------------------------------------------------
    def issue_challenge(self, record: ChallengeRecord, *, supersede: bool) -> None:
        """Insert ``record``. If ``supersede``, in the same atomic step first set
        ``state='superseded'`` on every ``live`` challenge with the same
        ``(portal, subject, purpose, scope)`` (newest wins: of concurrent issues, exactly one
        remains live)."""

    def get_challenge(self, challenge_id: str) -> ChallengeRecord | None: ...

    def find_challenge(
        self, portal: str, purpose: str, lookups: Sequence[bytes]
    ) -> ChallengeRecord | None:
        """The most recent challenge of ``portal`` and ``purpose`` whose ``lookup`` is one of
        ``lookups`` (one per server key, during a rotation), in whatever state it is."""

    def latest_challenge(
        self, portal: str, subject: str, purpose: str, scope: str = ""
    ) -> ChallengeRecord | None:
        """The most recently created challenge for the key, in whatever state it is."""

    def spend_attempt(self, challenge_id: str, now: float) -> tuple[bool, ChallengeRecord | None]:
        """Atomically count one verification attempt.

        If the challenge is ``live``, ``now < expires_at`` and ``attempts < max_attempts``,
        increment ``attempts`` and return ``(True, record_after_increment)``. Otherwise change
        nothing and return ``(False, record)`` (``record`` is ``None`` if unknown). Concurrent
        calls never let more than ``max_attempts`` calls return True: this is what keeps the
        number of comparisons within the budget.
        """

    def consume_challenge(self, challenge_id: str, now: float) -> bool:
        """Atomically move a ``live``, unexpired challenge to ``consumed`` (``consumed_at=now``).
        Returns True for exactly one of any number of concurrent callers."""

    def revoke_challenges(
        self,
        portal: str,
        subject: str,
        *,
        purposes: Sequence[str] | None = None,
        scope: str | None = None,
    ) -> int:
        """Set ``state='revoked'`` on the subject's live challenges (optionally only those
        purposes and/or scope). Returns how many changed."""

    # -- sessions ---------------------------------------------------------------------------
    def create_session(self, record: SessionRecord) -> None: ...

    def get_session(self, key: bytes) -> SessionRecord | None: ...

    def touch_session(self, key: bytes, last_seen_at: float, idle_expires_at: float) -> None:
        """Record activity: move the idle expiry (never past the absolute expiry)."""

    def delete_session(self, key: bytes) -> bool:
        """Delete one session. True if it existed."""

    def delete_sessions(self, identity_id: str, *, keep: bytes | None = None) -> int:
        """Delete every session of the identity, except ``keep``. Returns how many."""

    def list_sessions(self, identity_id: str) -> list[SessionRecord]:
        """The identity's sessions, newest first."""

    # -- simulated messages -----------------------------------------------------------------
    def add_message(self, message: Message) -> None: ...

    def list_messages(
        self, portal: str, *, identity_id: str | None = None, limit: int = 100
    ) -> list[Message]:
        """The portal's recorded messages (optionally one identity's), newest first."""

    # -- counters (throttles and failure budgets) -------------------------------------------
    def incr_counter(
        self, key: str, amount: int, expires_at: float, now: float, *, extend: bool = False
    ) -> tuple[int, float]:
        """Atomically add ``amount`` to the counter ``key`` and return ``(count, expires_at)``.

        A missing or expired counter starts from 0 with ``expires_at``. A live counter keeps its
        expiry (a fixed window) unless ``extend`` is true, in which case it takes the new
        ``expires_at`` (a sliding expiry, for consecutive-failure counts).
        """

    def get_counter(self, key: str, now: float) -> tuple[int, float]:
        """``(count, expires_at)``; ``(0, 0.0)`` for a missing or expired counter."""

    def clear_counter(self, key: str) -> None: ...

    # -- housekeeping -----------------------------------------------------------------------
    def purge_expired(self, now: float, *, batch: int = 1000) -> int:
        """Delete up to ``batch`` expired challenges, sessions and counters; return how many.
        Call until it returns 0. Verification results do not change."""


def batch(store: Store) -> contextlib.AbstractContextManager[None]:
    """``store.batch()`` if the store can group calls into one unit of work, else a block that
    changes nothing."""
    grouped = getattr(store, "batch", None)
    if callable(grouped):
        return cast(contextlib.AbstractContextManager[None], grouped())
    return contextlib.nullcontext()

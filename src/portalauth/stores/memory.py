"""``memory://``: a store in this process's memory, for tests and single-process demos.

One lock serialises every operation, which is what makes consume and spend-attempt atomic.
Lookups go through dictionaries kept beside the records (by contact, by subject, by lookup
digest, by identity), so no operation on the sign-in path scans every record. Nothing survives
the process.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence

from ..config import PortalSettings
from ..errors import ContactTaken, NotFound
from ..records import ChallengeRecord, Identity, Message, SessionRecord

__all__ = ["MemoryStore"]


class MemoryStore:
    """A thread-safe in-memory :class:`~portalauth.stores.base.Store`."""

    def __init__(self, uri: str = "memory://") -> None:
        self._lock = threading.Lock()
        self._portals: dict[str, PortalSettings] = {}
        self._identities: dict[str, Identity] = {}
        self._challenges: dict[str, ChallengeRecord] = {}
        self._seq: dict[str, int] = {}  # challenge id -> insertion order (ties in created_at)
        self._sessions: dict[bytes, SessionRecord] = {}
        self._messages: list[Message] = []
        self._counters: dict[str, tuple[int, float]] = {}
        # Indexes, kept in step with the records above under the same lock.
        self._by_contact: dict[tuple[str, str, str], str] = {}  # (portal, kind, value) -> id
        self._by_subject: defaultdict[tuple[str, str], dict[str, None]] = defaultdict(dict)
        self._by_lookup: defaultdict[tuple[str, str, bytes], dict[str, None]] = defaultdict(dict)
        self._sessions_of: defaultdict[str, dict[bytes, None]] = defaultdict(dict)
        self._messages_of: defaultdict[tuple[str, str | None], list[Message]] = defaultdict(list)

    def __repr__(self) -> str:
        return "MemoryStore()"

    def close(self) -> None:
        pass

    # -- portals
    def put_portal(self, settings: PortalSettings, now: float) -> None:
        with self._lock:
            self._portals[settings.slug] = settings

    def get_portal(self, slug: str) -> PortalSettings | None:
        with self._lock:
            return self._portals.get(slug)

    def list_portals(self) -> list[PortalSettings]:
        with self._lock:
            return [self._portals[k] for k in sorted(self._portals)]

    # -- identities
    @staticmethod
    def _contacts(identity: Identity) -> Iterable[tuple[str, str, str]]:
        if identity.email_key:
            yield (identity.portal, "email", identity.email_key)
        if identity.phone:
            yield (identity.portal, "phone", identity.phone)

    def _check_unique(self, identity: Identity) -> None:
        for key in self._contacts(identity):
            owner = self._by_contact.get(key)
            if owner is not None and owner != identity.id:
                raise ContactTaken(field=key[1])

    def _index_identity(self, old: Identity | None, new: Identity | None) -> None:
        if old is not None:
            for key in self._contacts(old):
                if self._by_contact.get(key) == old.id:
                    del self._by_contact[key]
        if new is not None:
            for key in self._contacts(new):
                self._by_contact[key] = new.id

    def add_identity(self, identity: Identity) -> None:
        with self._lock:
            if identity.id in self._identities:
                raise ContactTaken("That identity id exists already.")
            self._check_unique(identity)
            self._identities[identity.id] = identity
            self._index_identity(None, identity)

    def update_identity(self, identity: Identity) -> None:
        with self._lock:
            stored = self._identities.get(identity.id)
            if stored is None:
                raise NotFound()
            self._check_unique(identity)
            # Fields with their own writers keep their stored values (see Store.update_identity).
            updated = identity.evolve(
                password_hash=stored.password_hash,
                password_changed_at=stored.password_changed_at,
                last_sign_in_at=stored.last_sign_in_at,
                last_sign_in_method=stored.last_sign_in_method,
            )
            self._identities[identity.id] = updated
            self._index_identity(stored, updated)

    def record_sign_in(self, identity_id: str, at: float, method: str) -> None:
        with self._lock:
            stored = self._identities.get(identity_id)
            if stored is not None:
                self._identities[identity_id] = stored.evolve(
                    last_sign_in_at=at, last_sign_in_method=method
                )

    def get_identity(self, identity_id: str) -> Identity | None:
        with self._lock:
            return self._identities.get(identity_id)

    def find_identity(
        self, portal: str, *, email_key: str | None = None, phone: str | None = None
    ) -> Identity | None:
        with self._lock:
            for kind, value in (("email", email_key), ("phone", phone)):
                if value is not None:
                    found = self._by_contact.get((portal, kind, value))
                    if found is not None:
                        return self._identities.get(found)
        return None

    def list_identities(self, portal: str) -> list[Identity]:
        with self._lock:
            found = [i for i in self._identities.values() if i.portal == portal]
        return sorted(found, key=lambda i: (i.name, i.id))

    def delete_identity(self, identity_id: str) -> bool:
        with self._lock:
            identity = self._identities.pop(identity_id, None)
            if identity is None:
                return False
            self._index_identity(identity, None)
            for key in self._sessions_of.pop(identity_id, {}):
                self._sessions.pop(key, None)
            for cid in list(self._by_subject.get((identity.portal, identity_id), {})):
                self._drop_challenge(cid)
            return True

    def replace_password_hash(
        self,
        identity_id: str,
        new_hash: str,
        *,
        expected: str | None,
        now: float,
        changed: bool = False,
    ) -> bool:
        with self._lock:
            identity = self._identities.get(identity_id)
            if identity is None or identity.password_hash != expected:
                return False
            self._identities[identity_id] = identity.evolve(
                password_hash=new_hash,
                updated_at=now,
                password_changed_at=now if changed else identity.password_changed_at,
            )
            return True

    # -- challenges
    def issue_challenge(self, record: ChallengeRecord, *, supersede: bool) -> None:
        with self._lock:
            if supersede:
                for cid in self._by_subject.get((record.portal, record.subject), {}):
                    other = self._challenges[cid]
                    if (
                        other.state == "live"
                        and other.purpose == record.purpose
                        and other.scope == record.scope
                    ):
                        self._challenges[cid] = other.evolve(state="superseded")
            self._challenges[record.id] = record
            self._seq[record.id] = len(self._seq)
            self._by_subject[(record.portal, record.subject)][record.id] = None
            if record.lookup is not None:
                self._by_lookup[(record.portal, record.purpose, record.lookup)][record.id] = None

    def _drop_challenge(self, cid: str) -> None:
        record = self._challenges.pop(cid)
        self._seq.pop(cid, None)
        by_subject = self._by_subject.get((record.portal, record.subject))
        if by_subject is not None:
            by_subject.pop(cid, None)
            if not by_subject:
                del self._by_subject[(record.portal, record.subject)]
        if record.lookup is not None:
            key = (record.portal, record.purpose, record.lookup)
            by_lookup = self._by_lookup.get(key)
            if by_lookup is not None:
                by_lookup.pop(cid, None)
                if not by_lookup:
                    del self._by_lookup[key]

    def get_challenge(self, challenge_id: str) -> ChallengeRecord | None:
        with self._lock:
            return self._challenges.get(challenge_id)

    def _newest(self, records: list[ChallengeRecord]) -> ChallengeRecord | None:
        if not records:
            return None
        return max(records, key=lambda r: (r.created_at, self._seq.get(r.id, 0)))

    def find_challenge(
        self, portal: str, purpose: str, lookups: Sequence[bytes]
    ) -> ChallengeRecord | None:
        with self._lock:
            return self._newest(
                [
                    self._challenges[cid]
                    for lookup in set(lookups)
                    for cid in self._by_lookup.get((portal, purpose, lookup), {})
                ]
            )

    def latest_challenge(
        self, portal: str, subject: str, purpose: str, scope: str = ""
    ) -> ChallengeRecord | None:
        with self._lock:
            return self._newest(
                [
                    r
                    for r in map(
                        self._challenges.__getitem__, self._by_subject.get((portal, subject), {})
                    )
                    if r.purpose == purpose and r.scope == scope
                ]
            )

    def spend_attempt(self, challenge_id: str, now: float) -> tuple[bool, ChallengeRecord | None]:
        with self._lock:
            record = self._challenges.get(challenge_id)
            if record is None or not record.usable_at(now):
                return False, record
            record = record.evolve(attempts=record.attempts + 1)
            self._challenges[challenge_id] = record
            return True, record

    def consume_challenge(self, challenge_id: str, now: float) -> bool:
        with self._lock:
            record = self._challenges.get(challenge_id)
            if record is None or record.state != "live" or now >= record.expires_at:
                return False
            self._challenges[challenge_id] = record.evolve(state="consumed", consumed_at=now)
            return True

    def revoke_challenges(
        self,
        portal: str,
        subject: str,
        *,
        purposes: Sequence[str] | None = None,
        scope: str | None = None,
    ) -> int:
        changed = 0
        with self._lock:
            for cid in self._by_subject.get((portal, subject), {}):
                r = self._challenges[cid]
                if r.state != "live":
                    continue
                if purposes is not None and r.purpose not in purposes:
                    continue
                if scope is not None and r.scope != scope:
                    continue
                self._challenges[cid] = r.evolve(state="revoked")
                changed += 1
        return changed

    # -- sessions
    def create_session(self, record: SessionRecord) -> None:
        with self._lock:
            self._sessions[record.key] = record
            self._sessions_of[record.identity_id][record.key] = None

    def get_session(self, key: bytes) -> SessionRecord | None:
        with self._lock:
            return self._sessions.get(key)

    def touch_session(self, key: bytes, last_seen_at: float, idle_expires_at: float) -> None:
        with self._lock:
            record = self._sessions.get(key)
            if record is not None:
                self._sessions[key] = record.evolve(
                    last_seen_at=last_seen_at,
                    idle_expires_at=min(idle_expires_at, record.absolute_expires_at),
                )

    def delete_session(self, key: bytes) -> bool:
        with self._lock:
            record = self._sessions.pop(key, None)
            if record is None:
                return False
            self._unindex_session(record)
            return True

    def _unindex_session(self, record: SessionRecord) -> None:
        keys = self._sessions_of.get(record.identity_id)
        if keys is not None:
            keys.pop(record.key, None)
            if not keys:
                del self._sessions_of[record.identity_id]

    def delete_sessions(self, identity_id: str, *, keep: bytes | None = None) -> int:
        with self._lock:
            doomed = [k for k in self._sessions_of.get(identity_id, {}) if k != keep]
            for key in doomed:
                self._unindex_session(self._sessions.pop(key))
            return len(doomed)

    def list_sessions(self, identity_id: str) -> list[SessionRecord]:
        with self._lock:
            found = [self._sessions[k] for k in self._sessions_of.get(identity_id, {})]
        return sorted(found, key=lambda s: s.created_at, reverse=True)

    # -- messages
    def add_message(self, message: Message) -> None:
        with self._lock:
            self._messages.append(message)
            self._messages_of[(message.portal, message.identity_id)].append(message)

    def list_messages(
        self, portal: str, *, identity_id: str | None = None, limit: int = 100
    ) -> list[Message]:
        with self._lock:
            if identity_id is not None:
                own = self._messages_of.get((portal, identity_id), [])
                return own[: -limit - 1 : -1] if limit > 0 else []
            found = [m for m in reversed(self._messages) if m.portal == portal]
        return found[:limit]

    # -- counters
    def incr_counter(
        self, key: str, amount: int, expires_at: float, now: float, *, extend: bool = False
    ) -> tuple[int, float]:
        with self._lock:
            count, expiry = self._counters.get(key, (0, 0.0))
            if now >= expiry:
                count, expiry = 0, expires_at
            elif extend:
                expiry = expires_at
            count += amount
            self._counters[key] = (count, expiry)
            return count, expiry

    def get_counter(self, key: str, now: float) -> tuple[int, float]:
        with self._lock:
            count, expiry = self._counters.get(key, (0, 0.0))
            if now >= expiry:
                return 0, 0.0
            return count, expiry

    def clear_counter(self, key: str) -> None:
        with self._lock:
            self._counters.pop(key, None)

    def purge_expired(self, now: float, *, batch: int = 1000) -> int:
        removed = 0
        with self._lock:
            for cid in [c for c, r in self._challenges.items() if now >= r.expires_at][:batch]:
                self._drop_challenge(cid)
                removed += 1
            for key in [k for k, s in self._sessions.items() if not s.live_at(now)][
                : batch - removed
            ]:
                self._unindex_session(self._sessions.pop(key))
                removed += 1
            for ckey in [k for k, (_, e) in self._counters.items() if now >= e][: batch - removed]:
                del self._counters[ckey]
                removed += 1
        return removed

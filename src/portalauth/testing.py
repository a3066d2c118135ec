"""pytest helpers for portalauth, and the contract suites a third party runs against its plugins.

How a third party proves its store
----------------------------------
Install the test extra (``pip install 'portalauth[test]'``): this module imports pytest and
hypothesis. Then subclass :class:`StoreContract` in a test module, give it a ``store`` fixture
that yields a fresh, empty store, and set the capability flags that apply::

    import pytest
    from portalauth.testing import StoreContract

    class TestMyStore(StoreContract):
        native_ttl = True  # the backend expires records by itself

        @pytest.fixture
        def store(self):
            store = MyStore("mystore://localhost/test")
            yield store
            store.close()

pytest collects ``TestMyStore`` (the base class itself is not collected: its name does not start
with ``Test``) and runs every contract test against the fixture: round trips, uniqueness, the
atomic operations under thread races, expiry boundaries, purging and a hypothesis state machine
of the challenge lifecycle. A store that passes keeps every promise documented in
:mod:`portalauth.stores.base`.

The contract may equally take its ``store`` fixture from a ``conftest.py`` (that is how
portalauth runs it over every built-in store): a subclass that does not define ``store`` uses
the nearest one pytest finds.

For failure messages that show the compared values, call
``pytest.register_assert_rewrite("portalauth.testing")`` in your ``conftest.py`` before anything
imports this module (pytest rewrites asserts only in test modules and registered ones).

The tests pass times explicitly (``now`` arguments), near the wall clock, so a backend whose
records also expire natively (``native_ttl``) still holds them while a test looks at them.
"""

# ruff: noqa: S101, S105, S106
# S101: pytest reports through ``assert``; S105/S106: the password hashes here are fake test data.

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

try:
    import pytest
    from hypothesis import Phase
    from hypothesis import settings as hypothesis_settings
    from hypothesis import strategies as st
    from hypothesis.stateful import (
        Bundle,
        RuleBasedStateMachine,
        invariant,
        precondition,
        rule,
        run_state_machine_as_test,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "portalauth.testing needs pytest and hypothesis: install the test extra "
        "(pip install 'portalauth[test]')."
    ) from exc

from .config import PortalSettings
from .errors import ContactTaken, NotFound
from .records import ChallengeRecord, Identity, Message, SessionRecord
from .stores.base import Store, batch

__all__ = ["StoreContract"]

_T = TypeVar("_T")


# ================================================================================================
# Store contract
# ================================================================================================
#
# Everything from here to the end of the section is the store contract suite: record builders,
# a thread-race helper, the challenge-lifecycle state machine and the StoreContract base class.
# Every id and slug is fresh (``secrets``), so the tests do not depend on one another even if a
# store happens to be shared; the purge tests do assume they start from an empty store.

#: Threads in each race test (the supersede race uses 10).
_RACE_THREADS = 16
#: Seconds a race waits for its threads to line up, and for all of them to finish.
_RACE_TIMEOUT = 60.0
#: A safety stop for "call purge_expired until it returns 0".
_MAX_PURGE_CALLS = 1000


def _any(**fields: Any) -> dict[str, Any]:
    return fields


def _token() -> str:
    return secrets.token_urlsafe(12)


def _slug() -> str:
    # Portal slugs are lowercase letters, digits and hyphens.
    return f"p-{secrets.token_hex(6)}"


def _add_portal(store: Store, now: float, **changes: Any) -> PortalSettings:
    """Save a portal (stores may require one before its identities and challenges)."""
    portal = PortalSettings(slug=_slug(), name="Contract Test Firm", **changes)
    store.put_portal(portal, now)
    return portal


def _identity(portal: str, now: float, **changes: Any) -> Identity:
    fields: dict[str, Any] = {
        "id": f"id-{_token()}",
        "portal": portal,
        "name": "Pat Doe",
        "created_at": now,
        "updated_at": now,
    }
    fields.update(changes)
    return Identity(**fields)


def _add_identity(store: Store, portal: str, now: float, **changes: Any) -> Identity:
    identity = _identity(portal, now, **changes)
    store.add_identity(identity)
    return identity


def _challenge(
    portal: str,
    subject: str,
    now: float,
    *,
    purpose: str = "code",
    scope: str = "",
    ttl: float = 600.0,
    **changes: Any,
) -> ChallengeRecord:
    fields: dict[str, Any] = {
        "id": f"ch-{_token()}",
        "portal": portal,
        "subject": subject,
        "purpose": purpose,
        "scope": scope,
        "digest": secrets.token_bytes(32),
        "created_at": now,
        "expires_at": now + ttl,
    }
    fields.update(changes)
    return ChallengeRecord(**fields)


def _issue(
    store: Store,
    portal: str,
    subject: str,
    now: float,
    *,
    supersede: bool = True,
    **changes: Any,
) -> ChallengeRecord:
    record = _challenge(portal, subject, now, **changes)
    store.issue_challenge(record, supersede=supersede)
    return record


def _session(identity: Identity, now: float, **changes: Any) -> SessionRecord:
    fields: dict[str, Any] = {
        "key": secrets.token_bytes(32),
        "identity_id": identity.id,
        "portal": identity.portal,
        "method": "code",
        "created_at": now,
        "last_seen_at": now,
        "idle_expires_at": now + 3600.0,
        "absolute_expires_at": now + 86400.0,
    }
    fields.update(changes)
    return SessionRecord(**fields)


def _add_session(store: Store, identity: Identity, now: float, **changes: Any) -> SessionRecord:
    record = _session(identity, now, **changes)
    store.create_session(record)
    return record


def _message(portal: str, identity_id: str | None, now: float, **changes: Any) -> Message:
    fields: dict[str, Any] = {
        "id": f"msg-{_token()}",
        "portal": portal,
        "identity_id": identity_id,
        "channel": "email",
        "to": "pat@example.org",
        "subject": "Your sign-in code",
        "text": "Your code is in this message.",
        "created_at": now,
    }
    fields.update(changes)
    return Message(**fields)


def _race(threads: int, work: Callable[[int], _T]) -> list[_T]:
    """Run ``work(0) .. work(threads - 1)`` in as many threads, released together by a barrier.

    An exception in any thread (including a broken barrier) is raised here.
    """
    barrier = threading.Barrier(threads)

    def run(index: int) -> _T:
        barrier.wait(timeout=_RACE_TIMEOUT)
        return work(index)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(run, index) for index in range(threads)]
        return [future.result(timeout=_RACE_TIMEOUT) for future in futures]


def _purge_all(store: Store, now: float, batch: int) -> list[int]:
    """Call ``purge_expired`` until it returns 0; return what each call returned."""
    counts: list[int] = []
    for _ in range(_MAX_PURGE_CALLS):
        removed = store.purge_expired(now, batch=batch)
        counts.append(removed)
        if removed == 0:
            return counts
    raise AssertionError(f"purge_expired did not reach 0 in {_MAX_PURGE_CALLS} calls: {counts}")


# -- the challenge lifecycle state machine ------------------------------------------------------

_SUBJECTS = ("subject-a", "subject-b")
_PURPOSES = ("code", "link")
_SCOPES = ("", "case-1")


@dataclass
class _ModelChallenge:
    """What the model believes about one issued challenge."""

    key: tuple[str, str, str]  # (subject, purpose, scope)
    expires_at: float
    max_attempts: int
    attempts: int = 0
    state: str = "live"
    consumed_at: float | None = None
    consumes: int = 0


def _challenge_lifecycle_machine(store: Store, *, native_ttl: bool) -> type[RuleBasedStateMachine]:
    """A state machine that drives one store's challenges and checks them against a model.

    Every machine instance (one per hypothesis example) works in a portal of its own, so the
    examples share the store without seeing each other's records. The model clock only moves
    forward and is passed to the store explicitly.
    """

    keys = st.tuples(
        st.sampled_from(_SUBJECTS), st.sampled_from(_PURPOSES), st.sampled_from(_SCOPES)
    )

    class ChallengeLifecycle(RuleBasedStateMachine):
        challenges: Bundle[str] = Bundle("challenges")

        def __init__(self) -> None:
            super().__init__()
            self.now = time.time()
            self.portal = _add_portal(store, self.now).slug
            self.model: dict[str, _ModelChallenge] = {}
            self.issued: dict[tuple[str, str, str], list[str]] = {}

        # -- helpers
        def gone_by_ttl(self, cid: str) -> bool:
            """Whether a native-TTL backend may already have dropped this challenge."""
            return native_ttl and self.now >= self.model[cid].expires_at

        def refusal(self, model: _ModelChallenge, *, spending: bool) -> str | None:
            """Why the store must refuse now, or None if it must accept."""
            if model.state != "live":
                return f"the challenge is {model.state}"
            if self.now >= model.expires_at:
                return "the challenge is expired (now >= expires_at)"
            if spending and model.attempts >= model.max_attempts:
                return "the attempt budget is spent"
            return None

        # -- rules
        @rule(
            target=challenges,
            key=keys,
            ttl=st.floats(min_value=0.001, max_value=120.0) | st.integers(1, 120),
            max_attempts=st.integers(1, 4),
        )
        def issue(self, key: tuple[str, str, str], ttl: float, max_attempts: int) -> str:
            subject, purpose, scope = key
            record = _challenge(
                self.portal,
                subject,
                self.now,
                purpose=purpose,
                scope=scope,
                ttl=ttl,
                max_attempts=max_attempts,
                lookup=secrets.token_bytes(16),
            )
            store.issue_challenge(record, supersede=True)
            for model in self.model.values():
                if model.key == key and model.state == "live":
                    model.state = "superseded"
            self.model[record.id] = _ModelChallenge(
                key=key, expires_at=record.expires_at, max_attempts=max_attempts
            )
            self.issued.setdefault(key, []).append(record.id)
            return record.id

        @rule(cid=challenges)
        def spend_attempt(self, cid: str) -> None:
            model = self.model[cid]
            refusal = self.refusal(model, spending=True)
            ok, record = store.spend_attempt(cid, self.now)
            if refusal is not None:
                assert not ok, f"spend_attempt succeeded although {refusal}"
            else:
                assert ok, "spend_attempt refused a live, unexpired challenge with budget left"
                model.attempts += 1
            if record is None:
                assert self.gone_by_ttl(cid), "spend_attempt returned no record for a known id"
                return
            assert record.id == cid
            assert record.attempts == model.attempts
            assert record.attempts <= record.max_attempts

        @rule(cid=challenges)
        def spend_whole_budget(self, cid: str) -> None:
            # Spend until refused (one past the budget), so running out is common.
            for _ in range(self.model[cid].max_attempts + 1):
                self.spend_attempt(cid)

        @rule(cid=challenges)
        def consume(self, cid: str) -> None:
            model = self.model[cid]
            refusal = self.refusal(model, spending=False)
            ok = store.consume_challenge(cid, self.now)
            if refusal is not None:
                assert not ok, f"consume_challenge succeeded although {refusal}"
                return
            assert ok, "consume_challenge refused a live, unexpired challenge"
            model.consumes += 1
            assert model.consumes <= 1, "a challenge was consumed twice"
            model.state = "consumed"
            model.consumed_at = self.now

        @precondition(lambda self: bool(self.model))
        @rule(
            subject=st.sampled_from(_SUBJECTS),
            purposes=st.none() | st.lists(st.sampled_from(_PURPOSES), max_size=2, unique=True),
            scope=st.none() | st.sampled_from(_SCOPES),
        )
        def revoke(self, subject: str, purposes: list[str] | None, scope: str | None) -> None:
            expected = 0
            for model in self.model.values():
                m_subject, m_purpose, m_scope = model.key
                if model.state != "live" or m_subject != subject:
                    continue
                if purposes is not None and m_purpose not in purposes:
                    continue
                if scope is not None and m_scope != scope:
                    continue
                model.state = "revoked"
                expected += 1
            changed = store.revoke_challenges(self.portal, subject, purposes=purposes, scope=scope)
            assert changed == expected, f"revoke_challenges changed {changed}, not {expected}"

        @precondition(lambda self: bool(self.model))
        @rule(seconds=st.floats(min_value=0.0, max_value=90.0) | st.integers(0, 90))
        def advance(self, seconds: float) -> None:
            self.now += seconds

        @rule(cid=challenges)
        def advance_to_expiry(self, cid: str) -> None:
            # Land exactly on the boundary: now == expires_at is already expired.
            self.now = max(self.now, self.model[cid].expires_at)

        # -- invariants
        @invariant()
        def store_agrees_with_model(self) -> None:
            live_per_key: dict[tuple[str, str, str], int] = {}
            for cid, model in self.model.items():
                record = store.get_challenge(cid)
                if record is None:
                    assert self.gone_by_ttl(cid), f"challenge {cid} vanished"
                    continue
                assert record.state == model.state, (
                    f"state is {record.state!r}, the model says {model.state!r}"
                )
                assert record.attempts == model.attempts
                assert record.consumed_at == model.consumed_at
                if record.state == "live":
                    live_per_key[model.key] = live_per_key.get(model.key, 0) + 1
            crowded = {key: n for key, n in live_per_key.items() if n > 1}
            assert not crowded, f"more than one live challenge for a key: {crowded}"

        @invariant()
        def latest_is_newest_issued(self) -> None:
            for key, ids in self.issued.items():
                if self.gone_by_ttl(ids[-1]):
                    continue
                latest = store.latest_challenge(self.portal, *key)
                assert latest is not None
                assert latest.id == ids[-1], "latest_challenge is not the newest issued"

    return ChallengeLifecycle


# -- the contract --------------------------------------------------------------------------------


class StoreContract:
    """The store contract: subclass it as ``Test<YourStore>`` and provide a ``store`` fixture.

    The ``store`` fixture is **required** and is not defined here (so a ``conftest.py`` fixture
    can serve it too). It must yield a fresh, empty store for each test and close it afterwards.

    Capability flags, class attributes a subclass overrides where its backend legitimately
    differs:

    - ``native_ttl``: the backend expires records by itself (Redis TTLs). ``purge_expired`` may
      then return 0 and an expired record may disappear before it is purged. Expiry is still
      decided by the ``now`` passed in: a record that is still there and expired must behave as
      expired.
    - ``supports_processes``: the store can be shared by several processes (a SQL database
      file or server, Redis), so the multi-process race tests apply to it. Reserved: no test
      uses it yet.
    """

    native_ttl: bool = False
    supports_processes: bool = False

    # == portals ==================================================================================

    def test_portal_round_trip(self, store: Store) -> None:
        now = time.time()
        portal = PortalSettings(
            slug=_slug(),
            name="Doe & Partners LLP",
            methods=frozenset({"share_code", "email_code", "password"}),
            signup_enabled=True,
            simulate=True,
            helpful_errors=True,
            default_region="GB",
            support_phone="+44 20 7946 0000",
            base_url="https://portal.example/doe",
            session_idle=900,
            session_absolute=43200,
            second_factor="sms_code",
            failure_budget=7,
            failure_hard_limit=50,
            method_settings={
                "email_code": {"length": 8, "ttl": 600.5, "alphabet": "digits"},
                "password": {"min_length": 12, "pepper": None, "breach_check": False},
                "share_code": {"groups": [4, 4, 4], "labels": {"en": "Share code"}},
            },
            # Through **: mypy cannot bind the type variable of these fields' ``frozenset``
            # converter, so it rejects any typed argument for them.
            **_any(sms_countries=frozenset({"GB", "IE"}), required_fields={"email", "mobile"}),
        )
        assert store.get_portal(portal.slug) is None
        store.put_portal(portal, now)
        got = store.get_portal(portal.slug)
        assert got == portal
        assert got is not None
        assert isinstance(got.methods, frozenset)
        assert isinstance(got.sms_countries, frozenset)
        assert isinstance(got.required_fields, frozenset)
        assert got.settings_for("email_code")["ttl"] == 600.5
        assert got.settings_for("password")["pepper"] is None
        assert got.settings_for("password")["breach_check"] is False
        assert got.method_settings == portal.method_settings

    def test_portal_defaults_round_trip(self, store: Store) -> None:
        portal = _add_portal(store, time.time())
        assert store.get_portal(portal.slug) == portal

    def test_put_portal_replaces(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now, methods=frozenset({"share_code"}))
        changed = portal.evolve(
            name="Renamed Firm",
            methods=frozenset({"password"}),
            method_settings={"password": {"min_length": 14}},
        )
        store.put_portal(changed, now + 1.0)
        assert store.get_portal(portal.slug) == changed
        assert [p.slug for p in store.list_portals()].count(portal.slug) == 1

    def test_list_portals_ordered_by_slug(self, store: Store) -> None:
        now = time.time()
        stem = _slug()
        wanted = [f"{stem}-c", f"{stem}-a", f"{stem}-b"]
        for slug in wanted:
            store.put_portal(PortalSettings(slug=slug, name=f"Firm {slug}"), now)
        listed = [p.slug for p in store.list_portals()]
        assert listed == sorted(listed)
        assert [s for s in listed if s.startswith(stem)] == sorted(wanted)
        by_slug = {p.slug: p for p in store.list_portals()}
        assert by_slug[f"{stem}-a"].name == f"Firm {stem}-a"

    def test_get_unknown_portal(self, store: Store) -> None:
        assert store.get_portal(_slug()) is None

    # == identities ===============================================================================

    def test_identity_every_field_round_trips(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        digest = bytes(range(256)) + secrets.token_bytes(32)
        identity = _identity(
            portal,
            now,
            name="Zoë O'Brien-Łukasz",
            email="Zoe.OBrien@Example.org",
            email_key="zoe.obrien@example.org",
            email_status="opted_out",
            phone="+14155550123",
            phone_status="invalid",
            disabled=True,
            created_at=now - 86400.123456,
            updated_at=now - 0.000123,
            last_sign_in_at=now - 3600.5,
            last_sign_in_method="email_code",
            invited_method="email",
            invited_at=now - 7200.25,
            email_confirmed=False,
            tax_id_digest=digest,
            password_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
            password_changed_at=now - 60.0001,
            attributes={
                "case": "2024-CV-00123",
                "count": 3,
                "ratio": 0.1,
                "big": 2**53,
                "flag": False,
                "missing": None,
                "tags": ["a", "b", 1],
                "nested": {"court": "Superior", "room": 12},
                "unicode": "✓ Zoë",
            },
        )
        store.add_identity(identity)
        got = store.get_identity(identity.id)
        assert got == identity
        assert got is not None
        assert type(got.tax_id_digest) is bytes
        assert got.disabled is True
        assert got.email_confirmed is False
        for name in ("created_at", "updated_at", "last_sign_in_at", "invited_at"):
            assert type(getattr(got, name)) is float, name
        assert got.attributes["flag"] is False
        assert got.attributes["missing"] is None
        assert got.attributes["big"] == 2**53
        assert dict(got.attributes) == dict(identity.attributes)

    def test_identity_minimal_round_trips(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        identity = _add_identity(store, portal, now)
        got = store.get_identity(identity.id)
        assert got == identity
        assert got is not None
        for name in (
            "email",
            "email_key",
            "phone",
            "last_sign_in_at",
            "last_sign_in_method",
            "invited_method",
            "invited_at",
            "tax_id_digest",
            "password_hash",
            "password_changed_at",
        ):
            assert getattr(got, name) is None, name
        assert got.disabled is False
        assert got.email_confirmed is True
        assert dict(got.attributes) == {}

    def test_get_unknown_identity(self, store: Store) -> None:
        assert store.get_identity(f"id-{_token()}") is None

    def test_find_identity_by_email_key_and_phone(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        other_portal = _add_portal(store, now).slug
        by_email = _add_identity(store, portal, now, email="a@example.org", email_key="a@ex.org")
        by_phone = _add_identity(store, portal, now, phone="+14155550100")
        _add_identity(store, other_portal, now, email_key="elsewhere@ex.org", phone="+1415555")

        assert store.find_identity(portal, email_key="a@ex.org") == by_email
        assert store.find_identity(portal, phone="+14155550100") == by_phone
        assert store.find_identity(portal, email_key="nobody@ex.org") is None
        assert store.find_identity(portal, phone="+14155550199") is None
        assert store.find_identity(portal, email_key="elsewhere@ex.org") is None
        assert store.find_identity(portal, phone="+1415555") is None
        assert store.find_identity(other_portal, email_key="a@ex.org") is None
        assert store.find_identity(other_portal, phone="+14155550100") is None

    def test_list_identities_ordered_by_name_then_id(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        other_portal = _add_portal(store, now).slug
        tag = f"id-{secrets.token_hex(6)}"
        made = [
            _add_identity(store, portal, now, id=f"{tag}-2", name="Ben Ng"),
            _add_identity(store, portal, now, id=f"{tag}-5", name="Cara Diaz"),
            _add_identity(store, portal, now, id=f"{tag}-3", name="Ann Lee"),
            _add_identity(store, portal, now, id=f"{tag}-1", name="Ben Ng"),
        ]
        _add_identity(store, other_portal, now, id=f"{tag}-0", name="Abe Other")
        listed = store.list_identities(portal)
        assert [i.id for i in listed] == [f"{tag}-3", f"{tag}-1", f"{tag}-2", f"{tag}-5"]
        assert sorted(listed, key=lambda i: i.id) == sorted(made, key=lambda i: i.id)
        assert store.list_identities(_slug()) == []

    def test_update_identity(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        identity = _add_identity(
            store, portal, now, email="old@example.org", email_key="old@ex.org", phone="+1415550001"
        )
        changed = identity.evolve(
            name="Pat Q. Doe",
            email="new@example.org",
            email_key="new@ex.org",
            phone="+1415550002",
            disabled=True,
            updated_at=now + 5.5,
            attributes={"note": "moved"},
        )
        store.update_identity(changed)
        assert store.get_identity(identity.id) == changed
        assert store.find_identity(portal, email_key="new@ex.org") == changed
        assert store.find_identity(portal, phone="+1415550002") == changed
        assert store.find_identity(portal, email_key="old@ex.org") is None
        assert store.find_identity(portal, phone="+1415550001") is None
        # The old address is free again.
        _add_identity(store, portal, now, email_key="old@ex.org", phone="+1415550001")

    def test_update_identity_keeping_its_own_contacts(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        identity = _add_identity(store, portal, now, email_key="same@ex.org", phone="+1415550003")
        changed = identity.evolve(name="Still Me")
        store.update_identity(changed)
        assert store.get_identity(identity.id) == changed

    def test_update_identity_keeps_fields_with_their_own_writers(self, store: Store) -> None:
        # A staff edit made from a stale read never undoes a password change or a sign-in.
        now = time.time()
        portal = _add_portal(store, now).slug
        identity = _add_identity(
            store,
            portal,
            now,
            password_hash="$argon2id$current",
            password_changed_at=now - 10.5,
            last_sign_in_at=now - 5.25,
            last_sign_in_method="password",
        )
        stale = identity.evolve(
            name="Edited By Staff",
            updated_at=now + 1.0,
            password_hash="$argon2id$stale",
            password_changed_at=None,
            last_sign_in_at=None,
            last_sign_in_method=None,
        )
        store.update_identity(stale)
        assert store.get_identity(identity.id) == stale.evolve(
            password_hash="$argon2id$current",
            password_changed_at=now - 10.5,
            last_sign_in_at=now - 5.25,
            last_sign_in_method="password",
        )

    def test_record_sign_in_writes_only_its_fields(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        identity = _add_identity(store, portal, now, email_key="in@ex.org", password_hash="h")
        store.record_sign_in(identity.id, now + 60.125, "share_code")
        assert store.get_identity(identity.id) == identity.evolve(
            last_sign_in_at=now + 60.125, last_sign_in_method="share_code"
        )
        store.record_sign_in(identity.id, now + 120.0, "password")
        assert store.get_identity(identity.id) == identity.evolve(
            last_sign_in_at=now + 120.0, last_sign_in_method="password"
        )
        store.record_sign_in(f"id-{_token()}", now, "password")  # unknown: ignored
        assert store.get_identity(f"id-{_token()}") is None

    def test_update_unknown_identity_raises_not_found(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        ghost = _identity(portal, now, email_key="ghost@ex.org")
        with pytest.raises(NotFound):
            store.update_identity(ghost)
        assert store.get_identity(ghost.id) is None
        assert store.find_identity(portal, email_key="ghost@ex.org") is None

    def test_delete_identity(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        identity = _add_identity(store, portal, now, email_key="gone@ex.org", phone="+1415550004")
        survivor = _add_identity(store, portal, now)
        assert store.delete_identity(identity.id) is True
        assert store.get_identity(identity.id) is None
        assert store.find_identity(portal, email_key="gone@ex.org") is None
        assert store.list_identities(portal) == [survivor]
        assert store.delete_identity(identity.id) is False
        assert store.delete_identity(f"id-{_token()}") is False
        # Its addresses may be used again.
        _add_identity(store, portal, now, email_key="gone@ex.org", phone="+1415550004")

    def test_delete_identity_cascades_sessions_and_challenges(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        doomed = _add_identity(store, portal, now)
        other = _add_identity(store, portal, now)
        doomed_sessions = [_add_session(store, doomed, now + i) for i in range(2)]
        other_session = _add_session(store, other, now)
        doomed_challenges = [
            _issue(store, portal, doomed.id, now, purpose="code"),
            _issue(store, portal, doomed.id, now, purpose="link", lookup=b"L" * 16),
        ]
        other_challenge = _issue(store, portal, other.id, now)

        assert store.delete_identity(doomed.id) is True
        for session in doomed_sessions:
            assert store.get_session(session.key) is None
        assert store.list_sessions(doomed.id) == []
        for challenge in doomed_challenges:
            assert store.get_challenge(challenge.id) is None
        assert store.latest_challenge(portal, doomed.id, "code") is None
        assert store.find_challenge(portal, "link", [b"L" * 16]) is None
        assert store.get_session(other_session.key) == other_session
        assert store.get_challenge(other_challenge.id) == other_challenge

    def test_duplicate_email_key_raises_contact_taken(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        first = _add_identity(store, portal, now, email_key="dup@ex.org", phone="+1415550010")
        second = _identity(portal, now, email_key="dup@ex.org", phone="+1415550011")
        with pytest.raises(ContactTaken) as caught:
            store.add_identity(second)
        assert caught.value.field == "email"
        assert store.get_identity(second.id) is None
        assert store.find_identity(portal, phone="+1415550011") is None
        assert store.list_identities(portal) == [first]

    def test_duplicate_phone_raises_contact_taken(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        first = _add_identity(store, portal, now, email_key="one@ex.org", phone="+1415550020")
        second = _identity(portal, now, email_key="two@ex.org", phone="+1415550020")
        with pytest.raises(ContactTaken) as caught:
            store.add_identity(second)
        assert caught.value.field == "phone"
        assert store.get_identity(second.id) is None
        assert store.find_identity(portal, email_key="two@ex.org") is None
        assert store.list_identities(portal) == [first]

    def test_same_contact_in_another_portal_is_allowed(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        other_portal = _add_portal(store, now).slug
        here = _add_identity(store, portal, now, email_key="both@ex.org", phone="+1415550030")
        there = _add_identity(
            store, other_portal, now, email_key="both@ex.org", phone="+1415550030"
        )
        assert store.find_identity(portal, email_key="both@ex.org") == here
        assert store.find_identity(other_portal, email_key="both@ex.org") == there
        assert store.find_identity(other_portal, phone="+1415550030") == there

    def test_identities_without_contacts_do_not_collide(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        made = [_add_identity(store, portal, now) for _ in range(3)]
        assert len(store.list_identities(portal)) == len(made)

    def test_update_to_a_taken_contact_is_refused(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        _add_identity(store, portal, now, email_key="a@ex.org", phone="+1415550040")
        mover = _add_identity(store, portal, now, email_key="b@ex.org", phone="+1415550041")

        with pytest.raises(ContactTaken) as caught:
            store.update_identity(mover.evolve(email_key="a@ex.org", name="Changed"))
        assert caught.value.field == "email"
        assert store.get_identity(mover.id) == mover

        with pytest.raises(ContactTaken) as caught:
            store.update_identity(mover.evolve(phone="+1415550040", name="Changed"))
        assert caught.value.field == "phone"
        assert store.get_identity(mover.id) == mover
        assert store.find_identity(portal, email_key="b@ex.org") == mover

    def test_replace_password_hash_compare_and_swap(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        identity = _add_identity(store, portal, now, email_key="pw@ex.org")

        # No password yet: only expected=None matches.
        assert store.replace_password_hash(identity.id, "h1", expected="h0", now=now) is False
        assert _password_hash(store, identity.id) is None
        assert store.replace_password_hash(identity.id, "h1", expected=None, now=now) is True
        assert _password_hash(store, identity.id) == "h1"

        # A matching expected value writes; a stale one (or None) writes nothing.
        assert store.replace_password_hash(identity.id, "h2", expected="h1", now=now + 1) is True
        assert _password_hash(store, identity.id) == "h2"
        assert store.replace_password_hash(identity.id, "h3", expected="h1", now=now + 2) is False
        assert store.replace_password_hash(identity.id, "h3", expected=None, now=now + 2) is False
        assert _password_hash(store, identity.id) == "h2"

        got = store.get_identity(identity.id)
        assert got is not None
        assert got.evolve(password_hash=None, updated_at=0.0) == identity.evolve(
            password_hash=None, updated_at=0.0
        )
        assert store.replace_password_hash(f"id-{_token()}", "h", expected=None, now=now) is False

    def test_replace_password_hash_changed_sets_password_changed_at(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        identity = _add_identity(store, portal, now)
        # A new password records when it changed...
        assert store.replace_password_hash(
            identity.id, "h1", expected=None, now=now + 1.5, changed=True
        )
        got = store.get_identity(identity.id)
        assert got is not None
        assert got.password_changed_at == now + 1.5
        # ...a hash upgrade (changed=False, the default) does not.
        assert store.replace_password_hash(identity.id, "h1-upgraded", expected="h1", now=now + 9)
        got = store.get_identity(identity.id)
        assert got is not None
        assert got.password_hash == "h1-upgraded"
        assert got.password_changed_at == now + 1.5
        # A refused swap changes nothing, whatever ``changed`` says.
        assert not store.replace_password_hash(
            identity.id, "h2", expected="h1", now=now + 20, changed=True
        )
        assert store.get_identity(identity.id) == got

    # == challenges ===============================================================================

    def test_challenge_round_trip(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        record = _challenge(
            portal,
            f"anon:{secrets.token_hex(16)}",
            now,
            purpose="share_code",
            scope="case-42",
            lookup=bytes(range(32)),
            max_attempts=3,
            ttl=900.125,
            data={"channel": "sms", "to_hint": "***0123", "n": 2, "flag": True, "x": None},
        )
        assert store.get_challenge(record.id) is None
        store.issue_challenge(record, supersede=True)
        got = store.get_challenge(record.id)
        assert got == record
        assert got is not None
        assert type(got.digest) is bytes
        assert type(got.lookup) is bytes
        assert got.consumed_at is None
        assert got.data["flag"] is True
        assert got.data["x"] is None
        assert dict(got.data) == dict(record.data)

    def test_supersede_touches_only_the_same_key(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        other_portal = _add_portal(store, now).slug
        old = _issue(store, portal, "s1", now, purpose="code", scope="")
        bystanders = [
            _issue(store, portal, "s1", now, purpose="code", scope="case-1"),
            _issue(store, portal, "s1", now, purpose="link", scope=""),
            _issue(store, portal, "s2", now, purpose="code", scope=""),
            _issue(store, other_portal, "s1", now, purpose="code", scope=""),
        ]
        new = _issue(store, portal, "s1", now + 1, purpose="code", scope="")
        assert _state(store, old.id) == "superseded"
        assert _state(store, new.id) == "live"
        for record in bystanders:
            assert store.get_challenge(record.id) == record

    def test_supersede_changes_only_live_challenges(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        consumed = _issue(store, portal, "s1", now)
        assert store.consume_challenge(consumed.id, now + 1) is True
        revoked = _issue(store, portal, "s1", now + 2)
        assert store.revoke_challenges(portal, "s1", purposes=["code"]) == 1
        live = _issue(store, portal, "s1", now + 3)
        newest = _issue(store, portal, "s1", now + 4)
        assert _state(store, consumed.id) == "consumed"
        assert _state(store, revoked.id) == "revoked"
        assert _state(store, live.id) == "superseded"
        assert _state(store, newest.id) == "live"

    def test_issue_without_supersede_leaves_others_live(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        first = _issue(store, portal, "s1", now, supersede=False)
        second = _issue(store, portal, "s1", now + 1, supersede=False)
        assert _state(store, first.id) == "live"
        assert _state(store, second.id) == "live"
        third = _issue(store, portal, "s1", now + 2, supersede=True)
        assert _state(store, first.id) == "superseded"
        assert _state(store, second.id) == "superseded"
        assert _state(store, third.id) == "live"

    def test_find_challenge_by_lookups(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        other_portal = _add_portal(store, now).slug
        old_key_lookup, new_key_lookup, stranger = (secrets.token_bytes(32) for _ in range(3))
        record = _issue(store, portal, "s1", now, purpose="share_code", lookup=old_key_lookup)
        _issue(store, other_portal, "s1", now, purpose="share_code", lookup=new_key_lookup)
        _issue(store, portal, "s1", now, purpose="link", lookup=new_key_lookup)

        # One lookup per server key during a rotation: any of them may match.
        found = store.find_challenge(portal, "share_code", [new_key_lookup, old_key_lookup])
        assert found == record
        assert store.find_challenge(portal, "share_code", [old_key_lookup]) == record
        assert store.find_challenge(portal, "share_code", [stranger]) is None
        assert store.find_challenge(portal, "share_code", [new_key_lookup]) is None
        assert store.find_challenge(portal, "share_code", []) is None
        assert store.find_challenge(portal, "pin", [old_key_lookup]) is None
        assert store.find_challenge(_slug(), "share_code", [old_key_lookup]) is None

        # Found in whatever state it is.
        assert store.consume_challenge(record.id, now + 1) is True
        found = store.find_challenge(portal, "share_code", [old_key_lookup])
        assert found is not None
        assert found.id == record.id
        assert found.state == "consumed"

    def test_find_challenge_most_recent_wins(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        lookups = [secrets.token_bytes(32) for _ in range(2)]
        newer = _issue(store, portal, "s1", now + 10, lookup=lookups[1], supersede=False)
        older = _issue(store, portal, "s2", now, lookup=lookups[0], supersede=False)
        assert store.find_challenge(portal, "code", lookups) == newer
        assert store.find_challenge(portal, "code", lookups[::-1]) == newer
        assert store.find_challenge(portal, "code", lookups[:1]) == older
        # The same lookup twice (a re-issued secret): the most recent record wins.
        again = _issue(store, portal, "s3", now + 20, lookup=lookups[0], supersede=False)
        assert store.find_challenge(portal, "code", lookups[:1]) == again

    def test_latest_challenge_ordering(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        first = _issue(store, portal, "s1", now)
        newest = _issue(store, portal, "s1", now + 2, supersede=False)
        _issue(store, portal, "s1", now + 1, supersede=False)  # created earlier, inserted later
        assert store.latest_challenge(portal, "s1", "code") == newest

        # Whatever the state.
        assert store.consume_challenge(newest.id, now + 3) is True
        latest = store.latest_challenge(portal, "s1", "code")
        assert latest is not None
        assert latest.id == newest.id
        assert latest.state == "consumed"
        assert store.latest_challenge(portal, "s1", "code", "") == latest

        # Per key: scope, purpose, subject and portal all count.
        scoped = _issue(store, portal, "s1", now - 50, scope="case-1")
        assert store.latest_challenge(portal, "s1", "code", "case-1") == scoped
        assert store.latest_challenge(portal, "s1", "link") is None
        assert store.latest_challenge(portal, "s2", "code") is None
        assert store.latest_challenge(_slug(), "s1", "code") is None
        assert _state(store, first.id) == "live"  # the later issues did not supersede

    def test_latest_challenge_ties_go_to_the_last_inserted(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        # Ids in descending order, so an id tie-break would pick the wrong one.
        tag = secrets.token_hex(6)
        records = [
            _issue(store, portal, "s1", now, supersede=False, id=f"ch-{tag}-{n}") for n in (9, 5, 7)
        ]
        assert store.latest_challenge(portal, "s1", "code") == records[-1]
        lookup = secrets.token_bytes(32)
        twins = [
            _issue(store, portal, "s2", now, supersede=False, lookup=lookup, id=f"ch-{tag}-t{n}")
            for n in (2, 1)
        ]
        assert store.find_challenge(portal, "code", [lookup]) == twins[-1]

    def test_spend_attempt_increments(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        record = _issue(store, portal, "s1", now, max_attempts=3)
        ok, after = store.spend_attempt(record.id, now + 1)
        assert ok is True
        assert after == record.evolve(attempts=1)
        assert store.get_challenge(record.id) == after
        ok, after = store.spend_attempt(record.id, now + 2)
        assert ok is True
        assert after is not None
        assert after.attempts == 2

    def test_spend_attempt_budget(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        record = _issue(store, portal, "s1", now, max_attempts=3)
        results = [store.spend_attempt(record.id, now + 1)[0] for _ in range(5)]
        assert results == [True, True, True, False, False]
        ok, after = store.spend_attempt(record.id, now + 1)
        assert ok is False
        assert after is not None
        assert after.attempts == 3
        assert after == store.get_challenge(record.id)
        assert after.state == "live"

    def test_spend_attempt_expiry_boundary(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        record = _issue(store, portal, "s1", now, ttl=60.0)
        ok, after = store.spend_attempt(record.id, record.expires_at)
        assert ok is False
        assert after == record
        ok, after = store.spend_attempt(record.id, record.expires_at + 1000.0)
        assert ok is False
        assert after == record
        ok, after = store.spend_attempt(record.id, record.expires_at - 0.001)
        assert ok is True
        assert after == record.evolve(attempts=1)

    def test_spend_attempt_refused_unless_live(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        consumed = _issue(store, portal, "s1", now, purpose="code")
        assert store.consume_challenge(consumed.id, now) is True
        superseded = _issue(store, portal, "s1", now, purpose="link")
        _issue(store, portal, "s1", now + 1, purpose="link")
        revoked = _issue(store, portal, "s1", now, purpose="pin")
        assert store.revoke_challenges(portal, "s1", purposes=["pin"]) == 1
        for record, state in (
            (consumed, "consumed"),
            (superseded, "superseded"),
            (revoked, "revoked"),
        ):
            ok, after = store.spend_attempt(record.id, now + 2)
            assert ok is False, state
            assert after is not None
            assert after.state == state
            assert after.attempts == 0
        assert store.spend_attempt(f"ch-{_token()}", now) == (False, None)

    def test_consume_challenge_once(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        record = _issue(store, portal, "s1", now)
        assert store.consume_challenge(record.id, now + 1.5) is True
        assert store.get_challenge(record.id) == record.evolve(
            state="consumed", consumed_at=now + 1.5
        )
        assert store.consume_challenge(record.id, now + 2) is False
        got = store.get_challenge(record.id)
        assert got is not None
        assert got.consumed_at == now + 1.5
        assert store.consume_challenge(f"ch-{_token()}", now) is False

    def test_consume_challenge_expiry_boundary(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        record = _issue(store, portal, "s1", now, ttl=30.0)
        assert store.consume_challenge(record.id, record.expires_at) is False
        assert store.consume_challenge(record.id, record.expires_at + 60.0) is False
        assert store.get_challenge(record.id) == record
        assert store.consume_challenge(record.id, record.expires_at - 0.001) is True

    def test_consume_challenge_refused_unless_live(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        superseded = _issue(store, portal, "s1", now)
        _issue(store, portal, "s1", now + 1)
        revoked = _issue(store, portal, "s1", now, purpose="pin")
        assert store.revoke_challenges(portal, "s1", purposes=["pin"]) == 1
        assert store.consume_challenge(superseded.id, now + 2) is False
        assert store.consume_challenge(revoked.id, now + 2) is False
        assert _state(store, superseded.id) == "superseded"
        assert _state(store, revoked.id) == "revoked"

    def test_consume_after_the_last_attempt(self, store: Store) -> None:
        # The service spends an attempt, compares, then consumes: spending the last attempt
        # must not stop that same attempt from consuming (base.py: consume needs only live and
        # unexpired).
        now = time.time()
        portal = _add_portal(store, now).slug
        record = _issue(store, portal, "s1", now, max_attempts=2)
        assert store.spend_attempt(record.id, now)[0] is True
        assert store.spend_attempt(record.id, now)[0] is True
        assert store.consume_challenge(record.id, now) is True

    def test_revoke_challenges_filters_and_counts(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        other_portal = _add_portal(store, now).slug

        def issue(purpose: str, scope: str, subject: str = "s1", where: str = portal) -> str:
            return _issue(store, where, subject, now, purpose=purpose, scope=scope).id

        code, code_case = issue("code", ""), issue("code", "case-1")
        link, link_case = issue("link", ""), issue("link", "case-1")
        pin = issue("pin", "")
        consumed = issue("reset", "")
        assert store.consume_challenge(consumed, now) is True
        other_subject = issue("code", "", subject="s2")
        other_portal_id = issue("code", "", where=other_portal)

        assert store.revoke_challenges(portal, "s1", purposes=[]) == 0
        assert store.revoke_challenges(portal, "s1", purposes=["code"], scope="case-1") == 1
        assert _state(store, code_case) == "revoked"
        assert _state(store, code) == "live"
        assert store.revoke_challenges(portal, "s1", scope="case-1") == 1
        assert _state(store, link_case) == "revoked"
        assert store.revoke_challenges(portal, "s1", purposes=("code", "link")) == 2
        assert _state(store, code) == "revoked"
        assert _state(store, link) == "revoked"
        assert _state(store, pin) == "live"
        assert store.revoke_challenges(portal, "s1") == 1
        assert _state(store, pin) == "revoked"
        assert store.revoke_challenges(portal, "s1") == 0
        assert _state(store, consumed) == "consumed"
        assert _state(store, other_subject) == "live"
        assert _state(store, other_portal_id) == "live"

    # == sessions =================================================================================

    def test_session_round_trip(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        identity = _add_identity(store, portal, now)
        record = _add_session(
            store,
            identity,
            now,
            method="share_code",
            scope="case-7",
            claims={"staff": False, "case": "2024-CV-7", "level": 2, "none": None},
            idle_expires_at=now + 900.5,
            absolute_expires_at=now + 43200.25,
        )
        got = store.get_session(record.key)
        assert got == record
        assert got is not None
        assert type(got.key) is bytes
        assert got.claims["staff"] is False
        assert store.get_session(secrets.token_bytes(32)) is None

    def test_touch_session(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        identity = _add_identity(store, portal, now)
        record = _add_session(
            store, identity, now, idle_expires_at=now + 100.0, absolute_expires_at=now + 1000.0
        )
        store.touch_session(record.key, now + 50.5, now + 150.5)
        assert store.get_session(record.key) == record.evolve(
            last_seen_at=now + 50.5, idle_expires_at=now + 150.5
        )
        # Never past the absolute expiry.
        store.touch_session(record.key, now + 990.0, now + 1090.0)
        assert store.get_session(record.key) == record.evolve(
            last_seen_at=now + 990.0, idle_expires_at=now + 1000.0
        )
        store.touch_session(secrets.token_bytes(32), now, now + 10.0)  # unknown: no error

    def test_delete_session(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        identity = _add_identity(store, portal, now)
        doomed = _add_session(store, identity, now)
        kept = _add_session(store, identity, now + 1)
        assert store.delete_session(doomed.key) is True
        assert store.get_session(doomed.key) is None
        assert store.delete_session(doomed.key) is False
        assert store.get_session(kept.key) == kept

    def test_delete_sessions_with_keep(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        identity = _add_identity(store, portal, now)
        other = _add_identity(store, portal, now)
        mine = [_add_session(store, identity, now + i) for i in range(3)]
        theirs = _add_session(store, other, now)
        assert store.delete_sessions(identity.id, keep=mine[1].key) == 2
        assert store.list_sessions(identity.id) == [mine[1]]
        assert store.delete_sessions(identity.id, keep=secrets.token_bytes(32)) == 1
        assert store.list_sessions(identity.id) == []
        assert store.delete_sessions(identity.id) == 0
        assert store.get_session(theirs.key) == theirs
        assert store.delete_sessions(other.id) == 1
        assert store.get_session(theirs.key) is None

    def test_list_sessions_newest_first(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        identity = _add_identity(store, portal, now)
        other = _add_identity(store, portal, now)
        middle = _add_session(store, identity, now + 10)
        oldest = _add_session(store, identity, now)
        newest = _add_session(store, identity, now + 20)
        _add_session(store, other, now + 30)
        assert store.list_sessions(identity.id) == [newest, middle, oldest]
        assert store.list_sessions(f"id-{_token()}") == []

    # == messages =================================================================================

    def test_messages_newest_first_filtered_and_limited(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        other_portal = _add_portal(store, now).slug
        one = _add_identity(store, portal, now)
        two = _add_identity(store, portal, now)
        added = [
            _message(portal, one.id, now + 1, html="<p>Hello</p>"),
            _message(portal, two.id, now + 2, channel="sms", to="+14155550123", simulated=False),
            _message(portal, None, now + 3, purpose="digest"),
            _message(portal, one.id, now + 4, subject="Second code", purpose="email_code"),
            _message(other_portal, one.id, now + 5),
        ]
        for message in added:
            store.add_message(message)
        assert store.list_messages(portal) == [added[3], added[2], added[1], added[0]]
        assert store.list_messages(portal, identity_id=one.id) == [added[3], added[0]]
        assert store.list_messages(portal, identity_id=two.id) == [added[1]]
        assert store.list_messages(portal, limit=2) == [added[3], added[2]]
        assert store.list_messages(portal, identity_id=one.id, limit=1) == [added[3]]
        assert store.list_messages(other_portal) == [added[4]]
        assert store.list_messages(_slug()) == []
        got = store.list_messages(portal, identity_id=two.id)[0]
        assert got.simulated is False
        assert got.html is None

    # == counters =================================================================================

    def test_incr_counter_fixed_window(self, store: Store) -> None:
        now = time.time()
        key = f"throttle:{_token()}"
        expiry = now + 60.25
        assert store.incr_counter(key, 1, expiry, now) == (1, expiry)
        # A live counter keeps its expiry, whatever expiry the caller passes.
        assert store.incr_counter(key, 2, now + 500.0, now + 10) == (3, expiry)
        assert store.get_counter(key, now + 10) == (3, expiry)
        assert store.incr_counter(key, 1, now + 500.0, expiry - 0.001) == (4, expiry)

    def test_expired_counter_restarts(self, store: Store) -> None:
        now = time.time()
        key = f"throttle:{_token()}"
        expiry = now + 60.0
        store.incr_counter(key, 5, expiry, now)
        assert store.get_counter(key, expiry) == (0, 0.0)  # now == expires_at: expired
        new_expiry = expiry + 60.0
        assert store.incr_counter(key, 1, new_expiry, expiry) == (1, new_expiry)
        assert store.get_counter(key, expiry + 1) == (1, new_expiry)

    def test_incr_counter_extend(self, store: Store) -> None:
        now = time.time()
        key = f"failures:{_token()}"
        assert store.incr_counter(key, 1, now + 100.0, now, extend=True) == (1, now + 100.0)
        assert store.incr_counter(key, 1, now + 150.5, now + 50, extend=True) == (2, now + 150.5)
        assert store.get_counter(key, now + 120) == (2, now + 150.5)
        # Extending an expired counter starts it again.
        assert store.incr_counter(key, 1, now + 400.0, now + 200, extend=True) == (1, now + 400.0)

    def test_get_counter_missing(self, store: Store) -> None:
        assert store.get_counter(f"none:{_token()}", time.time()) == (0, 0.0)

    def test_clear_counter(self, store: Store) -> None:
        now = time.time()
        key, other = f"throttle:{_token()}", f"throttle:{_token()}"
        store.incr_counter(key, 3, now + 60.0, now)
        store.incr_counter(other, 2, now + 60.0, now)
        store.clear_counter(key)
        assert store.get_counter(key, now) == (0, 0.0)
        assert store.get_counter(other, now) == (2, now + 60.0)
        assert store.incr_counter(key, 1, now + 90.0, now) == (1, now + 90.0)
        store.clear_counter(f"none:{_token()}")  # missing: no error

    # == housekeeping =============================================================================

    def test_purge_expired(self, store: Store) -> None:
        now = time.time()
        at = now + 1000.0  # the purge time
        portal_settings = _add_portal(store, now)
        portal = portal_settings.slug
        identity = _add_identity(store, portal, now, email_key="keep@ex.org")

        expired_challenges = [
            _issue(store, portal, identity.id, now, purpose="a", ttl=1000.0),  # exactly at `at`
            _issue(store, portal, identity.id, now, purpose="b", ttl=10.0),
            _issue(store, portal, "anon:x", now, purpose="c", ttl=500.0),
        ]
        assert store.consume_challenge(expired_challenges[1].id, now) is True
        live_challenges = [
            _issue(store, portal, identity.id, now, purpose="d", ttl=1000.5),
            _issue(store, portal, identity.id, now, purpose="e", ttl=5000.0),
        ]
        assert store.consume_challenge(live_challenges[1].id, now) is True  # consumed, unexpired
        expired_sessions = [
            _add_session(store, identity, now, idle_expires_at=at, absolute_expires_at=at + 9),
            _add_session(store, identity, now, idle_expires_at=at - 5, absolute_expires_at=at),
        ]
        live_session = _add_session(
            store, identity, now, idle_expires_at=at + 60, absolute_expires_at=at + 600
        )
        expired_counters = [f"c:{_token()}", f"c:{_token()}"]
        store.incr_counter(expired_counters[0], 1, at, now)
        store.incr_counter(expired_counters[1], 4, now + 10.0, now)
        live_counter = f"c:{_token()}"
        store.incr_counter(live_counter, 3, at + 10.0, now)
        message = _message(portal, identity.id, now)
        store.add_message(message)

        counts = _purge_all(store, at, batch=2)
        assert all(0 <= n <= 2 for n in counts), counts
        if self.native_ttl:
            assert sum(counts) <= 7
        else:
            assert sum(counts) == 7, counts
            for challenge in expired_challenges:
                assert store.get_challenge(challenge.id) is None
            for session in expired_sessions:
                assert store.get_session(session.key) is None
        assert store.purge_expired(at) == 0

        # Expired counters read as missing either way; live records are untouched.
        for key in expired_counters:
            assert store.get_counter(key, at) == (0, 0.0)
        assert store.get_counter(live_counter, at) == (3, at + 10.0)
        assert store.get_challenge(live_challenges[0].id) == live_challenges[0]
        assert _state(store, live_challenges[1].id) == "consumed"
        assert store.get_session(live_session.key) == live_session
        assert store.get_identity(identity.id) == identity
        assert store.get_portal(portal) == portal_settings
        assert store.list_messages(portal) == [message]

        # Verification results do not change.
        for challenge in expired_challenges:
            assert store.spend_attempt(challenge.id, at)[0] is False
            assert store.consume_challenge(challenge.id, at) is False
        assert store.spend_attempt(live_challenges[0].id, at)[0] is True
        assert store.consume_challenge(live_challenges[0].id, at) is True

    def test_purge_expired_with_nothing_expired(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        identity = _add_identity(store, portal, now)
        record = _issue(store, portal, identity.id, now, ttl=60.0)
        session = _add_session(store, identity, now)
        store.incr_counter(f"c:{_token()}", 1, now + 60.0, now)
        assert store.purge_expired(now) == 0
        assert store.get_challenge(record.id) == record
        assert store.get_session(session.key) == session

    # == batches (optional: stores.base.batch) =================================================

    def test_a_batch_groups_calls_and_undoes_nothing(self, store: Store) -> None:
        # A step runs in a batch; whatever it raises, the writes made before stay written (a
        # counted failure stays counted), and calls behave inside as they do outside.
        now = time.time()
        portal = _add_portal(store, now).slug
        first = _add_identity(store, portal, now, email="a@ex.org", email_key="a@ex.org")
        key = f"c:{_token()}"
        record = _challenge(portal, first.id, now)
        second = _identity(portal, now, email="b@ex.org", email_key="b@ex.org")

        def step() -> None:
            with batch(store):
                assert store.incr_counter(key, 1, now + 60.0, now) == (1, now + 60.0)
                store.issue_challenge(record, supersede=True)
                assert store.spend_attempt(record.id, now)[0] is True
                with batch(store):  # batches nest
                    assert store.incr_counter(key, 1, now + 60.0, now) == (2, now + 60.0)
                with pytest.raises(ContactTaken):  # a refused call leaves the batch usable
                    store.add_identity(
                        _identity(portal, now, email="a@ex.org", email_key="a@ex.org")
                    )
                store.add_identity(second)
                assert store.get_identity(second.id) == second
                raise ValueError("the step failed")

        with pytest.raises(ValueError, match="the step failed"):
            step()
        assert store.get_counter(key, now) == (2, now + 60.0)
        assert store.get_challenge(record.id) == record.evolve(attempts=1)
        assert store.get_identity(second.id) == second
        assert store.find_identity(portal, email_key="a@ex.org") == first
        with batch(store):
            assert store.consume_challenge(record.id, now) is True
        assert _state(store, record.id) == "consumed"

    def test_a_batch_is_per_thread(self, store: Store) -> None:
        # Another thread's calls never join this thread's batch (at most they wait for it).
        now = time.time()
        key, elsewhere = f"c:{_token()}", f"c:{_token()}"
        with ThreadPoolExecutor(1) as pool:
            with batch(store):
                store.incr_counter(key, 1, now + 60.0, now)
                outside = pool.submit(store.incr_counter, elsewhere, 1, now + 60.0, now)
                with batch(store):
                    store.incr_counter(key, 1, now + 60.0, now)
            assert outside.result(timeout=30) == (1, now + 60.0)
        assert store.get_counter(key, now) == (2, now + 60.0)
        assert store.get_counter(elsewhere, now) == (1, now + 60.0)

    # == races (threads behind a barrier) =========================================================

    def test_race_consume(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        record = _issue(store, portal, "s1", now)
        results = _race(_RACE_THREADS, lambda _: store.consume_challenge(record.id, now + 1))
        assert results.count(True) == 1, results
        assert _state(store, record.id) == "consumed"

    def test_race_spend_attempt(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        record = _issue(store, portal, "s1", now, max_attempts=5)
        results = _race(_RACE_THREADS, lambda _: store.spend_attempt(record.id, now + 1))
        accepted = [after for ok, after in results if ok]
        assert len(accepted) == 5, results
        # Each accepted call saw its own increment.
        assert sorted(after.attempts for after in accepted if after is not None) == [1, 2, 3, 4, 5]
        got = store.get_challenge(record.id)
        assert got is not None
        assert got.attempts == 5

    def test_race_issue_with_supersede(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        records = [_challenge(portal, "s1", now) for _ in range(10)]
        _race(10, lambda i: store.issue_challenge(records[i], supersede=True))
        states = [_state(store, record.id) for record in records]
        assert states.count("live") == 1, states
        assert states.count("superseded") == 9, states
        live = records[states.index("live")]
        latest = store.latest_challenge(portal, "s1", "code")
        assert latest is not None
        assert latest.id == live.id, "the live challenge is not the newest"

    def test_race_add_identity_same_email(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        identities = [_identity(portal, now, email_key="race@ex.org") for _ in range(_RACE_THREADS)]

        def add(index: int) -> str | None:
            try:
                store.add_identity(identities[index])
            except ContactTaken as exc:
                return exc.field
            return "added"

        results = _race(len(identities), add)
        assert results.count("added") == 1, results
        assert results.count("email") == len(identities) - 1, results
        winner = identities[results.index("added")]
        assert store.find_identity(portal, email_key="race@ex.org") == winner
        assert store.list_identities(portal) == [winner]

    def test_race_incr_counter(self, store: Store) -> None:
        now = time.time()
        key = f"race:{_token()}"
        expiry = now + 60.0
        results = _race(_RACE_THREADS, lambda _: store.incr_counter(key, 1, expiry, now))
        assert sorted(count for count, _ in results) == list(range(1, _RACE_THREADS + 1))
        assert {expires for _, expires in results} == {expiry}
        assert store.get_counter(key, now) == (_RACE_THREADS, expiry)

    def test_race_replace_password_hash(self, store: Store) -> None:
        now = time.time()
        portal = _add_portal(store, now).slug
        identity = _add_identity(store, portal, now, password_hash="old")
        results = _race(
            _RACE_THREADS,
            lambda i: store.replace_password_hash(identity.id, f"new-{i}", expected="old", now=now),
        )
        assert results.count(True) == 1, results
        assert _password_hash(store, identity.id) == f"new-{results.index(True)}"

    # == the challenge lifecycle, as a state machine ============================================

    def test_challenge_lifecycle_state_machine(self, store: Store) -> None:
        machine = _challenge_lifecycle_machine(store, native_ttl=self.native_ttl)
        # hypothesis leaves run_state_machine_as_test unannotated.
        run_state_machine_as_test(  # type: ignore[no-untyped-call, unused-ignore]
            machine,
            settings=hypothesis_settings(
                max_examples=50,
                stateful_step_count=30,
                deadline=None,
                # No explain phase: its many replays each add records to the one shared store,
                # which makes a failure take minutes to report on a store that scans.
                phases=[phase for phase in Phase if phase is not Phase.explain],
            ),
        )


def _state(store: Store, challenge_id: str) -> str:
    record = store.get_challenge(challenge_id)
    assert record is not None, f"challenge {challenge_id} is missing"
    return record.state


def _password_hash(store: Store, identity_id: str) -> str | None:
    identity = store.get_identity(identity_id)
    assert identity is not None
    return identity.password_hash


# ================================================================================================
# End of the store contract
# ================================================================================================

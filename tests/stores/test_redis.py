"""Redis-specific tests of :class:`portalauth.stores.redis.RedisStore` and of
:class:`portalauth.stores.composite.CompositeStore` (SQLite records + Redis hot records), on a
real ``redis-server`` (``tests/redis_server.py``; skipped with the reason when it is missing).

- the store contract on both (issue 6, part 4);
- URIs, key layout (prefix, hash tags), native TTLs, exact comparisons in Lua;
- eight processes, each with its own ``Auth``, racing one code 200 times per store (part 5);
- stopping and crashing the server in the middle of a flow (part 6).
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.importorskip("redis", reason="redis-py is not installed (pip install -e '.[redis]')")

import redis
from redis.crc import key_slot

from conftest import SECRET_KEYS
from portalauth import (
    Auth,
    ClientInfo,
    ConfigError,
    PortalAuthError,
    SignedIn,
    Step,
    StoreUnavailable,
)
from portalauth.config import PortalSettings
from portalauth.errors import SessionInvalid, Throttled, VerificationFailed
from portalauth.records import Identity, Message
from portalauth.stores.composite import CompositeStore
from portalauth.stores.redis import RedisStore
from portalauth.stores.sql import SQLStore
from portalauth.testing import StoreContract
from redis_server import (
    RedisServer,
    free_port,
    redis_server_fixture,  # noqa: F401  (registers the fixture redis_server)
    redis_uri_fixture,  # noqa: F401  (registers the fixture redis_uri)
    running_redis,
)
from stores.race_workers import Workers
from stores.records import NOW
from stores.records import challenge_record as _challenge
from stores.records import identity_record as _identity
from stores.records import session_record as _session

_CODE = re.compile(r"\b(\d{6,10})\b")


def composite_uri(records: str, hot: str) -> str:
    return f"composite://?records={quote(records, safe='')}&hot={quote(hot, safe='')}"


# == the contract ==================================================================================
class TestRedisStoreContract(StoreContract):
    """Every contract test on a fresh key prefix of the session's Redis server."""

    native_ttl = True
    supports_processes = True

    @pytest.fixture
    def store(self, redis_uri: str) -> Iterator[RedisStore]:
        opened = RedisStore(redis_uri)
        try:
            yield opened
        finally:
            opened.close()


class TestCompositeStoreContract(StoreContract):
    """Every contract test on portals and identities in SQLite, the rest in Redis."""

    native_ttl = True
    supports_processes = True

    @pytest.fixture
    def store(self, redis_uri: str, tmp_path: Path) -> Iterator[CompositeStore]:
        opened = CompositeStore.from_uri(composite_uri(f"sqlite:///{tmp_path / 'r.db'}", redis_uri))
        try:
            yield opened
        finally:
            opened.close()


@pytest.fixture
def store(redis_uri: str) -> Iterator[RedisStore]:
    opened = RedisStore(redis_uri)
    try:
        yield opened
    finally:
        opened.close()


def _raw(uri: str) -> redis.Redis:
    return redis.Redis.from_url(uri.split("?")[0])


def _prefix(uri: str) -> str:
    return uri.split("prefix=")[1]


# == URIs and scheme registration ==================================================================
@pytest.mark.parametrize(
    "uri",
    [
        "redis://127.0.0.1:6379/0?prefix=a{b}",
        "redis://127.0.0.1:6379/0?prefix=",
        "redis://127.0.0.1:6379/0?prefix=a&prefix=b",
        "redis://127.0.0.1:6379/0?ttl_grace=0",
        "redis://127.0.0.1:6379/0?ttl_grace=soon",
        "redis://127.0.0.1:6379/0?message_cap=0",
        "redis://127.0.0.1:notaport/0",
        "sqlite:///x.db",
    ],
)
def test_bad_redis_uris_are_config_errors(uri: str) -> None:
    with pytest.raises(ConfigError):
        RedisStore(uri)


def test_uri_options_and_repr() -> None:
    # Connecting is lazy: nothing listens here, and the store is still built.
    store = RedisStore("rediss://user:s3cret@127.0.0.1:1/3?prefix=pa&socket_timeout=0.5")
    try:
        assert repr(store) == "RedisStore(rediss://127.0.0.1:1/3 prefix='pa')"
        assert "s3cret" not in repr(store)
    finally:
        store.close()


def test_unreachable_server_is_store_unavailable() -> None:
    # A port nobody listens on: every call fails closed, with the driver's error as the cause.
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0?socket_connect_timeout=1")
    try:
        with pytest.raises(StoreUnavailable) as caught:
            store.consume_challenge("ch-1", NOW)
        assert isinstance(caught.value.__cause__, redis.ConnectionError)
        assert caught.value.message == StoreUnavailable.default_message
        with pytest.raises(StoreUnavailable):
            store.incr_counter("k", 1, NOW + 60, NOW)
    finally:
        store.close()


def test_closed_store_fails_closed(store: RedisStore) -> None:
    store.close()
    with pytest.raises(StoreUnavailable):
        store.get_portal("acme")
    with pytest.raises(StoreUnavailable):
        store.spend_attempt("ch-1", NOW)


def test_auth_opens_redis_and_composite_uris(redis_uri: str, tmp_path: Path) -> None:
    with Auth(SECRET_KEYS, store=redis_uri, entry_points=False) as auth:
        assert isinstance(auth.store, RedisStore)
    records = f"sqlite:///{tmp_path / 'records.db'}"
    with Auth(SECRET_KEYS, store=composite_uri(records, redis_uri), entry_points=False) as auth:
        assert isinstance(auth.store, CompositeStore)
        assert isinstance(auth.store.records, SQLStore)
        assert isinstance(auth.store.hot, RedisStore)
        assert auth.store.native_ttl is True  # read by the contract's capability flag


@pytest.mark.parametrize(
    "uri",
    [
        "composite://?records=memory%3A%2F%2F",
        "composite://?hot=memory%3A%2F%2F",
        "composite://?records=memory%3A%2F%2F&hot=memory%3A%2F%2F&extra=1",
        "composite://?records=memory%3A%2F%2F&records=memory%3A%2F%2F&hot=memory%3A%2F%2F",
        "composite://host?records=memory%3A%2F%2F&hot=memory%3A%2F%2F",
        "composite://?records=nope%3A%2F%2F&hot=memory%3A%2F%2F",
        "composite://?records=memory%3A%2F%2F&hot=composite%3A%2F%2F",
    ],
)
def test_bad_composite_uris_are_config_errors(uri: str) -> None:
    with pytest.raises(ConfigError):
        CompositeStore.from_uri(uri)


def test_composite_routes_records_and_hot_data(redis_uri: str, tmp_path: Path) -> None:
    records = SQLStore(f"sqlite:///{tmp_path / 'r.db'}")
    hot = RedisStore(redis_uri)
    store = CompositeStore(records=records, hot=hot)
    try:
        store.put_portal(PortalSettings(slug="acme", name="Acme"), NOW)
        store.add_identity(_identity())
        store.issue_challenge(_challenge(), supersede=True)
        store.create_session(_session())
        store.incr_counter("k", 2, NOW + 60, NOW)
        store.add_message(Message(id="m", portal="acme", identity_id="id-1", channel="email",
                                  to="a@ex.org", subject="s", text="t"))  # fmt: skip
        assert records.get_identity("id-1") is not None
        assert hot.get_identity("id-1") is None
        assert hot.get_portal("acme") is None
        assert hot.get_challenge("ch-1") is not None
        assert records.get_challenge("ch-1") is None
        assert hot.get_session(_session().key) is not None
        assert hot.get_counter("k", NOW) == (2, NOW + 60)
        assert records.get_counter("k", NOW) == (0, 0.0)
        assert len(hot.list_messages("acme")) == 1
        assert records.list_messages("acme") == []
        # A session whose identity is gone is refused, and not left behind.
        with pytest.raises(StoreUnavailable):
            store.create_session(_session(2, identity_id="id-gone"))
        assert hot.get_session(_session(2).key) is None
        # Deleting the identity reaches into the hot store.
        assert store.delete_identity("id-1") is True
        assert hot.get_session(_session().key) is None
        assert hot.get_challenge("ch-1") is None
    finally:
        store.close()
    with pytest.raises(StoreUnavailable):  # closing closes both
        hot.get_counter("k", NOW)
    with pytest.raises(StoreUnavailable):
        records.get_identity("id-1")


# == key layout, TTLs, exactness ===================================================================
def test_every_key_has_the_prefix_and_one_identity_shares_one_slot(
    store: RedisStore, redis_uri: str
) -> None:
    prefix = _prefix(redis_uri)
    store.put_portal(PortalSettings(slug="acme", name="Acme"), NOW)
    store.add_identity(_identity(email_key="a@ex.org", phone="+14155550100"))
    store.add_identity(_identity(2, email_key="b@ex.org"))
    store.issue_challenge(_challenge(lookup=b"L" * 16), supersede=True)
    store.issue_challenge(_challenge(2, purpose="link", scope="case-1"), supersede=True)
    store.create_session(_session())
    store.create_session(_session(2))
    store.add_message(Message(id="m", portal="acme", identity_id="id-1", channel="email",
                              to="a@ex.org", subject="s", text="t"))  # fmt: skip
    store.incr_counter("rl:x", 1, NOW + 60, NOW)

    keys = [k.decode() for k in _raw(redis_uri).scan_iter(match="*", count=1000)]
    mine = [k for k in keys if k.startswith(f"{prefix}:")]
    assert mine and all(k.startswith(f"{prefix}:") for k in mine)
    identity_keys = [k for k in mine if "{i:id-1}" in k]
    # records, indexes and the message feed of challenges and sessions of id-1: one slot
    assert len(identity_keys) >= 8, identity_keys
    assert len({key_slot(k.encode()) for k in identity_keys}) == 1
    directory = [k for k in mine if f"{{{prefix}:dir}}" in k]
    assert len(directory) >= 5, directory
    assert len({key_slot(k.encode()) for k in directory}) == 1


def test_native_ttls_follow_expiry_plus_grace(redis_uri: str) -> None:
    store = RedisStore(f"{redis_uri}&ttl_grace=30")
    raw = _raw(redis_uri)
    prefix = _prefix(redis_uri)
    try:
        now = time.time()
        store.issue_challenge(_challenge(expires_at=now + 100, created_at=now), supersede=True)
        ttl = raw.pttl(f"{prefix}:{{i:id-1}}:c:ch-1") / 1000
        assert 125 < ttl <= 130.5
        assert 125 < raw.pttl(f"{prefix}:chid:ch-1") / 1000 <= 130.5
        store.incr_counter("k", 1, now + 10, now)
        assert 35 < raw.pttl(f"{prefix}:ctr:k") / 1000 <= 40.5
        store.create_session(
            _session(created_at=now, idle_expires_at=now + 50, absolute_expires_at=now + 500)
        )
        key = f"{prefix}:{{i:id-1}}:s:{_session().key.hex()}"
        assert 75 < raw.pttl(key) / 1000 <= 80.5
        store.touch_session(_session().key, now + 1, now + 200)
        assert 225 < raw.pttl(key) / 1000 <= 230.5
        store.touch_session(_session().key, now + 2, now + 5000)  # capped at the absolute expiry
        assert 525 < raw.pttl(key) / 1000 <= 530.5
        # Records stamped by a frozen clock far in the past still live ttl_grace from now.
        store.issue_challenge(_challenge(2, created_at=1e9, expires_at=1e9 + 60), supersede=False)
        assert 25 < raw.pttl(f"{prefix}:{{i:id-1}}:c:ch-2") / 1000 <= 30.5
        assert store.purge_expired(now + 10_000) == 0
    finally:
        store.close()


def test_expiry_is_decided_by_now_with_exact_doubles(store: RedisStore) -> None:
    # Lua compares the very doubles Python wrote: one ulp either side of expires_at decides.
    expires = NOW + 0.1 + 0.2
    store.issue_challenge(_challenge(expires_at=expires), supersede=True)
    assert store.spend_attempt("ch-1", expires)[0] is False
    assert store.consume_challenge("ch-1", expires) is False
    before = math.nextafter(expires, 0)
    assert store.spend_attempt("ch-1", before)[0] is True
    assert store.consume_challenge("ch-1", before) is True
    got = store.get_challenge("ch-1")
    assert got is not None
    assert got.consumed_at == before
    assert got.expires_at == expires

    store.incr_counter("k", 1, expires, NOW)
    assert store.get_counter("k", before) == (1, expires)
    assert store.get_counter("k", expires) == (0, 0.0)
    assert store.incr_counter("k", 1, expires + 1, expires) == (1, expires + 1)


def test_message_lists_are_capped(redis_uri: str) -> None:
    store = RedisStore(f"{redis_uri}&message_cap=3")
    try:
        for n in range(5):
            store.add_message(
                Message(
                    id=f"m{n}",
                    portal="acme",
                    identity_id="id-1",
                    channel="email",
                    to="a@ex.org",
                    subject="s",
                    text="t",
                    created_at=NOW + n,
                )
            )
        assert [m.id for m in store.list_messages("acme")] == ["m4", "m3", "m2"]
        assert [m.id for m in store.list_messages("acme", identity_id="id-1")] == [
            "m4",
            "m3",
            "m2",
        ]
    finally:
        store.close()


def test_delete_identity_leaves_no_pointer_behind(store: RedisStore, redis_uri: str) -> None:
    store.add_identity(_identity(email_key="a@ex.org"))
    store.issue_challenge(_challenge(), supersede=True)
    store.create_session(_session())
    assert store.delete_identity("id-1") is True
    prefix = _prefix(redis_uri)
    left = [k.decode() for k in _raw(redis_uri).scan_iter(match=f"{prefix}:*", count=1000)]
    assert not [k for k in left if "id-1" in k or ":chid:" in k or ":sk:" in k], left
    # An unknown id (a decoy subject) keeps its challenges.
    store.issue_challenge(_challenge(2, subject="decoy"), supersede=True)
    assert store.delete_identity("decoy") is False
    assert store.get_challenge("ch-2") is not None


def test_session_and_challenge_ids_are_found_from_another_store(redis_uri: str) -> None:
    # A second app server (its own store object, empty pointer cache) sees the same records.
    one, two = RedisStore(redis_uri), RedisStore(redis_uri)
    try:
        one.issue_challenge(_challenge(lookup=b"L" * 16), supersede=True)
        one.create_session(_session())
        assert two.get_challenge("ch-1") == one.get_challenge("ch-1")
        assert two.find_challenge("acme", "code", [b"L" * 16]) is not None
        assert two.consume_challenge("ch-1", NOW) is True
        assert one.consume_challenge("ch-1", NOW) is False
        assert two.get_session(_session().key) == _session()
        assert two.delete_session(_session().key) is True
        assert one.get_session(_session().key) is None
    finally:
        one.close()
        two.close()


# == eight processes, one code (issue 6, part 5) ===================================================
PROCESSES = 8
ROUNDS = 200
WRONG_ROUNDS = 25
GUESSES_PER_PROCESS = 3
RACE_PORTAL = "race"


@pytest.fixture(params=["redis", "composite"], scope="module")
def race_uri(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    redis_server.start()
    prefix = f"race{secrets.token_hex(4)}"
    uri = redis_server.uri(prefix=prefix)
    if request.param == "composite":
        records = f"sqlite:///{tmp_path_factory.mktemp('race') / 'records.db'}"
        uri = composite_uri(records, uri)
    yield uri
    redis_server.delete_prefix(prefix)


@pytest.fixture(scope="module")
def race(race_uri: str) -> Iterator[tuple[Auth, Workers]]:
    auth = Auth(SECRET_KEYS, store=race_uri, entry_points=False)
    auth.portals.create(RACE_PORTAL, "Race & Co", methods={"contact_otp"}, simulate=True)
    workers = Workers(SECRET_KEYS, race_uri, PROCESSES)
    try:
        yield auth, workers
    finally:
        exit_codes = workers.close()
        auth.close()
    assert exit_codes == [0] * PROCESSES


def _start(auth: Auth, tag: str, n: int) -> tuple[Identity, str, str, str]:
    """A fresh identity and a started contact_otp flow: ``(identity, flow, code, client ip)``."""
    email = f"{tag}{n}@example.org"
    identity = auth.directory.add(RACE_PORTAL, f"Client {tag}{n}", email=email)
    ip = f"10.{1 if tag == 'ok' else 2}.{n // 256}.{n % 256}"
    step = auth.start(RACE_PORTAL, "contact_otp", {"contact": email}, client=ClientInfo(ip=ip))
    assert isinstance(step, Step) and step.flow
    message = auth.outbox.latest(RACE_PORTAL, identity=identity.id)
    assert message is not None
    found = _CODE.search(message.text)
    assert found
    return identity, step.flow, found.group(1), ip


def test_eight_processes_one_correct_code_exactly_one_sign_in(
    race: tuple[Auth, Workers],
) -> None:
    auth, workers = race
    started = time.monotonic()
    for n in range(ROUNDS):
        identity, flow, code, ip = _start(auth, "ok", n)
        results = workers.round(flow, [[code]] * PROCESSES, ip)
        outcomes = [outcome for _, _, mine, _ in results for outcome in mine]
        assert len({pid for _, pid, _, _ in results}) == PROCESSES
        assert outcomes.count("signed_in") == 1, (n, outcomes)
        assert set(outcomes) <= {"signed_in", "verification_failed"}, (n, outcomes)
        assert len(auth.sessions.list(identity.id)) == 1, n
        # The other submissions spent attempts, never more than the budget.
        challenge = auth.store.latest_challenge(RACE_PORTAL, identity.id, "contact_login")
        assert challenge is not None
        assert challenge.state == "consumed"
        assert challenge.attempts <= challenge.max_attempts
    assert time.monotonic() - started < 60


def test_concurrent_wrong_guesses_never_overspend_the_budget(
    race: tuple[Auth, Workers],
) -> None:
    auth, workers = race
    for n in range(WRONG_ROUNDS):
        identity, flow, code, ip = _start(auth, "bad", n)
        # 24 distinct wrong answers of the right shape, 3 per process, all at once.
        wrong = [f"{(int(code) + 1 + k) % 10**6:06d}" for k in range(PROCESSES * 3)]
        answers = [wrong[i * 3 : i * 3 + 3] for i in range(PROCESSES)]
        results = workers.round(flow, answers, ip)
        outcomes = [outcome for _, _, mine, _ in results for outcome in mine]
        compared = sum(count for *_, count in results)
        assert "signed_in" not in outcomes
        assert set(outcomes) <= {"verification_failed", "throttled"}, outcomes
        challenge = auth.store.latest_challenge(RACE_PORTAL, identity.id, "contact_login")
        assert challenge is not None
        # Exactly the budget was compared: every attempt used, none beyond it.
        assert challenge.attempts == challenge.max_attempts == 5
        assert compared == challenge.max_attempts, (n, compared, outcomes)
        assert challenge.state == "live"
        # And the right code no longer works: the budget is gone (and the identity's failure
        # count, 24 by now, asks for a pause first).
        with pytest.raises((VerificationFailed, Throttled)):
            auth.advance(flow, {"code": code}, client=ClientInfo(ip=ip))
        assert auth.sessions.list(identity.id) == []


# == faults (issue 6, part 6) ======================================================================
FAULT_PORTAL = "faults"


def _fault_auth(uri: str) -> Auth:
    return Auth(SECRET_KEYS, store=uri, entry_points=False)


def _setup_portal(auth: Auth) -> Identity:
    auth.portals.create(FAULT_PORTAL, "Faults LLP", methods={"contact_otp"}, simulate=True)
    return auth.directory.add(FAULT_PORTAL, "Pat Doe", email="pat@example.org")


def _begin(auth: Auth, identity: Identity, ip: str = "192.0.2.1") -> tuple[str, str]:
    step = auth.start(
        FAULT_PORTAL, "contact_otp", {"contact": "pat@example.org"}, client=ClientInfo(ip=ip)
    )
    assert isinstance(step, Step) and step.flow
    message = auth.outbox.latest(FAULT_PORTAL, identity=identity.id)
    assert message is not None
    found = _CODE.search(message.text)
    assert found
    return step.flow, found.group(1)


def _sign_in(auth: Auth, identity: Identity, ip: str = "192.0.2.1") -> SignedIn:
    flow, code = _begin(auth, identity, ip)
    done = auth.advance(flow, {"code": code}, client=ClientInfo(ip=ip))
    assert isinstance(done, SignedIn)
    return done


def _everything_fails_closed(auth: Auth, flow: str, code: str, token: str) -> None:
    client = ClientInfo(ip="192.0.2.1")
    with pytest.raises(StoreUnavailable):
        auth.advance(flow, {"code": code}, client=client)  # the right code: nobody signed in
    with pytest.raises(StoreUnavailable):
        auth.start(FAULT_PORTAL, "contact_otp", {"contact": "pat@example.org"}, client=client)
    with pytest.raises(StoreUnavailable):
        auth.sessions.validate(token)


def test_redis_stopped_mid_flow_fails_closed_and_recovers(tmp_path: Path) -> None:
    with running_redis(tmp_path) as server:
        auth = _fault_auth(server.uri(prefix="faults"))
        try:
            identity = _setup_portal(auth)
            signed_in = _sign_in(auth, identity)
            flow, code = _begin(auth, identity, "192.0.2.2")

            server.stop()
            _everything_fails_closed(auth, flow, code, signed_in.token)
            with pytest.raises(StoreUnavailable):
                auth.portals.get(FAULT_PORTAL, fresh=True)
            # The application process is still here, and so is its Auth.

            server.start()
            # This server runs without persistence (--save "" --appendonly no), so the restart
            # emptied it: portal, identity, the pending code and the session are all gone. That
            # fails closed too (nobody is signed in by it); run Redis with appendonly to keep
            # them (see the next test), or keep identities and portals in SQL (the composite).
            with pytest.raises(PortalAuthError) as caught:
                auth.advance(flow, {"code": code}, client=ClientInfo(ip="192.0.2.2"))
            assert not isinstance(caught.value, StoreUnavailable)
            with pytest.raises(SessionInvalid):
                auth.sessions.validate(signed_in.token)
            assert auth.portals.find(FAULT_PORTAL, fresh=True) is None

            # And the flow can be started again from scratch.
            identity = _setup_portal(auth)
            again = _sign_in(auth, identity, "192.0.2.3")
            assert auth.sessions.validate(again.token).identity_id == identity.id
        finally:
            auth.close()


def test_persistent_redis_crashed_mid_flow_loses_nothing_committed(tmp_path: Path) -> None:
    # appendonly yes + appendfsync always: every write is on disk before Redis answers, so
    # even SIGKILL loses nothing that a caller saw succeed.
    with running_redis(tmp_path, persistent=True) as server:
        auth = _fault_auth(server.uri(prefix="faults"))
        try:
            identity = _setup_portal(auth)
            signed_in = _sign_in(auth, identity)
            flow, code = _begin(auth, identity, "192.0.2.2")

            server.crash()
            _everything_fails_closed(auth, flow, code, signed_in.token)

            server.start()
            assert auth.portals.get(FAULT_PORTAL, fresh=True).methods == {"contact_otp"}
            assert auth.directory.get(identity.id) == identity.evolve(
                last_sign_in_at=auth.directory.get(identity.id).last_sign_in_at,
                last_sign_in_method="contact_otp",
            )
            assert auth.sessions.validate(signed_in.token).identity_id == identity.id
            # The flow interrupted by the crash goes on where it was.
            done = auth.advance(flow, {"code": code}, client=ClientInfo(ip="192.0.2.2"))
            assert isinstance(done, SignedIn)
        finally:
            auth.close()


def test_composite_keeps_identities_and_portals_across_a_redis_restart(tmp_path: Path) -> None:
    records = f"sqlite:///{tmp_path / 'records.db'}"
    with running_redis(tmp_path / "redis") as server:
        auth = _fault_auth(composite_uri(records, server.uri(prefix="faults")))
        try:
            identity = _setup_portal(auth)
            signed_in = _sign_in(auth, identity)
            flow, code = _begin(auth, identity, "192.0.2.2")

            server.stop()
            _everything_fails_closed(auth, flow, code, signed_in.token)
            # Staff pages that need only the records still work while Redis is down.
            assert auth.directory.get(identity.id).name == "Pat Doe"

            server.start()
            # Identities and portal settings live in SQLite: nothing lost. This Redis has no
            # persistence, so the hot records (the pending code, the session) are gone: the old
            # flow and session fail closed, and a new flow signs in.
            assert auth.portals.get(FAULT_PORTAL, fresh=True).methods == {"contact_otp"}
            assert auth.directory.get(identity.id).email == "pat@example.org"
            with pytest.raises(VerificationFailed):
                auth.advance(flow, {"code": code}, client=ClientInfo(ip="192.0.2.2"))
            with pytest.raises(SessionInvalid):
                auth.sessions.validate(signed_in.token)
            again = _sign_in(auth, identity, "192.0.2.3")
            assert auth.sessions.validate(again.token).identity_id == identity.id
        finally:
            auth.close()

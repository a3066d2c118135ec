"""The SQL store on a real PostgreSQL server (``tests/servers.py`` starts one).

The store contract runs here in full; the rest covers what only a server-backed store has: its
URIs and pool, the schema shared by concurrent first opens, atomicity between processes that each
have their own ``Auth`` (issue 6, part 5), failing closed while the server is down and keeping
everything committed across a restart (part 6), and bounded housekeeping (part 7).

Every test gets a fresh database (``postgres_uri``). Without the server binaries (or psycopg)
these tests are skipped with the reason.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import pytest

from conftest import SECRET_KEYS
from portalauth import (
    Auth,
    ClientInfo,
    ConfigError,
    PortalAuthError,
    SignedIn,
    Step,
    StoreUnavailable,
    VerificationFailed,
)
from portalauth.config import PortalSettings
from portalauth.errors import ContactTaken
from portalauth.records import Identity
from portalauth.stores import sql
from portalauth.stores.sql import SCHEMA_VERSION, SQLStore
from portalauth.testing import StoreContract
from servers import (
    PASSWORD_ROLE,
    PostgresServer,
    postgres_server_fixture,  # noqa: F401  (registers the fixture postgres_server)
    postgres_uri_fixture,  # noqa: F401  (registers the fixture postgres_uri)
)
from stores.records import NOW
from stores.records import challenge_record as _challenge
from stores.records import identity_record as _identity
from stores.records import race as _race
from stores.records import session_record as _session

psycopg = pytest.importorskip(
    "psycopg", reason="psycopg is not installed (pip install -e '.[postgres]')"
)

PORTAL = "court"
METHOD = "contact_otp"
PURPOSE = "contact_login"
_CODE = re.compile(r"\b([0-9]{6,10})\b")


_needs_fork = pytest.mark.skipif(
    not hasattr(os, "fork") or sys.platform == "darwin", reason="needs a safe fork()"
)


def _with(uri: str, **params: object) -> str:
    """``uri`` with more query parameters."""
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{uri}{'&' if '?' in uri else '?'}{query}"


@pytest.fixture
def store(postgres_uri: str) -> Iterator[SQLStore]:
    opened = SQLStore(postgres_uri)
    try:
        yield opened
    finally:
        opened.close()


def _backends(server: PostgresServer, application_name: str) -> int:
    """How many server sessions a client opened under ``application_name``."""
    with server.admin() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchone()
    return int(row[0])


# -- the contract ---------------------------------------------------------------------------------
class TestPostgresContract(StoreContract):
    """Every contract test against a fresh PostgreSQL database."""

    supports_processes = True

    @pytest.fixture
    def store(self, postgres_uri: str) -> Iterator[SQLStore]:
        opened = SQLStore(postgres_uri)
        try:
            yield opened
        finally:
            opened.close()


# -- URIs and registration ------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_both_schemes_open_through_auth(postgres_uri: str, scheme: str) -> None:
    uri = scheme + postgres_uri[len("postgresql") :]
    with Auth(SECRET_KEYS, store=uri, entry_points=False) as auth:
        assert isinstance(auth.store, SQLStore)
        auth.portals.create(PORTAL, "County Court", methods={METHOD}, simulate=True)
        assert auth.portals.get(PORTAL, fresh=True).name == "County Court"


def test_pool_settings_come_from_the_uri(postgres_uri: str) -> None:
    store = SQLStore(
        _with(postgres_uri, pool_min=2, pool_max=3, pool_timeout=1.5, pool_reconnect_timeout=4)
    )
    try:
        assert store._pool is not None
        pool = store._pool._current()
        assert (pool.min_size, pool.max_size, pool.timeout, pool.reconnect_timeout) == (
            2,
            3,
            1.5,
            4.0,
        )
        # Only libpq's parameters reach the server; the pool's are taken out.
        assert "pool_" not in store._target
    finally:
        store.close()


def test_defaults_and_connect_timeout(postgres_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    target = sql._parse_uri(postgres_uri)
    assert target.pool == sql._PoolSettings(
        min_size=1, max_size=10, timeout=5.0, reconnect_timeout=10.0
    )
    assert target.connect_kwargs == {"connect_timeout": sql.DEFAULT_CONNECT_TIMEOUT}
    assert sql._parse_uri(_with(postgres_uri, connect_timeout=2)).connect_kwargs == {}
    assert sql._parse_uri(_with(postgres_uri, pool_min=25)).pool == sql._PoolSettings(
        min_size=25, max_size=25
    )


@pytest.mark.parametrize(
    "query",
    [
        "pool_min=-1",
        "pool_min=1.5",
        "pool_min=x",
        "pool_max=0",
        "pool_min=5&pool_max=4",
        "pool_max=10&pool_max=11",
        "pool_timeout=0",
        "pool_timeout=-1",
        "pool_timeout=inf",
        "pool_timeout=nan",
        "pool_reconnect_timeout=0",
        "pool_timeout=",
        "pool_mni=1",
        "no_such_libpq_option=1",
    ],
)
def test_bad_pool_parameters_raise_config_error(query: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SQLStore(f"postgresql://pat:s3cret-pw@127.0.0.1:1/db?{query}")
    assert "s3cret-pw" not in str(caught.value)


@pytest.mark.parametrize(
    "uri",
    [
        "postgresql://pat:s3cret-pw@127.0.0.1:1/db#frag",
        "postgresql://pat:s3cret-pw@[::1/db",
        "postgresql:/pat:s3cret-pw@127.0.0.1/db",
    ],
)
def test_malformed_uris_raise_config_error_without_the_password(uri: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SQLStore(uri)
    assert "s3cret-pw" not in str(caught.value)
    assert caught.value.__cause__ is None or "s3cret-pw" not in str(caught.value.__cause__)


def test_unreachable_server_is_store_unavailable_quickly() -> None:
    # Nothing listens on port 1; the pool gives up after pool_timeout.
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        SQLStore("postgresql://pat:s3cret-pw@127.0.0.1:1/db?pool_timeout=0.5")
    assert time.monotonic() - started < 10
    assert caught.value.message == StoreUnavailable.default_message
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)
    assert "s3cret-pw" not in str(caught.value)


def test_password_in_the_uri_signs_in_and_is_never_shown(
    postgres_server: PostgresServer, postgres_uri: str
) -> None:
    from psycopg import sql as pgsql

    # This role must authenticate with its password (scram-sha-256, see tests/servers.py).
    password = "p@ss:w/rd %?&=#ü"
    with postgres_server.admin() as conn:
        conn.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(PASSWORD_ROLE)))
        conn.execute(
            pgsql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                pgsql.Identifier(PASSWORD_ROLE), pgsql.Literal(password)
            )
        )
    host = f"{postgres_server.host}:{postgres_server.port}"
    dbname = postgres_uri.rsplit("/", 1)[1]
    with pytest.raises(StoreUnavailable) as caught:
        SQLStore(f"postgresql://{PASSWORD_ROLE}:wrong-pw@{host}/{dbname}?pool_timeout=1")
    assert "wrong-pw" not in str(caught.value)
    encoded = quote(password, safe="")
    store = SQLStore(f"postgresql://{PASSWORD_ROLE}:{encoded}@{host}/{dbname}")
    try:
        store.put_portal(PortalSettings(slug="acme", name="Acme"), NOW)
        assert store.get_portal("acme") is not None
        assert encoded not in repr(store)
        assert f"{PASSWORD_ROLE}:***@" in repr(store)
    finally:
        store.close()
    # A password given as a query parameter is masked too.
    target = sql._parse_uri(f"postgresql://{host}/{dbname}?password={encoded}&user=x")
    assert encoded not in target.display


# -- schema ---------------------------------------------------------------------------------------
def _fresh_empty_database(server: PostgresServer) -> str:
    """A database without the portalauth schema (the fixture's databases already have it)."""
    return server.uri_for(server.new_database(template="template0"))


def test_schema_is_created_once_with_postgres_types(postgres_server: PostgresServer) -> None:
    uri = _fresh_empty_database(postgres_server)
    SQLStore(uri).close()
    SQLStore(uri).close()  # reopening must not add a second row
    with psycopg.connect(uri, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM portalauth_schema").fetchall() == [
            (SCHEMA_VERSION,)
        ]
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
        columns = {
            (r[0], r[1]): (r[2], r[3], r[4])
            for r in conn.execute(
                "SELECT table_name, column_name, data_type, collation_name, is_identity"
                " FROM information_schema.columns WHERE table_schema = 'public'"
            )
        }
    assert tables == {
        "portalauth_schema",
        "portalauth_portals",
        "portalauth_identities",
        "portalauth_challenges",
        "portalauth_sessions",
        "portalauth_messages",
        "portalauth_counters",
    }
    assert columns["portalauth_challenges", "seq"] == ("bigint", None, "YES")
    assert columns["portalauth_messages", "seq"] == ("bigint", None, "YES")
    assert columns["portalauth_challenges", "digest"][0] == "bytea"
    assert columns["portalauth_sessions", "key"][0] == "bytea"
    assert columns["portalauth_challenges", "expires_at"][0] == "double precision"
    assert columns["portalauth_counters", "count"][0] == "bigint"
    # Sorted by code point whatever the database's locale, as the other stores sort.
    assert columns["portalauth_portals", "slug"][1] == "C"
    assert columns["portalauth_identities", "name"][1] == "C"


def test_concurrent_first_opens_create_the_schema_once(postgres_server: PostgresServer) -> None:
    # Several app servers starting at once against a new database.
    uri = _fresh_empty_database(postgres_server)
    results = _race(lambda i: SQLStore(uri), n=8)
    try:
        assert all(isinstance(r, SQLStore) for r in results), results
    finally:
        for r in results:
            if isinstance(r, SQLStore):
                r.close()
    with psycopg.connect(uri, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM portalauth_schema").fetchall() == [
            (SCHEMA_VERSION,)
        ]


def test_newer_schema_version_is_refused(postgres_uri: str) -> None:
    with psycopg.connect(postgres_uri, autocommit=True) as conn:
        conn.execute("UPDATE portalauth_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(ConfigError, match="newer"):
        SQLStore(postgres_uri)
    with psycopg.connect(postgres_uri, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM portalauth_schema").fetchall() == [
            (SCHEMA_VERSION + 1,)
        ]


# -- connections ----------------------------------------------------------------------------------
def test_connections_read_committed_with_a_lock_timeout(postgres_uri: str) -> None:
    # Whatever the database's default: the supersede lock relies on READ COMMITTED.
    dbname = postgres_uri.rsplit("/", 1)[1]
    with psycopg.connect(postgres_uri, autocommit=True) as conn:
        conn.execute(
            f"ALTER DATABASE \"{dbname}\" SET default_transaction_isolation = 'serializable'"
        )
    store = SQLStore(postgres_uri)
    try:
        assert store._one("SHOW transaction_isolation", ()) == ("read committed",)
        assert store._one("SHOW lock_timeout", ()) == ("10s",)
        assert store._one("SHOW TimeZone", ()) is not None
    finally:
        store.close()


def test_row_lock_past_the_timeout_fails_closed_and_recovers(
    postgres_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql, "BUSY_TIMEOUT", 0.2)
    store = SQLStore(postgres_uri)
    try:
        store.issue_challenge(_challenge(1), supersede=True)
        with psycopg.connect(postgres_uri) as blocker:  # a transaction holding the row
            blocker.execute("SELECT 1 FROM portalauth_challenges WHERE id = 'ch-1' FOR UPDATE")
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as caught:
                store.consume_challenge("ch-1", NOW + 1)
            assert time.monotonic() - started < 5
            assert isinstance(caught.value.__cause__, psycopg.errors.LockNotAvailable)
            assert "UPDATE" not in str(caught.value)
            blocker.rollback()
        challenge = store.get_challenge("ch-1")
        assert challenge is not None
        assert challenge.state == "live"
        assert store.consume_challenge("ch-1", NOW + 1) is True
    finally:
        store.close()


def test_supersede_holds_the_key_lock(postgres_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql, "BUSY_TIMEOUT", 0.2)
    store = SQLStore(postgres_uri)
    try:
        store.issue_challenge(_challenge(1), supersede=True)
        key = sql._lock_key("challenge", "id-1", "acme", "code", "")
        with psycopg.connect(postgres_uri) as blocker:  # another issuer of the same key
            blocker.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
            with pytest.raises(StoreUnavailable):
                store.issue_challenge(_challenge(2), supersede=True)
            # Another key, or no supersede, does not wait.
            store.issue_challenge(_challenge(3, subject="id-3"), supersede=True)
            store.issue_challenge(_challenge(4), supersede=False)
            blocker.rollback()
        # The refused issue left nothing behind: ch-1 is still live, ch-2 does not exist.
        first = store.get_challenge("ch-1")
        assert first is not None
        assert first.state == "live"
        assert store.get_challenge("ch-2") is None
        store.issue_challenge(_challenge(2), supersede=True)
        first = store.get_challenge("ch-1")
        assert first is not None
        assert first.state == "superseded"
    finally:
        store.close()


def test_threads_issuing_with_supersede_leave_one_live_per_key(store: SQLStore) -> None:
    for rnd in range(10):
        subject = f"s-{rnd}"
        _race(
            lambda i, s=subject, r=rnd: store.issue_challenge(
                _challenge(r * 100 + i, subject=s), supersede=True
            ),
            n=16,
        )
        states = [store.get_challenge(f"ch-{rnd * 100 + i}") for i in range(16)]
        assert all(r is not None for r in states)
        assert sum(1 for r in states if r is not None and r.state == "live") == 1


def test_deadlocks_and_serialization_failures_are_retried(store: SQLStore) -> None:
    calls: list[int] = []

    def flaky(conn: Any) -> int:
        calls.append(1)
        if len(calls) < sql._ROLLBACK_RETRIES:
            raise psycopg.errors.SerializationFailure("could not serialize access")
        return int(conn.execute("SELECT 1").fetchone()[0])

    assert store._run(flaky) == 1
    assert len(calls) == sql._ROLLBACK_RETRIES

    def deadlocked(conn: Any) -> int:
        calls.append(1)
        raise psycopg.errors.DeadlockDetected("deadlock detected")

    calls.clear()
    with pytest.raises(StoreUnavailable) as caught:
        store._run(deadlocked)
    assert len(calls) == sql._ROLLBACK_RETRIES
    assert isinstance(caught.value.__cause__, psycopg.errors.DeadlockDetected)


def test_constraint_failures_are_typed(store: SQLStore) -> None:
    with pytest.raises(StoreUnavailable) as caught:
        store.create_session(_session(identity_id="nobody"))
    assert isinstance(caught.value.__cause__, psycopg.errors.ForeignKeyViolation)
    store.add_identity(_identity(1, email_key="a@example.org", phone="+15555550100"))
    store.add_identity(_identity(2, email_key="b@example.org", phone="+15555550101"))
    with pytest.raises(ContactTaken) as taken:
        store.update_identity(_identity(2, email_key="b@example.org", phone="+15555550100"))
    assert taken.value.field == "phone"
    with pytest.raises(ContactTaken) as taken:
        store.update_identity(_identity(2, email_key="a@example.org", phone="+15555550100"))
    assert taken.value.field == "email"
    with pytest.raises(ContactTaken):
        store.add_identity(_identity(1, email_key="c@example.org"))
    store.create_session(_session(1))
    store.issue_challenge(_challenge(1), supersede=False)
    with pytest.raises(StoreUnavailable):
        store.create_session(_session(1, method="other"))
    with pytest.raises(StoreUnavailable):
        store.issue_challenge(_challenge(1, purpose="other"), supersede=True)
    assert store.get_session(_session(1).key) == _session(1)
    assert store.get_challenge("ch-1") == _challenge(1)
    # Text PostgreSQL cannot hold (a NUL character) fails closed rather than half-writing.
    with pytest.raises(StoreUnavailable):
        store.add_identity(_identity(3, name="Pat\x00Doe"))
    assert store.get_identity("id-3") is None


def test_close_closes_the_pool(postgres_server: PostgresServer, postgres_uri: str) -> None:
    name = f"pa_close_{os.getpid()}"
    store = SQLStore(_with(postgres_uri, application_name=name, pool_min=2, pool_max=4))
    _race(lambda i: store.put_portal(PortalSettings(slug=f"p-{i}", name="P"), NOW), n=8)
    assert 1 <= _backends(postgres_server, name) <= 4
    store.close()
    deadline = time.monotonic() + 5
    while _backends(postgres_server, name) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _backends(postgres_server, name) == 0
    with pytest.raises(StoreUnavailable):
        store.get_portal("p-1")
    store.close()  # again: harmless


def test_pool_max_bounds_the_connections(
    postgres_server: PostgresServer, postgres_uri: str
) -> None:
    name = f"pa_max_{os.getpid()}"
    store = SQLStore(_with(postgres_uri, application_name=name, pool_max=3))
    seen: list[int] = []
    try:

        def work(i: int) -> None:
            for n in range(20):
                store.incr_counter(f"k-{i % 4}", 1, NOW + 60, NOW)
                if n == 10 and i == 0:
                    seen.append(_backends(postgres_server, name))

        results = _race(work, n=16)
        assert results == [None] * 16
        assert sum(store.get_counter(f"k-{i}", NOW)[0] for i in range(4)) == 16 * 20
        assert 1 <= max(seen) <= 3
        assert _backends(postgres_server, name) <= 3
    finally:
        store.close()


def test_connections_the_server_ended_are_replaced_before_use(
    postgres_server: PostgresServer, postgres_uri: str
) -> None:
    name = f"pa_kill_{os.getpid()}"
    store = SQLStore(_with(postgres_uri, application_name=name, pool_min=3, pool_max=3))
    try:
        _race(lambda i: store.put_portal(PortalSettings(slug=f"p-{i}", name="P"), NOW), n=6)
        with postgres_server.admin() as conn:
            killed = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (name,),
            ).fetchone()[0]
        assert killed >= 1
        deadline = time.monotonic() + 5
        while _backends(postgres_server, name) and time.monotonic() < deadline:
            time.sleep(0.05)
        # No call fails for the dead connections: each is noticed and replaced first.
        for i in range(10):
            assert store.get_portal(f"p-{i % 6}") is not None
    finally:
        store.close()


@_needs_fork
def test_forked_child_opens_its_own_pool(
    postgres_server: PostgresServer, postgres_uri: str
) -> None:
    name = f"pa_fork_{os.getpid()}"
    store = SQLStore(_with(postgres_uri, application_name=name, pool_min=1, pool_max=2))
    try:
        store.issue_challenge(_challenge(), supersede=True)
        assert store._pool is not None
        inherited = store._pool._current()
        with postgres_server.admin() as conn:
            before = {
                r[0]
                for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (name,)
                )
            }
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            code = 1
            try:
                assert store._pool is not None
                ok = store._pool._current() is not inherited and store.consume_challenge(
                    "ch-1", NOW + 1
                )
                store.close()  # closes the child's pool only
                code = 0 if ok else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert store._pool._current() is inherited  # the parent keeps its own
        with postgres_server.admin() as conn:
            after = {
                r[0]
                for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (name,)
                )
            }
        assert before <= after  # the child ended none of the parent's sessions
        assert store.consume_challenge("ch-1", NOW + 1) is False  # the child's is durable
    finally:
        store.close()


# -- many processes, each with its own Auth (issue 6, part 5) -------------------------------------
RACE_PROCESSES = 8
RACE_ROUNDS = 200  # the same correct code, submitted by every process at once
GUESS_ROUNDS = 50  # a different wrong code from every process at once


def _open_court(auth: Auth) -> None:
    auth.portals.create(
        PORTAL,
        "County Court",
        methods={METHOD},
        simulate=True,
        base_url="https://court.example",
        method_settings={METHOD: {"channels": ["email"]}},
    )


def _code(auth: Auth, identity: Identity) -> str:
    messages = auth.outbox.messages(PORTAL, identity=identity.id)
    assert messages, "no code was recorded"
    found = _CODE.search(messages[0].text)
    assert found, "no code in the e-mail"
    return found.group(1)


def _race_worker(uri: str, barrier: Any, tasks: Any, results: Any) -> None:
    """One app server: its own Auth and pool. Each task is submitted when all are ready."""
    auth = Auth(SECRET_KEYS, store=_with(uri, pool_max=2), entry_points=False)
    try:
        results.put(("ready", os.getpid()))
        while (task := tasks.get()) is not None:
            flow, code, ip = task
            client = ClientInfo(ip=ip, user_agent="race")
            barrier.wait(60)
            try:
                kind = type(auth.advance(flow, {"code": code}, client=client)).__name__
            except PortalAuthError as exc:
                kind = type(exc).__name__
            results.put((kind, os.getpid()))
    finally:
        auth.close()


@pytest.fixture
def app_servers(postgres_uri: str) -> Iterator[Callable[[list[tuple[str, str, str]]], list[str]]]:
    """Eight worker processes (spawned once, reused every round); calling the fixture's value
    with one task per process runs them all at once and returns what each call gave."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(RACE_PROCESSES)
    queues = [ctx.Queue() for _ in range(RACE_PROCESSES)]
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_race_worker, args=(postgres_uri, barrier, q, results), daemon=True)
        for q in queues
    ]
    for p in procs:
        p.start()
    try:
        ready = [results.get(timeout=120) for _ in procs]
        assert {kind for kind, _ in ready} == {"ready"}
        assert len({pid for _, pid in ready}) == RACE_PROCESSES

        def run(tasks: list[tuple[str, str, str]]) -> list[str]:
            for q, task in zip(queues, tasks, strict=True):
                q.put(task)
            answers = [results.get(timeout=120) for _ in tasks]
            assert len({pid for _, pid in answers}) == RACE_PROCESSES
            return [kind for kind, _ in answers]

        yield run
    finally:
        for q in queues:
            q.put(None)
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():  # pragma: no cover - only when a worker hung
                p.kill()
    assert [p.exitcode for p in procs] == [0] * RACE_PROCESSES


def test_processes_submitting_one_code_sign_in_exactly_once(
    postgres_uri: str, app_servers: Callable[[list[tuple[str, str, str]]], list[str]]
) -> None:
    auth = Auth(SECRET_KEYS, store=postgres_uri, entry_points=False)
    try:
        _open_court(auth)
        for rnd in range(RACE_ROUNDS):
            # A fresh person and address each round, so no throttle is involved.
            ip = f"10.1.{rnd // 250}.{rnd % 250}"
            client = ClientInfo(ip=ip, user_agent="race")
            party = auth.directory.add(PORTAL, f"Party {rnd}", email=f"party{rnd}@example.com")
            step = auth.start(PORTAL, METHOD, {"contact": party.email}, client=client)
            assert isinstance(step, Step) and step.flow
            code = _code(auth, party)
            kinds = app_servers([(step.flow, code, ip)] * RACE_PROCESSES)
            assert kinds.count("SignedIn") == 1, f"round {rnd}: {kinds}"
            assert set(kinds) <= {"SignedIn", "VerificationFailed"}, f"round {rnd}: {kinds}"
            assert len(auth.sessions.list(party.id)) == 1
    finally:
        auth.close()


def test_processes_guessing_at_once_never_overspend_the_budget(
    postgres_uri: str, app_servers: Callable[[list[tuple[str, str, str]]], list[str]]
) -> None:
    auth = Auth(SECRET_KEYS, store=postgres_uri, entry_points=False)
    try:
        _open_court(auth)
        budget = auth.strategy_config(PORTAL, METHOD).max_attempts
        assert budget < RACE_PROCESSES
        for rnd in range(GUESS_ROUNDS):
            ip = f"10.2.{rnd // 250}.{rnd % 250}"
            client = ClientInfo(ip=ip, user_agent="race")
            party = auth.directory.add(PORTAL, f"Party {rnd}", email=f"guess{rnd}@example.com")
            step = auth.start(PORTAL, METHOD, {"contact": party.email}, client=client)
            assert isinstance(step, Step) and step.flow
            code = _code(auth, party)
            wrong = [f"{(int(code) + 1 + i) % 10 ** len(code):0{len(code)}d}" for i in range(8)]
            kinds = app_servers([(step.flow, guess, ip) for guess in wrong])
            assert kinds == ["VerificationFailed"] * RACE_PROCESSES, f"round {rnd}: {kinds}"
            record = auth.store.latest_challenge(PORTAL, party.id, PURPOSE)
            assert record is not None
            assert record.attempts == record.max_attempts == budget, f"round {rnd}"
            # The budget is spent: even the right code no longer signs in.
            with pytest.raises(VerificationFailed):
                auth.advance(step.flow, {"code": code}, client=client)
            assert auth.sessions.list(party.id) == []
    finally:
        auth.close()


# -- the server goes away (issue 6, part 6) --------------------------------------------------------
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_server_stopped_mid_flow_fails_closed_and_loses_nothing_committed(
    postgres_server: PostgresServer, postgres_uri: str, mode: str
) -> None:
    # A short pool timeout: while the server is down every call waits this long, then fails.
    uri = _with(postgres_uri, pool_timeout=1, pool_reconnect_timeout=0.5, pool_min=2)
    auth = Auth(SECRET_KEYS, store=uri, entry_points=False)
    client = ClientInfo(ip="192.0.2.10", user_agent="pytest")
    try:
        _open_court(auth)
        portal = auth.portals.get(PORTAL, fresh=True)
        jane = auth.directory.add(PORTAL, "Jane Roe", email="jane@example.com")
        kim = auth.directory.add(PORTAL, "Kim Lee", email="kim@example.com")
        step = auth.start(PORTAL, METHOD, {"contact": "jane@example.com"}, client=client)
        assert isinstance(step, Step) and step.flow
        signed = auth.advance(step.flow, {"code": _code(auth, jane)}, client=client)
        assert isinstance(signed, SignedIn)
        # Kim is in the middle of a flow when the server stops.
        halfway = auth.start(PORTAL, METHOD, {"contact": "kim@example.com"}, client=client)
        assert isinstance(halfway, Step) and halfway.flow
        kim_code = _code(auth, kim)

        postgres_server.stop(mode)
        try:
            with pytest.raises(StoreUnavailable):
                auth.advance(halfway.flow, {"code": kim_code}, client=client)
            with pytest.raises(StoreUnavailable):
                auth.start(PORTAL, METHOD, {"contact": "kim@example.com"}, client=client)
            with pytest.raises(StoreUnavailable):
                auth.sessions.validate(signed.token)
            with pytest.raises(StoreUnavailable):
                auth.directory.add(PORTAL, "Lee Park", email="lee@example.com")
        finally:
            postgres_server.start()

        # Everything committed before the stop is still there.
        assert auth.portals.get(PORTAL, fresh=True) == portal
        assert auth.directory.get(jane.id) is not None
        assert auth.directory.get(kim.id) is not None
        assert auth.sessions.validate(signed.token).identity_id == jane.id
        assert auth.directory.find_by_email(PORTAL, "lee@example.com") is None
        # Nobody was signed in by the failed calls.
        assert auth.sessions.list(kim.id) == []
        # The flow can be started again and completed.
        again = auth.start(
            PORTAL, METHOD, {"contact": "kim@example.com"}, client=ClientInfo(ip="192.0.2.11")
        )
        assert isinstance(again, Step) and again.flow
        done = auth.advance(
            again.flow, {"code": _code(auth, kim)}, client=ClientInfo(ip="192.0.2.11")
        )
        assert isinstance(done, SignedIn)
        assert done.identity.id == kim.id
    finally:
        auth.close()


def test_store_opened_while_the_server_is_down_fails_closed(
    postgres_server: PostgresServer, postgres_uri: str
) -> None:
    postgres_server.stop()
    try:
        with pytest.raises(StoreUnavailable):
            Auth(SECRET_KEYS, store=_with(postgres_uri, pool_timeout=1), entry_points=False)
    finally:
        postgres_server.start()
    with Auth(SECRET_KEYS, store=postgres_uri, entry_points=False) as auth:
        _open_court(auth)


# -- housekeeping (issue 6, part 7) ---------------------------------------------------------------
def test_purge_expired_is_bounded_by_batch(store: SQLStore) -> None:
    store.add_identity(_identity(1))
    for n in range(25):
        store.issue_challenge(_challenge(n, subject=f"s-{n}", expires_at=NOW - 1), supersede=False)
    store.issue_challenge(_challenge(100, expires_at=NOW + 600), supersede=False)
    for n in range(10):
        store.create_session(_session(n, idle_expires_at=NOW - 1))
    store.create_session(_session(100))
    for n in range(10):
        store.incr_counter(f"old-{n}", 1, NOW - 1, NOW - 100)
    store.incr_counter("live", 1, NOW + 60, NOW)

    removed = []
    while (n := store.purge_expired(NOW, batch=10)) != 0:
        assert n <= 10
        removed.append(n)
        assert len(removed) < 10, "purge_expired never reached 0"
    assert removed == [10, 10, 10, 10, 5]
    assert store.get_challenge("ch-100") is not None
    assert store.get_session(_session(100).key) is not None
    assert store.get_counter("live", NOW) == (1, NOW + 60)
    assert store.purge_expired(NOW, batch=0) == 0


def test_auth_purge_expired_runs_in_bounded_batches(postgres_uri: str) -> None:
    from portalauth import FrozenClock

    clock = FrozenClock(NOW)
    with Auth(SECRET_KEYS, store=postgres_uri, entry_points=False, clock=clock) as auth:
        store = auth.store
        store.add_identity(_identity(1))
        for n in range(45):
            store.issue_challenge(
                _challenge(n, subject=f"s-{n}", expires_at=NOW - 1), supersede=False
            )
        store.create_session(_session(1))
        assert auth.purge_expired(batch=10, max_batches=2) == 20
        assert auth.purge_expired(batch=10) == 25
        assert auth.purge_expired(batch=10) == 0
        assert store.get_session(_session(1).key) is not None
        clock.advance(86400)  # now the session has expired too
        assert auth.purge_expired() == 1
        assert store.get_session(_session(1).key) is None


def test_a_batch_holds_one_pooled_connection_for_its_calls(postgres_uri: str) -> None:
    # With a pool of one, a batch's calls all run (they do not wait for a connection of their
    # own), and another thread's call waits for the batch to end.
    opened = SQLStore(_with(postgres_uri, pool_min=1, pool_max=1, pool_timeout=0.5))
    try:
        with opened.batch():
            for n in range(3):
                assert opened.incr_counter("c:batch", 1, NOW + 60, NOW) == (n + 1, NOW + 60)
            with ThreadPoolExecutor(1) as pool:
                waiting = pool.submit(opened.get_counter, "c:batch", NOW)
                with pytest.raises(StoreUnavailable):
                    waiting.result(timeout=30)
        assert opened.get_counter("c:batch", NOW) == (3, NOW + 60)
    finally:
        opened.close()


@_needs_fork
def test_a_child_forked_inside_a_batch_never_uses_the_parents_connection(
    postgres_server: PostgresServer, postgres_uri: str
) -> None:
    name = f"pa_forkbatch_{os.getpid()}"
    store = SQLStore(_with(postgres_uri, application_name=name, pool_min=1, pool_max=2))

    def sessions() -> int:  # the server sessions opened under this test's name
        return _backends(postgres_server, name)

    try:
        with store.batch():
            assert store.incr_counter("c:fork", 1, NOW + 60, NOW) == (1, NOW + 60)
            inherited = sessions()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child reports through its exit status
                code = 1
                try:
                    # Its own pool, so one session more: the parent's pinned one is not used.
                    counted = store.incr_counter("c:fork", 1, NOW + 60, NOW)
                    code = 0 if counted == (2, NOW + 60) and sessions() > inherited else 2
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            # The parent's pinned connection is intact and still its own.
            assert store.incr_counter("c:fork", 1, NOW + 60, NOW) == (3, NOW + 60)
        assert store.get_counter("c:fork", NOW) == (3, NOW + 60)
    finally:
        store.close()

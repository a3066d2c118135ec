"""SQLite-specific tests of :class:`portalauth.stores.sql.SQLStore` on real files.

The behaviour every store shares is checked by the contract suite (``test_contract.py``); these
cover what only a file-backed SQL store has: URIs, the schema version, durability across reopen,
WAL, locking across threads and processes, and how backend failures surface.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portalauth.config import PortalSettings
from portalauth.errors import ConfigError, ContactTaken, NotFound, StoreUnavailable
from portalauth.records import Message
from portalauth.stores import sql
from portalauth.stores.sql import SCHEMA_VERSION, SQLStore
from stores.records import NOW
from stores.records import challenge_record as _challenge
from stores.records import identity_record as _identity
from stores.records import race as _race
from stores.records import session_record as _session

THREADS = 16


def _uri(path: Path) -> str:
    return f"sqlite:///{path}"  # an absolute path: four slashes in all


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SQLStore]:
    opened = SQLStore(_uri(db_path))
    try:
        yield opened
    finally:
        opened.close()


# -- URIs -----------------------------------------------------------------------------------------
def test_absolute_uri_opens_that_file(tmp_path: Path) -> None:
    path = tmp_path / "abs.db"
    store = SQLStore(f"sqlite:///{path}")
    store.close()
    assert str(path).startswith("/")
    assert path.is_file()


def test_relative_uri_is_resolved_once_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    store = SQLStore("sqlite:///data/rel.db")
    try:
        assert (tmp_path / "data" / "rel.db").is_file()
        # Connections open lazily per thread; a later chdir must not move the database.
        monkeypatch.chdir(tmp_path / "elsewhere")
        _race(lambda i: store.put_portal(PortalSettings(slug="acme", name="Acme"), NOW), n=2)
        assert not (tmp_path / "elsewhere" / "data").exists()
        assert store.get_portal("acme") is not None
    finally:
        store.close()


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "sqlite:",
        "sqlite://",
        "sqlite:///",
        "sqlite:/x.db",
        "sqlite:x.db",
        "sqlite://host/x.db",
        "sqlite://x.db",
        "sqlite:///x.db?mode=ro",
        "sqlite:///x.db#frag",
        "sqlite:///dir/",
        "sqlite:///x\x00.db",
        "SQLITE:///x.db",
        "sqlite3:///x.db",
        "file:///x.db",
        "memory://",
        "/just/a/path.db",
    ],
)
def test_bad_uris_raise_config_error(uri: str, tmp_path: Path) -> None:
    before = set(tmp_path.iterdir())
    with pytest.raises(ConfigError):
        SQLStore(uri)
    assert set(tmp_path.iterdir()) == before


def test_non_string_uri_raises_config_error() -> None:
    with pytest.raises(ConfigError):
        SQLStore(Path("x.db"))  # type: ignore[arg-type]


@pytest.mark.parametrize("uri", ["sqlite://:memory:", "sqlite:///:memory:"])
def test_in_memory_sqlite_points_to_memory_store(uri: str) -> None:
    with pytest.raises(ConfigError, match="memory://"):
        SQLStore(uri)


# -- schema ---------------------------------------------------------------------------------------
def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, timeout=10)


def test_schema_version_is_recorded_once(db_path: Path) -> None:
    SQLStore(_uri(db_path)).close()
    SQLStore(_uri(db_path)).close()  # reopening must not add a second row
    raw = _raw(db_path)
    try:
        assert raw.execute("SELECT version FROM portalauth_schema").fetchall() == [
            (SCHEMA_VERSION,)
        ]
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        raw.close()
    assert tables == {
        "portalauth_schema",
        "portalauth_portals",
        "portalauth_identities",
        "portalauth_challenges",
        "portalauth_sessions",
        "portalauth_messages",
        "portalauth_counters",
    }


def test_newer_schema_version_is_refused(db_path: Path) -> None:
    SQLStore(_uri(db_path)).close()
    raw = _raw(db_path)
    raw.execute("UPDATE portalauth_schema SET version = ?", (SCHEMA_VERSION + 1,))
    raw.close()
    with pytest.raises(ConfigError, match="newer"):
        SQLStore(_uri(db_path))
    raw = _raw(db_path)
    try:  # refusing left the database as it was
        assert raw.execute("SELECT version FROM portalauth_schema").fetchall() == [
            (SCHEMA_VERSION + 1,)
        ]
    finally:
        raw.close()


def test_wal_and_connection_pragmas(store: SQLStore, db_path: Path) -> None:
    raw = _raw(db_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()
    conn = store._conn()
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_session_needs_an_existing_identity(store: SQLStore) -> None:
    # The foreign key is what makes delete_identity take the sessions with it.
    with pytest.raises(StoreUnavailable) as caught:
        store.create_session(_session(identity_id="nobody"))
    assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)
    assert store.get_session(_session().key) is None


def test_duplicate_ids_are_refused_without_raw_driver_errors(store: SQLStore) -> None:
    store.add_identity(_identity(1))
    store.create_session(_session(1))
    store.issue_challenge(_challenge(1), supersede=False)
    with pytest.raises(StoreUnavailable):
        store.create_session(_session(1, method="other"))
    with pytest.raises(StoreUnavailable):
        store.issue_challenge(_challenge(1, purpose="other"), supersede=True)
    assert store.get_session(_session(1).key) == _session(1)
    assert store.get_challenge("ch-1") == _challenge(1)


def test_update_identity_reports_which_contact_is_taken(store: SQLStore) -> None:
    store.add_identity(_identity(1, email_key="a@example.org", phone="+15555550100"))
    store.add_identity(_identity(2, email_key="b@example.org", phone="+15555550101"))
    with pytest.raises(ContactTaken) as caught:
        store.update_identity(_identity(2, email_key="b@example.org", phone="+15555550100"))
    assert caught.value.field == "phone"
    with pytest.raises(ContactTaken) as caught:
        store.update_identity(_identity(2, email_key="a@example.org", phone="+15555550100"))
    assert caught.value.field == "email"  # both taken: e-mail first, as the memory store
    with pytest.raises(NotFound):
        store.update_identity(_identity(3))


# -- durability -----------------------------------------------------------------------------------
def test_everything_survives_close_and_reopen(db_path: Path) -> None:
    portal = PortalSettings(
        slug="acme",
        name="Acme Law",
        methods={"share_code", "password"},
        method_settings={"share_code": {"ttl": 900, "nested": {"a": [1, 2]}}},
    )
    identity = _identity(
        email="pat@example.org",
        email_key="pat@example.org",
        phone="+15555550100",
        disabled=True,
        email_confirmed=False,
        last_sign_in_at=NOW + 1.5,
        tax_id_digest=b"\x00\xff" * 16,
        password_hash="$argon2id$v=19$...",
        attributes={"case": "2024-17", "tags": ["a", "b"]},
    )
    challenge = _challenge(lookup=b"L" * 32, data={"destination": "email"})
    session = _session(claims={"role": "client"})
    message = Message(
        id="m1",
        portal="acme",
        identity_id="id-1",
        channel="email",
        to="pat@example.org",
        subject="Code",
        text="Your code",
        html="<p>Your code</p>",
        purpose="code",
        created_at=NOW,
        simulated=False,
    )
    first = SQLStore(_uri(db_path))
    first.put_portal(portal, NOW)
    first.add_identity(identity)
    first.issue_challenge(challenge, supersede=True)
    first.create_session(session)
    first.add_message(message)
    first.incr_counter("throttle:x", 3, NOW + 60, NOW)
    first.close()

    second = SQLStore(_uri(db_path))
    try:
        assert second.get_portal("acme") == portal
        assert second.get_identity("id-1") == identity
        assert second.get_challenge("ch-1") == challenge
        assert second.get_session(session.key) == session
        assert second.list_messages("acme") == [message]
        assert second.get_counter("throttle:x", NOW) == (3, NOW + 60)
    finally:
        second.close()


def test_close_closes_every_threads_connection(db_path: Path) -> None:
    store = SQLStore(_uri(db_path))
    used = threading.Barrier(5)
    release = threading.Event()

    def worker() -> None:
        store.put_portal(PortalSettings(slug="acme", name="Acme"), NOW)
        used.wait()
        release.wait(30)  # stay alive, so the thread's connection is not dropped with it

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    used.wait()
    wal = Path(f"{db_path}-wal")
    assert wal.exists()
    store.close()
    try:
        # SQLite checkpoints and removes the WAL file only when its last connection closes.
        assert not wal.exists()
        with pytest.raises(StoreUnavailable):
            store.get_portal("acme")
    finally:
        release.set()
        for t in threads:
            t.join()


# -- races between threads ------------------------------------------------------------------------
def test_threads_adding_one_email_create_exactly_one(store: SQLStore) -> None:
    results = _race(
        lambda i: store.add_identity(
            _identity(i, email="pat@example.org", email_key="pat@example.org")
        )
    )
    assert results.count(None) == 1
    errors = [r for r in results if r is not None]
    assert len(errors) == THREADS - 1
    assert all(isinstance(e, ContactTaken) and e.field == "email" for e in errors)
    assert len(store.list_identities("acme")) == 1


def test_threads_adding_one_phone_are_told_which_field(store: SQLStore) -> None:
    results = _race(lambda i: store.add_identity(_identity(i, phone="+15555550100")))
    errors = [r for r in results if r is not None]
    assert len(errors) == THREADS - 1
    assert {type(e) for e in errors} == {ContactTaken}
    assert {e.field for e in errors} == {"phone"}


def test_threads_spending_attempts_never_exceed_the_budget(store: SQLStore) -> None:
    store.issue_challenge(_challenge(max_attempts=5), supersede=True)

    def spend(i: int) -> int:
        return sum(store.spend_attempt("ch-1", NOW)[0] for _ in range(4))

    results = _race(spend)
    assert sum(results) == 5
    record = store.get_challenge("ch-1")
    assert record is not None
    assert record.attempts == 5


def test_threads_consuming_one_challenge_exactly_one_wins(store: SQLStore) -> None:
    rounds = 20  # several challenges, so an unsafe consume shows up reliably
    for n in range(rounds):
        store.issue_challenge(_challenge(n, subject=f"s-{n}"), supersede=True)
    results = _race(lambda i: [store.consume_challenge(f"ch-{n}", NOW + 1) for n in range(rounds)])
    for n in range(rounds):
        winners = [r[n] for r in results].count(True)
        assert winners == 1, f"challenge {n}: {winners} consumers won"


def test_threads_issuing_with_supersede_leave_one_live(store: SQLStore) -> None:
    _race(lambda i: store.issue_challenge(_challenge(i), supersede=True))
    states = [store.get_challenge(f"ch-{i}") for i in range(THREADS)]
    assert sum(1 for r in states if r is not None and r.state == "live") == 1


# -- races between processes ----------------------------------------------------------------------
CHALLENGES_PER_RACE = 200


def _process_worker(uri: str, barrier: Any, out: Any) -> None:
    store = SQLStore(uri)
    try:
        barrier.wait(60)
        consumed = [store.consume_challenge(f"ch-{n}", NOW + 1) for n in range(CHALLENGES_PER_RACE)]
        spent = sum(store.spend_attempt("budget", NOW)[0] for _ in range(10))
        out.put((os.getpid(), consumed, spent))
    finally:
        store.close()


def test_two_processes_consuming_exactly_one_wins(store: SQLStore, db_path: Path) -> None:
    for n in range(CHALLENGES_PER_RACE):
        store.issue_challenge(_challenge(n, subject=f"s-{n}"), supersede=True)
    store.issue_challenge(_challenge(999, id="budget", max_attempts=7), supersede=True)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    out = ctx.Queue()
    procs = [ctx.Process(target=_process_worker, args=(_uri(db_path), barrier, out)) for _ in "ab"]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len({pid for pid, _, _ in results}) == 2
    for n in range(CHALLENGES_PER_RACE):
        assert sum(consumed[n] for _, consumed, _ in results) == 1, f"challenge {n}"
    assert sum(spent for _, _, spent in results) == 7
    budget = store.get_challenge("budget")
    assert budget is not None
    assert budget.attempts == 7


@pytest.mark.skipif(
    not hasattr(os, "fork") or sys.platform == "darwin", reason="needs a safe fork()"
)
def test_forked_child_opens_its_own_connection(store: SQLStore) -> None:
    store.issue_challenge(_challenge(), supersede=True)
    inherited = store._conn()  # this thread's connection, which the child inherits
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        code = 1
        try:
            ok = store._conn() is not inherited and store.consume_challenge("ch-1", NOW + 1)
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store._conn() is inherited  # the parent keeps its own
    assert store.consume_challenge("ch-1", NOW + 1) is False  # the child's consume is durable


# -- failures -------------------------------------------------------------------------------------
def test_unopenable_path_is_store_unavailable(tmp_path: Path) -> None:
    # A regular file where a directory should be: refused even to root, unlike chmod.
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(StoreUnavailable) as caught:
        SQLStore(f"sqlite:///{blocker}/store.db")
    assert isinstance(caught.value.__cause__, sqlite3.Error)
    assert caught.value.message == StoreUnavailable.default_message
    assert str(blocker) not in str(caught.value)


def test_directory_in_place_of_the_file_is_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "store.db").mkdir()
    with pytest.raises(StoreUnavailable):
        SQLStore(_uri(tmp_path / "store.db"))


def test_file_that_is_not_a_database_is_store_unavailable(db_path: Path) -> None:
    db_path.write_bytes(b"this is not an SQLite database, just some text" * 100)
    with pytest.raises(StoreUnavailable) as caught:
        SQLStore(_uri(db_path))
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


def test_locked_database_fails_closed_and_recovers(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql, "BUSY_TIMEOUT", 0.05)
    store = SQLStore(_uri(db_path))
    try:
        store.issue_challenge(_challenge(1), supersede=True)
        blocker = _raw(db_path)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreUnavailable) as caught:
                store.consume_challenge("ch-1", NOW + 1)
            assert "SELECT" not in str(caught.value)
            assert "UPDATE" not in str(caught.value)
            with pytest.raises(StoreUnavailable):
                store.issue_challenge(_challenge(2), supersede=True)
            with pytest.raises(StoreUnavailable):
                store.incr_counter("k", 1, NOW + 60, NOW)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        # Nothing half-done, and no transaction left open on the store's connection.
        challenge = store.get_challenge("ch-1")
        assert challenge is not None
        assert challenge.state == "live"
        assert store.get_challenge("ch-2") is None
        assert store.get_counter("k", NOW) == (0, 0.0)
        assert store.consume_challenge("ch-1", NOW + 1) is True
    finally:
        store.close()


def test_refused_identity_leaves_no_lock_behind(store: SQLStore, db_path: Path) -> None:
    store.add_identity(_identity(1, email_key="pat@example.org"))
    with pytest.raises(ContactTaken):
        store.add_identity(_identity(2, email_key="pat@example.org"))
    other = sqlite3.connect(db_path, isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")  # would raise "database is locked" if still held
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert store.get_identity("id-2") is None


def test_records_from_returning_keep_float_times(store: SQLStore) -> None:
    # SQLite returns whole-number REAL values as int through RETURNING; the store must not.
    store.issue_challenge(_challenge(created_at=NOW, expires_at=NOW + 600), supersede=True)
    spent, record = store.spend_attempt("ch-1", NOW)
    assert spent
    assert record is not None
    assert type(record.created_at) is float
    assert type(record.expires_at) is float
    count, expires_at = store.incr_counter("k", 1, NOW + 60, NOW)
    assert (type(count), type(expires_at)) == (int, float)


# -- housekeeping ---------------------------------------------------------------------------------
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

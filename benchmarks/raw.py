"""Raw limits: the operations a sign-in is built from, with nothing of portalauth around them.

Each is a bench (a context manager yielding a worker factory, see ``measure.py``); the Redis and
PostgreSQL ones take the server's URI, so they also run in worker processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import argon2
import itsdangerous
from measure import Op, WorkerFactory
from signins import PASSWORD, SECRET_KEYS, SESSIONS, round_robin

from portalauth import PasswordHasher

OWASP = {"memory_cost": 19456, "time_cost": 2, "parallelism": 1}


# -- CPU-only ---------------------------------------------------------------------------------
@contextlib.contextmanager
def hmac_pair(*, part: int = 0) -> Iterator[WorkerFactory]:
    """HMAC-SHA256 sign + verify (two digests and a constant-time compare)."""
    key = secrets.token_bytes(32)
    message = secrets.token_bytes(64)

    def op() -> object:
        tag = hmac.new(key, message, hashlib.sha256).digest()
        return hmac.compare_digest(tag, hmac.new(key, message, hashlib.sha256).digest())

    yield lambda: op


@contextlib.contextmanager
def six_digits(*, part: int = 0) -> Iterator[WorkerFactory]:
    """A 6-digit code from ``secrets.randbelow``."""
    yield lambda: lambda: f"{secrets.randbelow(1_000_000):06d}"


@contextlib.contextmanager
def itsdangerous_pair(*, part: int = 0) -> Iterator[WorkerFactory]:
    """itsdangerous ``URLSafeTimedSerializer`` dumps + loads of a small flow-like payload."""
    serializer = itsdangerous.URLSafeTimedSerializer(SECRET_KEYS[0], salt="bench")
    payload = {"p": "bench", "m": "contact_otp", "s": "code", "c": secrets.token_urlsafe(16)}
    yield lambda: lambda: serializer.loads(serializer.dumps(payload), max_age=3600)


@contextlib.contextmanager
def argon2_verify(ours: bool = False, *, part: int = 0) -> Iterator[WorkerFactory]:
    """Raw argon2-cffi verify (OWASP parameters: m=19456 KiB, t=2, p=1), or, with ``ours``,
    ``portalauth.PasswordHasher.verify`` of the same hash."""
    hasher = PasswordHasher(
        memory_cost=OWASP["memory_cost"], rounds=OWASP["time_cost"], parallelism=1
    )
    stored = hasher.hash(PASSWORD)
    raw = argon2.PasswordHasher(
        time_cost=OWASP["time_cost"], memory_cost=OWASP["memory_cost"], parallelism=1
    )
    ok, replacement = hasher.verify(PASSWORD, stored)
    if not (raw.verify(stored, PASSWORD) and ok) or replacement is not None:
        raise RuntimeError("not a like-for-like verify (a failure, or the hash would be upgraded)")
    if ours:
        yield lambda: lambda: hasher.verify(PASSWORD, stored)
    else:
        yield lambda: lambda: raw.verify(stored, PASSWORD)


# -- SQLite -----------------------------------------------------------------------------------
def _sqlite(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


@contextlib.contextmanager
def sqlite_txn(path: str, transactions: int, *, part: int = 0) -> Iterator[WorkerFactory]:
    """One (or two) raw transactions of INSERT + UPDATE + SELECT: WAL, synchronous=NORMAL,
    BEGIN IMMEDIATE, one connection per thread."""
    file = Path(path)
    setup = _sqlite(file)
    setup.execute(
        "CREATE TABLE IF NOT EXISTS challenge (id TEXT PRIMARY KEY, digest BLOB NOT NULL,"
        " attempts INTEGER NOT NULL, expires_at REAL NOT NULL)"
    )
    setup.close()
    opened: list[sqlite3.Connection] = []

    def factory() -> Op:
        conn = _sqlite(file)
        opened.append(conn)

        def transaction() -> object:
            key = secrets.token_urlsafe(16)
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT INTO challenge (id, digest, attempts, expires_at) VALUES (?, ?, 0, ?)",
                    (key, secrets.token_bytes(32), 1e10),
                )
                conn.execute("UPDATE challenge SET attempts = attempts + 1 WHERE id = ?", (key,))
                row = conn.execute(
                    "SELECT digest, attempts FROM challenge WHERE id = ?", (key,)
                ).fetchone()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return row

        if transactions == 1:
            return transaction

        def pair() -> object:
            transaction()
            return transaction()

        return pair

    try:
        yield factory
    finally:
        for conn in opened:
            conn.close()


@contextlib.contextmanager
def sqlite_select(path: str, *, part: int = 0) -> Iterator[WorkerFactory]:
    """A raw primary-key SELECT (the floor for a session validation on SQLite)."""
    keys = [secrets.token_urlsafe(32) for _ in range(SESSIONS)]
    setup = _sqlite(Path(path))
    setup.execute("CREATE TABLE session (id TEXT PRIMARY KEY, data BLOB NOT NULL)")
    setup.executemany(
        "INSERT INTO session (id, data) VALUES (?, ?)",
        [(key, secrets.token_bytes(64)) for key in keys],
    )
    setup.close()
    take = round_robin(keys)
    opened: list[sqlite3.Connection] = []

    def factory() -> Op:
        conn = _sqlite(Path(path))
        opened.append(conn)
        return lambda: conn.execute("SELECT data FROM session WHERE id = ?", (take(),)).fetchone()

    try:
        yield factory
    finally:
        for conn in opened:
            conn.close()


# -- Redis ------------------------------------------------------------------------------------
@contextlib.contextmanager
def redis_op(uri: str, kind: str, *, part: int = 0) -> Iterator[WorkerFactory]:
    """``kind``: "get" (one round trip: a GET of one of 256 keys), "pair" (SET with a TTL, then
    GETDEL: two round trips, issue + consume) or "pipelined" (the same two in one round trip).
    One client (connection pool) per process, as the store has."""
    import redis

    client = redis.Redis.from_url(uri)
    prefix = f"raw{part}:{secrets.token_hex(4)}"
    keys = [f"{prefix}:s{i}" for i in range(SESSIONS)]
    for key in keys:
        client.set(key, secrets.token_bytes(64), ex=3600)
    take = round_robin(keys)
    value = secrets.token_bytes(64)

    def get() -> object:
        return client.get(take())

    def pair() -> object:
        key = f"{prefix}:c{secrets.token_hex(8)}"
        client.set(key, value, ex=600)
        return client.getdel(key)

    def pipelined() -> object:
        key = f"{prefix}:c{secrets.token_hex(8)}"
        pipe = client.pipeline(transaction=False)
        pipe.set(key, value, ex=600)
        pipe.getdel(key)
        return pipe.execute()

    ops = {"get": get, "pair": pair, "pipelined": pipelined}
    try:
        yield lambda: ops[kind]
    finally:
        client.delete(*keys)
        client.close()


# -- PostgreSQL -------------------------------------------------------------------------------
RAW_PG_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS raw_challenge (id TEXT PRIMARY KEY, digest BYTEA NOT NULL,"
    " attempts INTEGER NOT NULL, state TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS raw_session (id TEXT PRIMARY KEY, data BYTEA NOT NULL)",
)


def prepare_postgres(uri: str) -> None:
    """The raw tables (made once by the parent, before any worker process connects)."""
    import psycopg

    with psycopg.connect(uri, autocommit=True) as conn:
        for statement in RAW_PG_SCHEMA:
            conn.execute(statement)


@contextlib.contextmanager
def postgres_op(uri: str, kind: str, *, part: int = 0) -> Iterator[WorkerFactory]:
    """``kind``: "select" (one round trip: a primary-key SELECT of one of 256 rows) or "pair"
    (an insert transaction, then a consume transaction ``UPDATE ... SET state = 'consumed'
    WHERE id = ... AND state = 'live' AND expires_at > ... RETURNING``: two round trips, each
    its own autocommit transaction). One connection per thread."""
    import psycopg

    keys = [f"p{part}-{secrets.token_urlsafe(24)}" for _ in range(SESSIONS)]
    with psycopg.connect(uri, autocommit=True) as setup, setup.cursor() as cur:
        cur.executemany(
            "INSERT INTO raw_session (id, data) VALUES (%s, %s)",
            [(key, secrets.token_bytes(64)) for key in keys],
        )
    take = round_robin(keys)
    opened: list[Any] = []

    def factory() -> Op:
        conn = psycopg.connect(uri, autocommit=True)
        opened.append(conn)

        def select() -> object:
            return conn.execute("SELECT data FROM raw_session WHERE id = %s", (take(),)).fetchone()

        def pair() -> object:
            key = secrets.token_urlsafe(16)
            conn.execute(
                "INSERT INTO raw_challenge (id, digest, attempts, state, expires_at)"
                " VALUES (%s, %s, 0, 'live', %s)",
                (key, secrets.token_bytes(32), 1e10),
            )
            return conn.execute(
                "UPDATE raw_challenge SET state = 'consumed' WHERE id = %s AND state = 'live'"
                " AND expires_at > %s RETURNING digest",
                (key, 1e9),
            ).fetchone()

        return select if kind == "select" else pair

    try:
        yield factory
    finally:
        for conn in opened:
            conn.close()

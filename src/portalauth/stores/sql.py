"""``sqlite:///path`` and ``postgresql://...``: a store in a relational database.

What this store guarantees, on top of the :class:`~portalauth.stores.base.Store` contract:

- **Atomic across threads, processes and app servers.** Every atomic operation of the contract is
  either one conditional statement (``UPDATE ... WHERE state = 'live' AND ... RETURNING``, an
  ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``) or several statements inside one write
  transaction that is exclusive where it has to be (SQLite ``BEGIN IMMEDIATE`` takes the
  database's write lock; PostgreSQL takes a transaction-scoped advisory lock on the challenge key,
  see :meth:`SQLStore.issue_challenge`). So two app servers cannot both consume a code, overspend
  an attempt budget or add one address twice: the database decides, not a check in Python.
- **Uniqueness in the index.** ``(portal, email_key)`` and ``(portal, phone)`` are unique
  indexes, so the check and the insert of :meth:`SQLStore.add_identity` are one step.
- **Durable, versioned schema.** Tables are named ``portalauth_*`` and created by the library
  (the same tables and statements on both engines). ``portalauth_schema`` records the schema
  version; opening a database written by a newer portalauth raises
  :class:`~portalauth.errors.ConfigError` rather than guessing. Concurrent first opens (several
  app servers starting at once) create the schema exactly once.
- **Fail closed.** Any backend failure (SQLite locked past the busy timeout, a disk I/O error, a
  file that is not a database; PostgreSQL down, unreachable, restarting, a pool with no free
  connection in time, a lock wait past the timeout; a closed store) raises
  :class:`~portalauth.errors.StoreUnavailable`, with the driver's exception chained as
  ``__cause__`` for logs and a message that never carries SQL or credentials. So does a
  constraint the contract has no error for (a session whose identity was just deleted, a reused
  challenge id); a taken contact is :class:`~portalauth.errors.ContactTaken`. A failed write
  transaction is rolled back; no partial result is ever returned.
- **Fork-safe.** A child process never touches a connection (or pool) it inherited; it opens
  its own.

SQLite
------
``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``. WAL mode with
``synchronous=NORMAL`` (a committed transaction survives a process crash; a power cut may lose
the last few), ``foreign_keys=ON`` and a 10 second busy timeout. Each thread gets its own
connection in autocommit mode; a single-statement write is its own transaction, and
multi-statement writes use an explicit ``BEGIN IMMEDIATE``.

PostgreSQL
----------
``postgresql://user:password@host:5432/dbname?pool_min=1&pool_max=10&pool_timeout=5`` (or
``postgres://``), through psycopg 3 and psycopg-pool (``pip install 'portalauth[postgres]'``),
PostgreSQL 12 or newer. The URI is a libpq connection URI: every libpq parameter
(``connect_timeout``, ``sslmode``, ``application_name``, several hosts, ...) passes through, and
``PG*`` environment variables apply as usual. The ``pool_*`` parameters configure the
connection pool of each store (one pool per process):

- ``pool_min`` (default 1): connections kept open even when idle.
- ``pool_max`` (default 10, at least ``pool_min``): at most this many connections at once. A
  sign-in step holds one connection from its first store call to its end (see
  :meth:`SQLStore.batch`), a password check included, and with ``Auth(delivery="inline")``
  the hand-over of its message to a real sender too: give each process at least as many as
  the threads that serve sign-ins at once, plus one for the background delivery worker.
- ``pool_timeout`` (default 5): seconds a call waits for a free connection, or for the server
  to come back, before it fails closed with ``StoreUnavailable``.
- ``pool_reconnect_timeout`` (default 10): seconds the pool keeps retrying a lost connection in
  the background (with backoff) before it leaves the next call to try again.

Without ``connect_timeout`` (and ``PGCONNECT_TIMEOUT``) a connection attempt gives up after 5
seconds. Each connection runs in autocommit mode with ``READ COMMITTED`` as its default isolation
and a ``lock_timeout`` of 10 seconds (the SQLite busy timeout). Size ``pool_max`` times the number
of app processes below the server's ``max_connections``. A pooled connection that the server
closed (a restart, ``pg_terminate_backend``) is noticed without a round trip and replaced before
use, so after a server restart calls succeed again without spurious failures. psycopg prepares
statements it runs often: behind PgBouncer, use session pooling (or PgBouncer 1.21 or newer).

The SQL is written once, with ``?`` placeholders and only syntax both engines share
(``RETURNING``, ``ON CONFLICT``, ``CASE`` instead of ``MIN``/``LEAST``); everything
engine-specific sits in one :class:`_Dialect` value (how to start a write transaction, how to lock
a key, DDL type names, which exceptions mean what).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import select
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast
from urllib.parse import unquote

from attrs import field, frozen

from ..config import PortalSettings
from ..errors import ConfigError, ContactTaken, NotFound, PortalAuthError, StoreUnavailable
from ..records import ChallengeRecord, Identity, Message, SessionRecord

if TYPE_CHECKING:  # the postgres extra is optional: imported only when a postgresql:// URI is used
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ["SCHEMA_VERSION", "SQLStore"]

#: The schema version this library writes. A database with a higher version is refused.
SCHEMA_VERSION = 1

#: How long a connection waits for another writer's lock before the store gives up (seconds).
BUSY_TIMEOUT = 10.0

#: How often a PostgreSQL statement or transaction is retried after the server rolled it back to
#: resolve a deadlock or a serialization failure (it had no effect, so running it again is safe).
_ROLLBACK_RETRIES = 3

_T = TypeVar("_T")


# -- the DB-API surface this module uses --------------------------------------------------------
class _Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class _Connection(Protocol):
    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> _Cursor: ...

    def close(self) -> None: ...


# -- dialects -------------------------------------------------------------------------------------
@frozen
class _Dialect:
    """Everything that differs between database engines. Statements themselves do not."""

    name: str
    #: The driver's parameter marker; statements are written with ``?`` and rewritten to this.
    placeholder: str
    #: Starts a write transaction. SQLite: holds the write lock from its first statement.
    begin_write: str
    #: DDL type names.
    blob_type: str
    serial_pk: str  # an auto-assigned, increasing integer primary key
    ordered_text: str  # text that sorts by code point, as Python's ``sorted`` does
    #: Every exception the driver raises for a failed statement or connection.
    errors: tuple[type[Exception], ...]
    #: The subset that means "a constraint refused the row".
    integrity_errors: tuple[type[Exception], ...]
    #: ``"unique"``, ``"foreign_key"`` or ``"other"`` for an integrity error.
    constraint_kind: Callable[[Exception], str]
    #: Text naming the violated constraint or its columns (for telling email from phone).
    constraint_text: Callable[[Exception], str]
    #: Open a configured connection in autocommit mode to a path (``None``: the store pools).
    connect: Callable[[str], _Connection] | None = None
    #: A statement taking an exclusive lock on one 64-bit key until the transaction ends, for the
    #: transactions ``begin_write`` alone does not make exclusive (``None``: it does).
    lock_key: str | None = None
    #: The subset of ``errors`` after which the engine rolled the work back and it may be retried.
    retryable_errors: tuple[type[Exception], ...] = ()
    #: A failed statement aborts the whole transaction (PostgreSQL): statements that may fail
    #: and be recovered from run inside a savepoint.
    error_aborts_transaction: bool = False

    def translate(self, sql: str) -> str:
        """``sql`` with ``?`` markers rewritten to this dialect's placeholder."""
        if self.placeholder == "?":
            return sql
        return _rewrite_placeholders(sql, self.placeholder)


@functools.lru_cache(maxsize=512)
def _rewrite_placeholders(sql: str, placeholder: str) -> str:
    # Statements in this module never contain "?" or "%" inside literals, so a plain replace is
    # exact; "%" is doubled because format-style drivers (psycopg) treat it as a marker.
    return sql.replace("%", "%%").replace("?", placeholder)


def _sqlite_connect(path: str) -> _Connection:
    conn = sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT,
        isolation_level=None,  # autocommit: transactions are explicit, never implicit
        check_same_thread=False,  # used by one thread, but close() may run on another
    )
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


def _sqlite_constraint_kind(exc: Exception) -> str:
    name = getattr(exc, "sqlite_errorname", "")
    if name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"):
        return "unique"
    if name == "SQLITE_CONSTRAINT_FOREIGNKEY":
        return "foreign_key"
    text = str(exc)
    if text.startswith("UNIQUE constraint failed"):
        return "unique"
    if text.startswith("FOREIGN KEY constraint failed"):
        return "foreign_key"
    return "other"


def _sqlite_constraint_text(exc: Exception) -> str:
    # "UNIQUE constraint failed: portalauth_identities.portal, portalauth_identities.email_key"
    return str(exc)


_SQLITE = _Dialect(
    name="sqlite",
    placeholder="?",
    connect=_sqlite_connect,
    begin_write="BEGIN IMMEDIATE",
    blob_type="BLOB",
    serial_pk="INTEGER PRIMARY KEY",  # the rowid: max(rowid) + 1, so it orders insertions
    ordered_text="TEXT",  # BINARY collation compares UTF-8 bytes, i.e. code points
    errors=(sqlite3.Error,),
    integrity_errors=(sqlite3.IntegrityError,),
    constraint_kind=_sqlite_constraint_kind,
    constraint_text=_sqlite_constraint_text,
)


def _pg_constraint_kind(exc: Exception) -> str:
    # SQLSTATE class 23: 23505 unique_violation, 23503 foreign_key_violation.
    state = getattr(exc, "sqlstate", None)
    return {"23505": "unique", "23503": "foreign_key"}.get(str(state), "other")


def _pg_constraint_text(exc: Exception) -> str:
    # The index name ("portalauth_identities_email_key"), never the row's values.
    diag = getattr(exc, "diag", None)
    return str(getattr(diag, "constraint_name", None) or "")


@functools.cache
def _postgres_dialect() -> _Dialect:
    """The PostgreSQL dialect; imports psycopg, so only when a postgresql:// URI is opened."""
    try:
        import psycopg
        import psycopg_pool  # noqa: F401  (checked here, used by _Pool)
    except ImportError:
        raise ConfigError(
            "PostgreSQL stores need psycopg 3 and psycopg-pool: pip install 'portalauth[postgres]'."
        ) from None
    return _Dialect(
        name="postgresql",
        placeholder="%s",
        # READ COMMITTED spelled out (whatever the database's default): each statement of a
        # transaction then reads what committed before it started, which is what makes the
        # advisory lock in issue_challenge sufficient (see there).
        begin_write="BEGIN ISOLATION LEVEL READ COMMITTED",
        blob_type="BYTEA",
        serial_pk="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        ordered_text='TEXT COLLATE "C"',  # byte order of UTF-8, i.e. code points
        # Includes psycopg_pool.PoolTimeout and PoolClosed (OperationalError subclasses).
        errors=(psycopg.Error,),
        integrity_errors=(psycopg.IntegrityError,),
        constraint_kind=_pg_constraint_kind,
        constraint_text=_pg_constraint_text,
        lock_key="SELECT pg_advisory_xact_lock(?)",
        retryable_errors=(psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected),
        error_aborts_transaction=True,
    )


def _lock_key(*parts: str) -> int:
    """A signed 64-bit advisory-lock key for ``parts`` (JSON-encoded, so unambiguous). Two keys
    that collide only serialise two writers that need not be: never a correctness problem."""
    text = json.dumps(["portalauth", *parts]).encode("ascii")
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_SCHEMA_LOCK = _lock_key("schema")


# -- schema ---------------------------------------------------------------------------------------
# Types are spelled so both engines read them the same way: SQLite gives "DOUBLE PRECISION" REAL
# affinity (an 8-byte float, exact round trip) and "BIGINT" INTEGER affinity. Fields that differ
# ({blob}, {serial_pk}, {ordered_text}) come from the dialect.
#
# _MIGRATIONS[n] takes the schema from version n to n + 1; all pending steps and the version bump
# run in one transaction, so a half-migrated database is never visible.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE portalauth_portals (
            slug {ordered_text} PRIMARY KEY,
            settings TEXT NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        )""",
        """CREATE TABLE portalauth_identities (
            id {ordered_text} PRIMARY KEY,
            portal TEXT NOT NULL,
            name {ordered_text} NOT NULL,
            email TEXT,
            email_key TEXT,
            email_status TEXT NOT NULL,
            phone TEXT,
            phone_status TEXT NOT NULL,
            disabled INTEGER NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            last_sign_in_at DOUBLE PRECISION,
            last_sign_in_method TEXT,
            invited_method TEXT,
            invited_at DOUBLE PRECISION,
            email_confirmed INTEGER NOT NULL,
            tax_id_digest {blob},
            password_hash TEXT,
            password_changed_at DOUBLE PRECISION,
            attributes TEXT NOT NULL
        )""",
        # NULLs are distinct in a unique index (both engines), so any number of identities may
        # lack an e-mail address or a phone. These also serve find_identity and, by their portal
        # prefix, list_identities.
        """CREATE UNIQUE INDEX portalauth_identities_email_key
            ON portalauth_identities (portal, email_key)""",
        """CREATE UNIQUE INDEX portalauth_identities_phone
            ON portalauth_identities (portal, phone)""",
        # seq orders challenges created in the same instant, as the memory store's insertion
        # counter does; id stays the unique key callers use.
        """CREATE TABLE portalauth_challenges (
            seq {serial_pk},
            id TEXT NOT NULL UNIQUE,
            portal TEXT NOT NULL,
            subject TEXT NOT NULL,
            purpose TEXT NOT NULL,
            scope TEXT NOT NULL,
            digest {blob} NOT NULL,
            lookup {blob},
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL,
            attempts INTEGER NOT NULL,
            max_attempts INTEGER NOT NULL,
            state TEXT NOT NULL,
            consumed_at DOUBLE PRECISION,
            data TEXT NOT NULL
        )""",
        # All equality columns, subject first: the same index then also serves revoke (subject,
        # portal) and delete_identity (subject alone, across portals).
        """CREATE INDEX portalauth_challenges_key
            ON portalauth_challenges (subject, portal, purpose, scope, state)""",
        """CREATE INDEX portalauth_challenges_lookup
            ON portalauth_challenges (portal, purpose, lookup)""",
        """CREATE INDEX portalauth_challenges_expiry ON portalauth_challenges (expires_at)""",
        """CREATE TABLE portalauth_sessions (
            seq {serial_pk},
            key {blob} NOT NULL UNIQUE,
            identity_id TEXT NOT NULL
                REFERENCES portalauth_identities (id) ON DELETE CASCADE,
            portal TEXT NOT NULL,
            method TEXT NOT NULL,
            scope TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            last_seen_at DOUBLE PRECISION NOT NULL,
            idle_expires_at DOUBLE PRECISION NOT NULL,
            absolute_expires_at DOUBLE PRECISION NOT NULL,
            claims TEXT NOT NULL
        )""",
        """CREATE INDEX portalauth_sessions_identity ON portalauth_sessions (identity_id)""",
        """CREATE INDEX portalauth_sessions_idle ON portalauth_sessions (idle_expires_at)""",
        """CREATE INDEX portalauth_sessions_absolute
            ON portalauth_sessions (absolute_expires_at)""",
        # Message ids are not unique: the feed is a log, and the memory store keeps repeats too.
        """CREATE TABLE portalauth_messages (
            seq {serial_pk},
            id TEXT NOT NULL,
            portal TEXT NOT NULL,
            identity_id TEXT,
            channel TEXT NOT NULL,
            to_addr TEXT NOT NULL,
            subject TEXT NOT NULL,
            text TEXT NOT NULL,
            html TEXT,
            purpose TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            simulated INTEGER NOT NULL
        )""",
        """CREATE INDEX portalauth_messages_feed
            ON portalauth_messages (portal, identity_id, seq)""",
        """CREATE TABLE portalauth_counters (
            key TEXT PRIMARY KEY,
            count BIGINT NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL
        )""",
        """CREATE INDEX portalauth_counters_expiry ON portalauth_counters (expires_at)""",
    ),
)
if len(_MIGRATIONS) != SCHEMA_VERSION:  # a release mistake: refuse to import rather than migrate
    raise RuntimeError("portalauth: _MIGRATIONS and SCHEMA_VERSION disagree")

_CREATE_SCHEMA_TABLE = "CREATE TABLE IF NOT EXISTS portalauth_schema (version INTEGER NOT NULL)"
_GET_VERSION = "SELECT MAX(version) FROM portalauth_schema"
_INSERT_VERSION = "INSERT INTO portalauth_schema (version) VALUES (?)"
_SET_VERSION = "UPDATE portalauth_schema SET version = ?"


# -- statements -----------------------------------------------------------------------------------
# Column lists are spelled out (never "*") so row positions below do not depend on table layout.

_PUT_PORTAL = """
INSERT INTO portalauth_portals (slug, settings, updated_at) VALUES (?, ?, ?)
ON CONFLICT (slug) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at
"""
_GET_PORTAL = "SELECT settings FROM portalauth_portals WHERE slug = ?"
_LIST_PORTALS = "SELECT slug, settings FROM portalauth_portals ORDER BY slug"

_INSERT_IDENTITY = """
INSERT INTO portalauth_identities (id, portal, name, email, email_key, email_status, phone,
    phone_status, disabled, created_at, updated_at, last_sign_in_at, last_sign_in_method,
    invited_method, invited_at, email_confirmed, tax_id_digest, password_hash,
    password_changed_at, attributes)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
# Parameters: see _update_params. The password and last-sign-in columns have their own writers
# (_SWAP_HASH, _RECORD_SIGN_IN) and are never written from a possibly stale identity.
_UPDATE_IDENTITY = """
UPDATE portalauth_identities SET portal = ?, name = ?, email = ?, email_key = ?,
    email_status = ?, phone = ?, phone_status = ?, disabled = ?, created_at = ?, updated_at = ?,
    invited_method = ?, invited_at = ?, email_confirmed = ?, tax_id_digest = ?, attributes = ?
WHERE id = ?
"""
_RECORD_SIGN_IN = """
UPDATE portalauth_identities SET last_sign_in_at = ?, last_sign_in_method = ? WHERE id = ?
"""
_SELECT_IDENTITY = """
SELECT id, portal, name, email, email_key, email_status, phone, phone_status, disabled,
    created_at, updated_at, last_sign_in_at, last_sign_in_method, invited_method, invited_at,
    email_confirmed, tax_id_digest, password_hash, password_changed_at, attributes
FROM portalauth_identities"""
_GET_IDENTITY = _SELECT_IDENTITY + " WHERE id = ?"
_FIND_IDENTITY_BY_EMAIL = _SELECT_IDENTITY + " WHERE portal = ? AND email_key = ?"
_FIND_IDENTITY_BY_PHONE = _SELECT_IDENTITY + " WHERE portal = ? AND phone = ?"
# Both given: at most two rows (the indexes are unique); an e-mail match is preferred.
_FIND_IDENTITY_BY_EITHER = (
    _SELECT_IDENTITY
    + """ WHERE portal = ? AND (email_key = ? OR phone = ?)
ORDER BY CASE WHEN email_key = ? THEN 0 ELSE 1 END
LIMIT 1
"""
)
_LIST_IDENTITIES = _SELECT_IDENTITY + " WHERE portal = ? ORDER BY name, id"
_IDENTITY_EXISTS = "SELECT 1 FROM portalauth_identities WHERE id = ?"
_EMAIL_TAKEN = """
SELECT 1 FROM portalauth_identities WHERE portal = ? AND email_key = ? AND id <> ? LIMIT 1
"""
_PHONE_TAKEN = """
SELECT 1 FROM portalauth_identities WHERE portal = ? AND phone = ? AND id <> ? LIMIT 1
"""
# Sessions go by ON DELETE CASCADE; challenges have no foreign key (a subject may be a decoy id
# that names no identity), so they are deleted explicitly in the same transaction.
_DELETE_IDENTITY = "DELETE FROM portalauth_identities WHERE id = ?"
_DELETE_SUBJECT_CHALLENGES = "DELETE FROM portalauth_challenges WHERE subject = ?"
_SWAP_HASH = """
UPDATE portalauth_identities SET password_hash = ?, updated_at = ?,
    password_changed_at = CASE WHEN ? = 1 THEN ? ELSE password_changed_at END
WHERE id = ? AND password_hash = ?
"""
_SET_FIRST_HASH = """
UPDATE portalauth_identities SET password_hash = ?, updated_at = ?,
    password_changed_at = CASE WHEN ? = 1 THEN ? ELSE password_changed_at END
WHERE id = ? AND password_hash IS NULL
"""

_INSERT_CHALLENGE = """
INSERT INTO portalauth_challenges (id, portal, subject, purpose, scope, digest, lookup,
    created_at, expires_at, attempts, max_attempts, state, consumed_at, data)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_SUPERSEDE_CHALLENGES = """
UPDATE portalauth_challenges SET state = 'superseded'
WHERE subject = ? AND portal = ? AND purpose = ? AND scope = ? AND state = 'live'
"""
_GET_CHALLENGE = """
SELECT id, portal, subject, purpose, scope, digest, lookup, created_at, expires_at, attempts,
    max_attempts, state, consumed_at, data
FROM portalauth_challenges WHERE id = ?
"""
_LATEST_CHALLENGE = """
SELECT id, portal, subject, purpose, scope, digest, lookup, created_at, expires_at, attempts,
    max_attempts, state, consumed_at, data
FROM portalauth_challenges
WHERE subject = ? AND portal = ? AND purpose = ? AND scope = ?
ORDER BY created_at DESC, seq DESC
LIMIT 1
"""
_FIND_CHALLENGE_ONE = """
SELECT id, portal, subject, purpose, scope, digest, lookup, created_at, expires_at, attempts,
    max_attempts, state, consumed_at, data
FROM portalauth_challenges
WHERE portal = ? AND purpose = ? AND lookup = ?
ORDER BY created_at DESC, seq DESC
LIMIT 1
"""
# For several lookups (a key rotation), "{markers}" becomes "?, ?, ...": only markers, never data.
_FIND_CHALLENGE_MANY = """
SELECT id, portal, subject, purpose, scope, digest, lookup, created_at, expires_at, attempts,
    max_attempts, state, consumed_at, data
FROM portalauth_challenges
WHERE portal = ? AND purpose = ? AND lookup IN ({markers})
ORDER BY created_at DESC, seq DESC
LIMIT 1
"""
# The whole usable_at() test is in the WHERE clause, so concurrent spenders are serialised by
# the row write and at most max_attempts of them see a row come back.
_SPEND_ATTEMPT = """
UPDATE portalauth_challenges SET attempts = attempts + 1
WHERE id = ? AND state = 'live' AND expires_at > ? AND attempts < max_attempts
RETURNING id, portal, subject, purpose, scope, digest, lookup, created_at, expires_at, attempts,
    max_attempts, state, consumed_at, data
"""
_CONSUME_CHALLENGE = """
UPDATE portalauth_challenges SET state = 'consumed', consumed_at = ?
WHERE id = ? AND state = 'live' AND expires_at > ?
"""
# "{filters}" becomes nothing, "AND purpose IN (?, ...)" and/or "AND scope = ?": markers only.
_REVOKE_CHALLENGES = """
UPDATE portalauth_challenges SET state = 'revoked'
WHERE subject = ? AND portal = ? AND state = 'live'{filters}
"""

_INSERT_SESSION = """
INSERT INTO portalauth_sessions (key, identity_id, portal, method, scope, created_at,
    last_seen_at, idle_expires_at, absolute_expires_at, claims)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_GET_SESSION = """
SELECT key, identity_id, portal, method, scope, created_at, last_seen_at, idle_expires_at,
    absolute_expires_at, claims
FROM portalauth_sessions WHERE key = ?
"""
# CASE rather than MIN(a, b): SQLite's two-argument MIN is PostgreSQL's LEAST.
_TOUCH_SESSION = """
UPDATE portalauth_sessions SET last_seen_at = ?,
    idle_expires_at = CASE WHEN absolute_expires_at < ? THEN absolute_expires_at ELSE ? END
WHERE key = ?
"""
_DELETE_SESSION = "DELETE FROM portalauth_sessions WHERE key = ?"
_DELETE_SESSIONS = "DELETE FROM portalauth_sessions WHERE identity_id = ?"
_DELETE_SESSIONS_KEEP = "DELETE FROM portalauth_sessions WHERE identity_id = ? AND key <> ?"
# Ties in created_at come out in insertion order, exactly as the memory store's stable sort.
_LIST_SESSIONS = """
SELECT key, identity_id, portal, method, scope, created_at, last_seen_at, idle_expires_at,
    absolute_expires_at, claims
FROM portalauth_sessions WHERE identity_id = ?
ORDER BY created_at DESC, seq ASC
"""

_INSERT_MESSAGE = """
INSERT INTO portalauth_messages (id, portal, identity_id, channel, to_addr, subject, text, html,
    purpose, created_at, simulated)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_LIST_MESSAGES = """
SELECT id, portal, identity_id, channel, to_addr, subject, text, html, purpose, created_at,
    simulated
FROM portalauth_messages WHERE portal = ?
ORDER BY seq DESC
LIMIT ?
"""
_LIST_IDENTITY_MESSAGES = """
SELECT id, portal, identity_id, channel, to_addr, subject, text, html, purpose, created_at,
    simulated
FROM portalauth_messages WHERE portal = ? AND identity_id = ?
ORDER BY seq DESC
LIMIT ?
"""

# A missing or expired counter restarts at the new amount and expiry in the same statement that
# would otherwise add to it, so concurrent increments never lose a count or resurrect a window.
# SET expressions read the row as it was before the update (standard SQL, both engines).
_INCR_COUNTER = """
INSERT INTO portalauth_counters (key, count, expires_at) VALUES (?, ?, ?)
ON CONFLICT (key) DO UPDATE SET
    count = CASE WHEN portalauth_counters.expires_at <= ? THEN excluded.count
                 ELSE portalauth_counters.count + excluded.count END,
    expires_at = CASE WHEN portalauth_counters.expires_at <= ? THEN excluded.expires_at
                      ELSE portalauth_counters.expires_at END
RETURNING count, expires_at
"""
_INCR_COUNTER_EXTEND = """
INSERT INTO portalauth_counters (key, count, expires_at) VALUES (?, ?, ?)
ON CONFLICT (key) DO UPDATE SET
    count = CASE WHEN portalauth_counters.expires_at <= ? THEN excluded.count
                 ELSE portalauth_counters.count + excluded.count END,
    expires_at = excluded.expires_at
RETURNING count, expires_at
"""
_GET_COUNTER = "SELECT count, expires_at FROM portalauth_counters WHERE key = ?"
_CLEAR_COUNTER = "DELETE FROM portalauth_counters WHERE key = ?"

# Bounded deletes select primary keys, which both engines can do (SQLite has no DELETE ... LIMIT
# by default, PostgreSQL none at all).
_PURGE_CHALLENGES = """
DELETE FROM portalauth_challenges WHERE seq IN (
    SELECT seq FROM portalauth_challenges WHERE expires_at <= ? LIMIT ?)
"""
_PURGE_SESSIONS = """
DELETE FROM portalauth_sessions WHERE seq IN (
    SELECT seq FROM portalauth_sessions
    WHERE idle_expires_at <= ? OR absolute_expires_at <= ? LIMIT ?)
"""
_PURGE_COUNTERS = """
DELETE FROM portalauth_counters WHERE key IN (
    SELECT key FROM portalauth_counters WHERE expires_at <= ? LIMIT ?)
"""


# -- row <-> record -------------------------------------------------------------------------------
def _json_default(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} cannot be stored as JSON")


def _dump(mapping: Mapping[str, Any]) -> str:
    if not mapping:
        return "{}"
    # Sorted and compact: the same mapping always gives the same text (cheap equality checks).
    return json.dumps(dict(mapping), sort_keys=True, separators=(",", ":"), default=_json_default)


def _load(text: str) -> dict[str, Any]:
    if text == "{}":
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError("a stored mapping is not a JSON object")
    return value


def _identity_params(i: Identity) -> tuple[Any, ...]:
    # Every column, id last (add_identity moves it to the front for _INSERT_IDENTITY).
    return (
        i.portal,
        i.name,
        i.email,
        i.email_key,
        i.email_status,
        i.phone,
        i.phone_status,
        int(i.disabled),  # an integer column on every engine: never bind a bool to it
        i.created_at,
        i.updated_at,
        i.last_sign_in_at,
        i.last_sign_in_method,
        i.invited_method,
        i.invited_at,
        int(i.email_confirmed),
        i.tax_id_digest,
        i.password_hash,
        i.password_changed_at,
        _dump(i.attributes),
        i.id,
    )


def _update_params(i: Identity) -> tuple[Any, ...]:
    return (
        i.portal,
        i.name,
        i.email,
        i.email_key,
        i.email_status,
        i.phone,
        i.phone_status,
        int(i.disabled),
        i.created_at,
        i.updated_at,
        i.invited_method,
        i.invited_at,
        int(i.email_confirmed),
        i.tax_id_digest,
        _dump(i.attributes),
        i.id,
    )


def _identity_from_row(r: Sequence[Any]) -> Identity:
    return Identity(
        id=r[0],
        portal=r[1],
        name=r[2],
        email=r[3],
        email_key=r[4],
        email_status=r[5],
        phone=r[6],
        phone_status=r[7],
        disabled=bool(r[8]),
        created_at=r[9],
        updated_at=r[10],
        last_sign_in_at=r[11],
        last_sign_in_method=r[12],
        invited_method=r[13],
        invited_at=r[14],
        email_confirmed=bool(r[15]),
        tax_id_digest=None if r[16] is None else bytes(r[16]),
        password_hash=r[17],
        password_changed_at=r[18],
        attributes=_load(r[19]),
    )


def _challenge_params(c: ChallengeRecord) -> tuple[Any, ...]:
    return (
        c.id,
        c.portal,
        c.subject,
        c.purpose,
        c.scope,
        c.digest,
        c.lookup,
        c.created_at,
        c.expires_at,
        c.attempts,
        c.max_attempts,
        c.state,
        c.consumed_at,
        _dump(c.data),
    )


def _challenge_from_row(r: Sequence[Any]) -> ChallengeRecord:
    # float(): SQLite hands REAL values with no fraction back as int through RETURNING (a
    # storage shortcut that SELECT undoes but RETURNING does not).
    return ChallengeRecord(
        id=r[0],
        portal=r[1],
        subject=r[2],
        purpose=r[3],
        scope=r[4],
        digest=bytes(r[5]),
        lookup=None if r[6] is None else bytes(r[6]),
        created_at=float(r[7]),
        expires_at=float(r[8]),
        attempts=r[9],
        max_attempts=r[10],
        state=r[11],
        consumed_at=None if r[12] is None else float(r[12]),
        data=_load(r[13]),
    )


def _session_from_row(r: Sequence[Any]) -> SessionRecord:
    return SessionRecord(
        key=bytes(r[0]),
        identity_id=r[1],
        portal=r[2],
        method=r[3],
        scope=r[4],
        created_at=r[5],
        last_seen_at=r[6],
        idle_expires_at=r[7],
        absolute_expires_at=r[8],
        claims=_load(r[9]),
    )


def _message_from_row(r: Sequence[Any]) -> Message:
    return Message(
        id=r[0],
        portal=r[1],
        identity_id=r[2],
        channel=r[3],
        to=r[4],
        subject=r[5],
        text=r[6],
        html=r[7],
        purpose=r[8],
        created_at=r[9],
        simulated=bool(r[10]),
    )


def _markers(n: int) -> str:
    return ", ".join("?" * n)


# -- URIs -----------------------------------------------------------------------------------------
@frozen
class _PoolSettings:
    """The ``pool_*`` parameters of a postgresql:// URI (see the module docstring)."""

    min_size: int = 1
    max_size: int = 10
    timeout: float = 5.0
    reconnect_timeout: float = 10.0


@frozen
class _Target:
    """What a store URI names."""

    dialect: _Dialect
    #: A file path (SQLite) or a libpq connection URI without the ``pool_*`` parameters.
    location: str
    #: For ``repr``: the location with any password masked.
    display: str
    #: PostgreSQL: pool settings and extra connection parameters; ``None`` for SQLite.
    pool: _PoolSettings | None = None
    connect_kwargs: Mapping[str, Any] = field(factory=dict)


#: Seconds a PostgreSQL connection attempt may take when the URI does not say.
DEFAULT_CONNECT_TIMEOUT = 5

_POOL_PARAMETERS = {
    "pool_min": "min_size",
    "pool_max": "max_size",
    "pool_timeout": "timeout",
    "pool_reconnect_timeout": "reconnect_timeout",
}
_WHOLE = re.compile(r"[0-9]{1,6}")
_SECONDS = re.compile(r"[0-9]{1,6}(\.[0-9]{1,6})?")
# libpq reads the password between "user:" and "@" of the authority.
_PASSWORD = re.compile(r"^([a-z]+://[^:@/?]*:)[^@/?]*@", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&]*")


def _parse_uri(uri: object) -> _Target:
    """What a store URI names, or :class:`ConfigError`."""
    if not isinstance(uri, str):
        raise ConfigError("The store URI must be a string such as sqlite:///portalauth.db.")
    scheme, sep, rest = uri.partition("://")
    if scheme in ("postgresql", "postgres") and sep:
        return _parse_postgres(uri)
    if scheme != "sqlite" or not sep:
        raise ConfigError(
            "An SQL store URI must start with sqlite:/// (as in sqlite:///app.db) or "
            "postgresql:// (as in postgresql://user:password@host/dbname)."
        )
    if ":memory:" in rest or rest in ("", "/"):
        raise ConfigError(
            "An SQLite store needs a file path (sqlite:///relative.db or sqlite:////abs.db); "
            "for a store in memory use memory://."
        )
    if not rest.startswith("/"):
        raise ConfigError("sqlite:// URIs take no host: write sqlite:///path (three slashes).")
    path = rest[1:]
    if "?" in path or "#" in path:
        raise ConfigError("sqlite:// URIs take no query parameters or fragment.")
    if "\x00" in path or path.endswith("/"):
        raise ConfigError("The sqlite:// URI does not name a database file.")
    # Resolved now: connections open lazily, per thread, and must not follow a later chdir().
    path = os.path.abspath(path)
    return _Target(dialect=_SQLITE, location=path, display=path)


def _parse_postgres(uri: str) -> _Target:
    """A postgresql:// URI: the ``pool_*`` parameters are taken out, the rest is checked by
    libpq's own parser. Error messages never quote the URI (it may hold a password)."""
    dialect = _postgres_dialect()
    from psycopg import conninfo as pg_conninfo
    from psycopg import pq

    if "#" in uri or "\x00" in uri:
        raise ConfigError("A postgresql:// store URI takes no fragment (#).")
    base, _, query = uri.partition("?")
    known = {option.keyword.decode() for option in pq.Conninfo.get_defaults()}
    known.add("ssl")  # libpq's URI shorthand for sslmode=require
    kept: list[str] = []
    given: dict[str, str] = {}
    for part in query.split("&") if query else ():
        raw_name, _, raw_value = part.partition("=")
        name = unquote(raw_name)
        if name in _POOL_PARAMETERS:
            if name in given:
                raise ConfigError(f"The store URI sets {name} more than once.")
            given[name] = unquote(raw_value)
        elif name in known:
            kept.append(part)
        else:
            raise ConfigError(
                f"Unknown parameter {name[:40]!r} in the postgresql:// store URI: use libpq "
                f"connection parameters and {', '.join(_POOL_PARAMETERS)}."
            )
    location = f"{base}?{'&'.join(kept)}" if kept else base
    try:
        params = pg_conninfo.conninfo_to_dict(location)
    except dialect.errors:
        raise ConfigError(
            "The postgresql:// store URI is not a valid libpq connection URI (is a special "
            "character in the user name or password not percent-encoded?)."
        ) from None
    settings: dict[str, Any] = {}
    for name, value in given.items():
        pattern = _WHOLE if name in ("pool_min", "pool_max") else _SECONDS
        if not pattern.fullmatch(value):
            raise ConfigError(f"{name} in the store URI must be a number of the form 10 or 2.5.")
        settings[_POOL_PARAMETERS[name]] = int(value) if pattern is _WHOLE else float(value)
    defaults = _PoolSettings()
    if "max_size" not in settings:
        settings["max_size"] = max(defaults.max_size, settings.get("min_size", 0))
    pool = _PoolSettings(**settings)
    if pool.max_size < 1 or pool.max_size < pool.min_size:
        raise ConfigError("pool_max in the store URI must be at least 1 and at least pool_min.")
    if not (pool.timeout > 0 and pool.reconnect_timeout > 0):
        raise ConfigError("pool_timeout and pool_reconnect_timeout must be more than 0 seconds.")
    kwargs: dict[str, Any] = {}
    if "connect_timeout" not in params and "PGCONNECT_TIMEOUT" not in os.environ:
        kwargs["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT
    display = _QUERY_PASSWORD.sub(r"\1***", _PASSWORD.sub(r"\1***@", location))
    return _Target(
        dialect=dialect, location=location, display=display, pool=pool, connect_kwargs=kwargs
    )


# -- connections across fork() -------------------------------------------------------------------
# A connection must never be used, or even closed, in a child process that inherited it: a SQLite
# connection's locks belong to the parent, and closing a PostgreSQL connection (or a pool's) would
# end the parent's session on the server. Each connection and pool records the fork generation it
# was opened in; a child sees a newer generation and opens its own. Inherited connections and
# pools are pinned so that their deallocation in the child can never close them.
_fork_generation = 0
_pinned_for_fork: list[object] = []
_open_stores: weakref.WeakSet[SQLStore] = weakref.WeakSet()


def _before_fork() -> None:
    for store in list(_open_stores):
        _pinned_for_fork.extend(store._current_connections())


def _after_fork_in_parent() -> None:
    _pinned_for_fork.clear()


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1  # _pinned_for_fork is kept: those belong to the parent


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


class _Slot:
    """One thread's connection. Dropped with the thread, which closes the connection."""

    __slots__ = ("__weakref__", "conn", "generation")

    def __init__(self, conn: _Connection, generation: int) -> None:
        self.conn = conn
        self.generation = generation


class _Local(threading.local):
    slot: _Slot | None = None
    #: The pooled connection this thread's :meth:`SQLStore.batch` holds (PostgreSQL), with the
    #: fork generation it was borrowed in.
    pinned: tuple[_Connection, int] | None = None


# -- PostgreSQL connection pool -------------------------------------------------------------------
def _pg_configure(conn: psycopg.Connection[Any]) -> None:
    """Session settings of every new pooled connection (one round trip, when it is opened)."""
    conn.execute(
        "SELECT set_config('lock_timeout', %s, false),"
        " set_config('default_transaction_isolation', 'read committed', false)",
        (f"{round(BUSY_TIMEOUT * 1000)}ms",),
    )


def _server_closed(conn: psycopg.Connection[Any]) -> bool:
    """Whether an idle pooled connection was closed by the server, found without a round trip.

    An idle connection has nothing to read: if its socket is readable, the server has closed it
    (a restart sends "terminating connection" and hangs up) or sent something unasked. Either
    way it is not worth using; a false alarm only costs a reconnection."""
    if conn.closed:
        return True
    try:
        fd = conn.fileno()
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLPRI)
            return bool(poller.poll(0))
        readable, _, broken = select.select([fd], [], [fd], 0)
        return bool(readable or broken)
    except (OSError, ValueError):
        return True
    except Exception as exc:  # the driver says the connection is unusable
        if isinstance(exc, _postgres_dialect().errors):
            return True
        raise


class _Pool:
    """A psycopg_pool.ConnectionPool per process: a forked child opens its own."""

    def __init__(self, conninfo: str, settings: _PoolSettings, kwargs: Mapping[str, Any]) -> None:
        self._conninfo = conninfo
        self._settings = settings
        self._kwargs = {**kwargs, "autocommit": True}
        self._lock = threading.Lock()
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._generation = -1
        self._closed = False

    def _current(self) -> ConnectionPool[psycopg.Connection[Any]]:
        pool = self._pool
        if pool is not None and self._generation == _fork_generation:
            return pool
        from psycopg_pool import ConnectionPool

        with self._lock:
            if self._closed:
                raise StoreUnavailable()
            if self._pool is not None and self._generation != _fork_generation:
                _pinned_for_fork.append(self._pool)  # the parent's: never touched here
                self._pool = None
            if self._pool is None:
                s = self._settings
                self._pool = ConnectionPool(
                    self._conninfo,
                    kwargs=self._kwargs,
                    min_size=s.min_size,
                    max_size=s.max_size,
                    timeout=s.timeout,
                    reconnect_timeout=s.reconnect_timeout,
                    configure=_pg_configure,
                    name="portalauth",
                    open=True,
                )
                self._generation = _fork_generation
            return self._pool

    @contextlib.contextmanager
    def connection(self) -> Iterator[_Connection]:
        """A connection for one statement or transaction, returned to the pool afterwards (the
        pool rolls back a transaction left open and replaces a broken connection)."""
        pool = self._current()
        conn = pool.getconn()
        if _server_closed(conn):
            # Probably a server restart: every idle connection is likely dead. Return this one
            # and have the pool test them all now (and open new ones), rather than fail a call.
            pool.putconn(conn)
            pool.check()
            conn = pool.getconn()
        try:
            yield cast(_Connection, conn)
        finally:
            pool.putconn(conn)

    def current(self) -> list[object]:
        with self._lock:
            if self._pool is not None and self._generation == _fork_generation:
                return [self._pool]
            return []

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            mine = self._generation == _fork_generation
        if pool is not None and mine:
            pool.close()


# -- the store ------------------------------------------------------------------------------------
class SQLStore:
    """A :class:`~portalauth.stores.base.Store` in an SQL database: SQLite or PostgreSQL.

    ``SQLStore("sqlite:///var/portalauth.db")`` opens (creating if needed) the file, switches it
    to WAL mode and creates or upgrades the schema. ``SQLStore("postgresql://...")`` opens a
    connection pool and creates or upgrades the schema in that database. Raises
    :class:`ConfigError` for a malformed URI, a database written by a newer portalauth, a file
    system without WAL support or a missing ``postgres`` extra; raises :class:`StoreUnavailable`
    when the database cannot be opened or reached. Safe to share between threads; several
    processes (and app servers, for PostgreSQL) may open the same database.
    """

    def __init__(self, uri: str) -> None:
        target = _parse_uri(uri)
        self._dialect = target.dialect
        self._target = target.location
        self._display = target.display
        self._rewrite = self._dialect.placeholder != "?"
        self._errors = self._dialect.errors
        self._integrity = self._dialect.integrity_errors
        self._retryable = self._dialect.retryable_errors
        self._local = _Local()
        self._lock = threading.Lock()
        self._slots: weakref.WeakSet[_Slot] = weakref.WeakSet()
        self._pool: _Pool | None = None
        if target.pool is not None:
            self._pool = _Pool(target.location, target.pool, target.connect_kwargs)
        self._closed = False
        # slug -> (stored JSON, parsed settings): a portal is read on nearly every request and
        # validating PortalSettings costs far more than comparing the text the row returns.
        self._portal_cache: dict[str, tuple[str, PortalSettings]] = {}
        _open_stores.add(self)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"SQLStore({self._dialect.name}:{self._display!r})"

    # -- connection plumbing ----------------------------------------------------------------
    def _conn(self) -> _Connection:
        """This thread's connection (SQLite; a pooled store borrows per call instead)."""
        slot = self._local.slot
        if slot is not None and slot.generation == _fork_generation:
            return slot.conn
        if self._closed or self._dialect.connect is None:
            raise StoreUnavailable()
        conn = self._dialect.connect(self._target)
        slot = _Slot(conn, _fork_generation)
        with self._lock:
            self._slots.add(slot)
        self._local.slot = slot
        return conn

    def _current_connections(self) -> list[object]:
        if self._pool is not None:
            return self._pool.current()
        with self._lock:
            return [s.conn for s in self._slots if s.generation == _fork_generation]

    def _sql(self, sql: str) -> str:
        return self._dialect.translate(sql) if self._rewrite else sql

    def _failure(self, exc: Exception) -> PortalAuthError:
        """The typed error for a driver exception: the message is safe to show, and callers
        chain ``exc`` as its cause."""
        # Constraint failures outside the identity checks (a session for an identity deleted a
        # moment ago, a reused challenge id) are StoreUnavailable too: they happen on sign-in
        # paths, where the promise is "fail closed, nobody signed in", and NotFound is a
        # staff-side error. The driver's exception, kept as __cause__, says which constraint.
        return StoreUnavailable()

    def _run(self, work: Callable[[_Connection], _T]) -> _T:
        """``work(connection)`` on this thread's connection (SQLite) or a pooled one
        (PostgreSQL), with every driver exception turned into its typed error.

        On PostgreSQL, work the server rolled back to break a deadlock or a serialization
        conflict is run again (a few times): it had no effect, so nothing is done twice.
        """
        if self._pool is None:
            try:
                return work(self._conn())
            except self._errors as exc:
                raise self._failure(exc) from exc
        pinned = self._local.pinned
        attempt = 1
        while True:
            if self._closed:
                raise StoreUnavailable()
            try:
                if pinned is not None and pinned[1] == _fork_generation:
                    return work(pinned[0])
                with self._pool.connection() as conn:
                    return work(conn)
            except self._retryable as exc:
                if attempt >= _ROLLBACK_RETRIES:
                    raise self._failure(exc) from exc
                attempt += 1
            except self._errors as exc:
                raise self._failure(exc) from exc

    def _one(self, sql: str, params: Sequence[Any]) -> Any:
        statement = self._sql(sql)
        return self._run(lambda conn: conn.execute(statement, params).fetchone())

    def _all(self, sql: str, params: Sequence[Any]) -> list[Any]:
        statement = self._sql(sql)
        return self._run(lambda conn: conn.execute(statement, params).fetchall())

    def _count(self, sql: str, params: Sequence[Any]) -> int:
        """Run one write statement (its own transaction); the number of rows it changed."""
        statement = self._sql(sql)
        return self._run(lambda conn: conn.execute(statement, params).rowcount)

    def _transaction(self, body: Callable[[Callable[[str, Sequence[Any]], _Cursor]], _T]) -> _T:
        """Run ``body(execute)`` in one write transaction (on SQLite holding the write lock
        throughout).

        Commits if ``body`` returns; rolls back if it raises (its exception propagates, a driver
        exception as its typed error).
        """
        sql = self._sql

        def work(conn: _Connection) -> _T:
            def execute(statement: str, params: Sequence[Any]) -> _Cursor:
                return conn.execute(sql(statement), params)

            conn.execute(self._dialect.begin_write)
            try:
                result = body(execute)
                conn.execute("COMMIT")
            except BaseException:
                self._rollback(conn)
                raise
            return result

        return self._run(work)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group this thread's calls in the block (blocks nest): on PostgreSQL they share one
        pooled connection, borrowed once rather than per statement (about a tenth of a sign-in
        step's time). Each statement still commits by itself, so no lock is held across the
        caller's work and nothing is undone if the block raises. On SQLite a thread always
        uses its own connection, and a commit in WAL mode costs no more than the statement:
        the block changes nothing (grouping a step's writes into one transaction was measured
        no faster, and would hold the write lock through the step)."""
        local = self._local
        if self._pool is None or local.pinned is not None:
            yield
            return
        if self._closed:
            raise StoreUnavailable()
        borrowed = self._pool.connection()
        try:
            local.pinned = (borrowed.__enter__(), _fork_generation)
        except self._errors as exc:
            raise self._failure(exc) from exc
        try:
            yield
        finally:
            conn, generation = local.pinned
            local.pinned = None
            if generation != _fork_generation:
                # A child forked inside the block: the connection is the parent's. Never use,
                # return or close it here (see "connections across fork()").
                _pinned_for_fork.append(conn)
            else:
                with contextlib.suppress(*self._errors):  # the pool replaces a broken one
                    borrowed.__exit__(None, None, None)

    def _rollback(self, conn: _Connection) -> None:
        # Fails only when no transaction is left to roll back (the engine already ended it, or
        # the connection is gone, which ends it on the server).
        with contextlib.suppress(*self._errors):
            conn.execute("ROLLBACK")

    def _guarded(
        self,
        execute: Callable[[str, Sequence[Any]], _Cursor],
        statement: str,
        params: Sequence[Any],
    ) -> _Cursor:
        """Run one statement of a transaction that may fail on a constraint and be recovered
        from: on PostgreSQL, which aborts the whole transaction on an error, inside a savepoint
        that is rolled back on failure, so the transaction can still look up why."""
        if not self._dialect.error_aborts_transaction:
            return execute(statement, params)
        execute("SAVEPOINT portalauth_guard", ())
        try:
            cursor = execute(statement, params)
        except self._integrity:
            execute("ROLLBACK TO SAVEPOINT portalauth_guard", ())
            raise
        return cursor  # the savepoint ends with the transaction

    def _open(self) -> None:
        self._one_time_setup()
        lock = self._dialect.lock_key

        def migrate(execute: Callable[[str, Sequence[Any]], _Cursor]) -> None:
            if lock is not None:
                # Several app servers may open a new database at once. PostgreSQL runs DDL
                # concurrently (even CREATE TABLE IF NOT EXISTS can fail on a race), so the
                # version check and the migration hold one lock.
                execute(lock, (_SCHEMA_LOCK,))
            execute(_CREATE_SCHEMA_TABLE, ())
            found = execute(_GET_VERSION, ()).fetchone()
            version = 0 if found is None or found[0] is None else int(found[0])
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"This database has portalauth schema version {version}, newer than this "
                    f"library's {SCHEMA_VERSION}. Upgrade portalauth to use it."
                )
            if version == SCHEMA_VERSION:
                return
            d = self._dialect
            for step in _MIGRATIONS[version:]:
                for statement in step:
                    execute(
                        statement.format(
                            blob=d.blob_type, serial_pk=d.serial_pk, ordered_text=d.ordered_text
                        ),
                        (),
                    )
            execute(_SET_VERSION if version else _INSERT_VERSION, (SCHEMA_VERSION,))

        self._transaction(migrate)

    def _one_time_setup(self) -> None:
        if self._pool is not None:

            def check_version(conn: _Connection) -> int:
                return int(cast("psycopg.Connection[Any]", conn).info.server_version)

            if self._run(check_version) < 120000:
                raise ConfigError("portalauth needs PostgreSQL 12 or newer.")
            return
        try:
            conn = self._conn()
            # Persistent in the file; needs no transaction, so it runs before the migration.
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise ConfigError(
                    "SQLite could not switch this database to WAL mode; put it on a local "
                    "file system."
                )
        except self._errors as exc:
            raise self._failure(exc) from exc

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Close every connection this store opened (in any thread), or its pool. Later calls
        fail closed with :class:`StoreUnavailable`."""
        self._closed = True
        _open_stores.discard(self)
        if self._pool is not None:
            with contextlib.suppress(*self._errors):  # best effort: the store is done
                self._pool.close()
        with self._lock:
            slots = [s for s in self._slots if s.generation == _fork_generation]
            self._slots.clear()
        for slot in slots:
            with contextlib.suppress(*self._errors):  # best effort: the store is done
                slot.conn.close()

    # -- portals ----------------------------------------------------------------------------
    def put_portal(self, settings: PortalSettings, now: float) -> None:
        text = json.dumps(
            settings.to_dict(), sort_keys=True, separators=(",", ":"), default=_json_default
        )
        self._count(_PUT_PORTAL, (settings.slug, text, now))

    def _settings(self, slug: str, text: str) -> PortalSettings:
        cached = self._portal_cache.get(slug)
        if cached is not None and cached[0] == text:
            return cached[1]
        settings = PortalSettings.from_dict(json.loads(text))
        self._portal_cache[slug] = (text, settings)
        return settings

    def get_portal(self, slug: str) -> PortalSettings | None:
        row = self._one(_GET_PORTAL, (slug,))
        return None if row is None else self._settings(slug, row[0])

    def list_portals(self) -> list[PortalSettings]:
        """Every portal, ordered by slug."""
        return [self._settings(slug, text) for slug, text in self._all(_LIST_PORTALS, ())]

    # -- identities -------------------------------------------------------------------------
    def _contact_taken(
        self,
        execute: Callable[[str, Sequence[Any]], _Cursor],
        identity: Identity,
        exc: Exception,
        *,
        adding: bool,
    ) -> PortalAuthError:
        """Which constraint ``identity`` broke, checked in the failed statement's transaction
        in the memory store's order: the id (when adding), the e-mail key, then the phone."""
        if self._dialect.constraint_kind(exc) != "unique":
            return self._failure(exc)
        if adding and execute(_IDENTITY_EXISTS, (identity.id,)).fetchone() is not None:
            return ContactTaken("That identity id exists already.")
        params = (identity.portal, identity.email_key, identity.id)
        if identity.email_key is not None and execute(_EMAIL_TAKEN, params).fetchone():
            return ContactTaken(field="email")
        params = (identity.portal, identity.phone, identity.id)
        if identity.phone is not None and execute(_PHONE_TAKEN, params).fetchone():
            return ContactTaken(field="phone")
        # Not reproducible by a query (should not happen inside the transaction): go by name.
        text = self._dialect.constraint_text(exc)
        if "email_key" in text:
            return ContactTaken(field="email")
        if "phone" in text:
            return ContactTaken(field="phone")
        return ContactTaken()

    def add_identity(self, identity: Identity) -> None:
        """Insert a new identity; :class:`ContactTaken` if the id, e-mail key or phone is taken
        in its portal. Enforced by unique indexes, so concurrent adds create exactly one."""
        params = _identity_params(identity)
        insert_params = (params[-1], *params[:-1])

        def add(execute: Callable[[str, Sequence[Any]], _Cursor]) -> None:
            try:
                self._guarded(execute, _INSERT_IDENTITY, insert_params)
            except self._integrity as exc:
                raise self._contact_taken(execute, identity, exc, adding=True) from exc

        self._transaction(add)

    def update_identity(self, identity: Identity) -> None:
        """Replace the identity with the same id (not its password or last-sign-in columns);
        :class:`NotFound` if there is none, :class:`ContactTaken` if its e-mail key or phone
        belongs to another identity."""
        params = _update_params(identity)

        def update(execute: Callable[[str, Sequence[Any]], _Cursor]) -> None:
            try:
                changed = self._guarded(execute, _UPDATE_IDENTITY, params).rowcount
            except self._integrity as exc:
                raise self._contact_taken(execute, identity, exc, adding=False) from exc
            if changed == 0:
                raise NotFound()

        self._transaction(update)

    def record_sign_in(self, identity_id: str, at: float, method: str) -> None:
        """Write only the last-sign-in columns, in one statement."""
        self._count(_RECORD_SIGN_IN, (at, method, identity_id))

    def get_identity(self, identity_id: str) -> Identity | None:
        row = self._one(_GET_IDENTITY, (identity_id,))
        return None if row is None else _identity_from_row(row)

    def find_identity(
        self, portal: str, *, email_key: str | None = None, phone: str | None = None
    ) -> Identity | None:
        """The identity of ``portal`` with that ``email_key`` or ``phone``. Given both, one
        matching the e-mail key is preferred."""
        if email_key is not None and phone is not None:
            row = self._one(_FIND_IDENTITY_BY_EITHER, (portal, email_key, phone, email_key))
        elif email_key is not None:
            row = self._one(_FIND_IDENTITY_BY_EMAIL, (portal, email_key))
        elif phone is not None:
            row = self._one(_FIND_IDENTITY_BY_PHONE, (portal, phone))
        else:
            return None
        return None if row is None else _identity_from_row(row)

    def list_identities(self, portal: str) -> list[Identity]:
        """Every identity of ``portal``, ordered by name then id (code point order)."""
        return [_identity_from_row(r) for r in self._all(_LIST_IDENTITIES, (portal,))]

    def delete_identity(self, identity_id: str) -> bool:
        """Delete an identity with its sessions and challenges, in one transaction."""

        def delete(execute: Callable[[str, Sequence[Any]], _Cursor]) -> bool:
            if execute(_DELETE_IDENTITY, (identity_id,)).rowcount == 0:
                return False  # and leave challenges alone: the id may be a decoy subject
            execute(_DELETE_SUBJECT_CHALLENGES, (identity_id,))
            return True

        return self._transaction(delete)

    def replace_password_hash(
        self,
        identity_id: str,
        new_hash: str,
        *,
        expected: str | None,
        now: float,
        changed: bool = False,
    ) -> bool:
        """Compare-and-swap in one conditional ``UPDATE``; True if it wrote."""
        flag = int(changed)
        if expected is None:
            count = self._count(_SET_FIRST_HASH, (new_hash, now, flag, now, identity_id))
        else:
            count = self._count(_SWAP_HASH, (new_hash, now, flag, now, identity_id, expected))
        return count == 1

    # -- challenges -------------------------------------------------------------------------
    def issue_challenge(self, record: ChallengeRecord, *, supersede: bool) -> None:
        """Insert ``record``; with ``supersede``, first retire the live challenges of its key
        in the same write transaction (so of concurrent issues exactly one stays live)."""
        params = _challenge_params(record)
        if not supersede:
            self._count(_INSERT_CHALLENGE, params)
            return
        key = (record.subject, record.portal, record.purpose, record.scope)
        # SQLite: BEGIN IMMEDIATE already makes the transaction exclusive. PostgreSQL (READ
        # COMMITTED) would let two issuers both supersede the old challenge and both insert, so
        # each takes a transaction-scoped advisory lock on the key first. The lock is taken in
        # its own statement, so the UPDATE that follows reads a snapshot taken after the previous
        # holder committed, and retires that holder's challenge too: newest wins. Chosen over
        # SERIALIZABLE with retry because issuers of one key simply queue for a few
        # milliseconds (no aborted work, no retry loop, no predicate locks on a hot table), and
        # issuers of different keys never wait for each other.
        lock = self._dialect.lock_key
        lock_params = (_lock_key("challenge", *key),) if lock is not None else ()

        def issue(execute: Callable[[str, Sequence[Any]], _Cursor]) -> None:
            if lock is not None:
                execute(lock, lock_params)
            execute(_SUPERSEDE_CHALLENGES, key)
            execute(_INSERT_CHALLENGE, params)

        self._transaction(issue)

    def get_challenge(self, challenge_id: str) -> ChallengeRecord | None:
        row = self._one(_GET_CHALLENGE, (challenge_id,))
        return None if row is None else _challenge_from_row(row)

    def find_challenge(
        self, portal: str, purpose: str, lookups: Sequence[bytes]
    ) -> ChallengeRecord | None:
        """The most recent challenge (by ``created_at``, then insertion) with one of
        ``lookups``, in any state."""
        wanted = tuple(dict.fromkeys(lookups))  # de-duplicated, order kept
        if not wanted:
            return None
        if len(wanted) == 1:
            row = self._one(_FIND_CHALLENGE_ONE, (portal, purpose, wanted[0]))
        else:
            row = self._one(_find_challenge_sql(len(wanted)), (portal, purpose, *wanted))
        return None if row is None else _challenge_from_row(row)

    def latest_challenge(
        self, portal: str, subject: str, purpose: str, scope: str = ""
    ) -> ChallengeRecord | None:
        row = self._one(_LATEST_CHALLENGE, (subject, portal, purpose, scope))
        return None if row is None else _challenge_from_row(row)

    def spend_attempt(self, challenge_id: str, now: float) -> tuple[bool, ChallengeRecord | None]:
        """One conditional ``UPDATE ... RETURNING``: True with the record after the increment,
        or False with the record as it is (``None`` if unknown)."""
        row = self._one(_SPEND_ATTEMPT, (challenge_id, now))
        if row is not None:
            return True, _challenge_from_row(row)
        return False, self.get_challenge(challenge_id)

    def consume_challenge(self, challenge_id: str, now: float) -> bool:
        """One conditional ``UPDATE``: True for exactly one of any number of callers."""
        return self._count(_CONSUME_CHALLENGE, (now, challenge_id, now)) == 1

    def revoke_challenges(
        self,
        portal: str,
        subject: str,
        *,
        purposes: Sequence[str] | None = None,
        scope: str | None = None,
    ) -> int:
        params: list[Any] = [subject, portal]
        n_purposes = -1
        if purposes is not None:
            wanted = tuple(dict.fromkeys(purposes))
            if not wanted:
                return 0  # no purpose can match an empty list
            n_purposes = len(wanted)
            params.extend(wanted)
        if scope is not None:
            params.append(scope)
        return self._count(_revoke_sql(n_purposes, scope is not None), params)

    # -- sessions ---------------------------------------------------------------------------
    def create_session(self, record: SessionRecord) -> None:
        """Insert a session. Its identity must exist (a foreign key, so deleting the identity
        deletes its sessions); otherwise, or if the key exists already, :class:`StoreUnavailable`
        and nothing is stored."""
        self._count(
            _INSERT_SESSION,
            (
                record.key,
                record.identity_id,
                record.portal,
                record.method,
                record.scope,
                record.created_at,
                record.last_seen_at,
                record.idle_expires_at,
                record.absolute_expires_at,
                _dump(record.claims),
            ),
        )

    def get_session(self, key: bytes) -> SessionRecord | None:
        row = self._one(_GET_SESSION, (key,))
        return None if row is None else _session_from_row(row)

    def touch_session(self, key: bytes, last_seen_at: float, idle_expires_at: float) -> None:
        """Move the idle expiry, capped at the absolute expiry in the same statement."""
        self._count(_TOUCH_SESSION, (last_seen_at, idle_expires_at, idle_expires_at, key))

    def delete_session(self, key: bytes) -> bool:
        return self._count(_DELETE_SESSION, (key,)) == 1

    def delete_sessions(self, identity_id: str, *, keep: bytes | None = None) -> int:
        if keep is None:
            return self._count(_DELETE_SESSIONS, (identity_id,))
        return self._count(_DELETE_SESSIONS_KEEP, (identity_id, keep))

    def list_sessions(self, identity_id: str) -> list[SessionRecord]:
        """Newest first by ``created_at``; sessions created at the same instant in the order
        they were created (as the memory store)."""
        return [_session_from_row(r) for r in self._all(_LIST_SESSIONS, (identity_id,))]

    # -- simulated messages -----------------------------------------------------------------
    def add_message(self, message: Message) -> None:
        self._count(
            _INSERT_MESSAGE,
            (
                message.id,
                message.portal,
                message.identity_id,
                message.channel,
                message.to,
                message.subject,
                message.text,
                message.html,
                message.purpose,
                message.created_at,
                int(message.simulated),
            ),
        )

    def list_messages(
        self, portal: str, *, identity_id: str | None = None, limit: int = 100
    ) -> list[Message]:
        """Newest (last added) first, at most ``limit``."""
        if limit <= 0:
            return []  # SQLite reads LIMIT -1 as "no limit"
        if identity_id is None:
            rows = self._all(_LIST_MESSAGES, (portal, limit))
        else:
            rows = self._all(_LIST_IDENTITY_MESSAGES, (portal, identity_id, limit))
        return [_message_from_row(r) for r in rows]

    # -- counters ---------------------------------------------------------------------------
    def incr_counter(
        self, key: str, amount: int, expires_at: float, now: float, *, extend: bool = False
    ) -> tuple[int, float]:
        """One upsert: restart a missing or expired counter, else add (and, with ``extend``,
        take the new expiry). Returns the stored ``(count, expires_at)``."""
        if extend:
            row = self._one(_INCR_COUNTER_EXTEND, (key, amount, expires_at, now))
        else:
            row = self._one(_INCR_COUNTER, (key, amount, expires_at, now, now))
        if row is None:  # RETURNING always yields the row; anything else is a broken backend
            raise StoreUnavailable()
        return int(row[0]), float(row[1])

    def get_counter(self, key: str, now: float) -> tuple[int, float]:
        row = self._one(_GET_COUNTER, (key,))
        if row is None or now >= row[1]:
            return 0, 0.0
        return int(row[0]), float(row[1])

    def clear_counter(self, key: str) -> None:
        self._count(_CLEAR_COUNTER, (key,))

    # -- housekeeping -----------------------------------------------------------------------
    def purge_expired(self, now: float, *, batch: int = 1000) -> int:
        """Delete at most ``batch`` expired rows: challenges first, then sessions, then
        counters. Each delete is its own short transaction, so other writers interleave."""
        removed = 0
        if batch > 0:
            removed += self._count(_PURGE_CHALLENGES, (now, batch))
        if batch - removed > 0:
            removed += self._count(_PURGE_SESSIONS, (now, now, batch - removed))
        if batch - removed > 0:
            removed += self._count(_PURGE_COUNTERS, (now, batch - removed))
        return removed


@functools.lru_cache(maxsize=64)
def _find_challenge_sql(n: int) -> str:
    return _FIND_CHALLENGE_MANY.format(markers=_markers(n))


@functools.lru_cache(maxsize=256)
def _revoke_sql(n_purposes: int, with_scope: bool) -> str:
    filters = ""
    if n_purposes >= 0:
        filters += f" AND purpose IN ({_markers(n_purposes)})"
    if with_scope:
        filters += " AND scope = ?"
    return _REVOKE_CHALLENGES.format(filters=filters)

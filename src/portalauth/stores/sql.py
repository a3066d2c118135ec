"""``sqlite:///path``: a store in a relational database, through the plain DB-API.

What this store guarantees, on top of the :class:`~portalauth.stores.base.Store` contract:

- **Atomic across threads and processes.** Every atomic operation of the contract is either one
  conditional statement (``UPDATE ... WHERE state = 'live' AND ... RETURNING``, an
  ``INSERT ... ON CONFLICT DO UPDATE``) or several statements inside one write transaction that
  takes the database's write lock up front (SQLite ``BEGIN IMMEDIATE``). So two app servers on
  one SQLite file cannot both consume a code, overspend an attempt budget or add one address
  twice: the database decides, not a check in Python.
- **Uniqueness in the index.** ``(portal, email_key)`` and ``(portal, phone)`` are unique
  indexes, so the check and the insert of :meth:`SQLStore.add_identity` are one step.
- **Durable, versioned schema.** Tables are named ``portalauth_*`` and created by the library.
  ``portalauth_schema`` records the schema version; opening a file written by a newer portalauth
  raises :class:`~portalauth.errors.ConfigError` rather than guessing.
- **Fail closed.** Any backend failure (locked past the busy timeout, disk I/O error, a file that
  is not a database, a closed store) raises :class:`~portalauth.errors.StoreUnavailable`, with the
  driver's exception chained as ``__cause__`` for logs and a message that never carries SQL. So
  does a constraint the contract has no error for (a session whose identity was just deleted, a
  reused challenge id); a taken contact is :class:`~portalauth.errors.ContactTaken`. A failed
  write transaction is rolled back; no partial result is ever returned.
- **Fork-safe.** A child process never touches a connection it inherited; it opens its own.

SQLite runs in WAL mode with ``synchronous=NORMAL`` (a committed transaction survives a process
crash; a power cut may lose the last few), ``foreign_keys=ON`` and a 10 second busy timeout. Each
thread gets its own connection in autocommit mode; a single-statement write is its own
transaction, and multi-statement writes use an explicit ``BEGIN IMMEDIATE``.

Only SQLite is implemented. The SQL is written once, with ``?`` placeholders and only syntax that
PostgreSQL shares (``RETURNING``, ``ON CONFLICT``, ``CASE`` instead of ``MIN``/``LEAST``), and
everything engine-specific sits in one :class:`_Dialect` value (how to connect, how to start a
write transaction, DDL type names, which exceptions mean what). A PostgreSQL dialect is a new
``_Dialect`` plus the ``?`` → ``%s`` rewrite that :meth:`_Dialect.translate` already does; its
``begin_write`` must also serialise writers (for example ``SERIALIZABLE`` with retry, or an
advisory lock), because PostgreSQL's default isolation does not make supersede-then-insert
exclusive the way ``BEGIN IMMEDIATE`` does.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from attrs import frozen

from ..config import PortalSettings
from ..errors import ConfigError, ContactTaken, NotFound, PortalAuthError, StoreUnavailable
from ..records import ChallengeRecord, Identity, Message, SessionRecord

__all__ = ["SCHEMA_VERSION", "SQLStore"]

#: The schema version this library writes. A database with a higher version is refused.
SCHEMA_VERSION = 1

#: How long a connection waits for another writer's lock before the store gives up (seconds).
BUSY_TIMEOUT = 10.0

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
    #: Open a configured connection in autocommit mode to ``target`` (a path or a DSN).
    connect: Callable[[str], _Connection]
    #: Starts a transaction that holds the write lock from its first statement.
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
def _parse_uri(uri: object) -> tuple[_Dialect, str]:
    """``(dialect, target)`` for a store URI, or :class:`ConfigError`."""
    if not isinstance(uri, str):
        raise ConfigError("The store URI must be a string such as sqlite:///portalauth.db.")
    scheme, sep, rest = uri.partition("://")
    if scheme in ("postgresql", "postgres"):
        raise ConfigError("This version of portalauth's SQL store supports only sqlite:// URIs.")
    if scheme != "sqlite" or not sep:
        raise ConfigError("An SQL store URI must start with sqlite:///, as in sqlite:///app.db.")
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
    return _SQLITE, os.path.abspath(path)


# -- connections across fork() -------------------------------------------------------------------
# A SQLite connection must never be used, or even closed, in a child process that inherited it:
# its locks belong to the parent. Each connection records the fork generation it was opened in; a
# child sees a newer generation and opens its own. Inherited connections are pinned so that their
# deallocation in the child can never close them.
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


# -- the store ------------------------------------------------------------------------------------
class SQLStore:
    """A :class:`~portalauth.stores.base.Store` in an SQL database (SQLite for now).

    ``SQLStore("sqlite:///var/portalauth.db")`` opens (creating if needed) the file, switches it
    to WAL mode and creates or upgrades the schema. Raises :class:`ConfigError` for a malformed
    URI, a database written by a newer portalauth, or a file system without WAL support; raises
    :class:`StoreUnavailable` when the file cannot be opened. Safe to share between threads;
    several processes may open the same file.
    """

    def __init__(self, uri: str) -> None:
        self._dialect, self._target = _parse_uri(uri)
        self._rewrite = self._dialect.placeholder != "?"
        self._errors = self._dialect.errors
        self._integrity = self._dialect.integrity_errors
        self._local = _Local()
        self._lock = threading.Lock()
        self._slots: weakref.WeakSet[_Slot] = weakref.WeakSet()
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
        return f"SQLStore({self._dialect.name}:{self._target!r})"

    # -- connection plumbing ----------------------------------------------------------------
    def _conn(self) -> _Connection:
        slot = self._local.slot
        if slot is not None and slot.generation == _fork_generation:
            return slot.conn
        if self._closed:
            raise StoreUnavailable()
        conn = self._dialect.connect(self._target)
        slot = _Slot(conn, _fork_generation)
        with self._lock:
            self._slots.add(slot)
        self._local.slot = slot
        return conn

    def _current_connections(self) -> list[_Connection]:
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

    def _one(self, sql: str, params: Sequence[Any]) -> Any:
        try:
            return self._conn().execute(self._sql(sql), params).fetchone()
        except self._errors as exc:
            raise self._failure(exc) from exc

    def _all(self, sql: str, params: Sequence[Any]) -> list[Any]:
        try:
            return self._conn().execute(self._sql(sql), params).fetchall()
        except self._errors as exc:
            raise self._failure(exc) from exc

    def _count(self, sql: str, params: Sequence[Any]) -> int:
        """Run one write statement (its own transaction); the number of rows it changed."""
        try:
            return self._conn().execute(self._sql(sql), params).rowcount
        except self._errors as exc:
            raise self._failure(exc) from exc

    def _transaction(self, body: Callable[[Callable[[str, Sequence[Any]], _Cursor]], _T]) -> _T:
        """Run ``body(execute)`` in one write transaction holding the write lock throughout.

        Commits if ``body`` returns; rolls back if it raises (its exception propagates, a driver
        exception as its typed error).
        """
        try:
            conn = self._conn()
            sql = self._sql

            def execute(statement: str, params: Sequence[Any]) -> _Cursor:
                return conn.execute(sql(statement), params)

            conn.execute(self._dialect.begin_write)
            try:
                result = body(execute)
                conn.execute("COMMIT")
            except BaseException:
                self._rollback(conn)
                raise
        except self._errors as exc:
            raise self._failure(exc) from exc
        return result

    def _rollback(self, conn: _Connection) -> None:
        # Fails only when no transaction is left to roll back (the engine already ended it).
        with contextlib.suppress(*self._errors):
            conn.execute("ROLLBACK")

    def _open(self) -> None:
        self._one_time_setup()

        def migrate(execute: Callable[[str, Sequence[Any]], _Cursor]) -> None:
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
        try:
            conn = self._conn()
            if self._dialect.name == "sqlite":
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
        """Close every connection this store opened (in any thread). Later calls fail closed
        with :class:`StoreUnavailable`."""
        self._closed = True
        _open_stores.discard(self)
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
                execute(_INSERT_IDENTITY, insert_params)
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
                changed = execute(_UPDATE_IDENTITY, params).rowcount
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

        def issue(execute: Callable[[str, Sequence[Any]], _Cursor]) -> None:
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

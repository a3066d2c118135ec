"""Secrets never leak (issue 7, item 5; R66, with R18, R51 and R59 for the store).

:class:`SecretLeaks` collects every secret issued while a test runs and, at the end of the test,
looks for each of them everywhere a secret must never end up. It is the ``secret_leaks`` fixture,
autouse for ``tests/security`` (its ``conftest.py``) and for ``tests/strategies`` and
``tests/integrations`` (``tests/conftest.py``). The search runs when the test body returns (the
``pytest_runtest_call`` wrapper in ``tests/conftest.py``, so a leak fails the test itself and
``xfail`` applies) and again at teardown; a test that means to leak takes its findings with
:meth:`SecretLeaks.take`.

**Collected** by wrapping, at class level and only for the test (a private
:class:`pytest.MonkeyPatch`), the places that create secrets; ``src`` is never edited:

- codes, PINs and second-factor codes: ``Challenges.new_code``;
- link tokens (sign-in, invitation, reset, confirmation): ``Challenges.new_token``;
- share codes: ``ShareCodes._unique_code`` (canonical form; the display form with its hyphen is
  matched too);
- anything else a strategy (a plugin's included) hands to ``Challenges.issue`` as ``secret`` or
  ``lookup_secret``;
- session tokens and the session ids inside them: ``Sessions.create``;
- passwords: what ``PasswordHasher.hash`` is given and what ``PasswordHasher.verify`` accepts
  (a wrong guess is not an issued secret); password hashes: what ``hash`` returns, what
  ``verify`` is handed or returns as an upgrade, and what ``Directory.replace_password_hash``
  stores;
- server keys: ``Keyring.__init__``.

Flow tokens are not collected: they carry only the portal, method, step, challenge id and a
nonce (``flows.py``), no secret, and hold nothing that signs anybody in without the code.

**Searched**, at the end of the test:

- ``log``: every log record (a handler on the root and the ``portalauth`` loggers, with
  ``portalauth`` at DEBUG for the test): the message, its arguments, a formatted ``exc_info``
  traceback (chained exceptions included), ``stack_info`` and any ``extra`` fields;
- ``event``: the ``repr()`` of every :class:`~portalauth.events.Event` (``Emitter.emit``);
- ``exception``: ``str()``, ``repr()`` and the attributes of every exception that leaves a public
  API method below, and of the exceptions chained to it the way a traceback shows them;
- ``repr``: ``repr()`` and ``str()`` of every object those methods return. A secret the API is
  designed to hand back (a PIN shown to staff once, a share code, a session token) may sit in a
  field of the returned object, never in its ``repr()``;
- ``store``: every row of every memory store (its internal dicts) and SQLite file (a copy, WAL
  included, every table and column; plus the raw bytes of the file and its WAL for session ids,
  passwords and keys) opened during the test, except the simulated-message feed (the outbox
  records), which holds the message text by design. Password hashes are expected in the store
  and only there.

A collector that fails (the library changed shape under it) never changes what the library
does: the test fails with "the leak scan could not collect secrets" instead. The search at
teardown is skipped when nothing was collected, seen or opened since a clean search after the
test body.

The public API is every public method of ``Auth``, its staff helpers (``ShareCodes``, ``Pins``,
``MagicLinks``, ``Passwords``) and the services staff use (``Sessions``, ``Directory``,
``Portals``). ``Sessions.create`` returns the token by design and is not ``repr()``-checked;
``Challenges`` (the strategies' service, whose errors reach the caller through ``Auth``) and the
outbox (the simulated feed) are not searched. A frozen record returned again is searched once.

**Matching.** Secrets shorter than 5 characters are ignored (a Tax ID's last four digits).
Passwords, password hashes and keys are matched as substrings, case-insensitively (also after
NFKC). Codes, share codes and tokens are matched only as whole tokens, case-insensitively: a text
is cut into runs of ``[A-Za-z0-9]`` and into runs of ``[A-Za-z0-9_-]`` (so a 6-digit code inside
a timestamp or a longer number never matches, while ``code=123456`` and ``?token=...`` do), and
a store value is compared whole and by the same tokens. Share codes match with and without the
hyphen.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FunctionType
from typing import Any

import attrs
import pytest

from portalauth.auth import Auth
from portalauth.challenges import Challenges
from portalauth.directory import Directory
from portalauth.events import Emitter, Event
from portalauth.keys import Keyring
from portalauth.passwords import PasswordHasher
from portalauth.portals import Portals
from portalauth.sessions import Sessions
from portalauth.stores.memory import MemoryStore
from portalauth.stores.sql import SQLStore
from portalauth.strategies.magic_link import MagicLinks
from portalauth.strategies.password import Passwords
from portalauth.strategies.share_code import SHARE, ShareCodes, display
from portalauth.strategies.staff_pin import Pins

__all__ = [
    "API_CLASSES",
    "MIN_LENGTH",
    "SCAN",
    "SINKS",
    "Leak",
    "Secret",
    "SecretIndex",
    "SecretLeaks",
    "check_after_call",
    "secret_leaks",
    "tokens",
]

#: Secrets shorter than this are not searched (a Tax ID's last four digits would match any "2024").
MIN_LENGTH = 5
#: Where a secret must never appear.
SINKS = ("log", "event", "exception", "repr", "store")

CODE = "code"
SHARE_CODE = "share_code"
LINK_TOKEN = "link_token"
SESSION = "session"
PASSWORD = "password"
PASSWORD_HASH = "password_hash"
KEY = "key"
#: Kinds matched as substrings (anything else only as a whole token).
SUBSTRING_KINDS = frozenset({PASSWORD, PASSWORD_HASH, KEY})
#: Kinds whose presence in a store is their purpose.
AT_REST_OK = {PASSWORD_HASH: frozenset({"store"})}
#: Kinds searched in the raw bytes of a SQLite file (they never belong in the message feed).
RAW_KINDS = frozenset({SESSION, PASSWORD, KEY})

#: Every public method of these classes is the public API: what it returns and raises is searched.
API_CLASSES: tuple[type, ...] = (
    Auth,
    ShareCodes,
    Pins,
    MagicLinks,
    Passwords,
    Sessions,
    Directory,
    Portals,
)
#: Methods that return a secret by design (to the code that delivers or sets it).
_RETURN_SECRETS = frozenset({"Sessions.create"})
#: The simulated-message feed of the memory store: excluded, it holds message text by design.
_MEMORY_FEED = frozenset({"_messages", "_messages_of"})  # the feed and its index
_MEMORY_SKIP = frozenset({"_lock"})
#: The simulated-message feed of the SQL store.
_SQL_FEED = frozenset({"portalauth_messages"})

_FINE = re.compile(r"[a-z0-9]+")
_COARSE = re.compile(r"[a-z0-9_-]+")
_STANDARD_RECORD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_FORMATTER = logging.Formatter()


# -- matching -------------------------------------------------------------------------------------
def tokens(text: str) -> set[str]:
    """The whole tokens of ``text``, lowercased: runs of ``[a-z0-9]`` and of ``[a-z0-9_-]``."""
    lowered = text.lower()
    return set(_FINE.findall(lowered)) | set(_COARSE.findall(lowered))


@attrs.frozen
class Secret:
    """One issued secret: its kind (``code``, ``share_code``, ``link_token``, ``session``,
    ``password``, ``password_hash``, ``key``) and its value as issued."""

    kind: str
    value: str = attrs.field(repr=False)

    @property
    def forms(self) -> frozenset[str]:
        """The lowercased spellings it may leak in."""
        value = self.value.lower()
        if self.kind in SUBSTRING_KINDS:
            return frozenset({value, unicodedata.normalize("NFKC", self.value).lower()})
        if self.kind == SHARE_CODE:
            canonical = value.replace("-", "")
            return frozenset({canonical, display(canonical)})
        return frozenset({value})

    def allowed_in(self, sink: str) -> bool:
        return sink in AT_REST_OK.get(self.kind, frozenset())


@attrs.frozen
class Leak:
    """A secret found where it must not be."""

    kind: str
    sink: str
    where: str
    excerpt: str
    value: str = attrs.field(repr=False)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.value, self.sink, self.where)

    def __str__(self) -> str:
        return (
            f"a {self.kind} ({len(self.value)} chars) in {self.sink}: {self.where}: {self.excerpt}"
        )


def _excerpt(text: str, form: str) -> str:
    at = max(0, text.lower().find(form))
    start, end = max(0, at - 60), min(len(text), at + len(form) + 60)
    return repr(("…" if start else "") + text[start:end] + ("…" if end < len(text) else ""))


class SecretIndex:
    """The collected secrets, ready to search texts for."""

    def __init__(self, secrets: Iterable[Secret]) -> None:
        self._tokens: dict[str, Secret] = {}
        self._substrings: list[tuple[str, Secret]] = []
        for secret in secrets:
            if len(secret.value) < MIN_LENGTH:
                continue
            for form in secret.forms:
                if secret.kind in SUBSTRING_KINDS:
                    self._substrings.append((form, secret))
                else:
                    self._tokens.setdefault(form, secret)

    def __bool__(self) -> bool:
        return bool(self._tokens or self._substrings)

    def search(
        self, sink: str, texts: Mapping[str, str], *, raw_kinds: frozenset[str] | None = None
    ) -> list[Leak]:
        """Leaks in ``texts`` (text -> where it was seen) for a ``sink``; one per secret and
        place. With ``raw_kinds`` the texts are raw bytes: only those kinds are searched, and as
        substrings (a row in a page has no word boundaries)."""
        if not texts or not self:
            return []
        blob = "\x00".join(texts).lower()
        raw = raw_kinds is not None
        if raw:
            candidates = [(f, s) for f, s in self._tokens.items() if s.kind in raw_kinds]
            by_token: list[tuple[str, Secret]] = []
            by_substring = [(f, s) for f, s in candidates + self._substrings if f in blob]
            by_substring = [(f, s) for f, s in by_substring if s.kind in raw_kinds]
        else:
            by_token = [(f, self._tokens[f]) for f in tokens(blob) & self._tokens.keys()]
            by_substring = [(f, s) for f, s in self._substrings if f in blob]
        by_token = [(f, s) for f, s in by_token if not s.allowed_in(sink)]
        by_substring = [(f, s) for f, s in by_substring if not s.allowed_in(sink)]
        leaks: dict[tuple[str, str], Leak] = {}
        if not by_token and not by_substring:
            return []
        # Where each hit sits: every text is lowered and cut into tokens once, however many hits.
        for text, where in texts.items():
            lowered = text.lower()
            words = tokens(lowered) if by_token else set()
            found = [(f, s) for f, s in by_token if f in words]
            found += [(f, s) for f, s in by_substring if f in lowered]
            for form, secret in found:
                if (secret.value, where) not in leaks:
                    leaks[(secret.value, where)] = Leak(
                        secret.kind, sink, where, _excerpt(text, form), secret.value
                    )
        return list(leaks.values())


# -- what is searched -----------------------------------------------------------------------------
def _exception_text(exc: BaseException) -> str:
    """``str``, ``repr`` and attributes of ``exc`` and of the exceptions a traceback shows with
    it (``__cause__``, and ``__context__`` unless suppressed)."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [f"{type(current).__name__}: {current}", repr(current), repr(current.args)]
        attributes = getattr(current, "__dict__", None)
        if attributes:
            parts.append(repr(attributes))
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return "\n".join(parts)


def _log_text(record: logging.LogRecord) -> str:
    parts: list[str] = []
    try:
        parts.append(record.getMessage())
    except Exception:  # a malformed record: what it holds is still searched
        parts.append(str(record.msg))
    parts.append(repr(record.args))
    if record.exc_info and record.exc_info[1] is not None:
        parts.append(_FORMATTER.formatException(record.exc_info))
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    extras = {k: v for k, v in vars(record).items() if k not in _STANDARD_RECORD}
    if extras:
        parts.append(repr(extras))
    return "\n".join(parts)


def _text(raw: bytes) -> str:
    # Text columns are UTF-8; digests are random bytes, whose invalid sequences become U+FFFD
    # (a token boundary).
    return raw.decode("utf-8", "replace")


def _values(value: object, where: str) -> Iterator[tuple[str, str]]:
    """Every scalar inside a stored value, as text, with the field it sits in."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, (bytes, bytearray, memoryview)):
        yield where, _text(bytes(value))
    elif isinstance(value, (int, float)):
        yield where, repr(value)
    elif attrs.has(type(value)):
        for field in attrs.fields(type(value)):
            yield from _values(getattr(value, field.name), f"{where}.{field.name}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _values(key, f"{where}[key]")
            yield from _values(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _values(item, f"{where}[]")
    else:
        yield where, repr(value)


def memory_rows(store: MemoryStore) -> dict[str, str]:
    """Every value a memory store holds outside its simulated-message feed: one text per field
    (its values joined by NUL) -> the field."""
    fields: dict[str, list[str]] = {}
    for name, table in list(vars(store).items()):
        if name in _MEMORY_FEED or name in _MEMORY_SKIP:
            continue
        rows = list(table.items()) if isinstance(table, Mapping) else [(None, table)]
        for key, row in rows:
            for where, text in [
                *_values(key, f"MemoryStore.{name}[key]"),
                *_values(row, f"MemoryStore.{name}[]"),
            ]:
                fields.setdefault(where, []).append(text)
    return {"\x00".join(texts): where for where, texts in fields.items()}


def _columns(con: sqlite3.Connection, name: str) -> dict[str, str]:
    con.text_factory = bytes  # digests are not UTF-8
    columns: dict[str, str] = {}
    tables = [row[0].decode() for row in con.execute("SELECT name FROM sqlite_master")]
    for table in tables:
        if table in _SQL_FEED or table.startswith("sqlite_"):
            continue
        for info in con.execute(f'PRAGMA table_info("{table}")').fetchall():
            column = info[1].decode()
            (joined,) = con.execute(
                f'SELECT group_concat(CAST("{column}" AS BLOB), x\'00\') FROM "{table}"'
            ).fetchone()
            if joined:
                columns[_text(joined)] = f"sqlite {name}: {table}.{column}"
    return columns


def sqlite_rows(path: Path) -> dict[str, str]:
    """Every column of every table of a SQLite file (WAL included) outside the message feed: one
    text per column (its values joined by NUL, as SQLite casts them to text) -> the column.

    The file is opened read-only (never written nor checkpointed); when that is not possible (a
    WAL left without its index by a closed store) a copy of the file and its WAL is opened."""
    try:
        con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            return _columns(con, path.name)
        finally:
            con.close()
    except sqlite3.OperationalError:
        pass
    except sqlite3.DatabaseError:
        return {}  # not (or no longer) a database: its raw bytes are still searched
    with tempfile.TemporaryDirectory(prefix="leakscan-") as tmp:
        copy = Path(tmp) / "scan.db"
        for suffix in ("", "-wal"):
            source = Path(f"{path}{suffix}")
            if source.exists():
                shutil.copyfile(source, f"{copy}{suffix}")
        con = sqlite3.connect(copy)
        try:
            return _columns(con, path.name)
        except sqlite3.DatabaseError:
            return {}
        finally:
            con.close()


def sqlite_raw(path: Path) -> dict[str, str]:
    """The raw bytes of a SQLite file, its WAL and journal together (freed pages and old row
    versions included), as latin-1 text."""
    parts = [
        Path(f"{path}{suffix}").read_bytes().decode("latin-1")
        for suffix in ("", "-wal", "-journal")
        if Path(f"{path}{suffix}").exists()
    ]
    return {"\x00".join(parts): f"raw bytes of {path.name} (with its WAL and journal)"}


def _argument(
    function: Callable[..., Any], name: str
) -> Callable[[tuple[Any, ...], dict[str, Any]], Any]:
    """Reads argument ``name`` of a call to ``function`` (its signature read once, now)."""
    signature = inspect.signature(function)

    def read(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return signature.bind_partial(*args, **kwargs).arguments.get(name)

    return read


_HASHED = _argument(PasswordHasher.hash, "password")
_VERIFIED = _argument(PasswordHasher.verify, "password")
_STORED = _argument(PasswordHasher.verify, "stored")
_REPLACED = _argument(Directory.replace_password_hash, "new_hash")
_STORE_URI = _argument(SQLStore.__init__, "uri")


def _sqlite_path(uri: object) -> Path | None:
    # As stores/sql.py reads sqlite:///relative.db and sqlite:////absolute.db (now, before any
    # chdir); anything else (PostgreSQL) is not searched.
    if not isinstance(uri, str) or not uri.startswith("sqlite:///"):
        return None
    return Path(os.path.abspath(uri[len("sqlite:///") :]))


# -- the collector --------------------------------------------------------------------------------
class _Handler(logging.Handler):
    def __init__(self, scan: SecretLeaks) -> None:
        super().__init__(logging.NOTSET)
        self._scan = scan

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._scan.record(
                "log", f"log record {record.name} {record.levelname}", _log_text(record)
            )
        except Exception:
            self.handleError(record)


class SecretLeaks:
    """Collects the secrets issued during a test and what could leak them (see the module)."""

    def __init__(self) -> None:
        self._secrets: dict[str, Secret] = {}
        self._texts: dict[str, dict[str, str]] = {sink: {} for sink in SINKS}
        self._memory: list[MemoryStore] = []
        self._sqlite: dict[Path, None] = {}
        self._accepted: set[tuple[str, str, str]] = set()
        #: Collectors that failed (the scan's own problem, reported as a failure).
        self._broken: list[str] = []
        #: Objects whose repr() was searched already (kept alive, so their ids stay theirs).
        self._shown: dict[int, object] = {}
        #: Bumped by every new secret, text or store; the search at teardown is skipped when
        #: nothing changed since a clean search after the test body.
        self._version = 0
        self._clean_at = -1
        self._lock = threading.Lock()

    # -- collecting ---------------------------------------------------------------------------
    def add(self, kind: str, value: object) -> None:
        """Collect a secret (``str``; anything else is ignored)."""
        if isinstance(value, bytes):
            try:
                value = value.decode("ascii")
            except UnicodeDecodeError:
                return  # random key bytes never show up as text
        if isinstance(value, str) and value:
            with self._lock:
                known = self._secrets.get(value)
                if known is None or (known.kind == CODE and kind == SHARE_CODE):
                    self._secrets[value] = Secret(kind, value)
                    self._version += 1

    def collected(self, kind: str | None = None) -> set[str]:
        """The secrets collected so far (of one kind)."""
        with self._lock:
            return {s.value for s in self._secrets.values() if kind is None or s.kind == kind}

    def record(self, sink: str, where: str, text: str) -> None:
        """Remember ``text`` seen in ``sink`` (the wrappers call this; a test may too)."""
        texts = self._texts[sink]
        if text not in texts:
            texts.setdefault(text, where)
            self._version += 1

    def seen(self, sink: str) -> int:
        """How many distinct texts were seen in ``sink`` (for ``store``: fields and columns that
        hold something)."""
        if sink == "store":
            return len(self._store_texts())
        return len(self._texts[sink])

    def raised(self, where: str, exc: BaseException) -> None:
        if isinstance(exc, Exception):
            self.record("exception", f"{where} raised {type(exc).__name__}", _exception_text(exc))

    def returned(self, where: str, result: object) -> None:
        if result is None or isinstance(result, (bool, int, float)):
            return
        cls = type(result)
        if attrs.has(cls):  # portalauth's records are frozen: one repr() per object is enough
            if self._shown.get(id(result)) is result:
                return
            self._shown[id(result)] = result
        self.record("repr", f"repr() of what {where} returned", repr(result))
        if cls.__str__ is not object.__str__:  # object.__str__ is repr()
            self.record("repr", f"str() of what {where} returned", str(result))

    # -- searching ----------------------------------------------------------------------------
    def _store_texts(self) -> dict[str, str]:
        texts: dict[str, str] = {}
        for store in list(self._memory):
            texts.update(memory_rows(store))
        for path in list(self._sqlite):
            if path.exists():
                texts.update(sqlite_rows(path))
        return texts

    def findings(self) -> list[Leak]:
        """Every leak so far that a test has not :meth:`take`-n."""
        with self._lock:
            index = SecretIndex(list(self._secrets.values()))
        found: list[Leak] = []
        for sink in SINKS:
            texts = self._store_texts() if sink == "store" else dict(self._texts[sink])
            found += index.search(sink, texts)
        for path in list(self._sqlite):
            found += index.search("store", sqlite_raw(path), raw_kinds=RAW_KINDS)
        return [leak for leak in found if leak.key not in self._accepted]

    def take(self) -> list[Leak]:
        """The current findings, which then no longer fail the test (for tests of the scan)."""
        found = self.findings()
        self._accepted.update(leak.key for leak in found)
        return found

    def assert_clean(self, *, again: bool = True) -> None:
        """Fail the test if any collected secret leaked (R66). ``again=False`` skips the search
        when nothing was collected or seen since the last clean one."""
        if not again and self._version == self._clean_at:
            return
        version = self._version
        if self._broken:
            broken, self._broken = "\n  - ".join(self._broken), []
            pytest.fail(f"the leak scan could not collect secrets:\n  - {broken}", pytrace=False)
        found = self.findings()
        self._clean_at = version
        if found:
            self._accepted.update(leak.key for leak in found)
            lines = "\n".join(f"  - {leak}" for leak in found[:20])
            more = f"\n  ... and {len(found) - 20} more" if len(found) > 20 else ""
            secrets = len({leak.value for leak in found})
            pytest.fail(
                f"R66: {secrets} issued secret(s) leaked, in {len(found)} place(s) "
                f"(tests/security/leaks.py):\n{lines}{more}",
                pytrace=False,
            )

    # -- installing -----------------------------------------------------------------------------
    # -- collectors (called by the wrappers after the wrapped call returned) -------------------
    def _collect(
        self, collector: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any
    ) -> None:
        try:
            getattr(self, collector)(args, kwargs, result)
        except Exception as exc:  # never change what the library does; fail the test instead
            self._broken.append(f"{collector}: {type(exc).__name__}: {exc}")
            self._version += 1

    def _on_code(self, args: tuple[Any, ...], kwargs: dict[str, Any], result: object) -> None:
        self.add(CODE, result)

    def _on_token(self, args: tuple[Any, ...], kwargs: dict[str, Any], result: object) -> None:
        self.add(LINK_TOKEN, result)

    def _on_share_code(self, args: tuple[Any, ...], kwargs: dict[str, Any], result: object) -> None:
        self.add(SHARE_CODE, result)

    def _on_issue(self, args: tuple[Any, ...], kwargs: dict[str, Any], result: object) -> None:
        share = kwargs.get("purpose") == SHARE
        for name in ("secret", "lookup_secret"):
            value = kwargs.get(name)
            if isinstance(value, str):
                self.add(SHARE_CODE if share else LINK_TOKEN if len(value) >= 16 else CODE, value)

    def _on_session(self, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
        token = result[0]
        self.add(SESSION, token)
        self.add(SESSION, token.rpartition(".")[0])

    def _on_hash(self, args: tuple[Any, ...], kwargs: dict[str, Any], result: object) -> None:
        self.add(PASSWORD, _HASHED(args, kwargs))
        self.add(PASSWORD_HASH, result)

    def _on_verify(self, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
        self.add(PASSWORD_HASH, _STORED(args, kwargs))
        ok, upgraded = result
        if ok:
            self.add(PASSWORD, _VERIFIED(args, kwargs))
        self.add(PASSWORD_HASH, upgraded)

    def _on_replace(self, args: tuple[Any, ...], kwargs: dict[str, Any], result: object) -> None:
        self.add(PASSWORD_HASH, _REPLACED(args, kwargs))

    def _on_keys(self, args: tuple[Any, ...], kwargs: dict[str, Any], result: object) -> None:
        for key in args[0].all:
            self.add(KEY, key)

    def _on_memory(self, args: tuple[Any, ...], kwargs: dict[str, Any], result: object) -> None:
        self._memory.append(args[0])
        self._version += 1

    def _on_sql(self, args: tuple[Any, ...], kwargs: dict[str, Any], result: object) -> None:
        # Read relative paths as the store did, before anything can chdir.
        path = _sqlite_path(_STORE_URI(args, kwargs))
        if path is not None:
            self._sqlite[path] = None
            self._version += 1

    # -- installing -----------------------------------------------------------------------------
    @contextmanager
    def active(self) -> Iterator[SecretLeaks]:
        """Install the wrappers and the log handler for the duration of the block."""
        patch = pytest.MonkeyPatch()
        handler = _Handler(self)
        loggers = [logging.getLogger(), logging.getLogger("portalauth")]
        level = loggers[1].level
        _ACTIVE.append(self)
        try:
            for cls, name, check, collector in _targets():
                patch.setattr(cls, name, _wrapper(cls, name, check, collector))
            patch.setattr(Emitter, "emit", _wrapped_emit(vars(Emitter)["emit"]))
            for logger in loggers:
                logger.addHandler(handler)
            loggers[1].setLevel(logging.DEBUG)
            yield self
        finally:
            loggers[1].setLevel(level)
            for logger in loggers:
                logger.removeHandler(handler)
            patch.undo()
            _ACTIVE.remove(self)


#: The scans running now (one per test; the newest one collects).
_ACTIVE: list[SecretLeaks] = []

#: The collectors: (class, method, collector method of :class:`SecretLeaks`).
_COLLECTORS: tuple[tuple[type, str, str], ...] = (
    (Challenges, "new_code", "_on_code"),
    (Challenges, "new_token", "_on_token"),
    (Challenges, "issue", "_on_issue"),
    (ShareCodes, "_unique_code", "_on_share_code"),
    (Sessions, "create", "_on_session"),
    (PasswordHasher, "hash", "_on_hash"),
    (PasswordHasher, "verify", "_on_verify"),
    (Directory, "replace_password_hash", "_on_replace"),
    (Keyring, "__init__", "_on_keys"),
    (MemoryStore, "__init__", "_on_memory"),
    (SQLStore, "__init__", "_on_sql"),
)


def _targets() -> Iterator[tuple[type, str, bool, str | None]]:
    """What to wrap: every public API method (searched), and the collectors."""
    collectors = {(cls, name): collector for cls, name, collector in _COLLECTORS}
    for cls in API_CLASSES:
        for name, member in list(vars(cls).items()):
            if not name.startswith("_") and isinstance(member, (staticmethod, FunctionType)):
                check = f"{cls.__name__}.{name}" not in _RETURN_SECRETS
                yield cls, name, check, collectors.pop((cls, name), None)
    for (cls, name), collector in collectors.items():
        yield cls, name, False, collector


#: Wrappers built so far, per (class, method, what they do): (the member wrapped, the wrapper).
_BUILT: dict[tuple[type, str, bool, str | None], tuple[object, object]] = {}


def _wrapper(cls: type, name: str, check: bool, collector: str | None) -> object:
    """A wrapper for ``cls.name`` as it is now, reporting to the running scan: what it raises
    (and, with ``check``, what it returns) is searched; ``collector`` collects the secrets it
    hands out. Built once per member and reused by later tests."""
    member = vars(cls)[name]
    key = (cls, name, check, collector)
    built = _BUILT.get(key)
    if built is not None and built[0] is member:
        return built[1]
    static = isinstance(member, staticmethod)
    function: Callable[..., Any] = member.__func__ if static else member
    where = f"{cls.__name__}.{name}()"

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        scan = _ACTIVE[-1] if _ACTIVE else None
        try:
            result = function(*args, **kwargs)
        except Exception as exc:
            if scan is not None:
                scan.raised(where, exc)
            raise
        if scan is not None:
            if collector is not None:
                scan._collect(collector, args, kwargs, result)
            if check:
                scan.returned(where, result)
        return result

    wrapped = staticmethod(wrapper) if static else wrapper
    _BUILT[key] = (member, wrapped)
    return wrapped


#: The wrapped ``Emitter.emit`` (built once): (the member wrapped, the wrapper).
_EMIT: list[tuple[object, Callable[..., Event]]] = []


def _wrapped_emit(emit: Callable[..., Event]) -> Callable[..., Event]:
    if _EMIT and _EMIT[0][0] is emit:
        return _EMIT[0][1]

    @functools.wraps(emit)
    def emit_and_record(self: Emitter, kind: str, **fields: Any) -> Event:
        event = emit(self, kind, **fields)
        if _ACTIVE:
            _ACTIVE[-1].record("event", f"event {kind}", repr(event))
        return event

    _EMIT[:] = [(emit, emit_and_record)]
    return emit_and_record


#: Where the fixture leaves its scan on the test item, for :func:`check_after_call`.
SCAN = pytest.StashKey[SecretLeaks]()


@pytest.fixture
def secret_leaks(request: pytest.FixtureRequest) -> Iterator[SecretLeaks]:
    """R66: collect every secret issued during the test; fail the test if any of them appears in
    a log record, an event, an exception, a ``repr()`` of a returned object or a store row.

    The search runs when the test body returns (see :func:`check_after_call`: a leak fails the
    test itself, so ``xfail`` applies) and again at teardown, for what the other fixtures'
    teardown did (a leak found only then is a teardown error)."""
    scan = SecretLeaks()
    request.node.stash[SCAN] = scan
    try:
        with scan.active():
            yield scan
        scan.assert_clean(again=False)
    finally:
        del request.node.stash[SCAN]


def check_after_call(item: pytest.Item) -> None:
    """Search for leaks once the test body has passed (for a ``pytest_runtest_call`` wrapper)."""
    scan = item.stash.get(SCAN, None)
    if scan is not None:
        scan.assert_clean()

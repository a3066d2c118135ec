"""The security tests on server-backed stores too: PostgreSQL and Redis, beside memory and SQLite.

A plain module, not a conftest: a test module imports the fixtures it uses (pytest registers a
fixture imported into a test module as that module's own)::

    from .server_stores import (  # noqa: F401 (fixtures, by name)
        make_auth_on_servers_fixture,
        postgres_server_fixture,
        postgres_uri_fixture,
        redis_server_fixture,
        redis_uri_fixture,
        store_kind_on_servers_fixture,
    )

Then, in that module only:

- ``store_kind`` runs every test that uses it on :data:`ALL_STORE_KINDS`: the shared fixture's
  kinds (``conftest.STORE_KINDS``) and ``"postgres"`` and ``"redis"``. A test that needs a mark on
  one kind parametrises ``store_kind`` itself with :func:`store_kinds`.
- ``make_auth(kind)`` is the shared fixture, which also accepts the server kinds: the ``Auth``
  gets a :class:`~portalauth.stores.sql.SQLStore` on a fresh PostgreSQL database or a
  :class:`~portalauth.stores.redis.RedisStore` on a fresh key prefix, so no test sees another's
  records. Two calls in one test share the database (or prefix), as two SQLite ``Auth`` share
  one file. Each store is opened with its URI's defaults (pool size, timeouts), as an app would.

The servers are the session-scoped ones of ``tests/servers.py`` and ``tests/redis_server.py``,
started on first use: a run that selects no server kind starts none. Without a server's binary
(or its client library) the test is skipped with the reason; under ``CI=true`` it fails instead,
since ``.ci/run`` installs both servers from ``.ci/apt-packages.txt``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import conftest
from portalauth import Auth, Store
from redis_server import (
    REDIS_MISSING,
    REDIS_PY_MISSING,
    redis_server_binary,
    redis_server_fixture,  # noqa: F401 (re-exported: registers the fixture redis_server)
    redis_uri_fixture,  # noqa: F401 (re-exported: registers the fixture redis_uri)
)
from servers import (
    PG_MISSING,
    PSYCOPG_MISSING,
    postgres_bindir,
    postgres_server_fixture,  # noqa: F401 (re-exported: registers the fixture postgres_server)
    postgres_uri_fixture,  # noqa: F401 (re-exported: registers the fixture postgres_uri)
)

#: The store kinds that need a server, and the fixture (of the modules above) that gives each a
#: fresh, empty URI on the session's server.
SERVER_STORE_KINDS = {"postgres": "postgres_uri", "redis": "redis_uri"}
#: Every store kind the security tests run on.
ALL_STORE_KINDS = (*conftest.STORE_KINDS, *SERVER_STORE_KINDS)


def store_kinds(**marks: Any) -> list[Any]:
    """:data:`ALL_STORE_KINDS` as parameters for ``store_kind``, ``marks`` on some kinds, e.g.
    ``store_kinds(redis=pytest.mark.xfail(strict=True, reason="..."))``."""
    unknown = set(marks) - set(ALL_STORE_KINDS)
    assert not unknown, unknown
    return [pytest.param(kind, marks=marks.get(kind, ()), id=kind) for kind in ALL_STORE_KINDS]


def _missing(kind: str) -> str | None:
    """Why a server store of ``kind`` cannot run here, or None."""
    if kind == "postgres":
        if postgres_bindir() is None:
            return PG_MISSING
        modules, reason = ("psycopg", "psycopg_pool"), PSYCOPG_MISSING
    else:
        if redis_server_binary() is None:
            return REDIS_MISSING
        modules, reason = ("redis",), REDIS_PY_MISSING
    try:
        for module in modules:
            __import__(module)
    except ImportError:
        return reason
    return None


def server_uri(request: pytest.FixtureRequest, kind: str) -> str:
    """The test's fresh database or key prefix on the session's server of ``kind`` (skips, or
    under ``CI=true`` fails, when that server cannot run here)."""
    reason = _missing(kind)
    if reason is not None:
        if os.environ.get("CI") == "true":  # .ci/run installs both: a skip would hide a gap
            pytest.fail(f"{reason}; CI must run the security tests on the {kind} store")
        pytest.skip(reason)
    return str(request.getfixturevalue(SERVER_STORE_KINDS[kind]))


def open_server_store(kind: str, uri: str) -> Store:
    if kind == "postgres":
        from portalauth.stores.sql import SQLStore

        return SQLStore(uri)
    from portalauth.stores.redis import RedisStore

    return RedisStore(uri)


@pytest.fixture(name="store_kind", params=store_kinds())
def store_kind_on_servers_fixture(request: pytest.FixtureRequest) -> str:
    """Every kind of :data:`ALL_STORE_KINDS` (overrides the shared ``store_kind``)."""
    return str(request.param)


@pytest.fixture(name="make_auth")
def make_auth_on_servers_fixture(
    make_auth: Callable[..., Auth], request: pytest.FixtureRequest
) -> Iterator[Callable[..., Auth]]:
    """The shared ``make_auth`` (its defaults, and it closes what it built), which also builds
    an ``Auth`` on ``"postgres"`` and ``"redis"``."""
    if "store_kind" in request.fixturenames:
        kind = request.getfixturevalue("store_kind")
        if kind in SERVER_STORE_KINDS:
            # Set up the server's URI fixture now, inside this fixture's setup, so that it is
            # torn down after this fixture: the stores below close before their database (or
            # key prefix) goes.
            server_uri(request, kind)
    on_servers: list[Auth] = []

    def make(kind: str = "memory", **kwargs: Any) -> Auth:
        if kind not in SERVER_STORE_KINDS:
            return make_auth(kind, **kwargs)
        if "store" not in kwargs:
            kwargs["store"] = open_server_store(kind, server_uri(request, kind))
        # The shared fixture opens a store of its ``kind`` argument before it looks at
        # ``store=``: "memory" is the one that costs nothing (and holds nothing) to throw away.
        auth = make_auth("memory", **kwargs)
        on_servers.append(auth)
        return auth

    yield make
    for auth in on_servers:  # closing again in the shared fixture's teardown is a no-op
        auth.close()

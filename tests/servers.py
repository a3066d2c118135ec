"""Real database servers for the tests, started from the system's binaries.

A plain module, not a conftest: a test module (or a conftest) imports the fixtures it uses (the
functions have other names than the fixtures, so the imports do not shadow test arguments)::

    from servers import postgres_server_fixture, postgres_uri_fixture  # noqa: F401

PostgreSQL
----------
``postgres_server`` (session scope) runs ``initdb`` and ``pg_ctl`` from Debian's
``/usr/lib/postgresql/<version>/bin`` (the newest there; ``PORTALAUTH_PG_BINDIR`` overrides) in a
temporary directory, listening on 127.0.0.1 on a free port, and yields a :class:`PostgresServer`:
``.uri`` names a database created for the session, :meth:`PostgresServer.new_database` makes a
fresh one, :meth:`PostgresServer.stop` / :meth:`PostgresServer.start` /
:meth:`PostgresServer.restart` are for fault tests. The server is stopped (and its directory
removed) at the end of the session. PostgreSQL refuses to run as root, so under root every
server command runs as the ``postgres`` system user (``runuser``), which owns the directory.

``postgres_uri`` (function scope) is the URI of a fresh database for one test, already holding
the portalauth schema (copied from a template database, which takes a few milliseconds), and
dropped afterwards: every test starts from an empty store.

Without the server binaries, or without psycopg, both fixtures skip the test with the reason.
The server is tuned for tests, not for durability against power loss: ``fsync`` is off (a
crash of the server process loses nothing that was committed; a crash of the machine might).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PG_MISSING = "PostgreSQL server binaries not found (apt-get install postgresql)"
PSYCOPG_MISSING = "psycopg is not installed (pip install -e '.[postgres]')"

#: The database every portalauth test database is copied from (schema already created).
TEMPLATE = "portalauth_template"
#: A role that must sign in with a password (scram-sha-256); everything else is trusted.
PASSWORD_ROLE = "portalauth_pw"

_START_TIMEOUT = 60


def postgres_bindir() -> Path | None:
    """The directory of ``initdb``, ``pg_ctl`` and ``postgres``, or None."""
    override = os.environ.get("PORTALAUTH_PG_BINDIR")
    candidates = [Path(override)] if override else []

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", path.parent.parent.name)) or (0,)

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: version(p / "x"))[
        ::-1
    ]
    for directory in candidates:
        if all((directory / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A throwaway PostgreSQL server in a temporary directory on 127.0.0.1."""

    superuser = "postgres"
    host = "127.0.0.1"

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.run_as: pwd.struct_passwd | None = None
        if os.geteuid() == 0:  # postgres refuses to run as root
            for name in ("postgres", "nobody"):
                with contextlib.suppress(KeyError):
                    self.run_as = pwd.getpwnam(name)
                    break
            if self.run_as is None:
                pytest.skip("running as root and no unprivileged user to run postgres as")
        # Not under pytest's tmp_path: its parents are private to root, and the server user
        # must reach its directory.
        self.root = Path(tempfile.mkdtemp(prefix="portalauth-pg-"))
        self.datadir = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.running = False
        self.dbname = "portalauth"
        if self.run_as is not None:
            os.chown(self.root, self.run_as.pw_uid, self.run_as.pw_gid)

    # -- commands ---------------------------------------------------------------------------
    def _command(self, tool: str, *args: str) -> list[str]:
        command = [str(self.bindir / tool), *args]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as.pw_name, "--", *command]
        return command

    def _run(self, tool: str, *args: str, timeout: float = _START_TIMEOUT) -> None:
        done = subprocess.run(
            self._command(tool, *args),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args)} failed ({done.returncode}):\n{done.stdout}"
                f"{done.stderr}\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def init(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            self.superuser,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        # First match wins: the password role must authenticate; everyone else is trusted.
        (self.datadir / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
        )

    def start(self) -> None:
        """Start the server (on the port it had, if it ran before) and wait until it accepts
        connections."""
        attempts = 1 if self.port else 3
        for attempt in range(attempts):
            port = self.port or _free_port()
            options = (
                f"-p {port} -h {self.host} -k {self.root} -c fsync=off -c full_page_writes=off"
                " -c max_connections=200 -c shared_buffers=32MB"
            )
            try:
                self._run(
                    "pg_ctl",
                    "-D",
                    str(self.datadir),
                    "-l",
                    str(self.log),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    str(_START_TIMEOUT),
                    "start",
                    timeout=_START_TIMEOUT + 10,
                )
            except RuntimeError:
                if attempt + 1 == attempts:
                    raise
                continue  # probably the port was taken in the meantime: try another
            self.port = port
            self.running = True
            return

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (clean: sessions are ended, a shutdown checkpoint is
        written) or ``immediate`` (like a crash: processes are killed, WAL replay on start)."""
        self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")
        self.running = False

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.running:
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases --------------------------------------------------------------------------
    def uri_for(self, dbname: str, *, user: str | None = None, **params: object) -> str:
        """A postgresql:// URI for ``dbname`` (query parameters from ``params``)."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://{user or self.superuser}@{self.host}:{self.port}/{dbname}" + (
            f"?{query}" if query else ""
        )

    @property
    def uri(self) -> str:
        """The session database's URI."""
        return self.uri_for(self.dbname)

    def admin(self) -> Any:
        """An autocommit psycopg connection to the ``postgres`` database, as the superuser."""
        import psycopg

        return psycopg.connect(self.uri_for("postgres"), autocommit=True, connect_timeout=10)

    def create_database(self, name: str, template: str = "template0") -> None:
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def new_database(self, *, template: str = TEMPLATE) -> str:
        """Create a database (by default a copy of the portalauth template: schema, no rows)
        and return its name."""
        name = f"t_{secrets.token_hex(6)}"
        self.create_database(name, template)
        return name

    def prepare_template(self) -> None:
        from portalauth.stores.sql import SQLStore

        self.create_database(TEMPLATE)
        SQLStore(self.uri_for(TEMPLATE)).close()
        with self.admin() as conn:
            # Nobody may connect to it by accident (a copy needs it idle); it stays a template.
            conn.execute(
                f'ALTER DATABASE "{TEMPLATE}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false'
            )


@pytest.fixture(scope="session", name="postgres_server")
def postgres_server_fixture() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session (skips the test without the binaries)."""
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip(PG_MISSING)
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        pytest.skip(PSYCOPG_MISSING)
    server = PostgresServer(bindir)
    try:
        server.init()
        server.start()
        server.create_database(server.dbname)
        server.prepare_template()
        yield server
    finally:
        server.destroy()


@pytest.fixture(name="postgres_uri")
def postgres_uri_fixture(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database with the portalauth schema and no rows, dropped after the test."""
    if not postgres_server.running:  # a fault test failed before it could restart it
        postgres_server.start()
    name = postgres_server.new_database()
    try:
        yield postgres_server.uri_for(name)
    finally:
        with contextlib.suppress(Exception):  # best effort: the directory goes at the end
            postgres_server.drop_database(name)

"""Throwaway PostgreSQL and Redis servers for the benchmarks, on 127.0.0.1 in a temp directory.

The start logic of ``tests/servers.py`` and ``tests/redis_server.py``, without pytest (the
benchmarks do not depend on the test extra): ``start_postgres()`` and ``start_redis()`` return a
running server, or a reason why there is none (``"skipped: ..."`` in the report).

PostgreSQL runs from Debian's ``/usr/lib/postgresql/<version>/bin`` (the newest;
``PORTALAUTH_PG_BINDIR`` overrides), as the ``postgres`` user when the benchmark runs as root. It
keeps ``fsync`` on and sets ``synchronous_commit=off``: a commit does not wait for its WAL flush,
which is the durability of the SQLite store's ``synchronous=NORMAL`` (a crash of the machine may
lose the last few commits, never corrupts). Redis runs without persistence, as in the tests.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- PostgreSQL -----------------------------------------------------------------------------------
def postgres_bindir() -> Path | None:
    """The directory of ``initdb``, ``pg_ctl`` and ``postgres`` (the newest version), or None."""
    override = os.environ.get("PORTALAUTH_PG_BINDIR")
    candidates = [Path(override)] if override else []

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", path.parent.name)) or (0,)

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for directory in candidates:
        if all((directory / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


class PostgresServer:
    """A PostgreSQL server in a temporary directory, listening on 127.0.0.1 on a free port."""

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
                raise RuntimeError("running as root and no unprivileged user to run postgres as")
        self.root = Path(tempfile.mkdtemp(prefix="portalauth-bench-pg-"))
        self.datadir = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.running = False
        #: pg_stat_statements is there (trips.py counts the store's statements with it).
        self.has_statements = (bindir.parent / "lib" / "pg_stat_statements.so").is_file()
        if self.run_as is not None:
            os.chown(self.root, self.run_as.pw_uid, self.run_as.pw_gid)

    def _run(self, tool: str, *args: str) -> str:
        command = [str(self.bindir / tool), *args]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as.pw_name, "--", *command]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT + 10,
            cwd=self.root,
            check=False,
        )
        if done.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr}\n{tail}")
        return done.stdout

    def start(self) -> None:
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
        (self.datadir / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\n"
        )
        for attempt in range(3):
            port = free_port()
            options = (
                f"-p {port} -h {self.host} -k {self.root} -c synchronous_commit=off"
                " -c max_connections=200 -c shared_buffers=128MB"
            )
            if self.has_statements:  # loaded, tracking only where a database asks for it
                options += (
                    " -c shared_preload_libraries=pg_stat_statements"
                    " -c pg_stat_statements.track=none"
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
                    str(int(START_TIMEOUT)),
                    "start",
                )
            except RuntimeError:
                if attempt == 2:
                    raise
                continue  # the port was probably taken meanwhile
            self.port = port
            self.running = True
            return

    def uri(self, dbname: str, **params: object) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        base = f"postgresql://{self.superuser}@{self.host}:{self.port}/{dbname}"
        return f"{base}?{query}" if query else base

    def admin(self) -> Any:
        """An autocommit psycopg connection to the ``postgres`` database."""
        import psycopg

        return psycopg.connect(self.uri("postgres"), autocommit=True, connect_timeout=10)

    def create_database(self, name: str) -> str:
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def track_statements(self, name: str) -> None:
        """Count the statements run in database ``name`` (pg_stat_statements)."""
        with self.admin() as conn:
            conn.execute(f'ALTER DATABASE "{name}" SET pg_stat_statements.track = top')

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def version(self) -> str:
        with self.admin() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]).split()[0] if row else "?"

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self.running:
                self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
        self.running = False
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PostgresServer | str:
    """A running server, or why there is none."""
    bindir = postgres_bindir()
    if bindir is None:
        return "PostgreSQL server binaries not found (apt-get install postgresql)"
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    try:
        server = PostgresServer(bindir)
    except RuntimeError as exc:
        return str(exc)
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        server.stop()
        return f"PostgreSQL did not start: {str(exc).splitlines()[0]}"
    return server


# -- Redis ----------------------------------------------------------------------------------------
def redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in ("/usr/bin/redis-server", "/usr/sbin/redis-server"):
        if Path(candidate).is_file():
            return candidate
    return None


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """``redis-server`` without persistence, in a temporary directory on 127.0.0.1."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="portalauth-bench-redis-"))
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        for _ in range(5):
            self.port = free_port()
            self._proc = subprocess.Popen(
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.root),
                    "--logfile",
                    str(self.root / "redis.log"),
                    "--daemonize",
                    "no",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self._proc.poll() is None:
                if _ping(self.port):
                    return
                time.sleep(0.02)
            self._kill()
        raise RuntimeError("redis-server did not start")

    def uri(self, prefix: str | None = None) -> str:
        base = f"redis://127.0.0.1:{self.port}/0"
        return f"{base}?prefix={prefix}" if prefix else base

    def version(self) -> str:
        import redis

        with redis.Redis(port=self.port) as client:
            return str(client.info("server").get("redis_version", "?"))

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    def stop(self) -> None:
        self._kill()
        shutil.rmtree(self.root, ignore_errors=True)


def start_redis() -> RedisServer | str:
    """A running server, or why there is none."""
    binary = redis_binary()
    if binary is None:
        return "redis-server not found (apt-get install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py is not installed (pip install -e '.[redis]')"
    server = RedisServer(binary)
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        server.stop()
        return str(exc)
    return server

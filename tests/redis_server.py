"""Real Redis servers for the tests, started from the system's ``redis-server`` binary.

A plain module, not a conftest: a test module (or a conftest) imports the fixtures it uses::

    from redis_server import redis_server_fixture, redis_uri_fixture  # noqa: F401

They register the fixtures ``redis_server`` and ``redis_uri`` (the functions carry a ``_fixture``
suffix so that test parameters of those names do not shadow an import).

``redis_server`` (session scope) starts ``redis-server`` on 127.0.0.1 on a free port, in a
temporary directory, without persistence (``--save "" --appendonly no``), waits until it answers
PING and yields a :class:`RedisServer`; it is stopped at the end of the session.

``redis_uri`` (function scope) is a ``redis://`` URI on that server with a key prefix of its own,
so every test starts from an empty store (the store's keys all begin with its prefix); the
test's keys are deleted afterwards. If a test stopped the shared server, the next ``redis_uri``
starts it again.

For fault tests, :func:`running_redis` starts a private server (optionally persistent:
``appendonly yes`` with ``appendfsync always``), and :meth:`RedisServer.stop` (SIGTERM),
:meth:`RedisServer.crash` (SIGKILL), :meth:`RedisServer.start` and :meth:`RedisServer.restart`
control it; a restart keeps the port, so URIs stay valid.

Without the ``redis-server`` binary, or without redis-py, the fixtures skip the test with the
reason.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_MISSING = "redis-server not found (apt-get install redis-server)"
REDIS_PY_MISSING = "redis-py is not installed (pip install -e '.[redis]')"

_START_TIMEOUT = 20.0
_STOP_TIMEOUT = 10.0


def redis_server_binary() -> str | None:
    """The path of ``redis-server``, or None."""
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in ("/usr/bin/redis-server", "/usr/sbin/redis-server"):
        if Path(candidate).is_file():
            return candidate
    return None


def skip_unless_redis() -> str:
    """The binary's path; skips the calling test when the binary or redis-py is missing."""
    binary = redis_server_binary()
    if binary is None:
        pytest.skip(REDIS_MISSING)
    try:
        import redis  # noqa: F401
    except ImportError:
        pytest.skip(REDIS_PY_MISSING)
    return binary


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    """Whether a Redis server answers PING on 127.0.0.1:port (raw RESP, no client library)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A throwaway ``redis-server`` process in ``directory``, on 127.0.0.1."""

    def __init__(self, binary: str, directory: Path, *, persistent: bool = False) -> None:
        self.binary = binary
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.persistent = persistent
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, running={self.running})"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def uri(self, *, prefix: str | None = None, db: int = 0) -> str:
        uri = f"redis://127.0.0.1:{self.port}/{db}"
        return uri if prefix is None else f"{uri}?prefix={prefix}"

    def _command(self) -> list[str]:
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.directory / "redis.log"),
            "--daemonize",
            "no",
        ]
        if self.persistent:
            command += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            command += ["--appendonly", "no"]
        return command

    def start(self) -> None:
        """Start the server (on a new free port the first time, on the same port afterwards)
        and wait until it answers PING."""
        if self.running:
            return
        first = self.port == 0
        for _ in range(5 if first else 1):
            if first:
                self.port = free_port()
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + _START_TIMEOUT
            while time.monotonic() < deadline and self._proc.poll() is None:
                if _ping(self.port):
                    return
                time.sleep(0.02)
            self._terminate(signal.SIGKILL)  # it exited (port taken?) or never answered
        log = self.directory / "redis.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"redis-server did not start on port {self.port}:\n{tail}")

    def _terminate(self, sig: signal.Signals) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=_STOP_TIMEOUT)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): a persistent server writes everything out first."""
        self._terminate(signal.SIGTERM)

    def crash(self) -> None:
        """Kill the server (SIGKILL): no chance to write anything out."""
        self._terminate(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def delete_prefix(self, prefix: str) -> None:
        """Delete every key that starts with ``prefix:`` (best effort)."""
        import redis

        with contextlib.suppress(redis.RedisError), redis.Redis(port=self.port) as client:
            batch = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            for start in range(0, len(batch), 500):
                client.unlink(*batch[start : start + 500])


@contextlib.contextmanager
def running_redis(directory: Path, *, persistent: bool = False) -> Iterator[RedisServer]:
    """A private server for one test (skips without the binary or redis-py)."""
    server = RedisServer(skip_unless_redis(), directory, persistent=persistent)
    server.start()
    try:
        yield server
    finally:
        server.crash()  # its data is throwaway


@pytest.fixture(scope="session", name="redis_server")
def redis_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One server for the session (see the module documentation)."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(name="redis_uri")
def redis_uri_fixture(redis_server: RedisServer) -> Iterator[str]:
    """A URI with a fresh key prefix on the session's server: an empty store for one test."""
    redis_server.start()  # a no-op unless a test stopped it
    prefix = f"t{secrets.token_hex(6)}"
    yield redis_server.uri(prefix=prefix)
    if redis_server.running:
        redis_server.delete_prefix(prefix)

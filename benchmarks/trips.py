"""Store round trips per flow, counted by the servers themselves.

- **PostgreSQL**: ``pg_stat_statements`` (loaded by ``servers.py``, tracking only the database
  made here): every statement the store sends, ``BEGIN`` and ``COMMIT`` included. In autocommit
  mode each is one round trip.
- **Redis**: ``MONITOR`` on a raw socket: every command a client sent, not the commands a Lua
  script runs inside the server (``[0 lua]``). Commands of one pipeline share a round trip, so
  this counts commands, an upper bound on round trips.

Each flow runs ``n`` times on one thread after its setup and a warm-up; the report gives the
count per operation and the commands (or statement kinds) behind it.
"""

from __future__ import annotations

import collections
import contextlib
import re
import secrets
import socket
import threading

from report import flow_name, validate_name
from signins import FLOWS, bench

Counts = collections.Counter[str]
#: Per flow: round trips per operation, and per kind of command or statement.
Trips = dict[str, tuple[float, dict[str, float]]]
PLAN = [(method, flow, label) for method, flows in FLOWS.items() for flow, label in flows]


def _plan(store: str) -> list[tuple[str, str, str]]:
    """(name, method, flow) of every flow but the password sign-in (argon2, 2 statements
    fewer than nothing to learn)."""
    found = [(flow_name(store, m, label), m, f) for m, f, label in PLAN if m != "password"]
    return [*found, (validate_name(store), "contact_otp", "validate")]


# -- PostgreSQL -----------------------------------------------------------------------------------
def _pg_snapshot(conn: object) -> Counts:
    rows = conn.execute(  # type: ignore[attr-defined]
        "SELECT query, calls FROM pg_stat_statements"
        " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchall()
    counts: Counts = collections.Counter()
    for query, calls in rows:
        counts[str(query)] += int(calls)
    return counts


def _kind(query: str) -> str:
    """The statement's first word (``WITH`` for a CTE, whatever it then does)."""
    return query.strip().split(None, 1)[0].upper() if query.strip() else "?"


def postgres(uri: str, n: int) -> Trips:
    """Statements per operation on the database ``uri`` (which must track statements)."""
    import psycopg

    found: Trips = {}
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        for name, method, flow in _plan("postgres"):
            with bench(uri, method, flow, None, 1, 32) as factory:
                op = factory()
                op()
                before = _pg_snapshot(conn)
                for _ in range(n):
                    op()
                after = _pg_snapshot(conn)
            delta: Counts = collections.Counter()
            for query, calls in (after - before).items():
                if "pg_stat_statements" not in query:  # the snapshot itself
                    delta[_kind(query)] += calls
            found[name] = (
                sum(delta.values()) / n,
                {kind: calls / n for kind, calls in delta.most_common()},
            )
    return found


# -- Redis ----------------------------------------------------------------------------------------
_LINE = re.compile(r'^\+[0-9.]+ \[\d+ ([^\]]+)\] "([^"]+)"')


class _Monitor:
    """``MONITOR`` on a raw socket, read by a thread; commands between two markers."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(b"MONITOR\r\n")
        self.lines: list[str] = []
        self.seen = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        buffer = b""
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(65536):
                buffer += chunk
                *complete, buffer = buffer.split(b"\r\n")
                with self.seen:
                    self.lines += [line.decode(errors="replace") for line in complete]
                    self.seen.notify_all()

    def wait_for(self, marker: str) -> int:
        """The index of the line that echoes ``marker``."""
        with self.seen:
            for _ in range(100):
                for index, line in enumerate(self.lines):
                    if marker in line:
                        return index
                self.seen.wait(0.1)
        raise RuntimeError("MONITOR never showed the marker")

    def close(self) -> None:
        self.sock.close()


def redis(server_uri: str, port: int, n: int) -> Trips:
    """Client commands per operation (a fresh key prefix per flow)."""
    import redis as redis_py

    found: Trips = {}
    marker_client = redis_py.Redis(port=port)
    monitor = _Monitor(port)
    try:
        for name, method, flow in _plan("redis"):
            uri = f"{server_uri}?prefix=t{secrets.token_hex(4)}"
            with bench(uri, method, flow, None, 1, 32) as factory:
                op = factory()
                op()
                start, end = (
                    f"trips-start-{secrets.token_hex(4)}",
                    f"trips-end-{secrets.token_hex(4)}",
                )
                marker_client.echo(start)
                first = monitor.wait_for(start)
                for _ in range(n):
                    op()
                marker_client.echo(end)
                last = monitor.wait_for(end)
            delta: Counts = collections.Counter()
            for line in monitor.lines[first + 1 : last]:
                match = _LINE.match(line)
                if match and match.group(1) != "lua":
                    delta[match.group(2).upper()] += 1
            found[name] = (
                sum(delta.values()) / n,
                {kind: calls / n for kind, calls in delta.most_common()},
            )
    finally:
        monitor.close()
        marker_client.close()
    return found


def report(counts: list[Trips]) -> list[str]:
    lines = [
        "",
        "### Store round trips per operation (1 thread, counted by the server)",
        "",
        "| flow | per op | what |",
        "|---|---:|---|",
    ]
    for found in counts:
        for name, (per_op, kinds) in found.items():
            what = ", ".join(f"{kind} {calls:.3g}" for kind, calls in kinds.items())
            lines.append(f"| {name} | {per_op:.3g} | {what} |")
    lines.append(
        "\nPostgreSQL: statements (each a round trip in autocommit mode, BEGIN and COMMIT"
        " included), from pg_stat_statements. Redis: commands the client sent, from MONITOR"
        " (commands inside a Lua script are not round trips and are not counted; pipelined"
        " commands are counted one by one)."
    )
    return lines

"""Scale: does a verification (and a session validation) cost the same with 10 thousand and with
1 million live challenges and sessions in a SQL store? And what does ``auth.purge_expired()``
cost over 1 million expired rows?

The bulk rows are written straight into the store's tables (``executemany`` on SQLite, ``COPY``
on PostgreSQL), in the store's own format: one real challenge row and one real session row, made
through the public API, are read back and cloned with fresh unique values (ids, session keys,
digests, subjects, times), so the bulk follows whatever schema the store has. Each level adds
N challenges (live, for other subjects: a code for someone else) and N sessions (live, spread
over the portal's clients). Half of each expire 3 hours on, half 30 hours on.

At each level, with the store on that many rows, on one thread:

- **verification**: ``auth.advance`` of a correct code (the start before it and reading the code
  from the outbox are not timed), p50 and mean;
- **session validation**: ``auth.sessions.validate`` of one of 256 fresh sessions, as in the
  main run.

Then the clock moves 6 hours on: half the bulk rows (N/2 challenges + N/2 sessions at the top
level: 1 million rows when N is 1 million) have expired, the other half have not, and
``auth.purge_expired()`` (batches of 1000) removes them; its wall time, the Python allocation
peak (tracemalloc) and the process's peak RSS growth (``VmHWM`` after resetting it through
``/proc/self/clear_refs``) are reported.
"""

from __future__ import annotations

import secrets
import sqlite3
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from measure import fmt_ms, measure_threads
from signins import (
    CLIENT,
    Setup,
    code_in,
    message_text,
    open_auth,
    operation,
    prepare,
    round_robin,
    started_flow,
)

from portalauth import Auth, FrozenClock

CHUNK = 50_000
SHORT, LONG = 3 * 3600.0, 30 * 3600.0  # bulk expiries, from the time of the insert
PURGE_AFTER = 6 * 3600.0


@dataclass
class Level:
    rows: int  # challenges (and as many sessions) bulk-inserted in all
    verify_p50: float
    verify_mean: float
    validate_p50: float
    validate_rate: float


@dataclass
class ScaleResult:
    store: str
    levels: list[Level] = field(default_factory=list)
    insert_seconds: float = 0.0
    purge_rows: int = 0
    purge_seconds: float = 0.0
    purge_python_peak: int = 0  # bytes
    purge_rss_growth: int | None = None  # bytes; None where VmHWM cannot be reset


# -- the store's tables ---------------------------------------------------------------------------
class Tables:
    """Direct access to the store's tables, for the bulk rows only."""

    def __init__(self, kind: str, target: str) -> None:
        self.kind = kind
        self.target = target  # a file path (SQLite) or a libpq URI (PostgreSQL)
        self.conn: Any
        if kind == "sqlite":
            self.conn = sqlite3.connect(target, isolation_level=None, timeout=60)
            self.conn.execute("PRAGMA synchronous=NORMAL")
        else:
            import psycopg

            self.conn = psycopg.connect(target, autocommit=True)

    def template(self, table: str, where: str, params: Sequence[Any]) -> dict[str, Any]:
        marker = "?" if self.kind == "sqlite" else "%s"
        cursor = self.conn.execute(
            f"SELECT * FROM {table} WHERE {where.replace('?', marker)} LIMIT 1", tuple(params)
        )
        row = cursor.fetchone()
        if row is None:
            raise RuntimeError(f"no template row in {table}")
        names = [d[0] for d in cursor.description]
        return dict(zip(names, row, strict=True))

    def insert(self, table: str, columns: list[str], rows: Iterator[tuple[Any, ...]]) -> None:
        names = ", ".join(columns)
        if self.kind == "sqlite":
            marks = ", ".join("?" * len(columns))
            self.conn.execute("BEGIN")
            self.conn.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
            self.conn.execute("COMMIT")
        else:
            with (
                self.conn.cursor() as cur,
                cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)

    def analyze(self) -> None:
        self.conn.execute("ANALYZE")

    def close(self) -> None:
        self.conn.close()


def _cloner(
    template: dict[str, Any], fresh: Callable[[int], dict[str, Any]]
) -> tuple[list[str], Callable[[int], tuple[Any, ...]]]:
    """Columns (all but the auto-assigned ``seq``) and a row maker: the template with the
    values ``fresh(i)`` gives."""
    columns = [name for name in template if name != "seq"]

    def row(i: int) -> tuple[Any, ...]:
        values = {**template, **fresh(i)}
        return tuple(values[name] for name in columns)

    return columns, row


def bulk_insert(
    tables: Tables, setup: Setup, start: int, stop: int, now: float, prefix: str
) -> None:
    """Challenges and sessions ``start`` to ``stop`` (clones of the portal's real rows)."""
    challenge = tables.template("portalauth_challenges", "portal = ?", (setup.portal,))
    session = tables.template("portalauth_sessions", "portal = ?", (setup.portal,))
    identities = [c.identity_id for c in setup.clients]

    def expiry(i: int) -> float:
        return now + (SHORT if i % 2 == 0 else LONG)

    def fresh_challenge(i: int) -> dict[str, Any]:
        return {
            "id": f"{prefix}c{i:09d}",
            "subject": f"{prefix}s{i:09d}",
            "digest": secrets.token_bytes(32),
            "lookup": None,
            "created_at": now,
            "expires_at": expiry(i),
            "attempts": 0,
            "state": "live",
            "consumed_at": None,
            "data": "{}",
        }

    def fresh_session(i: int) -> dict[str, Any]:
        return {
            "key": secrets.token_bytes(32),
            "identity_id": identities[i % len(identities)],
            "created_at": now,
            "last_seen_at": now,
            "idle_expires_at": expiry(i),
            "absolute_expires_at": now + 2 * LONG,
        }

    for table, template, fresh in (
        ("portalauth_challenges", challenge, fresh_challenge),
        ("portalauth_sessions", session, fresh_session),
    ):
        columns, make = _cloner(template, fresh)
        for low in range(start, stop, CHUNK):
            high = min(stop, low + CHUNK)
            tables.insert(table, columns, (make(i) for i in range(low, high)))


# -- measurements ---------------------------------------------------------------------------------
def _verify_times(auth: Auth, clock: FrozenClock, setup: Setup, duration: float) -> list[float]:
    """``auth.advance`` of a correct code, timed alone, for about ``duration`` seconds."""
    take = round_robin(setup.clients)
    times: list[float] = []
    spent = 0.0
    while spent < duration or len(times) < 50:
        client = take()
        clock.advance(1.0)
        form = {"contact": client.email}
        flow = started_flow(auth.start(setup.portal, setup.method, form, client=CLIENT))
        code = code_in(message_text(auth, setup, client))
        t0 = time.perf_counter()
        auth.advance(flow, {"code": code}, client=CLIENT)
        took = time.perf_counter() - t0
        times.append(took)
        spent += took
    return times


def _level(auth: Auth, clock: FrozenClock, setup: Setup, rows: int, duration: float) -> Level:
    times = sorted(_verify_times(auth, clock, setup, duration))
    factory = operation(auth, clock, setup, "validate")  # 256 fresh sessions, clock still
    validate = measure_threads("validate", factory, 1, duration)
    return Level(
        rows,
        times[len(times) // 2],
        sum(times) / len(times),
        validate.p50,
        validate.rate,
    )


def _status_kib(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def run_scale(
    kind: str,
    store: str,
    target: str,
    levels: Sequence[int],
    duration: float,
    log: Callable[[str], None],
) -> ScaleResult:
    """``kind`` "sqlite" or "postgres"; ``store`` the URI; ``target`` the file path or libpq URI
    for the bulk insert."""
    result = ScaleResult(kind)
    clock = FrozenClock()
    auth = open_auth(store, clock)
    tables = Tables(kind, target)
    try:
        setup = prepare(auth, store, "contact_otp")
        operation(auth, clock, setup, "validate")  # a real challenge and session to clone
        inserted = 0
        prefix = secrets.token_hex(3)
        for rows in levels:
            began = time.perf_counter()
            bulk_insert(tables, setup, inserted, rows, clock.now(), prefix)
            tables.analyze()
            result.insert_seconds += time.perf_counter() - began
            log(f"  {kind}: {rows:,} challenges + {rows:,} sessions inserted")
            inserted = rows
            level = _level(auth, clock, setup, rows, duration)
            result.levels.append(level)
            log(
                f"  {kind} at {rows:,}: verify p50 {fmt_ms(level.verify_p50)} ms,"
                f" validate p50 {fmt_ms(level.validate_p50)} ms"
            )
        clock.advance(PURGE_AFTER)
        rss_before = _status_kib("VmRSS")
        can_reset = _reset_peak_rss()
        tracemalloc.start()
        began = time.perf_counter()
        result.purge_rows = auth.purge_expired()
        result.purge_seconds = time.perf_counter() - began
        result.purge_python_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        peak = _status_kib("VmHWM")
        if can_reset and peak is not None and rss_before is not None:
            result.purge_rss_growth = max(0, peak - rss_before) * 1024
        log(f"  {kind}: purge_expired removed {result.purge_rows:,} rows")
    finally:
        tables.close()
        auth.close()
    return result


def report(results: list[ScaleResult], skipped: dict[str, str]) -> list[str]:
    """Markdown lines for the scale section."""
    sizes = sorted({lv.rows for res in results for lv in res.levels})
    levels = " vs ".join(f"{n:,}" for n in sizes)
    lines = [
        "",
        f"### Scale: {levels} live challenges (and as many sessions), 1 thread",
        "",
        "| store | live rows | verify p50 ms | verify mean ms | validate p50 ms | validate ops/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        for lv in res.levels:
            lines.append(
                f"| {res.store} | {lv.rows:,} + {lv.rows:,} | {fmt_ms(lv.verify_p50)}"
                f" | {fmt_ms(lv.verify_mean)} | {fmt_ms(lv.validate_p50)}"
                f" | {lv.validate_rate:,.0f} |"
            )
    lines += [
        "",
        "| store | cost at top level ÷ cost at bottom level | verify p50 | verify mean"
        " | validate p50 | validate 1/rate | flat (p50s ≤ 1.5)? |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for res in results:
        if len(res.levels) < 2:
            continue
        low, high = res.levels[0], res.levels[-1]
        ratios = [
            high.verify_p50 / low.verify_p50,
            high.verify_mean / low.verify_mean,
            high.validate_p50 / low.validate_p50,
            low.validate_rate / high.validate_rate,
        ]
        # Judged on the p50s: a mean or a rate moves with the machine's load on the way.
        worst = max(ratios[0], ratios[2])
        flat = "yes" if worst <= 1.5 else f"NO (up to {worst:.2f}x)"
        cells = " | ".join(f"{r:.2f}" for r in ratios)
        lines.append(f"| {res.store} | {high.rows:,} vs {low.rows:,} | {cells} | {flat} |")
    lines += [
        "",
        "| store | purge_expired: rows removed | wall time s | rows/s | Python peak KiB"
        " | RSS peak growth MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        growth = (
            f"{res.purge_rss_growth / 2**20:.1f}" if res.purge_rss_growth is not None else "n/a"
        )
        rate = res.purge_rows / res.purge_seconds if res.purge_seconds else 0.0
        lines.append(
            f"| {res.store} | {res.purge_rows:,} | {res.purge_seconds:.1f} | {rate:,.0f}"
            f" | {res.purge_python_peak / 1024:,.0f} | {growth} |"
        )
    for store, reason in skipped.items():
        lines.append(f"\n{store} scale: skipped: {reason}")
    return lines


if __name__ == "__main__":  # pragma: no cover - run through run.py --scale
    sys.exit("run: python benchmarks/run.py --scale")

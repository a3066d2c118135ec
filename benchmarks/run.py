"""portalauth benchmarks: flows against their raw limits, in one process run.

    python benchmarks/run.py            # about 2 minutes
    python benchmarks/run.py --quick    # short runs, under 30 seconds
    nox -s bench

For the memory store and a SQLite file store it measures a whole ``contact_otp`` sign-in by
e-mail (start, read the code from ``auth.outbox``, advance, validate the new session), the start
alone and a session validation alone; single-threaded and with 8 threads. In the same run it
measures the raw limits (HMAC-SHA256, ``secrets`` codes, a raw SQLite transaction, itsdangerous,
argon2-cffi) and prints every flow as a ratio to its raw limit (higher is better) next to the
targets of issue 8. ``time.perf_counter`` is used for measurement only; the library runs on a
``FrozenClock`` moved one second per sign-in, with limits raised so that no throttle or cooldown
ever trips.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import platform
import re
import secrets
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import argon2
import itsdangerous

from portalauth import Auth, ClientInfo, FrozenClock, PasswordHasher, SignedIn, Step

T = TypeVar("T")
Op = Callable[[], object]
#: Builds one worker's operation (called once per thread, in that thread).
WorkerFactory = Callable[[], Op]

SECRET_KEYS = ["bench-key-newest-0123456789abcdef", "bench-key-older-0123456789abcdef"]
PORTAL = "bench"
METHOD = "contact_otp"
CLIENT = ClientInfo(ip="192.0.2.10", user_agent="bench")
UNLIMITED = "1000000000/minute"
THREADS = 8
IDENTITIES = 256  # e-mail addresses signed in round-robin
SESSIONS = 256  # live sessions validated round-robin
_CODE = re.compile(r"\b([0-9]{6,10})\b")
OWASP = {"memory_cost": 19456, "time_cost": 2, "parallelism": 1}


# -- measurement ----------------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    threads: int
    ops: int
    seconds: float
    latencies: list[float] = field(repr=False)

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(name: str, factory: WorkerFactory, threads: int, duration: float) -> Result:
    """Run ``factory()``'s op in ``threads`` threads for ``duration`` seconds (after a short
    warm-up); ops/s is completed ops over wall time, latencies are per op."""
    per_thread: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    ready = threading.Barrier(threads + 1)
    go = threading.Event()
    deadline = [0.0]

    def work(index: int) -> None:
        try:
            op = factory()
            for _ in range(3):  # warm-up: caches, prepared statements
                op()
        except BaseException as exc:
            errors.append(exc)
            ready.wait()
            return
        ready.wait()
        go.wait()
        out = per_thread[index]
        clock = time.perf_counter
        end = deadline[0]
        try:
            while True:
                t0 = clock()
                op()
                t1 = clock()
                out.append(t1 - t0)
                if t1 >= end:
                    break
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    ready.wait()
    started = time.perf_counter()
    deadline[0] = started + duration
    go.set()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{name}: {errors[0]!r}") from errors[0]
    latencies = [x for chunk in per_thread for x in chunk]
    return Result(name, threads, len(latencies), elapsed, latencies)


# -- the library under test -------------------------------------------------------------------
@contextmanager
def bench_auth(
    kind: str, workdir: Path
) -> Iterator[tuple[Auth, FrozenClock, list[tuple[str, str]]]]:
    """A fresh ``Auth`` on ``kind`` with one simulate-mode portal and ``IDENTITIES`` clients
    (each an ``(e-mail, identity id)`` pair, so reading the outbox needs no directory lookup)."""
    clock = FrozenClock()
    if kind == "memory":
        store = "memory://"
    else:
        path = workdir / f"portalauth-{secrets.token_hex(4)}.db"
        store = f"sqlite:///{path}"
    auth = Auth(
        SECRET_KEYS,
        store,
        clock=clock,
        entry_points=False,
        limits={"start_per_ip": UNLIMITED, "advance_per_ip": UNLIMITED, "per_portal": UNLIMITED},
    )
    try:
        auth.portals.create(
            PORTAL,
            "Benchmark Court",
            base_url="https://bench.example",
            methods={METHOD},
            simulate=True,
            method_settings={
                METHOD: {
                    "channels": ["email"],
                    "resend_cooldown": 0,
                    "codes_per_destination": UNLIMITED,
                }
            },
        )
        emails = []
        for i in range(IDENTITIES):
            email = f"client{i}@example.com"
            emails.append((email, auth.directory.add(PORTAL, f"Client {i}", email=email).id))
        yield auth, clock, emails
    finally:
        auth.close()


def _round_robin(items: list[T]) -> Callable[[], T]:
    lock = threading.Lock()
    state = [0]

    def take() -> T:
        with lock:
            state[0] += 1
            return items[state[0] % len(items)]

    return take


def sign_in(auth: Auth, clock: FrozenClock, client: tuple[str, str]) -> SignedIn:
    email, identity_id = client
    clock.advance(1.0)  # one round: nothing the previous sign-in counted can trip this one
    step = auth.start(PORTAL, METHOD, {"contact": email}, client=CLIENT)
    if not isinstance(step, Step) or step.flow is None:
        raise RuntimeError(f"start did not ask for a code: {step!r}")
    message = auth.outbox.latest(PORTAL, identity=identity_id)
    found = _CODE.search(message.text) if message is not None else None
    if found is None:
        raise RuntimeError("no code in the outbox")
    done = auth.advance(step.flow, {"code": found.group(1)}, client=CLIENT)
    if not isinstance(done, SignedIn):
        raise RuntimeError(f"advance did not sign in: {done!r}")
    return done


def whole_sign_in(auth: Auth, clock: FrozenClock, emails: list[tuple[str, str]]) -> WorkerFactory:
    take = _round_robin(emails)

    def factory() -> Op:
        def op() -> object:
            done = sign_in(auth, clock, take())
            return auth.sessions.validate(done.token)

        return op

    return factory


def start_alone(auth: Auth, clock: FrozenClock, emails: list[tuple[str, str]]) -> WorkerFactory:
    take = _round_robin(emails)

    def factory() -> Op:
        def op() -> object:
            clock.advance(1.0)
            return auth.start(PORTAL, METHOD, {"contact": take()[0]}, client=CLIENT)

        return op

    return factory


def validate_alone(auth: Auth, clock: FrozenClock, emails: list[tuple[str, str]]) -> WorkerFactory:
    tokens = [sign_in(auth, clock, emails[i % len(emails)]).token for i in range(SESSIONS)]
    take = _round_robin(tokens)

    def factory() -> Op:
        def op() -> object:
            # The clock stands still here: a validation, not a sliding-expiry write.
            return auth.sessions.validate(take())

        return op

    return factory


FLOWS: dict[str, Callable[[Auth, FrozenClock, list[tuple[str, str]]], WorkerFactory]] = {
    "whole sign-in": whole_sign_in,
    "start": start_alone,
    "session validate": validate_alone,
}


# -- raw limits ---------------------------------------------------------------------------------
def raw_hmac() -> Op:
    key = secrets.token_bytes(32)
    message = secrets.token_bytes(64)

    def op() -> object:
        tag = hmac.new(key, message, hashlib.sha256).digest()
        return hmac.compare_digest(tag, hmac.new(key, message, hashlib.sha256).digest())

    return op


def raw_code() -> Op:
    def op() -> object:
        return f"{secrets.randbelow(1_000_000):06d}"

    return op


def raw_sqlite_factory(path: Path, transactions: int) -> WorkerFactory:
    """One (or two) raw transactions of INSERT + UPDATE + SELECT: WAL, synchronous=NORMAL,
    BEGIN IMMEDIATE, one connection per thread."""
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute(
            "CREATE TABLE IF NOT EXISTS challenge ("
            " id TEXT PRIMARY KEY, digest BLOB NOT NULL, attempts INTEGER NOT NULL,"
            " expires_at REAL NOT NULL)"
        )
    setup.close()

    def factory() -> Op:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")

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

    return factory


def raw_select_factory(path: Path) -> WorkerFactory:
    """A raw primary-key SELECT (the floor for a session validation on SQLite)."""
    keys = [secrets.token_urlsafe(32) for _ in range(SESSIONS)]
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE session (id TEXT PRIMARY KEY, data BLOB NOT NULL)")
        setup.executemany(
            "INSERT INTO session (id, data) VALUES (?, ?)",
            [(key, secrets.token_bytes(64)) for key in keys],
        )
    setup.close()
    take = _round_robin(keys)

    def factory() -> Op:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)

        def op() -> object:
            return conn.execute("SELECT data FROM session WHERE id = ?", (take(),)).fetchone()

        return op

    return factory


def raw_itsdangerous() -> Op:
    serializer = itsdangerous.URLSafeTimedSerializer(SECRET_KEYS[0], salt="bench")
    payload = {"p": PORTAL, "m": METHOD, "s": "code", "c": secrets.token_urlsafe(16)}

    def op() -> object:
        return serializer.loads(serializer.dumps(payload), max_age=3600)

    return op


PASSWORD = "correct horse battery staple"


def argon2_factories() -> tuple[WorkerFactory, WorkerFactory]:
    """Raw argon2-cffi verify and ``portalauth.PasswordHasher.verify`` of the same hash
    (OWASP parameters: m=19456 KiB, t=2, p=1)."""
    ours = PasswordHasher(
        memory_cost=OWASP["memory_cost"], rounds=OWASP["time_cost"], parallelism=1
    )
    stored = ours.hash(PASSWORD)
    raw = argon2.PasswordHasher(
        time_cost=OWASP["time_cost"], memory_cost=OWASP["memory_cost"], parallelism=1
    )
    ok, replacement = ours.verify(PASSWORD, stored)
    if not (raw.verify(stored, PASSWORD) and ok) or replacement is not None:
        raise RuntimeError("not a like-for-like verify (a failure, or the hash would be upgraded)")

    def raw_factory() -> Op:
        return lambda: raw.verify(stored, PASSWORD)

    def ours_factory() -> Op:
        return lambda: ours.verify(PASSWORD, stored)

    return raw_factory, ours_factory


# -- the report ---------------------------------------------------------------------------------
def fmt_rate(rate: float) -> str:
    return f"{rate / 1000:.1f}k" if rate >= 10_000 else f"{rate:.0f}"


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (under 30 s in all)")
    parser.add_argument("--duration", type=float, help="seconds per measurement")
    args = parser.parse_args(argv)
    duration = args.duration or (0.5 if args.quick else 3.0)
    # argon2 runs at ~30/s: give it a little longer so p50 has a sample count worth the name.
    slow_duration = max(duration, 1.0)
    begun = time.perf_counter()

    results: dict[tuple[str, int], Result] = {}

    def record(name: str, factory: WorkerFactory, threads: int, seconds: float) -> None:
        result = measure(name, factory, threads, seconds)
        results[name, threads] = result
        print(
            f"  {name:<34} {threads}t {fmt_rate(result.rate):>7}/s"
            f"  p50 {fmt_ms(result.pct(0.5))} ms  p99 {fmt_ms(result.pct(0.99))} ms",
            file=sys.stderr,
            flush=True,
        )

    with tempfile.TemporaryDirectory(prefix="portalauth-bench-") as tmp:
        workdir = Path(tmp)
        print("raw limits", file=sys.stderr)
        raw_argon2, our_argon2 = argon2_factories()
        raw_benches: list[tuple[str, WorkerFactory, float]] = [
            ("raw: HMAC-SHA256 sign+verify", raw_hmac, duration),
            ("raw: secrets 6-digit code", raw_code, duration),
            ("raw: SQLite txn I+U+S", raw_sqlite_factory(workdir / "raw1.db", 1), duration),
            ("raw: SQLite txn pair", raw_sqlite_factory(workdir / "raw2.db", 2), duration),
            ("raw: SQLite primary-key SELECT", raw_select_factory(workdir / "raw3.db"), duration),
            ("raw: itsdangerous dumps+loads", raw_itsdangerous, duration),
            ("raw: argon2-cffi verify (OWASP)", raw_argon2, slow_duration),
            ("portalauth PasswordHasher.verify", our_argon2, slow_duration),
        ]
        for name, factory, seconds in raw_benches:
            for threads in (1, THREADS):
                record(name, factory, threads, seconds)

        for kind in ("memory", "sqlite"):
            for flow, build in FLOWS.items():
                for threads in (1, THREADS):
                    # A fresh store for every measurement, so one does not pay for the rows
                    # the previous one left behind.
                    with bench_auth(kind, workdir) as (auth, clock, emails):
                        print(f"{kind}: {flow}", file=sys.stderr)
                        record(f"{kind}: {flow}", build(auth, clock, emails), threads, duration)

    # Each flow and the raw limit it is compared with (and the target, if any).
    comparisons: list[tuple[str, str, float | None]] = [
        ("memory: whole sign-in", "raw: itsdangerous dumps+loads", 0.5),
        ("memory: start", "raw: itsdangerous dumps+loads", None),
        ("memory: session validate", "raw: HMAC-SHA256 sign+verify", None),
        ("sqlite: whole sign-in", "raw: SQLite txn pair", 0.30),
        ("sqlite: start", "raw: SQLite txn I+U+S", None),
        ("sqlite: session validate", "raw: SQLite primary-key SELECT", 0.5),
        ("portalauth PasswordHasher.verify", "raw: argon2-cffi verify (OWASP)", 0.95),
    ]
    lines = [
        f"portalauth benchmarks: {platform.python_implementation()} {platform.python_version()},"
        f" {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs,"
        f" {duration:g} s per measurement{' (--quick)' if args.quick else ''}",
        "",
        "| measurement | threads | ops/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for (name, threads), result in results.items():
        lines.append(
            f"| {name} | {threads} | {fmt_rate(result.rate)} | {fmt_ms(result.pct(0.5))}"
            f" | {fmt_ms(result.pct(0.99))} |"
        )
    lines += [
        "",
        "| flow | threads | raw limit | ratio | target | verdict |",
        "|---|---:|---|---:|---:|---|",
    ]
    for flow, raw, target in comparisons:
        for threads in (1, THREADS):
            ratio = results[flow, threads].rate / results[raw, threads].rate
            if target is None or threads != 1:
                verdict, shown = "", "-"
            elif ratio >= target:
                verdict, shown = "met", f"≥ {target:.2f}"
            else:
                verdict, shown = f"NOT met ({ratio / target:.0%} of target)", f"≥ {target:.2f}"
            lines.append(f"| {flow} | {threads} | {raw} | {ratio:.3f} | {shown} | {verdict} |")
    lines += [
        "",
        "Ratios compare like with like: the 1-thread flow with the 1-thread raw limit, the"
        " 8-thread flow with the 8-thread raw limit. Targets apply to the 1-thread rows.",
        f"Total wall time: {time.perf_counter() - begun:.0f} s.",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

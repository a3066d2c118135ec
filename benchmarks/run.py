"""portalauth benchmarks: flows against their raw limits and peers, in one process run.

    python benchmarks/run.py            # the main run, about 5 minutes
    python benchmarks/run.py --quick    # short measurements, under a minute
    python benchmarks/run.py --all      # also --scale (3 to 5 minutes) and --rss (3 to 5 minutes)
    nox -s bench                        # installs .[bench,redis,postgres] and runs --all

For each store (memory, a SQLite file, and PostgreSQL and Redis when their binaries are there:
this run starts them on 127.0.0.1 in a temporary directory) and each strategy it measures a whole
sign-in (start, the second step, a validation of the new session), the start alone and a session
validation alone: with 1 thread, 8 threads and, on the server stores, 4 processes (each its own
``Auth`` on the same server). In the same run it measures the raw limits (HMAC, ``secrets``,
itsdangerous, argon2-cffi, raw SQLite transactions and SELECTs, Redis and PostgreSQL round trips)
and the peers (django-sesame, django-otp's e-mail device), and prints each flow as a ratio to its
raw limit and to the peers (higher is better), with the targets of issue 8. Progress goes to
stderr, the Markdown report to stdout. See benchmarks/README.md and docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import secrets
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, also under -m

import peers
import raw
import report
import rss
import scale
import signins
import trips
from measure import (
    ProcessPool,
    Result,
    WorkerFactory,
    fmt_ms,
    fmt_rate,
    measure_blocks,
    measure_threads,
    paired_ratio,
)
from report import PROCESSES, THREADS

import servers

STORES = ("memory", "sqlite", "postgres", "redis")
SERVER_STORES = ("postgres", "redis")
BenchMaker = Callable[[], AbstractContextManager[WorkerFactory]]


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Run:
    duration: float
    slow_duration: float
    quick: bool
    workdir: Path
    pool: ProcessPool | None = None
    server_uris: dict[str, str] = field(default_factory=dict)
    results: dict[tuple[str, str], Result] = field(default_factory=dict)
    paired: dict[tuple[str, str], float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    round_trips: list[trips.Trips] = field(default_factory=list)
    peers_ok: bool = False

    @contextlib.contextmanager
    def attempt(self, name: str, mode: str) -> Iterator[None]:
        """A measurement that fails is reported, and the run goes on."""
        try:
            yield
        except Exception as exc:
            text = f"{name} ({mode}): {type(exc).__name__}: {exc}"
            self.failures.append(text)
            log(f"  FAILED {text}")

    @property
    def sessions(self) -> int:
        return 64 if self.quick else signins.SESSIONS

    def record(self, result: Result) -> None:
        self.results[result.name, result.mode] = result
        log(
            f"  {result.name:<52} {result.mode:>2} {fmt_rate(result.rate):>7}/s"
            f"  p50 {fmt_ms(result.p50)} ms  p99 {fmt_ms(result.p99)} ms"
        )

    def seconds(self, slow: bool) -> float:
        return self.slow_duration if slow else self.duration

    def threads(self, name: str, make: BenchMaker, modes: tuple[int, ...], slow: bool) -> None:
        """``make()`` is a fresh bench per measurement."""
        for threads in modes:
            with self.attempt(name, f"{threads}t"), make() as factory:
                self.record(measure_threads(name, factory, threads, self.seconds(slow)))

    def blocks(self, entries: list[tuple[str, BenchMaker, float]], slow: bool) -> None:
        """One thread, the first entry interleaved in blocks with the others (its raw limit,
        a peer): records the first entry's result and its ratio to each of the others."""
        found: list[Result] = []
        with self.attempt(entries[0][0], "1t"), ExitStack() as stack:
            made = [(name, stack.enter_context(make()), w) for name, make, w in entries]
            # argon2 takes ~20 ms: longer blocks, so that each holds a few verifies.
            found = measure_blocks(made, self.seconds(slow), block=0.25 if slow else 0.1)
        if not found:
            return
        self.record(found[0])
        for other in found[1:]:
            ratio = paired_ratio(found[0], other)
            self.paired[found[0].name, other.name] = ratio
            log(
                f"    ÷ {other.name} (interleaved, {fmt_rate(other.rate)}/s):"
                f" {ratio:.3f} (median of {len(other.rounds)} rounds)"
            )

    def processes(self, name: str, target: str, args: tuple[Any, ...], slow: bool) -> None:
        if self.pool is not None:
            with self.attempt(name, f"{PROCESSES}p"):
                self.record(self.pool.measure(name, target, args, self.seconds(slow)))

    def sqlite_path(self, stem: str) -> str:
        return str(self.workdir / f"{stem}-{secrets.token_hex(4)}.db")

    def limit_bench(self, name: str) -> BenchMaker:
        """A fresh bench of the raw limit or peer ``name``."""
        pg, rd = self.server_uris.get("postgres", ""), self.server_uris.get("redis", "")
        work = str(self.workdir)
        makers: dict[str, BenchMaker] = {
            report.HMAC: lambda: raw.hmac_pair(),
            report.CODE: lambda: raw.six_digits(),
            report.ITSD: lambda: raw.itsdangerous_pair(),
            report.ARGON: lambda: raw.argon2_verify(False),
            report.HASHER: lambda: raw.argon2_verify(True),
            report.SQ_TXN: lambda: raw.sqlite_txn(self.sqlite_path("raw"), 1),
            report.SQ_PAIR: lambda: raw.sqlite_txn(self.sqlite_path("raw"), 2),
            report.SQ_SELECT: lambda: raw.sqlite_select(self.sqlite_path("raw")),
            report.PG_RT: lambda: raw.postgres_op(pg, "select"),
            report.PG_PAIR: lambda: raw.postgres_op(pg, "pair"),
            report.RD_RT: lambda: raw.redis_op(rd, "get"),
            report.RD_PAIR: lambda: raw.redis_op(rd, "pair"),
            report.RD_PIPE: lambda: raw.redis_op(rd, "pipelined"),
            report.SESAME: lambda: peers.sesame(work, True),
            report.SESAME_DEFAULT: lambda: peers.sesame(work, False),
            report.OTP: lambda: peers.otp_email(work),
        }
        return makers[name]

    def store_uri(self, store: str) -> str:
        """A fresh store: a new memory store or SQLite file; on a server, a new Redis key
        prefix (PostgreSQL: the same database, a new portal per measurement)."""
        if store == "memory":
            return "memory://"
        if store == "sqlite":
            return f"sqlite:///{self.sqlite_path('store')}"
        if store == "redis":
            return f"{self.server_uris['redis']}?prefix=b{secrets.token_hex(4)}"
        return self.server_uris["postgres"]


# -- the sections -------------------------------------------------------------------------------
def cpu_limits(run: Run) -> None:
    log("raw limits: CPU")
    both = (1, THREADS)
    for name in (report.HMAC, report.CODE, report.ITSD):
        run.threads(name, run.limit_bench(name), both, slow=False)
    run.threads(report.ARGON, run.limit_bench(report.ARGON), both, slow=True)
    run.blocks(
        [
            (report.HASHER, run.limit_bench(report.HASHER), 1.0),
            (report.ARGON, run.limit_bench(report.ARGON), 1.0),
        ],
        slow=True,
    )
    run.threads(report.HASHER, run.limit_bench(report.HASHER), (THREADS,), slow=True)


def peer_section(run: Run) -> str | None:
    missing = peers.available()
    if missing is not None:
        log(f"peers: skipped: {missing}")
        return missing
    log("peers (Django on a SQLite file)")
    run.peers_ok = True
    for name in (report.SESAME, report.SESAME_DEFAULT, report.OTP):
        run.threads(name, run.limit_bench(name), (1, THREADS), slow=False)
    return None


def store_limits(run: Run, store: str) -> None:
    names = {
        "sqlite": (report.SQ_TXN, report.SQ_PAIR, report.SQ_SELECT),
        "postgres": (report.PG_RT, report.PG_PAIR),
        "redis": (report.RD_RT, report.RD_PAIR, report.RD_PIPE),
    }.get(store, ())
    if store == "postgres":
        raw.prepare_postgres(run.server_uris["postgres"])
    uri = run.server_uris.get(store, "")
    kinds = {
        report.PG_RT: "select",
        report.PG_PAIR: "pair",
        report.RD_RT: "get",
        report.RD_PAIR: "pair",
        report.RD_PIPE: "pipelined",
    }
    for name in names:
        run.threads(name, run.limit_bench(name), (1, THREADS), slow=False)
        if store in SERVER_STORES:
            target = "raw:postgres_op" if store == "postgres" else "raw:redis_op"
            run.processes(name, target, (uri, kinds[name]), slow=False)


def store_flows(run: Run, store: str) -> None:
    server = store in SERVER_STORES
    rows = {row.flow: row for row in report.comparisons(store)}
    plan: list[tuple[str, str, str]] = [  # (name, method, flow)
        (report.flow_name(store, method, label), method, flow)
        for method, flows in signins.FLOWS.items()
        for flow, label in flows
    ]
    plan.append((report.validate_name(store), "contact_otp", "validate"))
    for name, method, flow in plan:
        slow = method == "password"
        # --quick: 8 threads and 4 processes only for the e-mail code sign-in and validation.
        full = not run.quick or (method == "contact_otp" and flow in ("whole", "validate"))

        def make(method: str = method, flow: str = flow) -> AbstractContextManager[WorkerFactory]:
            return signins.bench(run.store_uri(store), method, flow, None, 1, run.sessions)

        row = rows[name]
        entries: list[tuple[str, BenchMaker, float]] = [(name, make, 1.0)]
        weight = 1.0 if slow else 0.35  # a limit gets a third of the flow's time, argon2 as much
        entries.append((row.limit, run.limit_bench(row.limit), weight))
        if row.sesame_target is not None and run.peers_ok:
            entries.append((report.SESAME, run.limit_bench(report.SESAME), 0.5))
        run.blocks(entries, slow)
        if full:
            run.threads(name, make, (THREADS,), slow)
        if server and full:
            with run.attempt(name, f"{PROCESSES}p"):
                uri = run.store_uri(store)
                setup = signins.prepare_shared(uri, method)
                args = (uri, method, flow, setup, PROCESSES, run.sessions)
                run.processes(name, "signins:bench", args, slow)


def store_trips(run: Run, store: str, server: Any) -> None:
    """Round trips per flow, counted by the server (a few runs of each flow)."""
    n = 5 if run.quick else 20
    log(f"{store}: round trips per operation ({n} runs of each flow)")
    with run.attempt(f"{store} round trips", "1t"):
        if store == "postgres":
            if not server.has_statements:
                raise RuntimeError("pg_stat_statements is not installed with the server")
            name = server.create_database("trips")
            server.track_statements(name)
            found = trips.postgres(server.uri(name), n)
        else:
            found = trips.redis(server.uri(), server.port, n)
        for flow, (per_op, _) in found.items():
            log(f"  {flow:<52} {per_op:.3g} per op")
        run.round_trips.append(found)


# -- main ---------------------------------------------------------------------------------------
def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


@contextlib.contextmanager
def started_servers(wanted: list[str]) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """The servers that could be started, and why the others could not."""
    found: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    starters: dict[str, Callable[[], Any]] = {
        "postgres": servers.start_postgres,
        "redis": servers.start_redis,
    }
    try:
        for store in SERVER_STORES:
            if store in wanted:
                server = starters[store]()
                if isinstance(server, str):
                    skipped[store] = server
                else:
                    found[store] = server
        yield found, skipped
    finally:
        for server in found.values():
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short measurements, under 1 min")
    parser.add_argument("--duration", type=float, help="seconds per measurement")
    parser.add_argument("--stores", default=",".join(STORES), help="a comma-separated subset")
    parser.add_argument("--scale", action="store_true", help="10k vs 1M rows; purge_expired")
    parser.add_argument("--scale-rows", type=int, default=1_000_000, help="the top scale level")
    parser.add_argument("--rss", action="store_true", help="peak RSS over 100k sign-ins")
    parser.add_argument("--rss-signins", type=int, default=100_000)
    parser.add_argument("--all", action="store_true", help="the main run, --scale and --rss")
    args = parser.parse_args(argv)
    # A SIGTERM ends the run through the finally blocks: servers and workers are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.all:
        args.scale = args.rss = True
    duration = args.duration or (0.25 if args.quick else 1.5)
    # argon2 runs at ~50/s: a little longer, so that p50 has a sample count worth the name.
    slow_duration = max(duration, 0.5 if args.quick else 1.5)
    wanted = [s for s in args.stores.split(",") if s]
    unknown = set(wanted) - set(STORES)
    if unknown:
        parser.error(f"unknown stores: {', '.join(sorted(unknown))}")
    begun = time.perf_counter()

    with (
        tempfile.TemporaryDirectory(prefix="portalauth-bench-") as tmp,
        started_servers(wanted) as (found, skipped),
    ):
        pool = ProcessPool(PROCESSES) if found else None
        run = Run(duration, slow_duration, args.quick, Path(tmp), pool)
        versions = {"SQLite": sqlite3.sqlite_version}
        if "postgres" in found:
            pg = found["postgres"]
            versions["PostgreSQL"] = pg.version()
            run.server_uris["postgres"] = pg.uri(pg.create_database("bench"))
        if "redis" in found:
            versions["Redis"] = found["redis"].version()
            run.server_uris["redis"] = found["redis"].uri()
        stores: list[str] = []
        scale_results: list[scale.ScaleResult] = []
        scale_skipped: dict[str, str] = {}
        rss_points: list[rss.Checkpoint] = []
        try:
            cpu_limits(run)
            peer_missing = peer_section(run)
            for store in wanted:
                if store in skipped:
                    log(f"{store}: skipped: {skipped[store]}")
                    continue
                log(store)
                stores.append(store)
                store_limits(run, store)
                store_flows(run, store)
                if store in found:
                    store_trips(run, store, found[store])
            if args.scale:
                levels = sorted({min(10_000, args.scale_rows), args.scale_rows})
                for store in ("sqlite", "postgres"):
                    if store not in stores:
                        scale_skipped[store] = skipped.get(store, "not in --stores")
                        continue
                    log(f"scale: {store}")
                    if store == "sqlite":
                        path = run.sqlite_path("scale")
                        uri, target = f"sqlite:///{path}", path
                    else:
                        server = found["postgres"]
                        uri = target = server.uri(server.create_database("scale"))
                    scale_results.append(
                        scale.run_scale(store, uri, target, levels, max(duration, 1.0), log)
                    )
            if args.rss:
                log(f"rss: {args.rss_signins:,} sign-ins in a child process")
                marks = sorted({min(1_000, args.rss_signins), min(10_000, args.rss_signins)})
                rss_points = rss.run_rss(run.workdir / "rss.db", args.rss_signins, marks)
        finally:
            if pool is not None:
                pool.close()

    lines = [
        f"portalauth benchmarks: {platform.python_implementation()} {platform.python_version()},"
        f" {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu_model()}),"
        f" {', '.join(f'{k} {v}' for k, v in versions.items())};"
        f" {duration:g} s per measurement{' (--quick)' if args.quick else ''}",
        "",
    ]
    notes = [f"{store}: skipped: {reason}" for store, reason in skipped.items()]
    if peer_missing:
        notes.append(f"peers: skipped: {peer_missing}")
    notes += [f"failed: {text}" for text in run.failures]
    if notes:
        lines += [*notes, ""]
    lines += report.numbers_table(run.results)
    rows = [row for store in stores for row in report.comparisons(store)] + report.EXTRA
    table, checks = report.ratio_table(run.results, run.paired, rows)
    lines += ["", *table, "", "Targets (issue 8), on the 1-thread ratios:", "", *checks]
    lines += [
        "",
        "Ratios are of ops/s, higher is better. A 1-thread ratio comes from one run that"
        " alternates the flow with its raw limit (and, where a peer target applies, the peer)"
        " in blocks of 0.1 s (0.25 s for argon2), so both see the same machine: the median of"
        " the per-round ratios. The 8-thread and 4-process ratios are of separate runs of the"
        " same mode. The peers run in this process on a SQLite"
        " file, so they are compared with the memory and SQLite rows only.",
    ]
    if run.round_trips:
        lines += trips.report(run.round_trips)
    if args.scale:
        lines += scale.report(scale_results, scale_skipped)
    if rss_points:
        lines += rss.report(rss_points, min(10_000, args.rss_signins))
    lines.append(f"\nTotal wall time: {time.perf_counter() - begun:.0f} s.")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

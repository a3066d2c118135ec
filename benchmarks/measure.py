"""Timing: one operation run in N threads, or in N processes, for a fixed wall time.

A *bench* is a context manager that yields a ``WorkerFactory``: called once per worker (in that
worker's thread), it returns the operation to time. The same bench runs in threads
(:func:`measure_threads`) or, named as ``"module:function"`` with picklable arguments, in worker
processes (:class:`ProcessPool`, each process builds its own bench: its own ``Auth``, its own
connections). ``time.perf_counter`` times every op; ops/s is completed ops over wall time.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from math import nan
from multiprocessing.connection import Connection
from typing import Any

Op = Callable[[], object]
#: Builds one worker's operation (called once per worker, in that worker's thread).
WorkerFactory = Callable[[], Op]
Bench = AbstractContextManager[WorkerFactory]
WARMUP = 3  # ops per worker before timing: caches, prepared statements, connections


@dataclass
class Result:
    """A measurement: its ops, the time they took, and latency percentiles (the latencies
    themselves are not kept: the fastest raw ops make millions)."""

    name: str
    mode: str  # "1t", "8t", "4p"
    ops: int
    seconds: float
    p50: float
    p99: float
    #: Interleaved runs (:func:`measure_blocks`): the rate of each round's block.
    rounds: list[float] = field(default_factory=list, repr=False)

    @classmethod
    def of(
        cls,
        name: str,
        mode: str,
        seconds: float,
        latencies: Sequence[float],
        rounds: list[float] | None = None,
    ) -> Result:
        ordered = sorted(latencies)

        def pct(q: float) -> float:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else nan

        return cls(name, mode, len(ordered), seconds, pct(0.5), pct(0.99), rounds or [])

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0


def run_timed(op: Op, until: float) -> array[float]:
    """Run ``op`` until ``time.perf_counter()`` passes ``until``; per-op latencies."""
    out = array("d")
    clock = time.perf_counter
    while True:
        t0 = clock()
        op()
        t1 = clock()
        out.append(t1 - t0)
        if t1 >= until:
            return out


def measure_threads(name: str, factory: WorkerFactory, threads: int, duration: float) -> Result:
    """Run ``factory()``'s op in ``threads`` threads for ``duration`` seconds, after a warm-up."""
    per_thread: list[array[float]] = [array("d") for _ in range(threads)]
    errors: list[BaseException] = []
    ready = threading.Barrier(threads + 1)
    go = threading.Event()
    deadline = [0.0]

    def work(index: int) -> None:
        try:
            op = factory()
            for _ in range(WARMUP):
                op()
        except BaseException as exc:
            errors.append(exc)
            ready.wait()
            return
        ready.wait()
        go.wait()
        try:
            per_thread[index] = run_timed(op, deadline[0])
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
    latencies = array("d")
    for chunk in per_thread:
        latencies += chunk
    return Result.of(name, f"{threads}t", elapsed, latencies)


def measure_blocks(
    entries: list[tuple[str, WorkerFactory, float]], duration: float, block: float = 0.1
) -> list[Result]:
    """Single-threaded, interleaved in blocks: each entry ``(name, factory, weight)`` runs in
    turn for ``block × weight`` seconds (a tight loop, so its caches stay warm), round after
    round, until the first entry has had ``duration`` seconds. Every entry so sees the same
    machine; :func:`paired_ratio` compares two entries round by round. A rate is ops over the
    time spent in that entry's ops."""
    ops = []
    for _, factory, _ in entries:
        op = factory()
        for _ in range(WARMUP):
            op()
        ops.append(op)
    latencies = [array("d") for _ in entries]
    spent = [0.0 for _ in entries]
    rounds: list[list[float]] = [[] for _ in entries]
    while spent[0] < duration:
        for index, (_, _, weight) in enumerate(entries):
            chunk = run_timed(ops[index], time.perf_counter() + block * weight)
            latencies[index] += chunk
            spent[index] += sum(chunk)
            rounds[index].append(len(chunk) / sum(chunk))
    return [
        Result.of(name, "1t", spent[i], latencies[i], rounds[i])
        for i, (name, _, _) in enumerate(entries)
    ]


def paired_ratio(flow: Result, limit: Result) -> float:
    """The median over rounds of the flow's rate over the limit's (robust to a round that a
    burst of load elsewhere slowed down)."""
    ratios = sorted(a / b for a, b in zip(flow.rounds, limit.rounds, strict=True))
    if not ratios:
        return flow.rate / limit.rate
    middle = len(ratios) // 2
    return ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2


# -- worker processes -----------------------------------------------------------------------------
def resolve(target: str) -> Callable[..., Bench]:
    module, _, function = target.partition(":")
    found: Callable[..., Bench] = getattr(importlib.import_module(module), function)
    return found


def _worker_main(conn: Connection) -> None:
    """A worker process: for each job, build the bench, warm up, say ready, wait for go, run
    until the deadline, send the latencies, tear the bench down."""
    while True:
        message = conn.recv()
        if message is None:
            return
        target, args, index, duration = message
        try:
            with resolve(target)(*args, part=index) as factory:
                op = factory()
                for _ in range(WARMUP):
                    op()
                conn.send(("ready", None))
                go = conn.recv() == "go"  # else another worker failed: tear down, next job
                if go:
                    started = time.perf_counter()
                    latencies = run_timed(op, started + duration)
                    elapsed = time.perf_counter() - started
            conn.send(("done", (latencies, elapsed)) if go else ("stopped", None))
        except BaseException as exc:  # reported to the parent, which raises it
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class ProcessPool:
    """``size`` spawned worker processes, started once and reused for every job."""

    def __init__(self, size: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.size = size
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        for _ in range(size):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(child,), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)

    def measure(self, name: str, target: str, args: tuple[Any, ...], duration: float) -> Result:
        """Run the bench ``target(*args, part=i)`` in every worker ``i`` at once. Workers get
        their go together (after all are warm); ops/s is the sum of each worker's rate."""
        for index, conn in enumerate(self._conns):
            conn.send((target, args, index, duration))
        ready: list[Connection] = []
        failures: list[str] = []
        for conn in self._conns:
            kind, payload = conn.recv()
            if kind == "ready":
                ready.append(conn)
            else:
                failures.append(str(payload))
        if failures:
            for conn in ready:  # they wait for a go: let them tear down and take the next job
                conn.send("stop")
                conn.recv()
            raise RuntimeError(f"{name}: {failures[0]}")
        for conn in self._conns:
            conn.send("go")
        latencies = array("d")
        rate = 0.0
        for conn in self._conns:  # every answer is read, so none is left for the next job
            kind, payload = conn.recv()
            if kind != "done":
                failures.append(str(payload))
                continue
            worker_latencies, elapsed = payload
            latencies += worker_latencies
            rate += len(worker_latencies) / elapsed
        if failures:
            raise RuntimeError(f"{name}: {failures[0]}")
        # Expressed as ops over seconds so that Result.rate is the summed rate.
        return Result.of(name, f"{self.size}p", len(latencies) / rate, latencies)

    def close(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()


# -- formatting -----------------------------------------------------------------------------------
def fmt_rate(rate: float) -> str:
    return f"{rate / 1000:.1f}k" if rate >= 10_000 else f"{rate:.0f}"


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"

"""App-server processes for the multi-process race tests (issue 6, part 5).

Kept out of the test modules so that each spawned process imports only this module and
portalauth (not pytest plugins, hypothesis or the test module), which keeps starting eight of
them quick. Each process builds its own :class:`~portalauth.Auth` on the shared store URI, as a
separate app server would, and is reused for every round.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from typing import Any

from portalauth import Auth, ClientInfo, PortalAuthError, SignedIn, hookimpl
from portalauth.events import Event


class MismatchCounter:
    """Counts comparisons that failed (each one spent an attempt of the budget)."""

    def __init__(self) -> None:
        self.count = 0

    @hookimpl
    def portalauth_event(self, event: Event) -> None:
        if event.kind == "verification.failed" and event.detail.get("why") == "mismatch":
            self.count += 1


def _worker(
    keys: Sequence[str], uri: str, index: int, barrier: Any, jobs: Any, results: Any
) -> None:
    """One app server: answers ``(flow, answers, ip)`` jobs until it gets ``None``."""
    counter = MismatchCounter()
    auth = Auth(list(keys), store=uri, entry_points=False, plugins=[counter])
    try:
        results.put((index, "ready", [], 0))
        while (job := jobs.get()) is not None:
            flow, answers, ip = job
            client = ClientInfo(ip=ip, user_agent=f"worker-{index}")
            before = counter.count
            barrier.wait(60)  # every process submits at the same moment
            outcomes: list[str] = []
            for answer in answers:
                try:
                    done = auth.advance(flow, {"code": answer}, client=client)
                    outcomes.append("signed_in" if isinstance(done, SignedIn) else "step")
                except PortalAuthError as exc:
                    outcomes.append(exc.code)
            results.put((index, os.getpid(), outcomes, counter.count - before))
    finally:
        auth.close()


class Workers:
    """``n`` spawned app-server processes on ``uri``, reused round after round."""

    def __init__(self, keys: Sequence[str], uri: str, n: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.n = n
        self.barrier = ctx.Barrier(n)
        self.results = ctx.Queue()
        self.jobs = [ctx.Queue() for _ in range(n)]
        self.procs = [
            ctx.Process(
                target=_worker,
                args=(list(keys), uri, i, self.barrier, self.jobs[i], self.results),
                daemon=True,
            )
            for i in range(n)
        ]
        for proc in self.procs:
            proc.start()
        try:
            ready = [self.results.get(timeout=120) for _ in self.procs]
        except BaseException:
            self._kill()
            raise
        if sorted(i for i, *_ in ready) != list(range(n)):
            self._kill()
            raise RuntimeError(f"not every worker started: {ready}")

    def round(self, flow: str, answers: Sequence[Sequence[str]], ip: str) -> list[tuple[Any, ...]]:
        """Send each process its answers; return ``(index, pid, outcomes, mismatches)`` each.
        ``outcomes`` holds ``"signed_in"`` or the error code of each answer."""
        for queue, mine in zip(self.jobs, answers, strict=True):
            queue.put((flow, list(mine), ip))
        return [self.results.get(timeout=60) for _ in self.procs]

    def _kill(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
            proc.join(timeout=10)

    def close(self) -> list[int | None]:
        """Stop every process; return their exit codes."""
        for queue in self.jobs:
            queue.put(None)
        for proc in self.procs:
            proc.join(timeout=30)
        self._kill()  # only a hung worker is still alive here
        return [proc.exitcode for proc in self.procs]

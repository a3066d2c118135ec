"""Delivery queues: where a rendered message's hand-over to a sender runs.

A client-facing message (a sign-in code, a link, a reset mail) must not make the request that
asked for it slower for a known identifier than for an unknown one (R32): an SMTP or SMS round
trip takes tens to hundreds of milliseconds, a timing oracle that tells accounts apart. So the
:class:`~portalauth.delivery.dispatch.Dispatcher` puts every client-facing delivery on a queue,
and the request for an unknown identifier puts a *no-op job* on the same queue: both requests do
the same work (render, enqueue) and neither waits for a transport.

Two queues ship:

- :class:`InlineQueue` runs each job at once, in the caller's thread. It is the queue when no
  real sender is configured (simulate mode records in the outbox, a store write), and the one to
  choose when the caller must see a delivery failure at once (``Auth(delivery="inline")``).
- :class:`BackgroundQueue` runs jobs in one daemon worker thread, started on the first job (so a
  forking server does not inherit a thread), in order. A job's failure is handled by the job
  itself (the dispatcher emits ``message.failed`` and withdraws the secret the message carried);
  anything else it raises is logged without the message, never lost silently.

Either way :attr:`queued` counts the jobs handed over, real and no-op alike, so a test can check
that known and unknown identifiers queue the same work.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Protocol

__all__ = ["BackgroundQueue", "DeliveryQueue", "InlineQueue", "Job"]

_log = logging.getLogger("portalauth.delivery")

#: One unit of delivery work; it handles its own delivery failures.
Job = Callable[[], None]


class DeliveryQueue(Protocol):
    """Where delivery jobs run."""

    #: ``True`` when jobs run after :meth:`put` returns (the caller cannot see their outcome).
    deferred: bool

    @property
    def queued(self) -> int:
        """How many jobs were handed over so far (real and no-op)."""
        ...

    def put(self, job: Job) -> None:
        """Hand over one job."""
        ...

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every job handed over has run; ``False`` if ``timeout`` ran out first."""
        ...

    def close(self, timeout: float | None = 10.0) -> None:
        """Run what is queued (waiting at most ``timeout``) and stop."""
        ...


class InlineQueue:
    """Runs every job at once, in the caller's thread."""

    deferred = False

    def __init__(self) -> None:
        self._queued = 0
        self._lock = threading.Lock()

    @property
    def queued(self) -> int:
        return self._queued

    def put(self, job: Job) -> None:
        with self._lock:
            self._queued += 1
        job()

    def join(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = 10.0) -> None:
        return None


class BackgroundQueue:
    """Runs jobs in one daemon worker thread, in the order they were handed over."""

    deferred = True

    def __init__(self, *, name: str = "portalauth-delivery") -> None:
        self._name = name
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._queued = 0
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._closed = False

    @property
    def queued(self) -> int:
        return self._queued

    def put(self, job: Job) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("The delivery queue is closed.")
            self._queued += 1
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._worker.start()
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                job()
            except Exception:  # the job reports delivery failures itself; this is a bug
                _log.exception("delivery job failed")
            finally:
                self._jobs.task_done()

    def join(self, timeout: float | None = None) -> bool:
        done = threading.Event()

        def wait() -> None:
            self._jobs.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            worker = self._worker
        if worker is not None:
            self._jobs.put(None)
            worker.join(timeout)

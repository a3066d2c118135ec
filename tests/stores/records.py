"""Record builders and a thread race shared by the store tests (SQL, PostgreSQL, Redis)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from portalauth.records import ChallengeRecord, Identity, SessionRecord

NOW = 1_800_000_000.0


def identity_record(n: int = 1, **changes: Any) -> Identity:
    """Identity ``id-{n}`` of portal ``acme``, with ``changes``."""
    fields: dict[str, Any] = {
        "id": f"id-{n}",
        "portal": "acme",
        "name": f"Person {n}",
        "created_at": NOW,
        "updated_at": NOW,
    }
    fields.update(changes)
    return Identity(**fields)


def challenge_record(n: int = 1, **changes: Any) -> ChallengeRecord:
    """Challenge ``ch-{n}`` for ``id-1``, live for 10 minutes from ``NOW``, with ``changes``."""
    fields: dict[str, Any] = {
        "id": f"ch-{n}",
        "portal": "acme",
        "subject": "id-1",
        "purpose": "code",
        "digest": bytes([n % 256]) * 32,
        "created_at": NOW,
        "expires_at": NOW + 600,
    }
    fields.update(changes)
    return ChallengeRecord(**fields)


def session_record(n: int = 1, **changes: Any) -> SessionRecord:
    """Session ``n`` of ``id-1`` (idle 1 h, absolute 1 day from ``NOW``), with ``changes``."""
    fields: dict[str, Any] = {
        "key": n.to_bytes(32, "big"),
        "identity_id": "id-1",
        "portal": "acme",
        "method": "code",
        "created_at": NOW,
        "last_seen_at": NOW,
        "idle_expires_at": NOW + 3600,
        "absolute_expires_at": NOW + 86400,
    }
    fields.update(changes)
    return SessionRecord(**fields)


def race(worker: Callable[[int], Any], n: int = 16) -> list[Any]:
    """Run ``worker(i)`` in ``n`` threads released together; results (or exceptions) by i."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = worker(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a racing thread hung"
    return results

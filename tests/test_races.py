"""Concurrent submissions: one correct code, many threads, exactly one sign-in (R24)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from conftest import CLIENT, code_from
from portalauth import Auth, FrozenClock, PortalAuthError, SignedIn, Step

THREADS = 16


def _race(n: int, call: Callable[[], object]) -> list[object]:
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call()
        except PortalAuthError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_sixteen_threads_submit_the_same_correct_code(
    auth: Auth, clock: FrozenClock
) -> None:  # R24
    for _ in range(5):
        clock.advance(60)  # a fresh per-IP window each round
        party = auth.directory.add("acme", "Jane Roe", email=f"jane{_}@example.com")
        step = auth.start("acme", "email_code", {"email": f"jane{_}@example.com"}, client=CLIENT)
        assert isinstance(step, Step) and step.flow
        code = code_from(auth, identity=party.id)
        form = {"code": code}
        results = _race(THREADS, lambda f=step.flow, d=form: auth.advance(f, d, client=CLIENT))
        signed_in = [r for r in results if isinstance(r, SignedIn)]
        assert len(signed_in) == 1, results
        assert all(isinstance(r, (SignedIn, PortalAuthError)) for r in results)
        assert len(auth.sessions.list(party.id)) == 1


def test_each_thread_its_own_auth_on_one_sqlite_file(make_auth: Callable[..., Auth]) -> None:  # R24
    auths = [make_auth("sqlite") for _ in range(THREADS)]
    auths[0].portals.create("acme", "Acme", methods={"email_code"}, simulate=True)
    party = auths[0].directory.add("acme", "Jane Roe", email="jane@example.com")
    step = auths[0].start("acme", "email_code", {"email": "jane@example.com"}, client=CLIENT)
    assert isinstance(step, Step) and step.flow
    code = code_from(auths[0], identity=party.id)
    flow = step.flow
    it = iter(auths)
    lock = threading.Lock()

    def submit() -> object:
        with lock:
            mine = next(it)
        return mine.advance(flow, {"code": code}, client=CLIENT)

    results = _race(THREADS, submit)
    assert sum(isinstance(r, SignedIn) for r in results) == 1, results
    assert len(auths[0].sessions.list(party.id)) == 1


def test_wrong_guesses_in_parallel_never_overspend_the_budget(auth: Auth) -> None:  # R8
    party = auth.directory.add("acme", "Jane Roe", email="jane@example.com")
    step = auth.start("acme", "email_code", {"email": "jane@example.com"}, client=CLIENT)
    assert isinstance(step, Step) and step.flow
    code = code_from(auth, identity=party.id)
    flow = step.flow
    wrong = [f"{(int(code) + 1 + i) % 10**6:06d}" for i in range(THREADS)]
    it = iter(wrong)
    lock = threading.Lock()

    def guess() -> object:
        with lock:
            mine = next(it)
        return auth.advance(flow, {"code": mine}, client=CLIENT)

    _race(THREADS, guess)
    record = auth.store.latest_challenge("acme", party.id, "login")
    assert record is not None
    assert record.attempts == record.max_attempts == 5

"""Purging expired artefacts changes nothing a client can observe (R70)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from portalauth import Auth, FrozenClock, SignedIn, Step, VerificationFailed

from .helpers import CLIENT, EMAIL, PORTAL, add_victim, code_in, newest, open_portal


def _answer(auth: Auth, step: Step, code: str) -> object:
    assert step.flow is not None
    try:
        return auth.advance(step.flow, {"code": code}, client=CLIENT)
    except VerificationFailed as exc:
        return ("failed", exc.code, exc.reason)


def test_the_purge_removes_only_what_expired_and_answers_stay_the_same(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock
) -> None:  # R70
    auth = make_auth(store_kind)
    open_portal(auth)
    victim = add_victim(auth)
    kim = add_victim(auth, name="Kim Lee", email="kim@example.com", phone=None, tax_id_last4=None)
    session = auth.sign_in(kim, method="password")

    old = auth.start(PORTAL, "contact_otp", {"contact": EMAIL}, client=CLIENT)
    assert isinstance(old, Step)
    old_code = code_in(newest(auth, victim, "contact_login"))
    clock.advance(601)  # the code's 10 minutes are over; the session's hour is not
    fresh = auth.start(PORTAL, "contact_otp", {"contact": EMAIL}, client=CLIENT)
    assert isinstance(fresh, Step)
    fresh_code = code_in(newest(auth, victim, "contact_login"))
    old_record = auth.store.get_challenge(auth._flows.load(old.flow).challenge_id or "")
    assert old_record is not None

    before = _answer(auth, old, old_code)
    assert auth.purge_expired(batch=2) >= 1
    assert auth.store.get_challenge(old_record.id) is None  # gone...
    assert _answer(auth, old, old_code) == before  # ...and the answer is the same
    assert before[0] == "failed"
    # What was live still works: the fresh code and the session.
    assert auth.sessions.validate(session.token).identity_id == kim.id
    assert isinstance(_answer(auth, fresh, fresh_code), SignedIn)


@pytest.mark.parametrize("batch", [1, 3, 1000])
def test_the_purge_runs_in_bounded_batches_until_nothing_is_left(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock, batch: int
) -> None:  # R70
    auth = make_auth(store_kind)
    open_portal(auth, method_settings={"contact_otp": {"resend_cooldown": 0}})
    victims = [
        add_victim(auth, name=f"Client {i}", email=f"c{i}@example.com", phone=None)
        for i in range(5)
    ]
    for v in victims:
        assert v.email is not None
        auth.start(PORTAL, "contact_otp", {"contact": v.email}, client=CLIENT)
    clock.advance(601)
    removed = auth.purge_expired(batch=batch)
    assert removed >= len(victims)
    assert auth.purge_expired(batch=batch) == 0  # idempotent: nothing expired is left

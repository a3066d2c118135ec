"""Guessing (issue 7, item 1): how far a targeted online guesser gets against one account.

The simulation drives every strategy's guessable secret with the *default* settings through the
public API for 30 days of frozen-clock time, always as fast as the throttles, delays and locks
allow (the clock jumps by exactly ``Throttled.retry_after``), asking for fresh codes whenever
that helps, and counts the guesses portalauth actually evaluated (instrumented comparator, or the
hasher for passwords). The measured success probability of the targeted account is
``evaluated / code space`` (exact: ``1 - Π(1 - g_i/N)``) and must not exceed 1 in 10,000.

The model is the one of NIST SP 800-63B-4 §3.2.2: the attacker alone against one account (no
legitimate sign-in of the victim resets the consecutive-failure count meanwhile), rotating
client addresses so that per-IP throttles never help (what is measured is the per-account
protection). Each method has its own failure count (R7: per identifier *and method*), so an
account with several methods enabled faces the sum of their probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

import pytest

from portalauth import Auth, FrozenClock, SignedIn, Step, Throttled, VerificationFailed

from .helpers import (
    CLIENT,
    EMAIL,
    MEASURED,
    NEW_PASSWORD,
    PASSWORD,
    PORTAL,
    SCOPE,
    ComparatorSpy,
    ContactOtpDriver,
    Driver,
    Guesser,
    Issued,
    MagicLinkDriver,
    PasswordDriver,
    SecondFactorDriver,
    ShareCodeDriver,
    StaffPinDriver,
    add_victim,
    attack,
    code_in,
    failures,
    lock,
    messages,
    newest,
    open_portal,
    token_in,
)

#: The issue's bound on the success probability of a targeted online guesser per account.
BOUND = Fraction(1, 10_000)

TAX_ID_ODDS = (
    "second_factor.py:SecondFactor.check: the tax_id_last4 second factor is a 4-digit answer "
    "under the same failure_hard_limit of 100, and every primary success starts a fresh "
    "challenge: a guesser holding the password gets 100 evaluated guesses in 30 days, measured "
    "1.0e-02 (100 / 10^4) vs the issue's bound of 1e-4"
)


def _driver(kind: str) -> Callable[[], Driver]:
    return lambda: SecondFactorDriver(kind)


SIMULATED = [
    pytest.param(ShareCodeDriver, id="share_code"),
    pytest.param(ContactOtpDriver, id="contact_otp"),
    pytest.param(MagicLinkDriver, id="magic_link"),
    pytest.param(StaffPinDriver, id="staff_pin"),
    pytest.param(PasswordDriver, id="password"),
    pytest.param(_driver("email_code"), id="second_factor-email_code"),
    pytest.param(_driver("sms_code"), id="second_factor-sms_code"),
    pytest.param(
        _driver("tax_id_last4"),
        id="second_factor-tax_id_last4",
        marks=pytest.mark.xfail(reason=TAX_ID_ODDS, strict=True),
    ),
]


@pytest.mark.parametrize("make_driver", SIMULATED)
def test_a_targeted_guesser_gets_at_most_one_in_ten_thousand_in_30_days(
    make_auth: Callable[..., Auth],
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
    make_driver: Callable[[], Driver],
) -> None:  # R6 R7 (issue 7 item 1)
    auth = make_auth("memory")
    driver = make_driver()
    driver.setup(auth)
    spy = ComparatorSpy().install(monkeypatch)

    result = attack(auth, clock, driver, spy, days=30)

    MEASURED.append(
        f"{driver.name:28} {result.guesses:4d} evaluated guesses / {driver.space:>9,} = "
        f"{float(result.bound):.1e} (exact {result.exact:.3e}; {result.requests} requests, "
        f"{result.throttled} throttled, {len(result.evaluated)} secrets)"
    )
    # The attacker really went as fast as allowed: it used up the whole budget (the hard limit
    # for the secret's code space: 10 for 5-digit codes, 100 otherwise)...
    assert result.guesses == driver.hard_limit(auth)
    # ...no secret was compared more often than its own attempt cap (R6)...
    if not driver.single_secret:
        assert max(result.evaluated) <= driver.max_attempts
    # ...and what it got is within the bound.
    assert result.bound <= BOUND, f"{driver.name}: {float(result.bound):.1e}"


# -- R7: the budget survives issuing and resending -----------------------------------------------
BUDGET_KINDS = [
    pytest.param(ShareCodeDriver, id="share_code"),
    pytest.param(ContactOtpDriver, id="contact_otp"),
    pytest.param(MagicLinkDriver, id="magic_link"),
    pytest.param(StaffPinDriver, id="staff_pin"),
    pytest.param(_driver("email_code"), id="second_factor-email_code"),
]


def _calm(driver: Driver) -> dict[str, Any]:
    """The driver's portal, with the staff_pin per-address throttle out of the way: these tests
    look at the core's failure budget, which sits behind it."""
    settings = driver.portal()
    settings["method_settings"] = {"staff_pin": {"attempts_per_address": "1000/hour"}}
    return settings


def _setup_calm(auth: Auth, driver: Driver) -> None:
    open_portal(auth, **_calm(driver))
    driver.prepare(auth, add_victim(auth))


def _fresh(auth: Auth, clock: FrozenClock, driver: Driver, previous: Issued | None) -> Issued:
    """A new secret, waiting out the resend cooldown if there is one."""
    clock.advance(driver.cooldown + 1)
    issued = driver.issue(auth, CLIENT)
    assert previous is None or issued.key != previous.key
    return issued


def _wrong(auth: Auth, driver: Driver, issued: Issued, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        with pytest.raises(VerificationFailed):
            driver.submit(auth, issued, driver.wrong(issued, i), CLIENT)


@pytest.mark.parametrize("make_driver", BUDGET_KINDS)
def test_issuing_or_resending_never_resets_the_failure_budget(
    make_auth: Callable[..., Auth], clock: FrozenClock, make_driver: Callable[[], Driver]
) -> None:  # R7
    auth = make_auth("memory")
    driver = make_driver()
    _setup_calm(auth, driver)
    first = _fresh(auth, clock, driver, None)
    _wrong(auth, driver, first, 5)
    second = _fresh(auth, clock, driver, first)  # a resend: a new secret
    _wrong(auth, driver, second, 4)
    third = _fresh(auth, clock, driver, second)  # and another
    _wrong(auth, driver, third, 1)
    assert failures(auth, driver) == 10  # counted across three secrets

    with pytest.raises(Throttled) as refused:  # even the right answer waits
        driver.submit(auth, third, third.code, CLIENT)
    if driver.hard_limit(auth) == 10:
        # 5-digit codes (share_code): 10 is also the hard limit, where the count locks (R5).
        assert refused.value.retry_after == 3600
        clock.advance(86400)
        with pytest.raises(Throttled):
            driver.submit(auth, _fresh(auth, clock, driver, third), third.code, CLIENT)
        return
    assert refused.value.retry_after == 30
    clock.advance(29)
    with pytest.raises(Throttled):
        driver.submit(auth, third, third.code, CLIENT)
    clock.advance(1)
    result = driver.submit(auth, third, third.code, CLIENT)
    assert isinstance(result, SignedIn)
    assert failures(auth, driver) == 0  # only a success resets it


def test_requesting_a_reset_never_resets_the_password_budget(
    make_auth: Callable[..., Auth], clock: FrozenClock
) -> None:  # R7 R12
    auth = make_auth("memory")
    driver = PasswordDriver()
    driver.setup(auth)
    issued = driver.issue(auth, CLIENT)
    _wrong(auth, driver, issued, 5)
    auth.passwords.request_reset(PORTAL, {"email": EMAIL}, client=CLIENT)  # issues a reset link
    _wrong(auth, driver, issued, 5, start=5)
    assert failures(auth, driver) == 10
    with pytest.raises(Throttled) as refused:
        driver.submit(auth, issued, PASSWORD, CLIENT)
    assert refused.value.retry_after == 30
    clock.advance(30)
    assert isinstance(driver.submit(auth, issued, PASSWORD, CLIENT), SignedIn)
    assert failures(auth, driver) == 0


# -- R7: escalating delays, 30 s doubling to 1 h ------------------------------------------------
#: 5-digit share codes lock at 10 (the hard limit for their code space), with no delays before.
DELAY_KINDS = [
    *(p for p in BUDGET_KINDS if p.id != "share_code"),
    pytest.param(PasswordDriver, id="password"),
]


@pytest.mark.parametrize("make_driver", DELAY_KINDS)
def test_past_the_budget_delays_escalate_from_30_seconds_to_an_hour(
    make_auth: Callable[..., Auth], clock: FrozenClock, make_driver: Callable[[], Driver]
) -> None:  # R7 R12
    auth = make_auth("memory")
    driver = make_driver()
    _setup_calm(auth, driver)
    guesser = Guesser(auth, clock, driver)
    guesser.run(stop=lambda: failures(auth, driver) >= 10)
    assert failures(auth, driver) == 10

    delays = []
    for counted in range(11, 21):
        with pytest.raises(Throttled) as refused:  # asking again at once is refused...
            guesser.guess_now()
        delays.append(refused.value.retry_after)
        if counted == 11:
            clock.advance(refused.value.retry_after - 1)  # ...until the very last second
            with pytest.raises(Throttled):
                guesser.guess_now()
            clock.advance(1)
        else:
            clock.advance(refused.value.retry_after)
        guesser.run(stop=lambda n=counted: failures(auth, driver) >= n)  # one more is evaluated
        assert failures(auth, driver) == counted
    assert delays == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]


# -- R12: recovery paths stay open --------------------------------------------------------------
LOCKABLE = [
    pytest.param(ShareCodeDriver, id="share_code"),
    pytest.param(ContactOtpDriver, id="contact_otp"),
    pytest.param(MagicLinkDriver, id="magic_link"),
    pytest.param(PasswordDriver, id="password"),
]


def _still_locked(auth: Auth, clock: FrozenClock, driver: Driver) -> Issued:
    """After a hard lock: a day later, even the right answer is refused; returns a live secret."""
    clock.advance(86400)
    issued = driver.issue(auth, CLIENT)
    with pytest.raises(Throttled) as refused:
        driver.submit(auth, issued, issued.code, CLIENT)
    assert refused.value.retry_after == 3600
    return issued


def _works_again(auth: Auth, clock: FrozenClock, driver: Driver, issued: Issued) -> None:
    assert failures(auth, driver) == 0
    if isinstance(driver, PasswordDriver):
        return  # the recovery itself was a password sign-in
    issued = _fresh(auth, clock, driver, issued)  # (a reset withdrew the earlier one)
    assert isinstance(driver.submit(auth, issued, issued.code, CLIENT), SignedIn)


@pytest.mark.parametrize("make_driver", LOCKABLE)
def test_a_staff_pin_signs_in_after_a_hard_lock_and_unlocks_the_method(
    make_auth: Callable[..., Auth], clock: FrozenClock, make_driver: Callable[[], Driver]
) -> None:  # R12
    auth = make_auth("memory")
    driver = make_driver()
    driver.setup(auth)
    lock(auth, clock, driver)
    issued = _still_locked(auth, clock, driver)

    pin = auth.pins.issue(driver.victim, actor="staff:1")
    result = auth.start(PORTAL, "staff_pin", {"email": EMAIL, "pin": pin.pin}, client=CLIENT)
    assert isinstance(result, SignedIn)
    if isinstance(driver, ShareCodeDriver):
        # The locked share code stays locked (its holder may be the guesser); the new one
        # staff issue has a count of its own.
        assert auth.share_codes.status(driver.victim, SCOPE).locked
        driver.prepare(auth, driver.victim)
        assert not auth.share_codes.status(driver.victim, SCOPE).locked
    _works_again(auth, clock, driver, issued)


@pytest.mark.parametrize("make_driver", LOCKABLE)
def test_a_password_reset_signs_in_after_a_hard_lock_and_unlocks_the_method(
    make_auth: Callable[..., Auth], clock: FrozenClock, make_driver: Callable[[], Driver]
) -> None:  # R12
    auth = make_auth("memory")
    driver = make_driver()
    driver.setup(auth)
    lock(auth, clock, driver)
    issued = _still_locked(auth, clock, driver)

    step = auth.passwords.request_reset(PORTAL, {"email": EMAIL}, client=CLIENT)
    assert step.done
    token = token_in(newest(auth, driver.victim, "password_reset"))
    assert auth.passwords.reset(PORTAL, token, NEW_PASSWORD, client=CLIENT).done  # type: ignore[union-attr]
    signed = auth.start(
        PORTAL, "password", {"email": EMAIL, "password": NEW_PASSWORD}, client=CLIENT
    )
    assert isinstance(signed, SignedIn)
    if isinstance(driver, ShareCodeDriver):
        driver.prepare(auth, driver.victim)  # a reset withdrew the share code too (R29)
    _works_again(auth, clock, driver, issued)


def test_requesting_resets_never_locks_the_account(
    make_auth: Callable[..., Auth], clock: FrozenClock
) -> None:  # R12
    auth = make_auth("memory")
    open_portal(auth)
    victim = add_victim(auth)
    answers = set()
    for _ in range(150):  # far past every budget, one request a minute
        clock.advance(60)
        try:
            step = auth.passwords.request_reset(PORTAL, {"email": EMAIL}, client=CLIENT)
            answers.add((step.next, step.notice))
        except Throttled:
            answers.add(("throttled", None))
    assert len([a for a in answers if a[0] != "throttled"]) == 1
    for method in ("password", "contact_otp", "magic_link", "staff_pin", "share_code"):
        assert auth.challenges.failures(PORTAL, method, victim.id) == 0
    signed = auth.start(PORTAL, "password", {"email": EMAIL, "password": PASSWORD}, client=CLIENT)
    assert isinstance(signed, SignedIn)


def test_an_attacker_cannot_close_the_staff_pin_path(
    make_auth: Callable[..., Auth], clock: FrozenClock
) -> None:  # R12
    auth = make_auth("memory")
    open_portal(auth)
    victim = add_victim(auth)
    n = 0
    waits: list[int] = []
    # Wrong PINs for the victim's address while no PIN is outstanding, far past every limit.
    while auth.challenges.failures(PORTAL, "staff_pin", victim.id, "typed") < 150:
        n += 1
        assert n < 10_000
        try:
            auth.start(PORTAL, "staff_pin", {"email": EMAIL, "pin": "000000"}, client=CLIENT)
        except Throttled as exc:
            waits.append(exc.retry_after)
            clock.advance(exc.retry_after)
        except VerificationFailed:
            pass
    assert waits and max(waits) <= 3600  # delays, never a lock
    # They could not succeed, so they never count toward the lock...
    assert auth.challenges.failures(PORTAL, "staff_pin", victim.id) == 0
    clock.advance(3600)
    pin = auth.pins.issue(victim, actor="staff:1")  # the victim calls the office
    result = auth.start(PORTAL, "staff_pin", {"email": EMAIL, "pin": pin.pin}, client=CLIENT)
    assert isinstance(result, SignedIn)  # ...and the PIN staff give still signs in
    assert auth.challenges.failures(PORTAL, "staff_pin", victim.id, "typed") == 0


def test_a_second_factor_lock_leaves_the_recovery_paths_open(
    make_auth: Callable[..., Auth], clock: FrozenClock
) -> None:  # R12
    auth = make_auth("memory")
    driver = SecondFactorDriver("email_code")
    open_portal(auth, second_factor="email_code")
    driver.prepare(auth, add_victim(auth))
    lock(auth, clock, driver)
    clock.advance(86400)

    outcomes = {}
    pin = auth.pins.issue(driver.victim, actor="staff:1")  # the victim calls the office
    step = auth.start(PORTAL, "staff_pin", {"email": EMAIL, "pin": pin.pin}, client=CLIENT)
    outcomes["staff_pin"] = _second_step(auth, driver, step)

    auth.passwords.request_reset(PORTAL, {"email": EMAIL}, client=CLIENT)  # or resets
    token = token_in(newest(auth, driver.victim, "password_reset"))
    auth.passwords.reset(PORTAL, token, NEW_PASSWORD, client=CLIENT)
    step = auth.start(PORTAL, "password", {"email": EMAIL, "password": NEW_PASSWORD}, client=CLIENT)
    outcomes["reset"] = _second_step(auth, driver, step)
    assert outcomes == {"staff_pin": "SignedIn", "reset": "SignedIn"}


def _second_step(auth: Auth, driver: Driver, step: object) -> str:
    assert isinstance(step, Step) and step.flow is not None and step.next == "second_factor"
    code = code_in(newest(auth, driver.victim, "second_factor"))
    try:
        return type(auth.advance(step.flow, {"code": code}, client=CLIENT)).__name__
    except Throttled as exc:
        return f"Throttled({exc.retry_after})"


def test_second_factor_codes_have_a_resend_cooldown(
    make_auth: Callable[..., Auth], clock: FrozenClock
) -> None:  # R15
    auth = make_auth("memory")
    open_portal(auth, second_factor="sms_code")
    add_victim(auth)
    for i in range(10):
        clock.advance(5)
        step = auth.start(PORTAL, "password", {"email": EMAIL, "password": PASSWORD}, client=CLIENT)
        assert isinstance(step, Step) and step.next == "second_factor", i
    sent = [m for m in messages(auth) if m.purpose == "second_factor"]
    assert len(sent) <= 1


def test_a_success_for_one_identifier_does_not_clear_the_ip_limit(
    make_auth: Callable[..., Auth], clock: FrozenClock
) -> None:  # R11
    auth = make_auth("memory", limits={"start_per_ip": "10/minute"})
    open_portal(auth)
    add_victim(auth)
    add_victim(auth, name="Kim Lee", email="kim@example.com", phone=None, tax_id_last4=None)
    for i in range(9):  # nine failures for the victim from one address...
        with pytest.raises(VerificationFailed):
            auth.start(
                PORTAL, "password", {"email": EMAIL, "password": f"wrong {i}"}, client=CLIENT
            )
    # ...a success for another identifier from the same address...
    kim = {"email": "kim@example.com", "password": PASSWORD}
    assert isinstance(auth.start(PORTAL, "password", kim, client=CLIENT), SignedIn)
    # ...and the victim's next try from there is refused by the per-IP limit all the same.
    with pytest.raises(Throttled):
        auth.start(PORTAL, "password", {"email": EMAIL, "password": PASSWORD}, client=CLIENT)
    clock.advance(60)
    assert isinstance(
        auth.start(PORTAL, "password", {"email": EMAIL, "password": PASSWORD}, client=CLIENT),
        SignedIn,
    )

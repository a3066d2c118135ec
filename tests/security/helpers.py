"""Shared pieces of the security suite: a victim, an attacker, and drivers for every secret.

A *driver* knows how one kind of secret is obtained and answered through the public API, so the
attack simulations, the races and the hostile-input tests run the same code against every
strategy. Secrets are read from the outbox (simulate mode) exactly as a client reads their mail;
nothing is read from the store, which holds digests only.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from typing import Any

import attrs
import pytest

import conftest
from portalauth import (
    Auth,
    ClientInfo,
    FrozenClock,
    Keyring,
    PortalSettings,
    Step,
    Throttled,
    VerificationFailed,
    hookimpl,
)
from portalauth.challenges import hard_limit
from portalauth.events import Event
from portalauth.records import Identity, Message

PORTAL = "acme"
BASE_URL = "https://portal.acme.example"
EMAIL = "jane.roe@example.com"
UNKNOWN_EMAIL = "nobody.here@example.com"
PHONE = "+1 202 555 0143"
UNKNOWN_PHONE = "+1 202 555 0199"
TAX = "4821"
SCOPE = "case-42"
PASSWORD = "tangerine kayak umbrella 1987"  # a test password
NEW_PASSWORD = "violet harbour lantern 2046"  # a test password
MINUTE = 60
HOUR = 3600
DAY = 86400
ALL_METHODS = frozenset({"share_code", "contact_otp", "staff_pin", "magic_link", "password"})
#: The shared fixtures' well-behaved client (for tests that are not about per-IP throttles).
CLIENT = conftest.CLIENT

_EMAIL_CODE = re.compile(r"(?m)^ {4}([0-9]{4,10})\s*$")
_SMS_CODE = re.compile(r"([0-9]{4,10}) is your code")
_TOKEN = re.compile(r"[?&]token=([A-Za-z0-9_\-]+)")


# -- setting up ---------------------------------------------------------------------------------
def open_portal(auth: Auth, slug: str = PORTAL, **settings: Any) -> PortalSettings:
    """A simulated portal with every built-in method and a ``base_url`` (links need it)."""
    settings.setdefault("methods", ALL_METHODS)
    settings.setdefault("simulate", True)
    settings.setdefault("base_url", BASE_URL)
    return auth.portals.create(slug, "Acme Law LLP", **settings)


def add_victim(
    auth: Auth,
    portal: str = PORTAL,
    *,
    name: str = "Jane Roe",
    password: str | None = PASSWORD,
    disabled: bool = False,
    **fields: Any,
) -> Identity:
    """The targeted client: e-mail, US mobile, Tax ID and (by default) a password."""
    fields.setdefault("email", EMAIL)
    fields.setdefault("phone", PHONE)
    fields.setdefault("tax_id_last4", TAX)
    identity = auth.directory.add(portal, name, **fields)
    if password is not None:
        assert auth.directory.replace_password_hash(
            identity, auth.hasher.hash(password), expected=None, changed=True
        )
    if disabled:
        auth.directory.update(identity.id, disabled=True)
    return auth.directory.get(identity.id)


def attacker(n: int) -> ClientInfo:
    """The n-th address of a distributed attacker (a fresh IPv4 address, so per-IP throttles
    never help: what is measured is the per-account protection)."""
    return ClientInfo(ip=f"198.18.{(n // 250) % 250}.{n % 250 + 1}", user_agent="attacker")


class Recorder:
    """A ``portalauth_event`` listener that keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    @hookimpl
    def portalauth_event(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


# -- reading what a client receives -------------------------------------------------------------
def messages(auth: Auth, portal: str = PORTAL) -> list[Message]:
    """Every recorded message of the portal, oldest first."""
    return list(reversed(auth.outbox.messages(portal, limit=100_000)))


def newest(auth: Auth, identity: Identity | str, purpose: str, portal: str = PORTAL) -> Message:
    who = identity if isinstance(identity, str) else identity.id
    for message in auth.outbox.messages(portal, identity=who, limit=100_000):
        if message.purpose == purpose:
            return message
    raise AssertionError(f"no {purpose!r} message was recorded")


def code_in(message: Message) -> str:
    found = (_SMS_CODE if message.channel == "sms" else _EMAIL_CODE).search(message.text)
    assert found, "no code in the message"
    return found.group(1)


def token_in(message: Message) -> str:
    found = _TOKEN.search(message.text)
    assert found, "no link in the message"
    return found.group(1)


# -- instruments --------------------------------------------------------------------------------
class ComparatorSpy:
    """Counts the constant-time comparisons portalauth makes (``Keyring.matches``).

    ``calls`` holds ``(label, parts)``: for a challenge the label is ``"challenge"`` and the parts
    are ``(purpose, portal, subject, challenge id, secret)``; for a Tax ID ``"tax_id_last4"`` and
    ``(portal, identity id, answer)``.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._lock = threading.Lock()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> ComparatorSpy:
        original = Keyring.matches
        spy = self

        def matches(self: Keyring, stored: bytes, purpose: str, *parts: Any) -> bool:
            with spy._lock:
                spy.calls.append((purpose, parts))
            return original(self, stored, purpose, *parts)

        monkeypatch.setattr(Keyring, "matches", matches)
        return self

    def challenge_checks(self, purpose: str, subject: str | None = None) -> Counter[str]:
        """How many comparisons ran per challenge id, for challenges of ``purpose``."""
        with self._lock:
            calls = list(self.calls)
        return Counter(
            parts[3]
            for label, parts in calls
            if label == "challenge"
            and parts[0] == purpose
            and (subject is None or parts[2] == subject)
        )

    def tax_checks(self, identity_id: str) -> int:
        with self._lock:
            return sum(
                1
                for label, parts in self.calls
                if label == "tax_id_last4" and parts[1] == identity_id
            )


def race(n: int, call: Callable[[int], object]) -> list[object]:
    """Run ``call(i)`` in ``n`` threads released together by a barrier; results or exceptions."""
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i)
        except BaseException as exc:  # kept and asserted on by the caller
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@contextmanager
def spying_issues(auth: Auth) -> Iterator[list[Any]]:
    """Every challenge record written through ``auth.store.issue_challenge`` while active."""
    issued: list[Any] = []
    lock = threading.Lock()
    original = auth.store.issue_challenge

    def issue_challenge(record: Any, *, supersede: bool) -> None:
        original(record, supersede=supersede)
        with lock:
            issued.append(record)

    auth.store.issue_challenge = issue_challenge  # type: ignore[method-assign]
    try:
        yield issued
    finally:
        del auth.store.issue_challenge


# -- drivers: one per kind of guessable secret --------------------------------------------------
@attrs.frozen
class Issued:
    """A secret the attacker can answer: the flow to answer it in (``None`` for one-step methods),
    the right answer (known to the test, never used by the simulated attacker) and its expiry."""

    flow: str | None
    code: str
    expires_at: float

    @property
    def key(self) -> tuple[float, str]:
        return (self.expires_at, self.code)


class Driver:
    """How one kind of secret is obtained and answered through the public API."""

    name: str = ""
    #: the method its consecutive failures are counted under
    method: str = ""
    #: the challenge purpose (or the comparison label for non-challenge checks)
    purpose: str = ""
    #: how many values the secret is drawn from
    space: int = 10**6
    digits: int = 6
    #: attempts per issued secret
    max_attempts: int = 5
    #: seconds during which asking again returns the secret already sent
    cooldown: int = 0
    field: str = "code"
    #: one long-lived secret answered in many challenges (a password, a Tax ID)
    single_secret: bool = False

    def portal(self) -> dict[str, Any]:
        """Portal settings (beyond :func:`open_portal`'s) this kind needs; defaults otherwise."""
        return {}

    def setup(self, auth: Auth) -> Identity:
        open_portal(auth, **self.portal())
        victim = add_victim(auth)
        self.prepare(auth, victim)
        return victim

    def prepare(self, auth: Auth, victim: Identity) -> None:
        self.victim = victim

    def issue(self, auth: Auth, client: ClientInfo) -> Issued:
        raise NotImplementedError

    def submit(self, auth: Auth, issued: Issued, value: object, client: ClientInfo) -> object:
        assert issued.flow is not None
        return auth.advance(issued.flow, {self.field: value}, client=client)

    def wrong(self, issued: Issued, index: int) -> str:
        """The ``index``-th distinct wrong answer for ``issued``."""
        value = f"{index:0{self.digits}d}"
        if value == issued.code:
            value = f"{self.space - 1 - index:0{self.digits}d}"
        assert value != issued.code
        return value

    def evaluated(self, spy: ComparatorSpy, auth: Auth) -> list[int]:
        """Comparisons made against the victim's secrets, one entry per secret."""
        return list(spy.challenge_checks(self.purpose, self.victim.id).values())

    def counter(self, auth: Auth) -> str:
        """The failure counter within :attr:`method` that the attack drives (R7)."""
        return ""

    def hard_limit(self, auth: Auth) -> int:
        """Where the attacked count locks with the portal's settings (``hard_limit``)."""
        return hard_limit(auth.portals.get(PORTAL), None if self.single_secret else self.digits)

    def _step(self, step: object) -> Step:
        assert isinstance(step, Step) and step.flow is not None, step
        assert step.expires_at is not None
        return step


class ShareCodeDriver(Driver):
    """``share_code``: the attacker holds the party's valid share code (the worst case) and
    guesses the 5-digit confirmation code e-mailed to the party."""

    name = method = "share_code"
    purpose = "share_code_login"
    space = 10**5
    digits = 5
    cooldown = 60

    def prepare(self, auth: Auth, victim: Identity) -> None:
        super().prepare(auth, victim)
        self.share = auth.share_codes.issue(victim, scope=SCOPE, send=False).code
        record = auth.challenges.latest(PORTAL, victim.id, "share_code", SCOPE)
        assert record is not None
        self.share_id = record.id

    def counter(self, auth: Auth) -> str:
        return self.share_id  # each share code has its own count: the attacker holds this one

    def issue(self, auth: Auth, client: ClientInfo) -> Issued:
        step = self._step(
            auth.start(PORTAL, "share_code", {"share_code": self.share}, client=client)
        )
        code = code_in(newest(auth, self.victim, self.purpose))
        return Issued(step.flow, code, step.expires_at)  # type: ignore[arg-type]


class ContactOtpDriver(Driver):
    """``contact_otp``: the attacker types the victim's contact and guesses the 6-digit code."""

    name = method = "contact_otp"
    purpose = "contact_login"
    cooldown = 60

    def __init__(self, contact: str = EMAIL) -> None:
        self.contact = contact

    def issue(self, auth: Auth, client: ClientInfo) -> Issued:
        step = self._step(
            auth.start(PORTAL, "contact_otp", {"contact": self.contact}, client=client)
        )
        code = code_in(newest(auth, self.victim, self.purpose))
        return Issued(step.flow, code, step.expires_at)  # type: ignore[arg-type]


class MagicLinkDriver(Driver):
    """``magic_link``: the attacker asks for links and guesses the 6-digit code in the mail (the
    256-bit link token itself is out of reach)."""

    name = method = purpose = "magic_link"
    cooldown = 60

    def issue(self, auth: Auth, client: ClientInfo) -> Issued:
        step = self._step(auth.start(PORTAL, "magic_link", {"email": EMAIL}, client=client))
        code = code_in(newest(auth, self.victim, self.purpose))
        return Issued(step.flow, code, step.expires_at)  # type: ignore[arg-type]


class StaffPinDriver(Driver):
    """``staff_pin``: staff keep a PIN outstanding at all times (worst case: a new one as soon as
    the last is used up); the attacker types the victim's e-mail and guesses the 6-digit PIN."""

    name = method = purpose = "staff_pin"
    field = "pin"

    def issue(self, auth: Auth, client: ClientInfo) -> Issued:
        pin = auth.pins.issue(self.victim, actor="staff:1")
        return Issued(None, pin.pin, pin.expires_at)

    def submit(self, auth: Auth, issued: Issued, value: object, client: ClientInfo) -> object:
        return auth.start(PORTAL, "staff_pin", {"email": EMAIL, "pin": value}, client=client)


class SecondFactorDriver(Driver):
    """The portal's second factor: the attacker already holds the password (the primary) and
    guesses the second step, starting the primary again for a fresh challenge when needed."""

    method = purpose = "second_factor"

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = f"second_factor:{kind}"
        if kind != "tax_id_last4":
            self.cooldown = 60  # a primary success within a minute reuses the code sent (R15)
        if kind == "tax_id_last4":
            self.space, self.digits, self.field = 10**4, 4, "tax_id_last4"
            self.single_secret = True

    def portal(self) -> dict[str, Any]:
        return {"methods": {"password"}, "second_factor": self.kind}

    def issue(self, auth: Auth, client: ClientInfo) -> Issued:
        step = self._step(
            auth.start(PORTAL, "password", {"email": EMAIL, "password": PASSWORD}, client=client)
        )
        assert step.next == "second_factor"
        if self.kind == "tax_id_last4":
            code = TAX
        else:
            code = code_in(newest(auth, self.victim, self.purpose))
        return Issued(step.flow, code, step.expires_at)  # type: ignore[arg-type]

    def counter(self, auth: Auth) -> str:
        return "password"  # the second factor's count after the method that began it

    def evaluated(self, spy: ComparatorSpy, auth: Auth) -> list[int]:
        if self.kind == "tax_id_last4":
            # One secret (the Tax ID), however many challenges carried the question.
            return [spy.tax_checks(self.victim.id)]
        return super().evaluated(spy, auth)


class PasswordDriver(Driver):
    """``password``: the victim's password is one of 10^6 candidates (a stand-in for a guess
    list), and the attacker tries distinct candidates; every guess that reaches the hasher is an
    evaluated guess."""

    name = method = purpose = "password"
    field = "password"
    max_attempts = 10**9
    single_secret = True

    def issue(self, auth: Auth, client: ClientInfo) -> Issued:
        return Issued(None, PASSWORD, math.inf)

    def submit(self, auth: Auth, issued: Issued, value: object, client: ClientInfo) -> object:
        return auth.start(PORTAL, "password", {"email": EMAIL, "password": value}, client=client)

    def wrong(self, issued: Issued, index: int) -> str:
        return f"candidate password {index:07d}"

    def prepare(self, auth: Auth, victim: Identity) -> None:
        super().prepare(auth, victim)
        self.hashes_before = auth.hasher.calls

    def evaluated(self, spy: ComparatorSpy, auth: Auth) -> list[int]:
        return [auth.hasher.calls - self.hashes_before]


# -- the attack --------------------------------------------------------------------------------
@attrs.frozen
class Attack:
    """What a simulated attack achieved."""

    #: comparisons (evaluated guesses) against each secret the victim was issued
    evaluated: tuple[int, ...]
    space: int
    #: requests the attacker made, and how many of them were throttled
    requests: int
    throttled: int
    days: float

    @property
    def guesses(self) -> int:
        return sum(self.evaluated)

    @property
    def bound(self) -> Fraction:
        """Evaluated guesses / code space: the union bound on the success probability."""
        return Fraction(self.guesses, self.space)

    @property
    def exact(self) -> float:
        """The exact success probability of distinct guesses: 1 - Π (1 - g_i / N)."""
        miss = 1.0
        for g in self.evaluated:
            miss *= 1 - g / self.space
        return 1 - miss


class Guesser:
    """A targeted online guesser against ``driver.victim``, on a frozen clock.

    It guesses as fast as every throttle, delay and lock allows: when refused it jumps the clock
    by exactly ``Throttled.retry_after``; it asks for a fresh secret whenever the current one is
    used up or expired (waiting out resend cooldowns); it never repeats a guess against one
    secret and never submits the right answer (which the test knows), so what is measured is how
    many guesses portalauth lets it have evaluated. It keeps its state between :meth:`run` calls.
    """

    def __init__(self, auth: Auth, clock: FrozenClock, driver: Driver) -> None:
        self.auth = auth
        self.clock = clock
        self.driver = driver
        self.issued: Issued | None = None
        self.tries: Counter[tuple[float, str]] = Counter()
        self.requests = 0
        self.throttled = 0

    @property
    def spent(self) -> bool:
        """Whether the current secret is used up or expired (the attacker needs a fresh one)."""
        issued = self.issued
        return (
            issued is None
            or self.tries[issued.key] >= self.driver.max_attempts
            or self.clock.now() >= issued.expires_at
        )

    def guess_now(self) -> object:
        """Submit the next wrong guess against the current secret at once (may raise)."""
        assert self.issued is not None
        value = self.driver.wrong(self.issued, self.tries[self.issued.key])
        return self.driver.submit(self.auth, self.issued, value, attacker(self.requests))

    def run(self, *, days: float = 30, stop: Callable[[], bool] = lambda: False) -> None:
        end = self.clock.now() + days * DAY
        while self.clock.now() < end and not stop():
            self.requests += 1
            assert self.requests < 200_000, "the simulation does not converge"
            try:
                if self.spent:
                    fresh = self.driver.issue(self.auth, attacker(self.requests))
                    if self.issued is not None and fresh.key == self.issued.key:
                        self.clock.advance(5)  # the cooldown handed back the spent secret
                    else:
                        self.issued = fresh
                    continue
                outcome = self.guess_now()
                raise AssertionError(f"a wrong guess was accepted: {outcome!r}")
            except Throttled as exc:
                self.throttled += 1
                self.clock.advance(exc.retry_after)
            except VerificationFailed:
                assert self.issued is not None
                self.tries[self.issued.key] += 1


def attack(
    auth: Auth, clock: FrozenClock, driver: Driver, spy: ComparatorSpy, *, days: float = 30
) -> Attack:
    """Run a :class:`Guesser` for ``days`` and measure what it achieved."""
    start = clock.now()
    guesser = Guesser(auth, clock, driver)
    guesser.run(days=days)
    return Attack(
        tuple(driver.evaluated(spy, auth)),
        driver.space,
        guesser.requests,
        guesser.throttled,
        (clock.now() - start) / DAY,
    )


def failures(auth: Auth, driver: Driver) -> int:
    return auth.challenges.failures(PORTAL, driver.method, driver.victim.id, driver.counter(auth))


def lock(auth: Auth, clock: FrozenClock, driver: Driver) -> None:
    """Drive ``driver``'s method into its hard lock with the default settings."""
    limit = driver.hard_limit(auth)
    Guesser(auth, clock, driver).run(days=30, stop=lambda: failures(auth, driver) >= limit)
    assert failures(auth, driver) == limit


#: Success probabilities measured by the attack simulations, for the terminal summary.
MEASURED: list[str] = []

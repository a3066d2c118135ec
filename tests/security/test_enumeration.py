"""Enumeration (issue 7, item 3, the core half): known and unknown identifiers look the same.

The harness runs every pre-authentication entry point for a known and an unknown identifier on
two fresh ``Auth`` objects with identical setups and one frozen clock, as the same *sequence* of
calls (so cooldowns, attempt caps, failure budgets and throttled states are compared too, R14),
and compares for every call:

- the result's shape: an exception's type, ``code``, ``message``, ``field``, ``reason`` and
  ``retry_after``, or a ``Step``'s method, next step, fields, notice, ``sent_to``, ``expires_at``
  and flow-token length (R31);
- the side effects an outsider could tell apart: hash computations (``auth.hasher.calls``,
  R32), challenges issued (decoys count like real ones), sessions created (never one), and the
  messages queued, leaving out the ones documented per case below (R31, R32).

Documented exceptions (messages that go only to the *account owner's* stored address, which the
person typing an identifier does not control, or to the typed address in both cases alike):

- ``contact_otp``, ``magic_link``, ``share_code``, reset request: a known identifier's owner gets
  the code or link (purposes ``contact_login``, ``magic_link``, ``share_code_login``,
  ``password_reset``); an unknown one gets nothing (a decoy challenge is stored instead).
- ``magic_link`` with ``notify_unknown``: the typed unknown address gets a ``no_account`` notice,
  the known one its link: one message to the typed address either way.
- sign-up with the toggle on: an existing address's owner gets ``account_exists``; a new address
  gets ``signup_confirm`` and an unconfirmed account with a confirmation link (one challenge
  issued, which an existing address does not cause): one message to the typed address either way.

A slow, opt-in timing test (``PORTALAUTH_SLOW=1``) compares medians over 200 interleaved trials.
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from portalauth import (
    Auth,
    ClientInfo,
    FrozenClock,
    PasswordHasher,
    PortalAuthError,
    SignedIn,
    Step,
)
from portalauth.records import Identity
from portalauth.strategies.share_code import display, new_share_code

from .helpers import (
    EMAIL,
    MINUTE,
    PHONE,
    PORTAL,
    SCOPE,
    UNKNOWN_EMAIL,
    UNKNOWN_PHONE,
    Recorder,
    add_victim,
    code_in,
    open_portal,
)

T0 = 1_800_000_000.0
CLIENT = ClientInfo(ip="203.0.113.7", user_agent="pytest")


# -- the harness ------------------------------------------------------------------------------
def shape(result: object) -> tuple[Any, ...]:
    """Everything a client can observe about one answer (a flow token only by its length)."""
    if isinstance(result, PortalAuthError):
        return (
            "raised",
            type(result).__name__,
            result.code,
            result.message,
            getattr(result, "field", None),
            getattr(result, "reason", None),
            getattr(result, "retry_after", None),
        )
    assert not isinstance(result, SignedIn), "a pre-authentication call signed somebody in"
    assert isinstance(result, Step), result
    return (
        "step",
        result.method,
        result.next,
        result.fields,
        result.notice,
        result.sent_to,
        result.expires_at,
        None if result.flow is None else len(result.flow),
    )


@attrs.frozen
class Seen:
    """One call as an outsider could observe it, plus the documented owner-only messages."""

    shape: tuple[Any, ...]
    hashes: int
    issued: int
    sessions: int
    messages: tuple[tuple[str, str, str], ...]
    documented: tuple[tuple[str, str], ...]


@attrs.frozen
class Case:
    """One pre-authentication entry point, called as ``call(auth, identifier, state, i)``."""

    name: str
    call: Callable[[Auth, str, dict[str, Any], int], object]
    known: Callable[[Auth, Identity, dict[str, Any]], str]
    unknown: Callable[[Auth, Identity, dict[str, Any]], str]
    portal: dict[str, Any] = attrs.field(factory=dict)
    victim: dict[str, Any] = attrs.field(factory=dict)
    prepare: Callable[[Auth, Identity, dict[str, Any]], None] = lambda a, v, s: None
    #: messages the account owner legitimately gets for a known identifier
    owner: frozenset[str] = frozenset()
    #: messages the typed address gets for an unknown identifier (documented above)
    typed: frozenset[str] = frozenset()
    #: seconds between calls
    gap: float = 61
    calls: int = 8
    #: call indexes whose issued-challenge count may differ (documented above)
    issued_differs: frozenset[int] = frozenset()


def run(make_auth: Callable[..., Auth], clock: FrozenClock, case: Case, which: str) -> list[Seen]:
    clock.set(T0)
    recorder = Recorder()
    auth = make_auth("memory", plugins=[recorder])
    open_portal(auth, **case.portal)
    victim = add_victim(auth, **case.victim)
    state: dict[str, Any] = {"clock": clock, "victim": victim}
    case.prepare(auth, victim, state)
    identifier = (case.known if which == "known" else case.unknown)(auth, victim, state)
    seen = []
    for i in range(case.calls):
        clock.advance(case.gap)
        hashes = auth.hasher.calls
        mark = len(recorder.events)
        outbox = len(auth.outbox.messages(PORTAL, limit=100_000))
        try:
            result = case.call(auth, identifier, state, i)
        except PortalAuthError as exc:
            result = exc
        events = recorder.events[mark:]
        new = list(reversed(auth.outbox.messages(PORTAL, limit=100_000)))[outbox:]
        documented = case.owner if which == "known" else case.typed
        for message in new:
            if message.purpose not in documented:
                continue
            if which == "known":  # to the owner's stored contact, never to what was typed
                assert message.to == (victim.phone if message.channel == "sms" else victim.email)
            else:  # a notice about an unknown address goes to exactly that address
                assert message.to == identifier
        seen.append(
            Seen(
                shape=shape(result),
                hashes=auth.hasher.calls - hashes,
                issued=sum(e.kind == "challenge.issued" for e in events),
                sessions=sum(e.kind == "session.created" for e in events),
                messages=tuple(
                    (m.purpose, m.channel, m.to) for m in new if m.purpose not in documented
                ),
                documented=tuple((m.purpose, m.channel) for m in new if m.purpose in documented),
            )
        )
    return seen


def assert_indistinguishable(
    make_auth: Callable[..., Auth], clock: FrozenClock, case: Case
) -> tuple[list[Seen], list[Seen]]:
    known = run(make_auth, clock, case, "known")
    unknown = run(make_auth, clock, case, "unknown")
    for i, (k, u) in enumerate(zip(known, unknown, strict=True)):
        where = f"{case.name}, call {i}"
        assert k.shape == u.shape, where
        assert k.hashes == u.hashes, where
        assert k.sessions == u.sessions == 0, where
        assert k.messages == u.messages == (), where
        if i not in case.issued_differs:
            assert k.issued == u.issued, where
    return known, unknown


# -- the entry points -------------------------------------------------------------------------
def _email(auth: Auth, victim: Identity, state: dict[str, Any]) -> str:
    return EMAIL


def _unknown_email(auth: Auth, victim: Identity, state: dict[str, Any]) -> str:
    return UNKNOWN_EMAIL


def _start(method: str, field: str, **extra: str) -> Callable[..., object]:
    def call(auth: Auth, identifier: str, state: dict[str, Any], i: int) -> object:
        return auth.start(PORTAL, method, {field: identifier, **extra}, client=CLIENT)

    return call


def _pin(auth: Auth, identifier: str, state: dict[str, Any], i: int) -> object:
    guess = "000000" if state.get("pin") != "000000" else "111111"
    return auth.start(PORTAL, "staff_pin", {"email": identifier, "pin": guess}, client=CLIENT)


def _issue_pin(auth: Auth, victim: Identity, state: dict[str, Any]) -> None:
    state["pin"] = auth.pins.issue(victim).pin


def _issue_share(auth: Auth, victim: Identity, state: dict[str, Any]) -> None:
    state["share"] = auth.share_codes.issue(victim, scope=SCOPE, send=False).code
    while True:
        other = display(new_share_code())
        if other != state["share"]:
            state["other"] = other
            return


def _unreachable_share(auth: Auth, victim: Identity, state: dict[str, Any]) -> None:
    _issue_share(auth, victim, state)
    auth.directory.update(victim.id, email_status="opted_out")


def _password(auth: Auth, identifier: str, state: dict[str, Any], i: int) -> object:
    return auth.start(
        PORTAL,
        "password",
        {"email": identifier, "password": "not the password at all"},
        client=CLIENT,
    )


def _sign_up(auth: Auth, identifier: str, state: dict[str, Any], i: int) -> object:
    form = {"name": "Someone", "email": identifier, "password": "plum orchard lighthouse 7"}
    return auth.passwords.sign_up(PORTAL, form, client=CLIENT)


def _reset(auth: Auth, identifier: str, state: dict[str, Any], i: int) -> object:
    return auth.passwords.request_reset(PORTAL, {"email": identifier}, client=CLIENT)


def _code_script(method: str, field: str) -> Callable[..., object]:
    """Start, then answer the code step wrongly through attempts, exhaustion, a resend and the
    superseded flow, with the failure budget running out along the way (R14 R31)."""
    script = ["start", "wrong", "wrong", "wrong", "start", "wrong", "wrong", "wrong", "wrong",
              "resend", "old", "wrong", "wrong", "wrong", "wrong", "wrong"]  # fmt: skip
    purpose = {"contact_otp": "contact_login", "share_code": "share_code_login"}.get(method, method)
    digits = 5 if method == "share_code" else 6

    def call(auth: Auth, identifier: str, state: dict[str, Any], i: int) -> object:
        action = script[i]
        if action in ("start", "resend"):
            if action == "resend":
                state["old"] = state["flow"]
                state["clock"].advance(61)  # past the resend cooldown: a new code
            step = auth.start(PORTAL, method, {field: identifier}, client=CLIENT)
            if isinstance(step, Step):
                state["flow"] = step.flow
            return step
        guess = "0" * digits
        sent = [
            m
            for m in auth.outbox.messages(PORTAL, identity=state["victim"].id)
            if m.purpose == purpose
        ]
        if sent and code_in(sent[0]) == guess:  # never the right code by accident
            guess = "1" * digits
        flow = state["old"] if action == "old" else state["flow"]
        return auth.advance(flow, {"code": guess}, client=CLIENT)

    return call


CASES = [
    Case(
        "contact_otp e-mail",
        _start("contact_otp", "contact"),
        _email,
        _unknown_email,
        owner=frozenset({"contact_login"}),
    ),
    Case(
        "contact_otp phone (unknown phone)",
        _start("contact_otp", "contact"),
        lambda a, v, s: PHONE,
        lambda a, v, s: UNKNOWN_PHONE,
        owner=frozenset({"contact_login"}),
    ),
    Case(
        "contact_otp code step",
        _code_script("contact_otp", "contact"),
        _email,
        _unknown_email,
        owner=frozenset({"contact_login"}),
        gap=1,
        calls=16,
    ),
    Case(
        "magic_link",
        _start("magic_link", "email"),
        _email,
        _unknown_email,
        owner=frozenset({"magic_link"}),
    ),
    Case(
        "magic_link code step",
        _code_script("magic_link", "email"),
        _email,
        _unknown_email,
        owner=frozenset({"magic_link"}),
        gap=1,
        calls=16,
    ),
    Case(
        "magic_link with notify_unknown",
        _start("magic_link", "email"),
        _email,
        _unknown_email,
        portal={"method_settings": {"magic_link": {"notify_unknown": True}}},
        owner=frozenset({"magic_link"}),
        typed=frozenset({"no_account"}),
    ),
    Case(
        "magic_link for a disabled identity",
        _start("magic_link", "email"),
        _email,
        _unknown_email,
        victim={"disabled": True},
        owner=frozenset({"magic_link"}),
    ),
    Case(
        "share_code (valid vs unknown share code)",
        _start("share_code", "share_code"),
        lambda a, v, s: s["share"],
        lambda a, v, s: s["other"],
        prepare=_issue_share,
        owner=frozenset({"share_code_login"}),
    ),
    Case(
        "share_code code step",
        _code_script("share_code", "share_code"),
        lambda a, v, s: s["share"],
        lambda a, v, s: s["other"],
        prepare=_issue_share,
        owner=frozenset({"share_code_login"}),
        gap=1,
        calls=16,
    ),
    Case(
        "share_code of an unreachable party",
        _start("share_code", "share_code"),
        lambda a, v, s: s["share"],
        lambda a, v, s: s["other"],
        prepare=_unreachable_share,
    ),
    Case(
        "staff_pin with a PIN outstanding",
        _pin,
        _email,
        _unknown_email,
        prepare=_issue_pin,
        gap=1,
        calls=14,
    ),
    Case("staff_pin without a PIN", _pin, _email, _unknown_email, gap=1, calls=14),
    Case("password sign-in", _password, _email, _unknown_email, gap=1, calls=13),
    Case(
        "password sign-in, no password yet",
        _password,
        _email,
        _unknown_email,
        victim={"password": None},
        gap=1,
        calls=4,
    ),
    Case(
        "password sign-in, unconfirmed address",
        _password,
        _email,
        _unknown_email,
        victim={"email_confirmed": False},
        gap=1,
        calls=4,
    ),
    Case(
        "password sign-in, disabled identity",
        _password,
        _email,
        _unknown_email,
        victim={"disabled": True},
        gap=1,
        calls=4,
    ),
    Case("sign-up, toggle off", _sign_up, _email, _unknown_email, gap=MINUTE, calls=3),
    Case(
        "sign-up, toggle on",
        _sign_up,
        _email,
        _unknown_email,
        portal={"signup_enabled": True},
        owner=frozenset({"account_exists"}),
        typed=frozenset({"signup_confirm", "account_exists"}),
        gap=MINUTE,
        calls=12,
        issued_differs=frozenset({0}),
    ),
    Case(
        "password reset request",
        _reset,
        _email,
        _unknown_email,
        owner=frozenset({"password_reset"}),
        gap=MINUTE,
        calls=5,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_known_and_unknown_identifiers_are_indistinguishable(
    make_auth: Callable[..., Auth], clock: FrozenClock, case: Case
) -> None:  # R14 R31 R32 R33 R34 R49
    known, unknown = assert_indistinguishable(make_auth, clock, case)
    # The documented exceptions are exactly what they say, and nothing else.
    owner_mail = [d for s in known for d in s.documented]
    typed_mail = [d for s in unknown for d in s.documented]
    assert {p for p, _ in owner_mail} <= case.owner
    assert {p for p, _ in typed_mail} <= case.typed
    # R34: no answer before authentication says locked, disabled, unverified or unknown.
    for seen in known:
        text = str(seen.shape[3] if seen.shape[0] == "raised" else seen.shape[4]).lower()
        for word in ("lock", "disabled", "not verified", "no such", "not exist", "unknown"):
            assert word not in text, (case.name, seen.shape)


def test_the_sign_up_exception_is_one_message_to_the_typed_address_either_way(
    make_auth: Callable[..., Auth], clock: FrozenClock
) -> None:  # R49
    case = next(c for c in CASES if c.name == "sign-up, toggle on")
    known, unknown = assert_indistinguishable(make_auth, clock, case)
    assert known[0].documented == (("account_exists", "email"),)
    assert unknown[0].documented == (("signup_confirm", "email"),)
    assert (known[0].issued, unknown[0].issued) == (0, 1)  # the new account's confirmation link
    for k, u in zip(known[1:], unknown[1:], strict=True):  # by then both addresses exist
        assert len(k.documented) == len(u.documented)


def test_the_toggle_off_creates_nothing(
    make_auth: Callable[..., Auth], clock: FrozenClock
) -> None:  # R49
    auth = make_auth("memory")
    open_portal(auth)
    add_victim(auth)
    before = len(auth.directory.list(PORTAL))
    for address in (EMAIL, UNKNOWN_EMAIL):
        with pytest.raises(PortalAuthError) as refused:
            _sign_up(auth, address, {}, 0)
        assert refused.value.code == "signup_disabled"
    assert len(auth.directory.list(PORTAL)) == before
    assert auth.outbox.messages(PORTAL) == []


class SlowTransport:
    """A real-world sender stand-in: an SMTP or SMS round trip, and the thread it ran in."""

    channel = "email"

    def __init__(self) -> None:
        self.threads: list[str] = []

    def send(self, message: object, *, portal: object) -> None:
        self.threads.append(threading.current_thread().name)
        time.sleep(0.02)


@pytest.mark.parametrize(
    "name",
    [
        "contact_otp e-mail",
        "magic_link",
        "share_code (valid vs unknown share code)",
        "password reset request",
    ],
)
def test_a_real_transport_does_the_same_work_for_known_and_unknown_identifiers(
    make_auth: Callable[..., Auth], clock: FrozenClock, name: str
) -> None:  # R32
    case = next(c for c in CASES if c.name == name)
    work = {}
    for which in ("known", "unknown"):
        clock.set(T0)
        transport = SlowTransport()
        auth = make_auth("memory", email=transport, delivery="auto")
        assert auth.dispatcher.queue.deferred  # a real sender: deliveries leave the request
        open_portal(auth, simulate=False)
        victim = add_victim(auth)
        state: dict[str, Any] = {"clock": clock, "victim": victim}
        case.prepare(auth, victim, state)
        identifier = (case.known if which == "known" else case.unknown)(auth, victim, state)
        assert auth.dispatcher.queue.join(10)
        before, transport.threads = auth.dispatcher.queue.queued, []
        with contextlib.suppress(PortalAuthError):
            case.call(auth, identifier, state, 0)
        queued = auth.dispatcher.queue.queued - before
        in_request = transport.threads.count(threading.current_thread().name)
        assert auth.dispatcher.queue.join(10)
        work[which] = (queued, in_request)
        # The message a known identifier's owner gets is delivered, off the request path.
        assert len(transport.threads) == (1 if which == "known" else 0)
    assert work["known"] == work["unknown"] == (1, 0), work


# -- timing (slow, opt-in) ----------------------------------------------------------------------
TRIALS = 200


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    with contextlib.suppress(PortalAuthError):
        call()
    return time.perf_counter() - start


@pytest.mark.slow
@pytest.mark.parametrize(
    "path",
    ["password", "reset", "magic_link", "contact_otp", "share_code", "staff_pin", "sign_up"],
)
def test_known_and_unknown_identifiers_take_the_same_time(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock, path: str
) -> None:  # R32
    """200 interleaved trials per path with the real argon2id hasher, on every store kind; the
    medians of the known and the unknown identifier differ by less than 5 ms."""
    auth = make_auth(store_kind, password_hasher=PasswordHasher())
    open_portal(auth, signup_enabled=True)
    rng = random.Random(
        int(os.environ.get("PORTALAUTH_SLOW_SEED", "7"))
    )  # the order of trials only
    knowns: list[Identity] = []
    for i in range(TRIALS):
        identity = auth.directory.add(PORTAL, f"Client {i}", email=f"client{i}@example.com")
        if path == "password":
            auth.directory.replace_password_hash(
                identity, auth.hasher.hash(f"their own password {i}"), expected=None, changed=True
            )
        knowns.append(identity)
    shares = {}
    if path == "share_code":
        shares = {k.id: auth.share_codes.issue(k, scope=SCOPE, send=False).code for k in knowns}
    if path == "staff_pin":
        for k in knowns:
            auth.pins.issue(k)

    def call(i: int, known: bool) -> Callable[[], object]:
        address = f"client{i}@example.com" if known else f"stranger{i}@example.com"
        if path == "password":
            return lambda: _password(auth, address, {}, 0)
        if path == "reset":
            return lambda: _reset(auth, address, {}, 0)
        if path == "magic_link":
            return lambda: auth.start(PORTAL, "magic_link", {"email": address}, client=CLIENT)
        if path == "contact_otp":
            return lambda: auth.start(PORTAL, "contact_otp", {"contact": address}, client=CLIENT)
        if path == "share_code":
            code = shares[knowns[i].id] if known else display(new_share_code())
            return lambda: auth.start(PORTAL, "share_code", {"share_code": code}, client=CLIENT)
        if path == "staff_pin":
            return lambda: _pin(auth, address, {}, 0)
        return lambda: _sign_up(auth, address, {}, 0)

    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(TRIALS):
        clock.advance(3600)  # every hourly window fresh
        order = [True, False]
        rng.shuffle(order)
        for known in order:
            times[known].append(_timed(call(i, known)))
    known, unknown = statistics.median(times[True]), statistics.median(times[False])
    difference = known - unknown
    print(
        f"{store_kind} {path}: median known {known * 1000:.2f} ms, unknown "
        f"{unknown * 1000:.2f} ms, difference {difference * 1000:+.2f} ms"
    )
    assert abs(difference) < 0.005

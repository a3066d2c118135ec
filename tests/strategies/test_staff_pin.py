"""The built-in ``staff_pin`` strategy (SimplePractice "Sign In via Pin code"), end to end.

Staff issue a PIN with ``auth.pins.issue`` and read it to the client; the client signs in with
e-mail + PIN through ``auth.start``. Every test runs against the memory and the SQLite store, and
the frozen clock is moved for every expiry. Requirement numbers refer to
``../shared/SECURITY-REQUIREMENTS.md``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CLIENT, SECRET_KEYS, EmailCodePlugin
from portalauth import (
    Auth,
    ConfigError,
    FlowInvalid,
    FrozenClock,
    Identity,
    InvalidInput,
    Message,
    MethodDisabled,
    PortalAuthError,
    SignedIn,
    Step,
    Throttled,
    VerificationFailed,
    hookimpl,
)
from portalauth.events import Event
from portalauth.strategies.staff_pin import Pin, PinStatus, StaffPinSettings

PORTAL = "calm"
METHOD = "staff_pin"
PURPOSE = "staff_pin"
JANE = "Jane.Roe@Example.com"
KIM = "kim@example.com"
NOBODY = "nobody@example.com"
PIN_TTL = 24 * 3600

_CODE = re.compile(r"^\s+([0-9]{6})$", re.MULTILINE)
_URL = re.compile(r"https?://\S+")


# -- helpers ------------------------------------------------------------------------------------
class Recorder:
    """Keeps every audit event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    @hookimpl
    def portalauth_event(self, event: Event) -> None:
        self.events.append(event)


def open_calm(auth: Auth, **settings: Any) -> None:
    settings.setdefault("methods", {"magic_link", "staff_pin"})
    settings.setdefault("simulate", True)
    settings.setdefault("base_url", "https://calm.example")
    auth.portals.create(PORTAL, "Calm Therapy", **settings)


def add_jane(auth: Auth) -> Identity:
    return auth.directory.add(PORTAL, "Jane Roe", email=JANE)


def add_kim(auth: Auth) -> Identity:
    return auth.directory.add(PORTAL, "Kim Lee", email=KIM)


def sign_in(auth: Auth, email: object, pin: object) -> Step | SignedIn:
    return auth.start(PORTAL, METHOD, {"email": email, "pin": pin}, client=CLIENT)


def wrong(pin: str, by: int = 1) -> str:
    return f"{(int(pin) + by) % 10**6:06d}"


def failure(run: Callable[[], object]) -> tuple[object, ...]:
    """What a client sees of a failed attempt."""
    with pytest.raises(PortalAuthError) as failed:
        run()
    exc = failed.value
    return (
        type(exc).__name__,
        exc.code,
        exc.message,
        getattr(exc, "reason", None),
        getattr(exc, "retry_after", None),
    )


def feed(auth: Auth, identity: Identity | None = None) -> list[Message]:
    return auth.outbox.messages(PORTAL, identity=identity.id if identity else None)


def event_text(event: Event) -> str:
    """Every text in an event (numbers left out: a timestamp may contain any run of digits)."""
    parts: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if isinstance(value, Mapping):
            for key, item in value.items():
                parts.append(str(key))
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        else:
            parts.append(repr(value))

    walk(attrs.asdict(event))
    return "\n".join(parts)


@pytest.fixture
def auth(make_auth: Callable[..., Auth], store_kind: str) -> Auth:
    """An ``Auth`` on every store kind with portal ``calm`` (magic_link + staff_pin)."""
    auth = make_auth(store_kind)
    open_calm(auth)
    return auth


@pytest.fixture
def jane(auth: Auth) -> Identity:
    return add_jane(auth)


# -- issuing ------------------------------------------------------------------------------------
def test_issue_returns_a_six_digit_pin_shown_once(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:  # R18 R51
    pin = auth.pins.issue(jane, actor="staff:7")
    assert isinstance(pin, Pin)
    assert re.fullmatch(r"[0-9]{6}", pin.pin)
    assert (pin.identity_id, pin.expires_at) == (jane.id, clock.now() + PIN_TTL)
    assert pin.pin not in repr(pin) and pin.pin not in str(pin)

    # Only a keyed digest is stored: the PIN is in no field of the stored challenge.
    record = auth.store.latest_challenge(PORTAL, jane.id, PURPOSE)
    assert record is not None
    for name, value in attrs.asdict(record).items():
        if isinstance(value, str):
            assert pin.pin not in value, name
        elif isinstance(value, bytes):
            assert pin.pin.encode() not in value, name
            assert pin.pin not in value.hex(), name
        elif isinstance(value, dict):
            assert pin.pin not in repr(value), name
        else:
            assert value != int(pin.pin), name
    # It is not mailed to anyone either (staff read it out).
    assert all(pin.pin not in message.text for message in feed(auth))


def test_staff_see_that_a_pin_is_outstanding_and_until_when_never_its_value(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:  # R51
    assert auth.pins.status(jane) == PinStatus(outstanding=False)
    issued_at = clock.now()
    pin = auth.pins.issue(jane)
    clock.advance(3600)
    status = auth.pins.status(jane.id)
    assert status == PinStatus(
        outstanding=True, expires_at=issued_at + PIN_TTL, issued_at=issued_at
    )
    assert {f.name for f in attrs.fields(PinStatus)} == {"outstanding", "expires_at", "issued_at"}
    assert pin.pin not in repr(status)
    assert isinstance(sign_in(auth, JANE, pin.pin), SignedIn)
    assert auth.pins.status(jane) == PinStatus(outstanding=False)


@pytest.mark.parametrize("typed", [JANE, " jane.roe@EXAMPLE.com ", "JANE.ROE@example.COM"])
def test_the_client_signs_in_with_email_and_pin(
    auth: Auth, jane: Identity, typed: str
) -> None:  # R63
    pin = auth.pins.issue(jane)
    done = sign_in(auth, typed, pin.pin)
    assert isinstance(done, SignedIn)
    assert (done.identity.id, done.method) == (jane.id, METHOD)
    assert auth.sessions.validate(done.token).identity_id == jane.id
    assert auth.directory.get(jane.id).last_sign_in_method == METHOD


def test_the_fields_are_email_and_pin(auth: Auth) -> None:
    fields = auth.fields(PORTAL, METHOD)
    assert [(f.name, f.kind) for f in fields] == [("email", "email"), ("pin", "code")]
    assert fields[1].max_length == 6 and fields[1].numeric
    assert fields[1].autocomplete == "one-time-code"


def test_the_right_pin_with_another_email_fails(auth: Auth, jane: Identity) -> None:  # R26
    kim = add_kim(auth)
    pin = auth.pins.issue(jane)
    with pytest.raises(VerificationFailed):
        sign_in(auth, KIM, pin.pin)  # Kim has no PIN
    kims = auth.pins.issue(kim)
    if kims.pin != pin.pin:  # two draws from 10^6 may collide; the binding is what matters
        with pytest.raises(VerificationFailed):
            sign_in(auth, KIM, pin.pin)  # Kim's PIN is another one
    with pytest.raises(VerificationFailed):
        sign_in(auth, NOBODY, pin.pin)
    with pytest.raises(VerificationFailed):
        sign_in(auth, "jane.roe+x@example.com", pin.pin)  # a +tag is another address
    assert auth.sessions.list(kim.id) == []
    done = sign_in(auth, JANE, pin.pin)
    assert isinstance(done, SignedIn) and done.identity.id == jane.id


def test_a_pin_works_once(auth: Auth, jane: Identity) -> None:  # R24
    pin = auth.pins.issue(jane)
    assert isinstance(sign_in(auth, JANE, pin.pin), SignedIn)
    with pytest.raises(VerificationFailed):
        sign_in(auth, JANE, pin.pin)
    assert len(auth.sessions.list(jane.id)) == 1


def test_a_pin_is_valid_until_the_last_second_of_24_hours(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:  # R27
    pin = auth.pins.issue(jane)
    clock.advance(PIN_TTL - 1)
    assert auth.pins.status(jane).outstanding
    assert isinstance(sign_in(auth, JANE, pin.pin), SignedIn)


def test_a_pin_expires_at_24_hours(auth: Auth, jane: Identity, clock: FrozenClock) -> None:  # R27
    pin = auth.pins.issue(jane)
    clock.advance(PIN_TTL)
    assert auth.pins.status(jane) == PinStatus(outstanding=False)
    with pytest.raises(VerificationFailed):
        sign_in(auth, JANE, pin.pin)
    assert auth.sessions.list(jane.id) == []


def test_a_new_pin_replaces_the_old_one(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:  # R25
    old = auth.pins.issue(jane)
    clock.advance(60)
    new = auth.pins.issue(jane)
    assert auth.pins.status(jane).issued_at == clock.now()
    if old.pin != new.pin:  # two draws from 10^6 may collide; then there is nothing to tell
        with pytest.raises(VerificationFailed) as failed:
            sign_in(auth, JANE, old.pin)
        assert failed.value.reason == "invalid"  # the old PIN is just wrong now
    assert isinstance(sign_in(auth, JANE, new.pin), SignedIn)


def test_five_attempts_per_pin(auth: Auth, jane: Identity) -> None:  # R6
    pin = auth.pins.issue(jane)
    for i in range(5):
        with pytest.raises(VerificationFailed):
            sign_in(auth, JANE, wrong(pin.pin, i + 1))
    assert auth.pins.status(jane) == PinStatus(outstanding=False)
    with pytest.raises(VerificationFailed):
        sign_in(auth, JANE, pin.pin)
    assert auth.sessions.list(jane.id) == []
    fresh = auth.pins.issue(jane)
    assert isinstance(sign_in(auth, JANE, fresh.pin), SignedIn)


def test_consecutive_failures_survive_new_pins_and_escalate_the_delay(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock
) -> None:  # R7
    auth = make_auth(store_kind)
    open_calm(auth, method_settings={METHOD: {"attempts_per_address": "1000/hour"}})
    jane = add_jane(auth)
    for _ in range(2):  # two PINs, five wrong tries each: ten consecutive failures
        pin = auth.pins.issue(jane)
        for i in range(5):
            with pytest.raises(VerificationFailed):
                sign_in(auth, JANE, wrong(pin.pin, i + 1))
    assert auth.challenges.failures(PORTAL, METHOD, jane.id) == 10
    pin = auth.pins.issue(jane)  # a new PIN does not reset the count
    with pytest.raises(Throttled) as throttled:
        sign_in(auth, JANE, pin.pin)
    assert throttled.value.retry_after == 30
    clock.advance(29)
    with pytest.raises(Throttled):
        sign_in(auth, JANE, pin.pin)
    clock.advance(1)
    with pytest.raises(VerificationFailed):
        sign_in(auth, JANE, wrong(pin.pin))
    with pytest.raises(Throttled) as throttled:
        sign_in(auth, JANE, pin.pin)
    assert throttled.value.retry_after == 60  # doubled
    clock.advance(60)
    assert isinstance(sign_in(auth, JANE, pin.pin), SignedIn)
    assert auth.challenges.failures(PORTAL, METHOD, jane.id) == 0


def test_a_pin_sign_in_clears_the_pins_typed_while_none_was_outstanding(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:  # R12
    auth = make_auth(store_kind)
    open_calm(auth, method_settings={METHOD: {"attempts_per_address": "1000/hour"}})
    jane = add_jane(auth)
    for i in range(3):  # no PIN outstanding: these count only in the "typed" count
        with pytest.raises(VerificationFailed):
            sign_in(auth, JANE, f"{i:06d}")
    assert auth.challenges.failures(PORTAL, METHOD, jane.id, "typed") == 3
    pin = auth.pins.issue(jane)
    assert isinstance(sign_in(auth, JANE, pin.pin), SignedIn)
    assert auth.challenges.failures(PORTAL, METHOD, jane.id, "typed") == 0


@pytest.mark.parametrize("who", ["known", "unknown"])
def test_attempts_per_address_are_throttled_in_one_bucket(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock, who: str
) -> None:  # R9 R10 R14
    auth = make_auth(store_kind)
    open_calm(auth, method_settings={METHOD: {"attempts_per_address": "3/hour"}})
    jane = add_jane(auth)
    pin = auth.pins.issue(jane)
    typed = (
        [JANE, "jane.roe@EXAMPLE.com", " JANE.ROE@example.com"]
        if who == "known"
        else [NOBODY, "NOBODY@example.com", " nobody@EXAMPLE.com"]
    )
    for email in typed:
        with pytest.raises(VerificationFailed):
            sign_in(auth, email, wrong(pin.pin))
    with pytest.raises(Throttled) as throttled:
        sign_in(auth, JANE if who == "known" else NOBODY, pin.pin)
    assert 3000 < throttled.value.retry_after <= 3600
    sign_in_kim = add_kim(auth)
    with pytest.raises(VerificationFailed):  # another address, another bucket
        sign_in(auth, KIM, "123456")
    assert auth.sessions.list(sign_in_kim.id) == []
    clock.advance(3600)
    if who == "known":
        assert isinstance(sign_in(auth, JANE, pin.pin), SignedIn)


def test_an_unknown_email_fails_exactly_like_a_known_one_with_a_wrong_pin(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock
) -> None:  # R14 R31 R34
    auth = make_auth(store_kind, limits={"start_per_ip": "1000/minute"})
    open_calm(auth, method_settings={METHOD: {"attempts_per_address": "1000/hour"}})
    jane = add_jane(auth)
    add_kim(auth)  # known, but holds no PIN
    pin = auth.pins.issue(jane)
    guesses = [wrong(pin.pin, i + 1) for i in range(12)]
    seen: dict[str, list[tuple[object, ...]]] = {}
    for email in (JANE, KIM, NOBODY):
        seen[email] = [failure(lambda e=email, g=g: sign_in(auth, e, g)) for g in guesses]
    assert seen[JANE] == seen[KIM] == seen[NOBODY]
    # Ten consecutive failures, then the same delay for everyone.
    assert [row[0] for row in seen[JANE]] == ["VerificationFailed"] * 10 + ["Throttled"] * 2
    assert seen[JANE][-1][-1] == 30


def test_a_staff_pin_still_signs_in_while_magic_link_is_throttled(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:  # R12
    for n in range(2):  # ten wrong codes across two e-mails
        clock.advance(61 * n)  # past the resend cooldown
        step = auth.start(PORTAL, "magic_link", {"email": JANE}, client=CLIENT)
        assert isinstance(step, Step) and step.flow
        code = _CODE.search(feed(auth, jane)[0].text)
        assert code
        for i in range(5):
            with pytest.raises(VerificationFailed):
                auth.advance(step.flow, {"code": wrong(code.group(1), i + 1)}, client=CLIENT)
    with pytest.raises(Throttled):  # ten consecutive failures: magic_link must wait now
        auth.advance(step.flow, {"code": code.group(1)}, client=CLIENT)

    pin = auth.pins.issue(jane, actor="staff:7")
    done = sign_in(auth, JANE, pin.pin)
    assert isinstance(done, SignedIn) and done.method == METHOD
    # The success through the recovery path cleared the other method's failures.
    assert auth.challenges.failures(PORTAL, "magic_link", jane.id) == 0
    clock.advance(61)
    step = auth.start(PORTAL, "magic_link", {"email": JANE}, client=CLIENT)
    assert isinstance(step, Step) and step.flow
    code = _CODE.search(feed(auth, jane)[0].text)
    assert code
    assert isinstance(auth.advance(step.flow, {"code": code.group(1)}, client=CLIENT), SignedIn)


def test_a_staff_pin_is_the_way_back_from_a_hard_lock(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock
) -> None:  # R12
    auth = make_auth(store_kind)
    open_calm(auth, failure_budget=2, failure_hard_limit=4)
    jane = add_jane(auth)
    for i in range(4):
        clock.advance(3600)  # outwait every delay: only the hard limit is left
        step = auth.start(PORTAL, "magic_link", {"email": JANE}, client=CLIENT)
        assert isinstance(step, Step) and step.flow
        found = _CODE.search(feed(auth, jane)[0].text)
        assert found
        with pytest.raises(VerificationFailed):
            auth.advance(step.flow, {"code": wrong(found.group(1), i + 1)}, client=CLIENT)
    clock.advance(86400)
    step = auth.start(PORTAL, "magic_link", {"email": JANE}, client=CLIENT)
    assert isinstance(step, Step) and step.flow
    found = _CODE.search(feed(auth, jane)[0].text)
    assert found
    with pytest.raises(Throttled):  # locked for magic_link, however long one waits
        auth.advance(step.flow, {"code": found.group(1)}, client=CLIENT)

    pin = auth.pins.issue(jane)
    assert isinstance(sign_in(auth, JANE, pin.pin), SignedIn)
    assert isinstance(auth.advance(step.flow, {"code": found.group(1)}, client=CLIENT), SignedIn)


def test_pin_failures_do_not_lock_magic_link(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock
) -> None:  # R12
    auth = make_auth(store_kind)
    open_calm(
        auth,
        failure_budget=2,
        failure_hard_limit=3,
        method_settings={METHOD: {"attempts_per_address": "100/hour"}},
    )
    jane = add_jane(auth)
    pin = auth.pins.issue(jane)
    for i in range(3):
        clock.advance(3600)  # outwait every delay: only the hard limit is left
        with pytest.raises(VerificationFailed):
            sign_in(auth, JANE, wrong(pin.pin, i + 1))
    with pytest.raises(Throttled):
        sign_in(auth, JANE, pin.pin)
    step = auth.start(PORTAL, "magic_link", {"email": JANE}, client=CLIENT)
    assert isinstance(step, Step) and step.flow
    found = _CODE.search(feed(auth, jane)[0].text)
    assert found
    assert isinstance(auth.advance(step.flow, {"code": found.group(1)}, client=CLIENT), SignedIn)


def test_a_portal_without_staff_pin_refuses_it(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:
    auth = make_auth(store_kind)
    open_calm(auth, methods={"magic_link"})
    jane = add_jane(auth)
    with pytest.raises(MethodDisabled):
        auth.pins.issue(jane)
    with pytest.raises(MethodDisabled):
        sign_in(auth, JANE, "123456")
    assert auth.store.latest_challenge(PORTAL, jane.id, PURPOSE) is None


def test_staff_can_revoke_a_pin(auth: Auth, jane: Identity) -> None:
    pin = auth.pins.issue(jane)
    assert auth.pins.revoke(jane, actor="staff:7") is True
    assert auth.pins.status(jane) == PinStatus(outstanding=False)
    with pytest.raises(VerificationFailed):
        sign_in(auth, JANE, pin.pin)
    assert auth.pins.revoke(jane.id) is False  # nothing left to revoke
    assert auth.sessions.list(jane.id) == []


@pytest.mark.parametrize("change", ["email", "disable"])
def test_changing_or_disabling_the_identity_kills_the_pin(
    auth: Auth, jane: Identity, change: str
) -> None:  # R29
    pin = auth.pins.issue(jane)
    if change == "email":
        auth.directory.update(jane.id, email="jane.new@example.com")
        address = "jane.new@example.com"
    else:
        auth.directory.update(jane.id, disabled=True)
        address = JANE
    assert auth.pins.status(jane) == PinStatus(outstanding=False)
    with pytest.raises(VerificationFailed):
        sign_in(auth, address, pin.pin)
    assert auth.sessions.list(jane.id) == []


@pytest.mark.parametrize("email_status", ["invalid", "opted_out"])
def test_a_pin_works_for_a_client_whose_email_does_not_receive_mail(
    auth: Auth, jane: Identity, email_status: str
) -> None:
    auth.directory.update(jane.id, email_status=email_status)
    pin = auth.pins.issue(jane)
    assert auth.pins.status(jane).outstanding
    assert isinstance(sign_in(auth, JANE, pin.pin), SignedIn)


def test_a_portal_second_factor_comes_before_signed_in(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:
    auth = make_auth(store_kind)
    open_calm(auth, second_factor="email_code")
    jane = add_jane(auth)
    pin = auth.pins.issue(jane)
    step = sign_in(auth, JANE, pin.pin)
    assert isinstance(step, Step) and step.flow
    assert (step.next, step.method) == ("second_factor", METHOD)
    assert auth.sessions.list(jane.id) == []
    assert auth.pins.status(jane) == PinStatus(outstanding=False)  # the PIN is used
    confirm = feed(auth, jane)[0]
    assert confirm.purpose == "second_factor"
    found = _CODE.search(confirm.text)
    assert found
    done = auth.advance(step.flow, {"code": found.group(1)}, client=CLIENT)
    assert isinstance(done, SignedIn)
    assert (done.identity.id, done.method) == (jane.id, METHOD)


def test_staff_pin_is_one_step(auth: Auth, jane: Identity) -> None:
    pin = auth.pins.issue(jane)
    for flow in ("", "x" * 40, "not.a.flow"):
        with pytest.raises(FlowInvalid):
            auth.advance(flow, {"pin": pin.pin}, client=CLIENT)
    assert isinstance(sign_in(auth, JANE, pin.pin), SignedIn)


@pytest.mark.parametrize(
    "bad",
    ["１２３４５６", "١٢٣٤٥٦", " 12345", "12345\n", "12_345", "+12345", "12345", "1234567", ""],
)
def test_malformed_pins_count_as_failed_attempts(
    auth: Auth, jane: Identity, bad: str
) -> None:  # R21
    pin = auth.pins.issue(jane)
    with pytest.raises((InvalidInput, VerificationFailed)):
        sign_in(auth, JANE, bad)
    with pytest.raises((InvalidInput, VerificationFailed)):
        sign_in(auth, JANE, [pin.pin])
    assert auth.sessions.list(jane.id) == []
    assert isinstance(sign_in(auth, JANE, pin.pin), SignedIn)


def test_the_defaults(auth: Auth) -> None:
    config = auth.strategy_config(PORTAL, METHOD)
    assert config == StaffPinSettings()
    assert (config.valid_hours, config.max_attempts, config.attempts_per_address) == (
        24,
        5,
        "10/hour",
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"valid_hours": 0},
        {"valid_hours": 169},
        {"max_attempts": 0},
        {"max_attempts": 11},
        {"attempts_per_address": "lots"},
        {"pin_digits": 4},
    ],
)
def test_bad_settings_are_refused_when_staff_save_them(auth: Auth, bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        auth.portals.update(PORTAL, method_settings={METHOD: bad})


def test_every_setting_is_honoured(auth: Auth, jane: Identity, clock: FrozenClock) -> None:
    auth.portals.update(PORTAL, method_settings={METHOD: {"valid_hours": 1, "max_attempts": 2}})
    pin = auth.pins.issue(jane)
    assert pin.expires_at == clock.now() + 3600
    for i in range(2):
        with pytest.raises(VerificationFailed):
            sign_in(auth, JANE, wrong(pin.pin, i + 1))
    with pytest.raises(VerificationFailed):
        sign_in(auth, JANE, pin.pin)
    pin = auth.pins.issue(jane)
    clock.advance(3600)
    with pytest.raises(VerificationFailed):
        sign_in(auth, JANE, pin.pin)


# -- events -------------------------------------------------------------------------------------
def test_events_for_every_state_change_carry_no_secret(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock
) -> None:  # R51
    recorder = Recorder()
    auth = make_auth(store_kind, plugins=[EmailCodePlugin(), recorder])
    open_calm(auth)
    jane = add_jane(auth)
    revoked = auth.pins.issue(jane, actor="staff:7")
    auth.pins.revoke(jane, actor="staff:8")
    pin = auth.pins.issue(jane, actor="staff:9")
    with pytest.raises(VerificationFailed):
        sign_in(auth, JANE, wrong(pin.pin))
    assert isinstance(sign_in(auth, JANE, pin.pin), SignedIn)
    auth.magic_links.invite(jane, actor="staff:7")
    invitation = feed(auth, jane)[0]

    def of(kind: str) -> list[Event]:
        return [event for event in recorder.events if event.kind == kind]

    issued = of("pin.issued")
    assert [(e.identity_id, e.method, e.actor) for e in issued] == [
        (jane.id, METHOD, "staff:7"),
        (jane.id, METHOD, "staff:9"),
    ]
    assert issued[1].detail["expires_at"] == clock.now() + PIN_TTL
    [revoke] = of("pin.revoked")
    assert (revoke.portal, revoke.identity_id, revoke.actor) == (PORTAL, jane.id, "staff:8")
    [invited] = of("invitation.sent")
    assert (invited.identity_id, invited.method, invited.actor) == (
        jane.id,
        "magic_link",
        "staff:7",
    )
    [signed_in] = of("signed_in")
    assert (signed_in.identity_id, signed_in.method, signed_in.ip) == (jane.id, METHOD, CLIENT.ip)
    [failed] = of("verification.failed")
    assert (failed.identity_id, failed.method) == (jane.id, METHOD)

    found = _URL.search(invitation.text)
    assert found
    secrets = [revoked.pin, pin.pin, wrong(pin.pin), found.group(0).rsplit("=", 1)[1]]
    for event in recorder.events:
        text = event_text(event)
        for secret in secrets:
            assert secret not in text, event.kind
        assert "jane.roe" not in text.lower(), event.kind


# -- property: no sequence of wrong inputs signs anyone in ---------------------------------------
_HOSTILE = "0123456789٠١٢٣٤٥٦٧٨٩０１２３４５６７８９²³¹ \t\n\r\x00\u00a0\u2028\u200b_+-.,@"
_VALUES = st.one_of(
    st.text(alphabet=_HOSTILE, max_size=9),
    st.text(max_size=12),
    st.from_regex(r"[0-9]{6}", fullmatch=True),
    st.integers(),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True),
    st.binary(max_size=6),
    st.lists(st.from_regex(r"[0-9]{6}", fullmatch=True), max_size=2),
    st.dictionaries(st.text(max_size=3), st.text(max_size=6), max_size=2),
)
_EMAILS = st.one_of(
    st.sampled_from([JANE, " jane.roe@EXAMPLE.com", "jane.roe+x@example.com", KIM, NOBODY]),
    _VALUES,
)
_ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("pin"), _EMAILS, _VALUES),
        st.tuples(st.just("form"), _VALUES, _VALUES),  # the whole form is garbage
        st.tuples(st.just("reissue"), st.just(None), st.just(None)),
        st.tuples(st.just("wait"), st.integers(min_value=0, max_value=30000), st.just(None)),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=_ACTIONS)
def test_no_sequence_of_wrong_inputs_signs_anyone_in(actions: list[tuple[Any, ...]]) -> None:
    # R6 R7 R21 R23
    clock = FrozenClock()
    auth = Auth(SECRET_KEYS, "memory://", clock=clock, entry_points=False)
    try:
        open_calm(auth)
        jane, kim = add_jane(auth), add_kim(auth)
        pins = {auth.pins.issue(jane).pin, auth.pins.issue(kim).pin}
        for kind, first, second in actions:
            if kind == "wait":
                clock.advance(first)
                continue
            if kind == "reissue":
                pins.add(auth.pins.issue(jane).pin)
                continue
            if kind == "pin":
                if isinstance(second, str) and second in pins:
                    continue  # a right PIN is not a wrong guess
                data: object = {"email": first, "pin": second}
            else:
                data = first
            try:
                result = auth.start(PORTAL, METHOD, data, client=CLIENT)  # type: ignore[arg-type]
            except PortalAuthError:
                continue
            assert isinstance(result, Step), f"signed in: {result!r}"
        for person in (jane, kim):
            assert auth.sessions.list(person.id) == []
    finally:
        auth.close()

"""The built-in ``contact_otp`` strategy (the eCourtDate agency-portal sign-in), end to end.

Every test drives the generic API (``auth.start`` / ``auth.advance``) against the memory and the
SQLite store, reads codes from the outbox feed as staff would in simulate mode (or from a
recording sender), and moves the frozen clock for every expiry. Requirement numbers refer to
``../shared/SECURITY-REQUIREMENTS.md``.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import attrs
import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CLIENT, SECRET_KEYS, EmailCodePlugin
from portalauth import (
    Auth,
    ClientInfo,
    ConfigError,
    FrozenClock,
    InvalidContact,
    InvalidInput,
    MethodDisabled,
    PortalAuthError,
    SignedIn,
    Step,
    Throttled,
    UnknownContact,
    VerificationFailed,
    hookimpl,
)
from portalauth.errors import DeliveryFailed
from portalauth.events import Event
from portalauth.records import Identity, Message
from portalauth.strategies.contact_otp import ContactOtpSettings

PORTAL = "court"
METHOD = "contact_otp"
PURPOSE = "contact_login"
PHONE = "(202) 555-0143"
E164 = "+12025550143"
EMAIL = "Jane.Roe@Example.com"
STORED_EMAIL = "Jane.Roe@example.com"  # the domain is lowercased, the local part kept
# A second, unrelated person with valid contacts: the "known" side of enumeration comparisons.
KIM_PHONE = "+1 415 555 0102"
KIM_EMAIL = "kim@example.com"

# The SMS ends with the origin-bound line "@court.example #123456" (WebOTP).
_SMS_LAST_LINE = re.compile(r"\n@court\.example #([0-9]{6,10})\Z")
_CODE = re.compile(r"\b([0-9]{6,10})\b")


def _example(region: str, kind: int) -> str:
    number = phonenumbers.example_number_for_type(region, kind)
    assert number is not None, (region, kind)
    assert phonenumbers.number_type(number) == kind
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_TYPE = phonenumbers.PhoneNumberType
US_PERSONAL = _example("US", _TYPE.PERSONAL_NUMBER)  # +1 500 ...
CA_VOIP = _example("CA", _TYPE.VOIP)
GB_VOIP = _example("GB", _TYPE.VOIP)
GB_PAGER = _example("GB", _TYPE.PAGER)
GB_MOBILE = _example("GB", _TYPE.MOBILE)
CA_MOBILE = _example("CA", _TYPE.FIXED_LINE_OR_MOBILE)


# -- helpers ------------------------------------------------------------------------------------
class RecordingSender:
    """A sender that keeps what it is handed."""

    def __init__(self, channel: str = "sms") -> None:
        self.channel = channel
        self.sent: list[Message] = []

    def send(self, message: Message, *, portal: Any) -> None:
        self.sent.append(message)


class FailingSender:
    """A provider that refuses every message (or only the first ``failures``)."""

    channel = "sms"

    def __init__(self, failures: int | None = None) -> None:
        self.failures = failures
        self.calls = 0
        self.sent: list[Message] = []

    def send(self, message: Message, *, portal: Any) -> None:
        self.calls += 1
        if self.failures is None or self.calls <= self.failures:
            raise DeliveryFailed()
        self.sent.append(message)


class Recorder:
    """Keeps every audit event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    @hookimpl
    def portalauth_event(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]


def open_court(auth: Auth, **settings: Any) -> None:
    settings.setdefault("methods", {METHOD})
    settings.setdefault("simulate", True)
    auth.portals.create(PORTAL, "County Court", base_url="https://court.example", **settings)


def add_jane(auth: Auth, **contacts: Any) -> Identity:
    contacts.setdefault("email", EMAIL)
    contacts.setdefault("phone", PHONE)
    return auth.directory.add(PORTAL, "Jane Roe", **contacts)


def add_kim(auth: Auth) -> Identity:
    return auth.directory.add(PORTAL, "Kim Lee", email=KIM_EMAIL, phone=KIM_PHONE)


def begin(auth: Auth, contact: str, client: ClientInfo = CLIENT) -> Step:
    step = auth.start(PORTAL, METHOD, {"contact": contact}, client=client)
    assert isinstance(step, Step)
    assert step.flow is not None and step.next == "code"
    return step


def submit(auth: Auth, step: Step, code: object, client: ClientInfo = CLIENT) -> object:
    assert step.flow is not None
    return auth.advance(step.flow, {"code": code}, client=client)


def feed(auth: Auth, identity: Identity | None = None) -> list[Message]:
    """The simulated-message feed (newest first): the portal's, or one client's."""
    return auth.outbox.messages(PORTAL, identity=identity.id if identity else None)


def code_of(message: Message) -> str:
    if message.channel == "sms":
        found = _SMS_LAST_LINE.search(message.text)
        assert found, "the SMS does not end with the @host #code line"
    else:
        found = _CODE.search(message.text)
        assert found, "no code in the e-mail"
    return found.group(1)


def latest_code(auth: Auth, identity: Identity) -> str:
    messages = feed(auth, identity)
    assert messages, "nothing was recorded for this client"
    return code_of(messages[0])


def wrong(code: str) -> str:
    """A well-formed code of the same length that is not ``code``."""
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def shape(step: Step) -> tuple[object, ...]:
    """Everything a client (or an enumerating attacker) can see of a step."""
    assert step.flow is not None
    return (
        step.method,
        step.next,
        step.fields,
        step.notice,
        step.sent_to,
        len(step.flow),
        step.expires_at,
    )


@pytest.fixture
def auth(make_auth: Callable[..., Auth], store_kind: str) -> Auth:
    """An ``Auth`` on every store kind with portal ``court`` in simulate mode."""
    auth = make_auth(store_kind)
    open_court(auth)
    return auth


# -- "client authentication": enabling and disabling --------------------------------------------
def test_client_authentication_disabled_raises_method_disabled_until_enabled(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:
    auth = make_auth(store_kind)
    open_court(auth, methods=set())
    jane = add_jane(auth)
    assert auth.methods(PORTAL) == []  # the integration shows no login form
    with pytest.raises(MethodDisabled):
        auth.start(PORTAL, METHOD, {"contact": PHONE}, client=CLIENT)
    assert feed(auth) == []

    auth.portals.update(PORTAL, methods={METHOD})  # "one-time-password"
    assert [strategy.name for strategy in auth.methods(PORTAL)] == [METHOD]
    assert [f.name for f in auth.fields(PORTAL, METHOD)] == ["contact"]
    step = begin(auth, PHONE)
    done = submit(auth, step, latest_code(auth, jane))
    assert isinstance(done, SignedIn) and done.identity.id == jane.id


def test_disabling_client_authentication_ends_flows_in_progress(auth: Auth) -> None:
    jane = add_jane(auth)
    step = begin(auth, PHONE)
    code = latest_code(auth, jane)
    auth.portals.update(PORTAL, methods=set())
    with pytest.raises(MethodDisabled):
        submit(auth, step, code)
    with pytest.raises(MethodDisabled):
        auth.start(PORTAL, METHOD, {"contact": PHONE}, client=CLIENT)
    assert auth.sessions.list(jane.id) == []


# -- contacts: formats, channels, the stored destination ---------------------------------------
@pytest.mark.parametrize(
    "typed",
    [
        "(202) 555-0143",
        "202.555.0143",
        "202-555-0143",
        "2025550143",
        "+1 202 555 0143",
        "+12025550143",
        "1 (202) 555-0143",
        "（２０２）５５５－０１４３",  # fullwidth digits and punctuation
        "＋１ ２０２ ５５５ ０１４３",
        "  202 555 0143  ",
    ],
)
def test_any_common_phone_format_reaches_the_same_identity_by_sms(
    auth: Auth, typed: str
) -> None:  # R10
    jane = add_jane(auth)
    step = begin(auth, typed)
    [message] = feed(auth)
    assert message.identity_id == jane.id
    assert (message.channel, message.to) == ("sms", E164)
    assert message.simulated
    done = submit(auth, step, code_of(message))
    assert isinstance(done, SignedIn)
    assert done.identity.id == jane.id and done.method == METHOD
    assert auth.sessions.validate(done.token).identity_id == jane.id


@pytest.mark.parametrize(
    "typed",
    [
        "Jane.Roe@Example.com",
        "jane.roe@example.com",
        "JANE.ROE@EXAMPLE.COM",
        " jane.ROE@example.Com ",
    ],
)
def test_an_email_address_in_any_case_reaches_the_same_identity_by_email(
    auth: Auth, typed: str
) -> None:  # R10
    jane = add_jane(auth)
    step = begin(auth, typed)
    [message] = feed(auth)
    assert message.identity_id == jane.id
    # Sent to the address stored on the identity, never to the text typed.
    assert (message.channel, message.to) == ("email", STORED_EMAIL)
    assert message.html is not None
    done = submit(auth, step, code_of(message))
    assert isinstance(done, SignedIn) and done.identity.id == jane.id


def test_the_code_goes_to_the_stored_contact_of_the_kind_typed(
    auth: Auth, clock: FrozenClock
) -> None:
    jane = add_jane(auth)
    begin(auth, "202.555.0143")
    clock.advance(60)  # past the resend cooldown
    step = begin(auth, "JANE.ROE@example.com")
    email, sms = feed(auth, jane)
    assert (sms.channel, sms.to) == ("sms", E164)
    assert (email.channel, email.to) == ("email", STORED_EMAIL)
    assert isinstance(submit(auth, step, code_of(email)), SignedIn)


def test_a_code_works_once(auth: Auth) -> None:  # R24
    jane = add_jane(auth)
    step = begin(auth, PHONE)
    code = latest_code(auth, jane)
    assert isinstance(submit(auth, step, code), SignedIn)
    with pytest.raises(VerificationFailed):
        submit(auth, step, code)
    assert len(auth.sessions.list(jane.id)) == 1


def test_switching_from_phone_to_email_within_the_cooldown_emails_a_code(
    auth: Auth, clock: FrozenClock
) -> None:
    jane = add_jane(auth)
    begin(auth, PHONE)
    clock.advance(20)
    step = begin(auth, EMAIL)
    newest = feed(auth, jane)[0]
    assert (newest.channel, newest.to) == ("email", STORED_EMAIL)
    assert isinstance(submit(auth, step, code_of(newest)), SignedIn)


def test_sent_to_names_where_the_code_actually_went(auth: Auth, clock: FrozenClock) -> None:
    auth.portals.update(PORTAL, helpful_errors=True)
    jane = add_jane(auth)
    first = begin(auth, PHONE)
    assert first.sent_to == "••••••••0143"
    clock.advance(20)
    second = begin(auth, EMAIL)
    # Asking on the other channel within the cooldown sends a new code there.
    assert [m.channel for m in feed(auth, jane)] == ["email", "sms"]
    assert second.sent_to == "J•••@example.com"


@pytest.mark.parametrize("typed", ["not a phone", "jane@@example.com"])
def test_a_malformed_contact_names_the_contact_field(auth: Auth, typed: str) -> None:
    with pytest.raises(InvalidContact) as refused:
        auth.start(PORTAL, METHOD, {"contact": typed}, client=CLIENT)
    assert refused.value.field == "contact"


# -- unknown, opted-out and invalid contacts (R16.4, R31) ---------------------------------------
def _unknown_phone(auth: Auth) -> str:
    return "+1 202 555 0199"


def _unknown_email(auth: Auth) -> str:
    return "nobody@example.com"


def _opted_out_phone(auth: Auth) -> str:
    add_jane(auth, phone_status="opted_out")
    return PHONE


def _invalid_phone(auth: Auth) -> str:
    add_jane(auth, phone_status="invalid")
    return PHONE


def _opted_out_email(auth: Auth) -> str:
    add_jane(auth, email_status="opted_out")
    return EMAIL


def _invalid_email(auth: Auth) -> str:
    add_jane(auth, email_status="invalid")
    return EMAIL


def _disabled_phone(auth: Auth) -> str:
    jane = add_jane(auth)
    auth.directory.update(jane.id, disabled=True)
    return PHONE


def _other_portals_phone(auth: Auth) -> str:
    auth.portals.create("clinic", "Clinic", methods={METHOD}, simulate=True)
    auth.directory.add("clinic", "Jane Roe", email=EMAIL, phone=PHONE)
    return PHONE


UNREACHABLE = {
    "unknown phone": ("sms", _unknown_phone),
    "unknown e-mail": ("email", _unknown_email),
    "opted-out phone": ("sms", _opted_out_phone),
    "invalid phone": ("sms", _invalid_phone),
    "opted-out e-mail": ("email", _opted_out_email),
    "invalid e-mail": ("email", _invalid_email),
    "disabled identity": ("sms", _disabled_phone),
    "another portal's client": ("sms", _other_portals_phone),
}


@pytest.mark.parametrize("case", list(UNREACHABLE))
def test_unreachable_contacts_get_no_message_and_the_same_step(
    auth: Auth, case: str
) -> None:  # R16 R31
    channel, arrange = UNREACHABLE[case]
    add_kim(auth)
    typed = arrange(auth)
    known = begin(auth, KIM_PHONE if channel == "sms" else KIM_EMAIL)
    [sent] = feed(auth)  # Kim's
    unreachable = begin(auth, typed)
    assert feed(auth) == [sent]
    assert shape(unreachable) == shape(known)
    with pytest.raises(VerificationFailed) as failed:
        submit(auth, unreachable, code_of(sent))
    assert failed.value.reason == "invalid"


@pytest.mark.parametrize("case", list(UNREACHABLE))
def test_helpful_errors_say_check_your_information(auth: Auth, case: str) -> None:
    auth.portals.update(PORTAL, helpful_errors=True)
    _, arrange = UNREACHABLE[case]
    typed = arrange(auth)
    with pytest.raises(UnknownContact) as unknown:
        auth.start(PORTAL, METHOD, {"contact": typed}, client=CLIENT)
    assert "check your information or contact" in unknown.value.message.lower()
    assert unknown.value.code == "unknown_contact"
    assert feed(auth) == []


def test_helpful_errors_show_the_masked_destination(auth: Auth, clock: FrozenClock) -> None:
    auth.portals.update(PORTAL, helpful_errors=True)
    add_jane(auth)
    assert begin(auth, PHONE).sent_to == "••••••••0143"
    clock.advance(60)
    assert begin(auth, EMAIL).sent_to == "J•••@example.com"


def test_by_default_no_destination_is_shown(auth: Auth) -> None:  # R31
    add_jane(auth)
    assert begin(auth, PHONE).sent_to is None


# -- defaults: 6 digits, 10 minutes, 5 attempts, newest wins -------------------------------------
def test_the_defaults(auth: Auth, clock: FrozenClock) -> None:
    config = auth.strategy_config(PORTAL, METHOD)
    assert config == ContactOtpSettings()
    assert (config.code_digits, config.code_minutes, config.max_attempts) == (6, 10, 5)
    assert config.resend_cooldown == 60
    assert config.codes_per_destination == "5/hour"
    assert config.sms_per_prefix == "20/hour"
    assert config.sms_per_portal == "200/hour"
    assert config.channels == frozenset({"sms", "email"})
    assert config.code_in_subject is False

    jane = add_jane(auth)
    step = begin(auth, PHONE)
    [field] = step.fields
    assert (field.name, field.max_length, field.numeric) == ("code", 6, True)
    assert field.autocomplete == "one-time-code"
    assert step.expires_at == clock.now() + 600
    assert re.fullmatch(r"[0-9]{6}", latest_code(auth, jane))
    assert "10 minutes" in feed(auth)[0].text


@pytest.mark.parametrize(("elapsed", "works"), [(599, True), (600, False), (601, False)])
def test_a_code_lives_ten_minutes(
    auth: Auth, clock: FrozenClock, elapsed: int, works: bool
) -> None:  # R27
    jane = add_jane(auth)
    step = begin(auth, PHONE)
    code = latest_code(auth, jane)
    clock.advance(elapsed)
    if works:
        assert isinstance(submit(auth, step, code), SignedIn)
    else:
        with pytest.raises(VerificationFailed) as failed:
            submit(auth, step, code)
        assert failed.value.reason == "invalid"
        assert auth.sessions.list(jane.id) == []


def test_five_attempts_then_the_code_is_dead(auth: Auth) -> None:  # R6
    jane = add_jane(auth)
    step = begin(auth, PHONE)
    code = latest_code(auth, jane)
    for _ in range(5):
        with pytest.raises(VerificationFailed) as failed:
            submit(auth, step, wrong(code))
        assert failed.value.reason == "invalid"
    with pytest.raises(VerificationFailed) as failed:
        submit(auth, step, code)
    assert failed.value.reason == "invalid"
    assert auth.sessions.list(jane.id) == []


def test_the_newest_code_wins_and_the_old_one_says_superseded(
    auth: Auth, clock: FrozenClock
) -> None:  # R25
    jane = add_jane(auth)
    first = begin(auth, PHONE)
    old = latest_code(auth, jane)
    clock.advance(60)
    second = begin(auth, PHONE)
    new = latest_code(auth, jane)
    assert len(feed(auth, jane)) == 2

    with pytest.raises(VerificationFailed) as superseded:
        submit(auth, first, old)
    assert superseded.value.reason == "superseded"
    with pytest.raises(VerificationFailed) as invalid:
        submit(auth, second, wrong(new))
    assert invalid.value.reason == "invalid"
    # The page can tell the two apart by reason and by message.
    assert superseded.value.message != invalid.value.message
    assert "newer" in superseded.value.message

    done = submit(auth, second, new)
    assert isinstance(done, SignedIn) and done.identity.id == jane.id


# -- resend cooldown and per-destination caps (R15) ---------------------------------------------
def test_a_second_request_within_the_cooldown_sends_nothing_new(
    auth: Auth, clock: FrozenClock
) -> None:  # R15
    jane = add_jane(auth)
    first = begin(auth, PHONE)
    code = latest_code(auth, jane)
    clock.advance(59)
    second = begin(auth, "202.555.0143")
    assert len(feed(auth, jane)) == 1
    assert second.expires_at == first.expires_at  # the same challenge
    done = submit(auth, second, code)
    assert isinstance(done, SignedIn)


def test_after_the_cooldown_a_new_code_is_sent(auth: Auth, clock: FrozenClock) -> None:  # R15
    jane = add_jane(auth)
    first = begin(auth, PHONE)
    clock.advance(60)
    second = begin(auth, PHONE)
    assert len(feed(auth, jane)) == 2
    assert second.expires_at == first.expires_at + 60
    assert isinstance(submit(auth, second, latest_code(auth, jane)), SignedIn)


def test_the_cooldown_applies_to_unknown_contacts_alike(
    auth: Auth, clock: FrozenClock
) -> None:  # R31
    first = begin(auth, "+1 202 555 0199")
    clock.advance(59)
    assert begin(auth, "(202) 555-0199").expires_at == first.expires_at
    clock.advance(1)
    assert begin(auth, "202.555.0199").expires_at == first.expires_at + 60


@pytest.mark.parametrize(
    ("known", "unknown"),
    [
        # Format and case variants of one destination share its bucket (R10).
        (
            [PHONE, "202.555.0143", "+1 202 555 0143", "＋１ ２０２ ５５５ ０１４３", "2025550143"],
            ["+1 202 555 0199", "(202) 555-0199", "202.555.0199", "2025550199", "202-555-0199"],
        ),
        (
            [EMAIL, "jane.roe@example.com", "JANE.ROE@EXAMPLE.COM", EMAIL, " jane.roe@example.com"],
            ["nobody@example.com", "NOBODY@example.com"] * 2 + ["Nobody@Example.COM"],
        ),
    ],
    ids=["phone", "email"],
)
def test_at_most_five_codes_per_destination_per_hour(
    auth: Auth, clock: FrozenClock, known: list[str], unknown: list[str]
) -> None:  # R14 R15
    jane = add_jane(auth)
    for mine, theirs in zip(known, unknown, strict=True):
        begin(auth, mine)
        begin(auth, theirs)
        clock.advance(60)
    assert len(feed(auth, jane)) == 5
    with pytest.raises(Throttled) as for_known:
        auth.start(PORTAL, METHOD, {"contact": known[0]}, client=CLIENT)
    with pytest.raises(Throttled) as for_unknown:
        auth.start(PORTAL, METHOD, {"contact": unknown[0]}, client=CLIENT)
    assert len(feed(auth, jane)) == 5
    # Known and unknown destinations are answered alike (R14).
    assert for_known.value.message == for_unknown.value.message
    assert for_known.value.retry_after == for_unknown.value.retry_after
    assert 0 < for_known.value.retry_after <= 3600

    clock.advance(3600)
    step = begin(auth, known[0])
    assert len(feed(auth, jane)) == 6
    assert isinstance(submit(auth, step, latest_code(auth, jane)), SignedIn)


def test_plus_tag_variants_of_one_address_share_the_send_bucket(
    auth: Auth, clock: FrozenClock
) -> None:  # R10 R15
    jane = auth.directory.add(PORTAL, "Jane Roe", email="jane@example.com")
    begin(auth, "jane@example.com")
    for tag in range(1, 5):  # unknown addresses (identity matching keeps the tag)
        begin(auth, f"jane+{tag}@example.com")
    with pytest.raises(Throttled):
        auth.start(PORTAL, METHOD, {"contact": "JANE+5@example.com"}, client=CLIENT)
    clock.advance(60)
    with pytest.raises(Throttled):
        auth.start(PORTAL, METHOD, {"contact": "jane@example.com"}, client=CLIENT)
    assert len(feed(auth, jane)) == 1
    assert len(feed(auth)) == 1


# -- SMS pumping defences (R16) -----------------------------------------------------------------
def test_the_portal_wide_sms_cap_refuses_known_and_unknown_numbers_alike(
    auth: Auth, clock: FrozenClock
) -> None:  # R14 R16
    auth.portals.update(PORTAL, method_settings={METHOD: {"sms_per_portal": "2/hour"}})
    jane = add_jane(auth)
    kim = add_kim(auth)
    lee = auth.directory.add(PORTAL, "Lee Park", phone="+1 312 555 0101", email="lee@example.com")
    begin(auth, PHONE)
    begin(auth, "+1 202 555 0199")  # unknown numbers never spend the budget
    begin(auth, KIM_PHONE)
    assert [m.channel for m in feed(auth)] == ["sms", "sms"]

    with pytest.raises(Throttled) as for_known:
        auth.start(PORTAL, METHOD, {"contact": "+1 312 555 0101"}, client=CLIENT)
    with pytest.raises(Throttled) as for_unknown:
        auth.start(PORTAL, METHOD, {"contact": "+1 617 555 0103"}, client=CLIENT)
    assert for_known.value.message == for_unknown.value.message
    assert for_known.value.retry_after == for_unknown.value.retry_after
    assert feed(auth, lee) == []

    # Only SMS is capped: the same client can still get a code by e-mail.
    step = begin(auth, "lee@example.com")
    assert isinstance(submit(auth, step, latest_code(auth, lee)), SignedIn)

    clock.advance(3600)
    step = begin(auth, "+1 312 555 0101")
    assert feed(auth, lee)[0].channel == "sms"
    assert isinstance(submit(auth, step, latest_code(auth, lee)), SignedIn)
    assert len(feed(auth, jane)) == len(feed(auth, kim)) == 1


def test_the_per_prefix_cap_refuses_known_and_unknown_numbers_alike(
    auth: Auth,
) -> None:  # R16
    auth.portals.update(PORTAL, method_settings={METHOD: {"sms_per_prefix": "3/hour"}})
    add_jane(auth)  # +1 202 555 0143
    begin(auth, PHONE)
    begin(auth, "+1 202 555 0141")
    begin(auth, "+1 202 555 0142")
    with pytest.raises(Throttled):
        auth.start(PORTAL, METHOD, {"contact": "+1 202 555 0144"}, client=CLIENT)
    jun = auth.directory.add(PORTAL, "Jun Ito", phone="+1 202 555 0145")
    with pytest.raises(Throttled):
        auth.start(PORTAL, METHOD, {"contact": "+1 202 555 0145"}, client=CLIENT)
    assert feed(auth, jun) == []
    # Another prefix (the number without its last four digits) is not affected.
    begin(auth, "+1 202 556 0142")
    assert len(feed(auth)) == 1


@pytest.mark.parametrize(
    ("number", "countries"),
    [
        ("+1 900 555 0123", {"US"}),  # premium rate
        ("+1 800 555 0123", {"US"}),  # toll-free
        ("+44 20 7946 0958", {"US"}),  # outside sms_countries
        (GB_MOBILE, {"US"}),  # a mobile, but outside sms_countries
        (US_PERSONAL, {"US"}),  # personal number
        (CA_VOIP, {"US", "CA"}),  # VoIP
        (GB_VOIP, {"US", "GB"}),
        (GB_PAGER, {"US", "GB"}),  # pager
    ],
    ids=[
        "premium",
        "toll-free",
        "foreign-fixed",
        "foreign-mobile",
        "personal",
        "ca-voip",
        "gb-voip",
        "pager",
    ],
)
def test_the_sms_gate_refuses_numbers_that_may_not_get_codes(
    make_auth: Callable[..., Auth], store_kind: str, number: str, countries: set[str]
) -> None:  # R16
    sender = RecordingSender()
    auth = make_auth(store_kind, sms=sender)
    open_court(auth, simulate=False, sms_countries=countries)
    client = auth.directory.add(PORTAL, "Pat Doe", phone=number)  # staff could store it
    with pytest.raises(InvalidContact) as refused:
        auth.start(PORTAL, METHOD, {"contact": number}, client=CLIENT)
    assert refused.value.field == "contact"
    assert sender.sent == [] and feed(auth) == []
    assert auth.store.latest_challenge(PORTAL, client.id, PURPOSE) is None
    # The same answer whether or not the number is on file.
    auth.directory.delete(client.id)
    with pytest.raises(InvalidContact) as unknown:
        auth.start(PORTAL, METHOD, {"contact": number}, client=CLIENT)
    assert unknown.value.message == refused.value.message
    assert sender.sent == []


@pytest.mark.parametrize(
    ("number", "countries"), [(GB_MOBILE, {"US", "GB"}), (CA_MOBILE, {"US", "CA"})]
)
def test_mobiles_of_the_allowed_countries_get_codes(
    make_auth: Callable[..., Auth], store_kind: str, number: str, countries: set[str]
) -> None:  # R16
    sender = RecordingSender()
    auth = make_auth(store_kind, sms=sender)
    open_court(auth, simulate=False, sms_countries=countries)
    client = auth.directory.add(PORTAL, "Pat Doe", phone=number)
    step = begin(auth, number)
    [message] = sender.sent
    assert (message.channel, message.to, message.identity_id) == ("sms", number, client.id)
    assert isinstance(submit(auth, step, code_of(message)), SignedIn)


def test_an_email_only_portal_refuses_phone_numbers(auth: Auth) -> None:
    auth.portals.update(PORTAL, method_settings={METHOD: {"channels": ["email"]}})
    jane = add_jane(auth)
    assert auth.fields(PORTAL, METHOD)[0].label == "E-mail address"
    with pytest.raises(InvalidContact) as refused:
        auth.start(PORTAL, METHOD, {"contact": PHONE}, client=CLIENT)
    assert refused.value.field == "contact"
    assert feed(auth) == []
    step = begin(auth, EMAIL)
    assert isinstance(submit(auth, step, latest_code(auth, jane)), SignedIn)


def test_an_sms_only_portal_refuses_email_addresses(auth: Auth) -> None:
    auth.portals.update(PORTAL, method_settings={METHOD: {"channels": ["sms"]}})
    add_jane(auth)
    assert auth.fields(PORTAL, METHOD)[0].label == "Mobile phone number"
    with pytest.raises(InvalidContact):
        auth.start(PORTAL, METHOD, {"contact": EMAIL}, client=CLIENT)
    assert feed(auth) == []


# -- settings are per portal --------------------------------------------------------------------
def test_every_setting_is_per_portal(auth: Auth, clock: FrozenClock) -> None:
    auth.portals.create("clinic", "Clinic", methods={METHOD}, simulate=True)
    auth.portals.update(
        PORTAL,
        method_settings={
            METHOD: {
                "code_digits": 8,
                "code_minutes": 5,
                "max_attempts": 3,
                "resend_cooldown": 0,
                "codes_per_destination": "3/hour",
            }
        },
    )
    jane = add_jane(auth)
    step = begin(auth, PHONE)
    assert step.fields[0].max_length == 8
    assert step.expires_at == clock.now() + 300
    code = latest_code(auth, jane)
    assert re.fullmatch(r"[0-9]{8}", code)
    assert "5 minutes" in feed(auth, jane)[0].text
    for _ in range(3):
        with pytest.raises(VerificationFailed):
            submit(auth, step, wrong(code))
    with pytest.raises(VerificationFailed):
        submit(auth, step, code)

    # No cooldown: each request sends a new code, until the 3/hour destination cap.
    begin(auth, PHONE)
    begin(auth, PHONE)
    assert len(feed(auth, jane)) == 3
    with pytest.raises(Throttled):
        auth.start(PORTAL, METHOD, {"contact": PHONE}, client=CLIENT)

    # The other portal keeps the defaults.
    assert auth.strategy_config("clinic", METHOD) == ContactOtpSettings()
    assert auth.fields("clinic", METHOD, "code")[0].max_length == 6


@pytest.mark.parametrize(
    "bad",
    [
        {"code_digits": 5},  # below NIST's six digits
        {"code_digits": 11},
        {"code_minutes": 0},
        {"code_minutes": 61},
        {"max_attempts": 0},
        {"max_attempts": 11},
        {"resend_cooldown": -1},
        {"codes_per_destination": "lots"},
        {"sms_per_portal": 200},
        {"channels": ["fax"]},
        {"channels": []},
        {"code_digits": True},
        {"surprise": 1},
    ],
)
def test_bad_settings_are_refused_when_staff_save_them(auth: Auth, bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        auth.portals.update(PORTAL, method_settings={METHOD: bad})
    assert auth.strategy_config(PORTAL, METHOD) == ContactOtpSettings()


@pytest.mark.parametrize("in_subject", [False, True])
def test_the_code_is_in_the_email_subject_only_when_the_portal_asks(
    auth: Auth, in_subject: bool
) -> None:
    if in_subject:
        auth.portals.update(PORTAL, method_settings={METHOD: {"code_in_subject": True}})
    jane = add_jane(auth)
    begin(auth, EMAIL)
    [message] = feed(auth, jane)
    code = code_of(message)
    assert (code in message.subject) is in_subject
    assert "County Court" in message.subject


# -- simulate mode and delivery -----------------------------------------------------------------
def test_simulate_mode_records_in_the_clients_feed_and_sends_nothing(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock
) -> None:
    sender = RecordingSender()
    auth = make_auth(store_kind, sms=sender)
    open_court(auth, simulate=True)
    jane = add_jane(auth)
    kim = add_kim(auth)
    step = begin(auth, PHONE)
    assert sender.sent == []
    [message] = feed(auth, jane)  # staff read it on the client's screen
    assert message.simulated and (message.channel, message.to) == ("sms", E164)
    assert feed(auth, kim) == []
    assert isinstance(submit(auth, step, code_of(message)), SignedIn)

    auth.portals.update(PORTAL, simulate=False)  # live mode
    clock.advance(60)
    step = begin(auth, PHONE)
    [delivered] = sender.sent
    assert (delivered.channel, delivered.to, delivered.identity_id) == ("sms", E164, jane.id)
    assert not delivered.simulated
    assert feed(auth, jane) == [message]  # delivered messages are not in the simulated feed
    assert isinstance(submit(auth, step, code_of(delivered)), SignedIn)


def test_a_failed_delivery_is_reported_and_leaves_no_live_challenge(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:
    recorder = Recorder()
    sender = FailingSender()
    auth = make_auth(store_kind, sms=sender, plugins=[EmailCodePlugin(), recorder])
    open_court(auth, simulate=False)
    jane = add_jane(auth)
    with pytest.raises(DeliveryFailed):
        auth.start(PORTAL, METHOD, {"contact": PHONE}, client=CLIENT)
    assert sender.calls == 1
    record = auth.store.latest_challenge(PORTAL, jane.id, PURPOSE)
    assert record is not None and record.state == "revoked"
    assert auth.challenges.latest(PORTAL, jane.id, PURPOSE) is None
    assert "message.failed" in recorder.kinds()
    assert feed(auth) == []


def test_after_a_failed_delivery_the_client_can_ask_again_at_once(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:
    sender = FailingSender(failures=1)
    auth = make_auth(store_kind, sms=sender)
    open_court(auth, simulate=False)
    jane = add_jane(auth)
    with pytest.raises(DeliveryFailed):
        auth.start(PORTAL, METHOD, {"contact": PHONE}, client=CLIENT)
    step = begin(auth, PHONE)  # no cooldown: nothing usable was sent
    [message] = sender.sent
    done = submit(auth, step, code_of(message))
    assert isinstance(done, SignedIn) and done.identity.id == jane.id


# -- the consecutive-failure budget (R7) --------------------------------------------------------
def test_consecutive_failures_survive_resends_and_then_delay(
    auth: Auth, clock: FrozenClock
) -> None:  # R7 R12
    jane = add_jane(auth)
    first = begin(auth, PHONE)
    code = latest_code(auth, jane)
    for _ in range(5):
        with pytest.raises(VerificationFailed):
            submit(auth, first, wrong(code))
    clock.advance(60)  # wait out the cooldown and ask again
    second = begin(auth, PHONE)
    assert auth.challenges.failures(PORTAL, METHOD, jane.id) == 5  # not reset by the resend
    code = latest_code(auth, jane)
    clock.advance(50)
    for _ in range(5):
        with pytest.raises(VerificationFailed):
            submit(auth, second, wrong(code))
    assert auth.challenges.failures(PORTAL, METHOD, jane.id) == 10
    clock.advance(10)  # the cooldown of the second code is over: a third one
    third = begin(auth, PHONE)
    code = latest_code(auth, jane)
    with pytest.raises(Throttled) as throttled:
        submit(auth, third, code)
    assert 1 <= throttled.value.retry_after <= 30
    clock.advance(throttled.value.retry_after)
    done = submit(auth, third, code)
    assert isinstance(done, SignedIn) and done.identity.id == jane.id
    assert auth.challenges.failures(PORTAL, METHOD, jane.id) == 0


def test_unknown_contacts_have_a_failure_budget_too(auth: Auth, clock: FrozenClock) -> None:  # R7
    for wait in (0, 50):  # as for a known client above: 5 wrong, ask again, 5 wrong
        step = begin(auth, "+1 202 555 0199")
        clock.advance(wait)
        for _ in range(5):
            with pytest.raises(VerificationFailed):
                submit(auth, step, "123456")
        clock.advance(60 - wait)
    step = begin(auth, "+1 202 555 0199")
    with pytest.raises(Throttled) as throttled:
        submit(auth, step, "123456")
    assert 1 <= throttled.value.retry_after <= 30


# -- malformed input (R21 R22 R23) --------------------------------------------------------------
@pytest.mark.parametrize(
    "typed",
    [
        "not a phone",
        "+1 202 555 0143 ext 5",
        "202-555-0143 x5",
        "x" * 1000,
        "1" * 1000,
        "",
        "   ",
        "a@",
        "@example.com",
        "jane@@example.com",
        "٢٠٢٥٥٥٠١٤٣",  # Arabic-Indic digits
        "+1 202 555 0143, +1 202 555 0150",
        "jane.roe@example.com\nbcc@evil.example",
        "ｊａｎｅ@example.com",
    ],
)
def test_a_malformed_contact_is_refused(auth: Auth, typed: str) -> None:  # R22
    jane = add_jane(auth)
    with pytest.raises(InvalidInput):
        auth.start(PORTAL, METHOD, {"contact": typed}, client=CLIENT)
    assert feed(auth) == []
    assert auth.store.latest_challenge(PORTAL, jane.id, PURPOSE) is None


@pytest.mark.parametrize(
    "data", [{"contact": 2025550143}, {"contact": [PHONE]}, {"contact": None}, {}, [PHONE]]
)
def test_non_text_contacts_are_refused(auth: Auth, data: object) -> None:  # R23
    add_jane(auth)
    with pytest.raises(InvalidInput):
        auth.start(PORTAL, METHOD, data, client=CLIENT)  # type: ignore[arg-type]
    assert feed(auth) == []


@pytest.mark.parametrize(
    "bad",
    [
        ["123456"],
        123456,
        None,
        "",
        "12345",
        "1234567",
        "１２３４５６",
        "١٢٣٤٥٦",
        "12345\n",
        " 12345",
    ],
)
def test_malformed_codes_count_as_failures(auth: Auth, bad: object) -> None:  # R21
    jane = add_jane(auth)
    step = begin(auth, PHONE)
    with pytest.raises((InvalidInput, VerificationFailed)):
        submit(auth, step, bad)
    assert auth.sessions.list(jane.id) == []


# -- events -------------------------------------------------------------------------------------
def test_events_for_every_state_change_carry_no_code(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock
) -> None:
    recorder = Recorder()
    auth = make_auth(store_kind, plugins=[EmailCodePlugin(), recorder])
    open_court(auth, method_settings={METHOD: {"codes_per_destination": "1/hour"}})
    jane = add_jane(auth)
    codes: list[str] = []

    step = begin(auth, PHONE)
    codes.append(latest_code(auth, jane))
    with pytest.raises(VerificationFailed):
        submit(auth, step, wrong(codes[-1]))
    assert isinstance(submit(auth, step, codes[-1]), SignedIn)
    clock.advance(60)
    begin(auth, EMAIL)
    codes.append(latest_code(auth, jane))
    clock.advance(60)
    with pytest.raises(Throttled):
        auth.start(PORTAL, METHOD, {"contact": PHONE}, client=CLIENT)

    kinds = recorder.kinds()
    for kind in ("message.sent", "verification.failed", "signed_in", "throttled"):
        assert kind in kinds, kind
    by_kind = {event.kind: event for event in recorder.events}
    assert by_kind["message.sent"].detail["channel"] == "email"
    assert by_kind["message.sent"].method == METHOD
    assert by_kind["verification.failed"].identity_id == jane.id
    assert by_kind["verification.failed"].method == METHOD
    assert by_kind["signed_in"].identity_id == jane.id
    assert by_kind["signed_in"].method == METHOD
    assert by_kind["throttled"].portal == PORTAL
    sent = [event for event in recorder.events if event.kind == "message.sent"]
    assert [event.detail["channel"] for event in sent] == ["sms", "email"]

    for event in recorder.events:
        fields = attrs.asdict(event)
        del fields["at"]  # a timestamp may contain any run of digits
        text = repr(fields)
        for code in codes:
            assert code not in text, event.kind
        # Contacts typed by the client are not logged raw either.
        assert E164 not in text and "jane.roe" not in text.lower(), event.kind


@pytest.mark.parametrize("limit", ["codes_per_destination", "sms_per_prefix"])
def test_throttled_events_name_the_portal_method_and_client(
    make_auth: Callable[..., Auth], store_kind: str, limit: str, clock: FrozenClock
) -> None:  # R13 R16
    recorder = Recorder()
    auth = make_auth(store_kind, plugins=[EmailCodePlugin(), recorder])
    open_court(auth, method_settings={METHOD: {limit: "1/hour"}})
    begin(auth, "+1 202 555 0141")
    clock.advance(61)  # past the resend cooldown, so the second request is a new send
    with pytest.raises(Throttled):
        auth.start(
            PORTAL,
            METHOD,
            {"contact": "+1 202 555 0142" if limit == "sms_per_prefix" else "+1 202 555 0141"},
            client=CLIENT,
        )
    [event] = [event for event in recorder.events if event.kind == "throttled"]
    assert (event.portal, event.method, event.ip) == (PORTAL, METHOD, CLIENT.ip)


# -- property: no sequence of wrong guesses signs anyone in --------------------------------------
_WEIRD_DIGITS = (
    "0123456789٠١٢٣٤٥٦٧٨٩０１２３４５６７８９²³¹۰۱߀१ \t\n\r\x0b\x0c\u00a0\u2028\u200b_+-.,"
)
_GUESSES = st.one_of(
    st.from_regex(r"[0-9]{6}", fullmatch=True),
    st.text(alphabet=_WEIRD_DIGITS, max_size=9),
    st.text(max_size=8),
    st.integers(),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True),
    st.binary(max_size=6),
    st.lists(st.from_regex(r"[0-9]{6}", fullmatch=True), max_size=2),
    st.dictionaries(st.text(max_size=3), st.text(max_size=6), max_size=2),
)
_CONTACTS = st.sampled_from(
    [PHONE, "202.555.0143", EMAIL, KIM_PHONE, KIM_EMAIL, "+1 202 555 0199", "x@example.com"]
)
_ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("guess"), _GUESSES),
        st.tuples(st.just("raw"), _GUESSES),  # the whole form is garbage
        st.tuples(st.just("restart"), _CONTACTS),
        st.tuples(st.just("wait"), st.integers(min_value=0, max_value=4000)),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=_CONTACTS, actions=_ACTIONS)
def test_no_sequence_of_wrong_guesses_signs_anyone_in(
    first: str, actions: list[tuple[str, Any]]
) -> None:  # R6 R7 R21 R23
    clock = FrozenClock()
    auth = Auth(SECRET_KEYS, "memory://", clock=clock, entry_points=False)
    try:
        open_court(auth)
        people = [add_jane(auth), add_kim(auth)]
        sent: set[str] = set()

        def remember_codes() -> None:
            for message in feed(auth):
                sent.add(code_of(message))

        def call(run: Callable[[], object]) -> object:
            try:
                result = run()
            except PortalAuthError as exc:
                return exc
            remember_codes()
            assert isinstance(result, Step), f"signed in: {result!r}"
            return result

        current = call(lambda: auth.start(PORTAL, METHOD, {"contact": first}, client=CLIENT))
        flow = current.flow if isinstance(current, Step) else None
        for kind, value in actions:
            if kind == "wait":
                clock.advance(value)
            elif kind == "restart":
                result = call(
                    lambda v=value: auth.start(PORTAL, METHOD, {"contact": v}, client=CLIENT)
                )
                if isinstance(result, Step):
                    flow = result.flow
            elif flow is not None:
                if isinstance(value, str) and value in sent:
                    continue  # a right code is not a wrong guess
                data = {"code": value} if kind == "guess" else value
                call(lambda f=flow, d=data: auth.advance(f, d, client=CLIENT))
        for person in people:
            assert auth.sessions.list(person.id) == []
    finally:
        auth.close()


# -- end to end through a Twilio-shaped HTTP API ------------------------------------------------
SID = "AC" + "0123456789abcdef" * 2
TOKEN = "local-test-token-0123456789"
FROM = "+15005550006"


class _TwilioHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append(
            (self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        reply = json.dumps({"sid": "SM" + "a1b2c3d4" * 4, "status": "queued"}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def twilio() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TwilioHandler)
    server.daemon_threads = True
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_end_to_end_through_a_twilio_shaped_api(
    make_auth: Callable[..., Auth], store_kind: str, twilio: ThreadingHTTPServer
) -> None:  # R16
    sms = pytest.importorskip(
        "portalauth.delivery.sms", reason="the SMS sender (portalauth[sms]) is not available"
    )
    if not hasattr(sms, "TwilioSmsSender"):
        pytest.skip("portalauth.delivery.sms has no TwilioSmsSender yet")
    port = twilio.server_address[1]
    sender = sms.TwilioSmsSender(
        account_sid=SID,
        auth_token=TOKEN,
        from_number=FROM,
        base_url=f"http://127.0.0.1:{port}",
        timeout=5.0,
    )
    try:
        auth = make_auth(store_kind, sms=sender)
        open_court(auth, simulate=False)
        jane = add_jane(auth)
        step = begin(auth, PHONE)
        [(method, path, headers, body)] = twilio.requests  # type: ignore[attr-defined]
        assert method == "POST"
        assert path == f"/2010-04-01/Accounts/{SID}/Messages.json"
        expected = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
        assert headers["authorization"] == f"Basic {expected}"
        form = parse_qs(body.decode(), strict_parsing=True)
        assert form["To"] == [E164] and form["From"] == [FROM]
        [text] = form["Body"]
        assert text.startswith("County Court: ")
        found = _SMS_LAST_LINE.search(text)
        assert found
        assert feed(auth) == []  # delivered, not simulated
        done = submit(auth, step, found.group(1))
        assert isinstance(done, SignedIn) and done.identity.id == jane.id
    finally:
        sender.close()

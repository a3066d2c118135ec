"""Hostile input (issue 7, item 4): the lists of the requirements' §4, and hypothesis.

Every case ends in a typed ``PortalAuthError`` or a refusal (a generic ``Step``, an ``invalid``
link status): never another exception, never a sign-in, never a message to an address that is
not stored on an identity.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from contextlib import closing
from typing import Any
from urllib.parse import quote

import itsdangerous
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SECRET_KEYS
from portalauth import (
    Auth,
    ConfigError,
    FlowInvalid,
    FlowState,
    FrozenClock,
    InvalidContact,
    InvalidInput,
    Keyring,
    PortalAuthError,
    PortalSettings,
    SessionInvalid,
    SignedIn,
    Step,
    VerificationFailed,
)
from portalauth.flows import FlowCodec
from portalauth.stores.memory import MemoryStore

from .helpers import (
    CLIENT,
    EMAIL,
    HOUR,
    NEW_PASSWORD,
    PASSWORD,
    PORTAL,
    ContactOtpDriver,
    Driver,
    MagicLinkDriver,
    SecondFactorDriver,
    ShareCodeDriver,
    StaffPinDriver,
    add_victim,
    attacker,
    code_in,
    failures,
    messages,
    newest,
    open_portal,
    token_in,
)

HYPOTHESIS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

CODE_KINDS = [
    pytest.param(ShareCodeDriver, id="share_code"),
    pytest.param(ContactOtpDriver, id="contact_otp"),
    pytest.param(MagicLinkDriver, id="magic_link"),
    pytest.param(StaffPinDriver, id="staff_pin"),
    pytest.param(lambda: SecondFactorDriver("email_code"), id="second_factor"),
]


def _translate(code: str, zero: str) -> str:
    return "".join(chr(ord(zero) + int(d)) for d in code)


_SUPERSCRIPTS = "⁰¹²³⁴⁵⁶⁷⁸⁹"

#: §4 "Codes and PINs", as functions of the issued code.
HOSTILE_CODES: list[tuple[str, Callable[[str], object]]] = [
    ("trailing space", lambda c: c + " "),
    ("leading space", lambda c: " " + c),
    ("trailing newline", lambda c: c + "\n"),
    ("inner space", lambda c: c[:-1] + " " + c[-1]),
    ("underscore", lambda c: c[0] + "_" + c[1:]),
    ("plus sign", lambda c: "+" + c[1:]),
    ("minus sign", lambda c: "-" + c[1:]),
    ("first digit dropped", lambda c: c[1:]),
    ("extra leading zero", lambda c: "0" + c),
    ("extra digit", lambda c: c + "5"),
    ("fullwidth", lambda c: _translate(c, "０")),
    ("arabic-indic", lambda c: _translate(c, "٠")),
    ("persian", lambda c: _translate(c, "۰")),
    ("mathematical bold", lambda c: _translate(c, "𝟎")),
    ("superscripts", lambda c: "".join(_SUPERSCRIPTS[int(d)] for d in c)),
    ("hex", lambda c: hex(int(c))),
    ("exponent", lambda c: "1e3"),
    ("NUL", lambda c: c + "\x00"),
    ("non-ASCII letter", lambda c: "é" + c[1:]),
    ("empty", lambda c: ""),
    ("ten thousand zeros", lambda c: "0" * 10_000),
    ("int", lambda c: int(c)),
    ("bytes", lambda c: c.encode()),
    ("list (repeated field)", lambda c: [c]),
    ("two values", lambda c: [c, "99999"]),
    ("mapping", lambda c: {"$ne": ""}),
    ("None", lambda c: None),
    ("float", lambda c: float(c)),
    ("bool", lambda c: True),
    ("lone surrogate", lambda c: c[:-1] + "\udcff"),
]


def _refused(auth: Auth, driver: Driver, hostile: Callable[[str], object]) -> None:
    """Submit ``hostile(code)`` for a fresh secret: refused with a typed error, counted as a
    failed attempt when it reached the comparison, and the right code still works afterwards."""
    issued = driver.issue(auth, CLIENT)
    value = hostile(issued.code)
    if value == issued.code:
        return
    before = failures(auth, driver)
    with pytest.raises(PortalAuthError) as refused:
        driver.submit(auth, issued, value, CLIENT)
    assert isinstance(refused.value, VerificationFailed | InvalidInput), refused.value
    if isinstance(refused.value, VerificationFailed):
        assert failures(auth, driver) == before + 1  # malformed input costs an attempt (R21)
    result = driver.submit(auth, issued, issued.code, CLIENT)
    assert isinstance(result, SignedIn), result


@pytest.fixture
def code_target(
    make_auth: Callable[..., Auth], request: pytest.FixtureRequest
) -> tuple[Auth, Driver]:
    auth = make_auth("memory")
    driver = request.param()
    driver.setup(auth)
    return auth, driver


@pytest.mark.parametrize("code_target", CODE_KINDS, indirect=True)
@pytest.mark.parametrize("mutation", HOSTILE_CODES, ids=[name for name, _ in HOSTILE_CODES])
def test_hostile_codes_are_refused(
    code_target: tuple[Auth, Driver],
    clock: FrozenClock,
    mutation: tuple[str, Callable[[str], object]],
) -> None:  # R21 R23
    auth, driver = code_target
    _refused(auth, driver, mutation[1])


@pytest.mark.parametrize("code_target", CODE_KINDS, indirect=True)
@HYPOTHESIS
@given(data=st.data())
def test_any_text_but_the_exact_code_is_refused(
    code_target: tuple[Auth, Driver], clock: FrozenClock, data: st.DataObject
) -> None:  # R21
    auth, driver = code_target
    clock.advance(HOUR)  # fresh hourly caps and cooldowns for every example
    digit_like = st.text(alphabet=st.characters(categories=["Nd", "No", "Zs", "Cc"]), max_size=8)
    value = data.draw(st.one_of(st.text(max_size=12), digit_like), label="value")
    _refused(auth, driver, lambda code: value)


# -- e-mail addresses -------------------------------------------------------------------------
HOSTILE_EMAILS = [
    "Mike@Example.COM",
    " mike@example.com ",
    "mike@example.com.",
    "mıke@example.org",
    "mike@ıxample.org",
    "MİKE@example.org",
    "ﬁnn@example.com",
    "ｍｉｋｅ＠ｅｘａｍｐｌｅ．ｃｏｍ",
    "mike@bücher.example",
    "mіke@example.com",
    "straße@example.de",
    "mike+tag@example.com",
    "victim@x.com, attacker@y.com",
    "victim@x.com\r\nBcc: attacker@y.com",
    "victim@x.com\nBcc: attacker@y.com",
    "victim@x.com%0d%0aBcc:attacker@y.com",
    "alice@example.org(<bob@example.org>",
    "alice@example.org@<bob@example.org>",
    '"a@b"@example.com',
    "<script>@x.com",
    "a" * 65 + "@x.com",
    "a" * 250 + "@x.com",
    "victim@x.com\u2028",
    "victim@x.com\u2028attacker@y.com",
    "=?UTF-8?Q?victim=0A?=@x.com",
    "Victim <victim@x.com>",
    "victim@x.com;attacker@y.com",
    "@x.com",
    "victim@",
    "",
]

#: Identities already in the portal: mail may only ever go to one of these addresses.
RESIDENTS = {
    "Mike": "mike@example.org",
    "Mike Ixample": "mike@ixample.org",
    "Victim": "victim@x.com",
    "Finn": "finn@example.com",
    "Strasse": "strasse@example.de",
}


def _email_calls(auth: Auth) -> list[tuple[str, Callable[[object], object]]]:
    return [
        ("contact_otp", lambda v: auth.start(PORTAL, "contact_otp", {"contact": v}, client=CLIENT)),
        ("magic_link", lambda v: auth.start(PORTAL, "magic_link", {"email": v}, client=CLIENT)),
        (
            "staff_pin",
            lambda v: auth.start(PORTAL, "staff_pin", {"email": v, "pin": "000000"}, client=CLIENT),
        ),
        (
            "password",
            lambda v: auth.start(
                PORTAL, "password", {"email": v, "password": "not the password"}, client=CLIENT
            ),
        ),
        ("reset", lambda v: auth.passwords.request_reset(PORTAL, {"email": v}, client=CLIENT)),
        (
            "sign_up",
            lambda v: auth.passwords.sign_up(
                PORTAL,
                {"name": "Someone", "email": v, "password": "plum orchard lighthouse 7"},
                client=CLIENT,
            ),
        ),
    ]


@pytest.fixture
def residents(make_auth: Callable[..., Auth]) -> Auth:
    auth = make_auth("memory")
    open_portal(auth, signup_enabled=True)
    for name, address in RESIDENTS.items():
        identity = auth.directory.add(PORTAL, name, email=address)
        auth.directory.replace_password_hash(
            identity, auth.hasher.hash(PASSWORD), expected=None, changed=True
        )
        auth.pins.issue(identity)
    return auth


def _mail_only_to_residents(auth: Auth, before: int) -> list[str]:
    """Every message since ``before`` went to an address stored on an identity, as stored."""
    stored = {i.email for i in auth.directory.list(PORTAL)} | {
        i.phone for i in auth.directory.list(PORTAL)
    }
    sent = messages(auth)[before:]
    for message in sent:
        assert message.to in stored, message.to
        assert "\n" not in message.to and "," not in message.to and "attacker" not in message.to
    return [m.to for m in sent]


@pytest.mark.parametrize("value", HOSTILE_EMAILS)
def test_hostile_addresses_never_sign_in_nor_mail_a_wrong_address(
    residents: Auth, clock: FrozenClock, value: str
) -> None:  # R23 R61 R62 R63
    auth = residents
    for name, call in _email_calls(auth):
        clock.advance(HOUR)
        before = len(messages(auth))
        try:
            result = call(value)
        except PortalAuthError:
            result = None
        assert not isinstance(result, SignedIn), name
        assert result is None or isinstance(result, Step), (name, result)
        _mail_only_to_residents(auth, before)


@pytest.mark.parametrize(
    ("typed", "collides_with"),
    [
        ("mıke@example.org", "mike@example.org"),  # dotless ı: "MIKE" when upper-cased
        ("MİKE@example.org", "mike@example.org"),  # İ lower-cases to two code points
        ("mike@ıxample.org", "mike@ixample.org"),  # in the domain
        ("straße@example.de", "strasse@example.de"),  # casefold would merge these
    ],
)
def test_a_reset_for_a_colliding_address_never_mails_the_other_account(
    residents: Auth, typed: str, collides_with: str
) -> None:  # R62 R63 (CVE-2019-19844)
    auth = residents
    before = len(messages(auth))
    with contextlib.suppress(InvalidContact):  # refused as malformed, or the generic answer
        auth.passwords.request_reset(PORTAL, {"email": typed}, client=CLIENT)
    sent = _mail_only_to_residents(auth, before)
    assert collides_with not in sent
    assert sent == []


@pytest.mark.parametrize("typed", ["Mike@Example.ORG", " mike@example.org ", "MIKE@EXAMPLE.ORG"])
def test_spelling_variants_of_one_address_mail_only_the_stored_address(
    residents: Auth, typed: str
) -> None:  # R62 R63
    auth = residents
    before = len(messages(auth))
    auth.passwords.request_reset(PORTAL, {"email": typed}, client=CLIENT)
    assert _mail_only_to_residents(auth, before) == ["mike@example.org"]


@HYPOTHESIS
@given(
    local=st.text(min_size=1, max_size=20),
    junk=st.sampled_from(["", ",", ";", "\r\n", "\n", " ", "<", ">", "(", ")", "\u2028", "\x00"]),
    tail=st.text(max_size=20),
)
def test_generated_addresses_never_mail_a_wrong_address(
    residents: Auth, clock: FrozenClock, local: str, junk: str, tail: str
) -> None:  # R23 R62
    auth = residents
    value = f"{local}@x.com{junk}{tail}"
    for name, call in _email_calls(auth):
        clock.advance(HOUR)
        before = len(messages(auth))
        try:
            result = call(value)
        except PortalAuthError:
            result = None
        assert not isinstance(result, SignedIn), name
        _mail_only_to_residents(auth, before)


HEADER_BREAKERS = ["\r\n", "\n", "\r", "\x00", "\x85", "\u2028", "\u2029", "=?UTF-8?Q?=0A?="]


@pytest.mark.parametrize("breaker", HEADER_BREAKERS, ids=repr)
@pytest.mark.parametrize("setting", ["name", "support_phone"])
def test_portal_branding_cannot_inject_headers(breaker: str, setting: str) -> None:  # R61
    values = {"slug": PORTAL, "name": "Acme", setting: f"Acme{breaker}Bcc: attacker@y.com"}
    with pytest.raises(ConfigError):
        PortalSettings(**values)


@pytest.mark.parametrize("breaker", HEADER_BREAKERS[:-1], ids=repr)
def test_names_and_contacts_cannot_carry_line_breaks(
    make_auth: Callable[..., Auth], breaker: str
) -> None:  # R61 R67
    """(Names only ever appear in message bodies, so an encoded word in a name is harmless; line
    breaks are refused anyway, R67.)"""
    auth = make_auth("memory")
    open_portal(auth)
    with pytest.raises(InvalidInput):
        auth.directory.add(PORTAL, f"Jane{breaker}Bcc: x@y.com", email=EMAIL)
    with pytest.raises(InvalidContact):
        auth.directory.add(PORTAL, "Jane", email=f"jane@example.com{breaker}bcc@y.com")
    assert auth.directory.list(PORTAL) == []


@HYPOTHESIS
@given(name=st.text(min_size=1, max_size=60))
def test_every_accepted_portal_name_gives_header_safe_subjects(
    make_auth: Callable[..., Auth], name: str
) -> None:  # R61
    try:
        PortalSettings(slug=PORTAL, name=name)
    except ConfigError:
        return
    auth = make_auth("memory")
    auth.portals.create(
        PORTAL, name, methods={"magic_link"}, simulate=True, base_url="https://a.example"
    )
    auth.directory.add(PORTAL, "Jane", email=EMAIL)
    auth.start(PORTAL, "magic_link", {"email": EMAIL}, client=CLIENT)
    (message,) = messages(auth)
    for bad in ("\r", "\n", "\x00", "\x85", "\u2028", "\u2029", "=?"):
        assert bad not in message.subject


# -- phone numbers ------------------------------------------------------------------------------
HOSTILE_PHONES = [
    "+1 (415) 555-0123",
    "0014155550123",
    "415.555.0123",
    "+14155550123;ext=12",
    "+1 415 555 0123 x12",
    "tel:+14155550123",
    "1-800-FLOWERS",
    "+1 900 234 5678",  # premium rate
    "+1 800 234 5678",  # toll free
    "+1 500 234 5678",  # personal number
    "+883 510 000 000",  # international network (VoIP)
    "+882 1234 5678",
    "+44 56 1234 5678",  # VoIP, GB
    "+44 7400 123456",  # a mobile of a country not allowed
    "+33 6 12 34 56 78",
    "+0",
    "+1234567890123456",
    "＋１４１５５５５０１２３",
    "٤١٥٥٥٥٠١٢٣",
    "+1 415 555 0123\n",
    "+1 415 555 0123\nBcc: x",
    "+1 415 555 0123,+1 415 555 0124",
    "+" + "1" * 200,
    "",
]

#: Numbers staff recorded that must never receive a sign-in code by SMS (R16).
NOT_TEXTABLE = {
    "Premium": "+1 900 234 5678",
    "Toll free": "+1 800 234 5678",
    "Personal": "+1 500 234 5678",
    "VoIP GB": "+44 56 1234 5678",
    "Mobile GB": "+44 7400 123456",
    "Mobile FR": "+33 6 12 34 56 78",
}


@pytest.fixture
def phone_book(make_auth: Callable[..., Auth]) -> Auth:
    auth = make_auth("memory")
    open_portal(auth, methods={"contact_otp"})
    auth.directory.add(PORTAL, "Mobile US", phone="+1 415 555 0123")
    for name, number in NOT_TEXTABLE.items():
        auth.directory.add(PORTAL, name, phone=number)
    return auth


@pytest.mark.parametrize("value", HOSTILE_PHONES)
def test_hostile_phone_numbers_never_text_a_wrong_number(
    phone_book: Auth, value: str
) -> None:  # R16 R23 R64
    auth = phone_book
    before = len(messages(auth))
    try:
        result: object = auth.start(PORTAL, "contact_otp", {"contact": value}, client=CLIENT)
    except PortalAuthError as exc:
        result = exc
    assert isinstance(result, Step | InvalidInput), result
    for message in messages(auth)[before:]:
        assert message.to == "+14155550123"  # the one textable number on record


@pytest.mark.parametrize("name", sorted(NOT_TEXTABLE))
def test_numbers_on_record_that_may_not_get_sms_are_refused_like_unknown_ones(
    phone_book: Auth, name: str
) -> None:  # R16
    auth = phone_book
    number = NOT_TEXTABLE[name]
    stranger = number[:-1] + str((int(number[-1]) + 1) % 10)  # same type, on nobody's record
    with pytest.raises(InvalidContact) as known:
        auth.start(PORTAL, "contact_otp", {"contact": number}, client=CLIENT)
    with pytest.raises(InvalidContact) as unknown:
        auth.start(PORTAL, "contact_otp", {"contact": stranger}, client=CLIENT)
    assert messages(auth) == []
    assert known.value.field == unknown.value.field == "contact"
    assert known.value.message == unknown.value.message


@HYPOTHESIS
@given(value=st.text(alphabet=st.sampled_from("+0123456789 ()-.x;,#*tel:\n１２"), max_size=24))
def test_generated_phone_numbers_only_ever_text_the_number_on_record(
    phone_book: Auth, clock: FrozenClock, value: str
) -> None:  # R16 R64
    auth = phone_book
    clock.advance(HOUR)
    before = len(messages(auth))
    with contextlib.suppress(PortalAuthError):
        auth.start(PORTAL, "contact_otp", {"contact": value}, client=CLIENT)
    for message in messages(auth)[before:]:
        assert message.to == "+14155550123"


# -- oversized fields: refused before any hashing ----------------------------------------------
MEGABYTE = "x" * 1_000_000


def _oversized(auth: Auth, session: str, reset: str, invite: str) -> list[tuple[str, Any]]:
    long_email = "a" * 1_000_000 + "@example.com"
    new = "new@example.com"

    def start(method: str, **form: str) -> Callable[[], object]:
        return lambda: auth.start(PORTAL, method, form)

    def sign_up(**form: str) -> Callable[[], object]:
        return lambda: auth.passwords.sign_up(PORTAL, form)

    return [
        ("sign-in password", start("password", email=EMAIL, password=MEGABYTE)),
        ("sign-in password, 1025", start("password", email=EMAIL, password="x" * 1025)),
        ("sign-in e-mail", start("password", email=long_email, password=PASSWORD)),
        ("sign-up password", sign_up(name="A", email=new, password=MEGABYTE)),
        ("sign-up name", sign_up(name=MEGABYTE, email=new, password=NEW_PASSWORD)),
        ("change, current", lambda: auth.passwords.change(session, MEGABYTE, NEW_PASSWORD)),
        ("change, new", lambda: auth.passwords.change(session, PASSWORD, MEGABYTE)),
        ("reset", lambda: auth.passwords.reset(PORTAL, reset, MEGABYTE)),
        ("invitation", lambda: auth.passwords.accept_invite(PORTAL, invite, MEGABYTE)),
        (
            "reset request e-mail",
            lambda: auth.passwords.request_reset(PORTAL, {"email": long_email}),
        ),
        ("magic link e-mail", start("magic_link", email=long_email)),
        ("contact", start("contact_otp", contact=MEGABYTE)),
        ("share code", start("share_code", share_code="A" * 65)),
        ("PIN", start("staff_pin", email=EMAIL, pin="1" * 7)),
        ("flow token", lambda: auth.advance(MEGABYTE, {"code": "123456"})),
        ("session token", lambda: auth.sessions.validate(MEGABYTE)),
        ("link token", lambda: auth.magic_links.redeem(PORTAL, MEGABYTE)),
        ("reset token", lambda: auth.passwords.reset(PORTAL, MEGABYTE, NEW_PASSWORD)),
    ]


def test_oversized_fields_are_refused_fast_and_before_any_hashing(
    make_auth: Callable[..., Auth], clock: FrozenClock
) -> None:  # R22
    auth = make_auth("memory")
    open_portal(auth, signup_enabled=True)
    victim = add_victim(auth)
    session = auth.sign_in(victim, method="password").token
    auth.passwords.request_reset(PORTAL, {"email": EMAIL})
    reset = token_in(newest(auth, victim, "password_reset"))
    other = auth.directory.add(PORTAL, "Other", email="other@example.com")
    auth.passwords.invite(other)
    invite = token_in(newest(auth, other, "password_invite"))
    for name, call in _oversized(auth, session, reset, invite):
        clock.advance(61)  # a fresh per-client minute: only the size may refuse it
        hashes = auth.hasher.calls
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            with pytest.raises(PortalAuthError) as refused:
                call()
            best = min(best, time.perf_counter() - start)
        assert isinstance(
            refused.value, InvalidInput | VerificationFailed | FlowInvalid | SessionInvalid
        ), (name, refused.value)
        assert auth.hasher.calls == hashes, name
        assert best < 0.05, (name, best)
    # The refused passwords used up no link (R22: checked before anything is spent).
    assert auth.passwords.inspect(PORTAL, reset).valid
    assert auth.passwords.inspect(PORTAL, invite).valid


# -- non-string and repeated values ------------------------------------------------------------
NON_STRINGS: list[object] = [
    None,
    1,
    1.5,
    True,
    b"jane@example.com",
    ["a", "b"],
    ("a",),
    {"$ne": ""},
    {"a"},
]


def _form_calls(auth: Auth) -> list[tuple[Callable[[object], object], dict[str, object]]]:
    """Every client-side entry point that reads a form, with a well-formed form for it."""

    def start(method: str) -> Callable[[object], object]:
        return lambda form: auth.start(PORTAL, method, form, client=CLIENT)  # type: ignore[arg-type]

    return [
        (start("contact_otp"), {"contact": EMAIL}),
        (start("magic_link"), {"email": EMAIL}),
        (start("share_code"), {"share_code": "ACD-3F4"}),
        (start("staff_pin"), {"email": EMAIL, "pin": "123456"}),
        (start("password"), {"email": EMAIL, "password": PASSWORD}),
        (lambda form: auth.passwords.request_reset(PORTAL, form, client=CLIENT), {"email": EMAIL}),  # type: ignore[arg-type]
        (
            lambda form: auth.passwords.sign_up(PORTAL, form, client=CLIENT),  # type: ignore[arg-type]
            {"name": "A B", "email": "new@example.com", "password": NEW_PASSWORD},
        ),
    ]


@pytest.mark.parametrize("value", NON_STRINGS, ids=repr)
def test_non_string_values_are_invalid_input_and_nothing_happens(
    make_auth: Callable[..., Auth], clock: FrozenClock, value: object
) -> None:  # R23
    auth = make_auth("memory")
    open_portal(auth, signup_enabled=True)
    add_victim(auth)
    for call, form in _form_calls(auth):
        for field in form:
            clock.advance(HOUR)
            with pytest.raises(InvalidInput) as refused:
                call({**form, field: value})
            assert refused.value.field == field, form
    assert messages(auth) == []
    assert len(auth.directory.list(PORTAL)) == 1


@pytest.mark.parametrize(
    "data",
    [None, [], "email=jane@example.com", b"x", 42, {f"f{i}": "x" for i in range(40)}],
    ids=repr,
)
def test_a_form_that_is_not_a_mapping_is_invalid_input(
    make_auth: Callable[..., Auth], data: object
) -> None:  # R23
    auth = make_auth("memory")
    open_portal(auth, signup_enabled=True)
    for call, _ in _form_calls(auth):
        with pytest.raises(InvalidInput):
            call(data)
    assert messages(auth) == []


def _multidicts() -> list[Any]:
    from django.utils.datastructures import MultiValueDict
    from werkzeug.datastructures import MultiDict

    return [
        pytest.param(lambda pairs: MultiDict(pairs), id="werkzeug.MultiDict"),
        pytest.param(
            lambda pairs: MultiValueDict({k: [v for kk, v in pairs if kk == k] for k, _ in pairs}),
            id="django.MultiValueDict",
        ),
    ]


@pytest.mark.parametrize("multidict", _multidicts())
def test_a_repeated_form_value_is_invalid_input(
    make_auth: Callable[..., Auth], multidict: Callable[[list[tuple[str, str]]], Any]
) -> None:  # R23
    auth = make_auth("memory")
    open_portal(auth)
    add_victim(auth)
    form = multidict([("email", EMAIL), ("email", "attacker@y.com")])
    with pytest.raises(InvalidInput):
        auth.start(PORTAL, "magic_link", form, client=CLIENT)


@pytest.mark.parametrize("value", [None, 123, b"token", ["token"], {"t": 1}], ids=repr)
def test_non_string_tokens_are_refused(
    make_auth: Callable[..., Auth], value: object
) -> None:  # R23
    auth = make_auth("memory")
    open_portal(auth)
    add_victim(auth)
    with pytest.raises(FlowInvalid):
        auth.advance(value, {"code": "123456"})  # type: ignore[arg-type]
    with pytest.raises(SessionInvalid):
        auth.sessions.validate(value)
    with pytest.raises(SessionInvalid):
        auth.passwords.change(value, PASSWORD, NEW_PASSWORD)  # type: ignore[arg-type]
    with pytest.raises(VerificationFailed):
        auth.magic_links.redeem(PORTAL, value)
    with pytest.raises(VerificationFailed):
        auth.passwords.reset(PORTAL, value, NEW_PASSWORD)
    with pytest.raises(VerificationFailed):
        auth.passwords.accept_invite(PORTAL, value, NEW_PASSWORD)
    with pytest.raises(VerificationFailed):
        auth.passwords.confirm(PORTAL, value)
    assert not auth.magic_links.inspect(PORTAL, value).valid
    assert not auth.passwords.inspect(PORTAL, value).valid


# -- tokens: truncated, re-padded, re-signed, wrong purpose, future-dated ----------------------
def _refuses(kind: type[PortalAuthError], what: object, call: Callable[[], object]) -> None:
    """``call()`` raises ``kind``; anything else (an acceptance, another exception) fails."""
    try:
        result = call()
    except kind:
        return
    except Exception as exc:
        pytest.fail(f"{what}: {exc!r}")
    pytest.fail(f"{what}: accepted: {result!r}")


ATTACKER_KEY = "attacker-chosen-key-0123456789abcdef"


def _variants(token: str) -> list[tuple[str, str]]:
    """Spellings of ``token`` that were never issued."""
    flipped = token[:-1] + chr(ord(token[-1]) ^ 1)
    parts = token.split(".")
    variants = [
        ("truncated by one", token[:-1]),
        ("truncated by half", token[: len(token) // 2]),
        ("padded", token + "="),
        ("padded twice", token + "=="),
        ("first part padded", ".".join([parts[0] + "=", *parts[1:]])),
        ("trailing dot", token + "."),
        ("trailing space", token + " "),
        ("leading space", " " + token),
        ("trailing newline", token + "\n"),
        ("percent-encoded dot", token.replace(".", "%2E")),
        ("double-encoded", quote(quote(token + "=", safe=""), safe="")),
        ("case flipped", token.swapcase()),
        ("last bit flipped", flipped),
        ("doubled", token + token),
        ("non-ASCII", token[:-1] + "é"),
        ("lone surrogate", token[:-1] + "\udcff"),
        ("empty", ""),
    ]
    return [(name, value) for name, value in variants if value != token]


@pytest.fixture
def tokens(make_auth: Callable[..., Auth], clock: FrozenClock) -> dict[str, Any]:
    """One live token of every kind, for the victim of a portal with every method."""
    auth = make_auth("memory")
    open_portal(auth, signup_enabled=True)
    victim = add_victim(auth)
    step = auth.start(PORTAL, "contact_otp", {"contact": EMAIL}, client=CLIENT)
    assert isinstance(step, Step) and step.flow is not None
    code = newest(auth, victim, "contact_login")
    link_step = auth.start(PORTAL, "magic_link", {"email": EMAIL}, client=CLIENT)
    assert isinstance(link_step, Step)
    auth.passwords.request_reset(PORTAL, {"email": EMAIL}, client=CLIENT)
    other = auth.directory.add(PORTAL, "Other Person", email="other@example.com")
    auth.passwords.invite(other)
    auth.magic_links.invite(other)
    auth.passwords.sign_up(
        PORTAL,
        {"name": "New Person", "email": "new@example.com", "password": "plum orchard lighthouse 7"},
    )
    new = auth.directory.find_by_email(PORTAL, "new@example.com")
    assert new is not None

    return {
        "auth": auth,
        "victim": victim,
        "flow": step.flow,
        "code": code_in(code),
        "session": auth.sign_in(victim, method="password").token,
        "magic_link": token_in(newest(auth, victim, "magic_link")),
        "reset": token_in(newest(auth, victim, "password_reset")),
        "invite": token_in(newest(auth, other, "password_invite")),
        "magic_link_invite": token_in(newest(auth, other, "magic_link_invite")),
        "confirm": token_in(newest(auth, new, "signup_confirm")),
    }


def test_flow_token_variants_are_flow_invalid(
    tokens: dict[str, Any], clock: FrozenClock
) -> None:  # R28 R54
    auth: Auth = tokens["auth"]
    flow, code = tokens["flow"], tokens["code"]
    state = FlowCodec(auth.keyring, clock).load(flow)
    resigned = FlowCodec(Keyring([ATTACKER_KEY]), clock).dump(state)
    future = FlowCodec(auth.keyring, FrozenClock(clock.now() + 3600)).dump(state)
    skewed = FlowCodec(auth.keyring, FrozenClock(clock.now() + 5)).dump(state)
    other_step = FlowCodec(Keyring([ATTACKER_KEY]), clock).dump(
        FlowState(
            portal=PORTAL,
            method="contact_otp",
            step="second_factor",
            challenge_id=state.challenge_id,
        )
    )
    session_salt = itsdangerous.URLSafeTimedSerializer(
        auth.keyring.oldest_first,
        salt="portalauth.session",
        signer_kwargs={"digest_method": hashlib.sha256},
    ).dumps([PORTAL, "contact_otp", "code", state.challenge_id or "", "nonce"])
    candidates = [
        *_variants(flow),
        ("re-signed with another key", resigned),
        ("future-dated by an hour", future),
        ("future-dated by 5 s", skewed),
        ("another step, re-signed", other_step),
        ("signed with the session salt", session_salt),
        ("a session token", tokens["session"]),
        ("a link token", tokens["magic_link"]),
    ]
    for name, value in candidates:
        _refuses(FlowInvalid, name, lambda v=value: auth.advance(v, {"code": code}, client=CLIENT))
    # None of that touched the real flow: the right code still signs in, once.
    assert isinstance(auth.advance(flow, {"code": code}, client=CLIENT), SignedIn)


def test_a_flow_token_signed_with_a_removed_key_is_flow_invalid(
    tokens: dict[str, Any], clock: FrozenClock
) -> None:  # R19 R55
    auth: Auth = tokens["auth"]
    state = FlowCodec(auth.keyring, clock).load(tokens["flow"])
    old_only = FlowCodec(Keyring([SECRET_KEYS[1]]), clock).dump(state)
    FlowCodec(auth.keyring, clock).load(old_only)  # valid while the old key is listed
    rotated = Auth([SECRET_KEYS[0]], MemoryStore(), clock=clock, entry_points=False)
    with closing(rotated), pytest.raises(FlowInvalid):
        rotated.advance(old_only, {"code": tokens["code"]})


def test_session_token_variants_are_session_invalid(tokens: dict[str, Any]) -> None:  # R52 R53 R54
    auth: Auth = tokens["auth"]
    session: str = tokens["session"]
    session_id = session.split(".")[0]
    resigned = (
        itsdangerous.Signer([ATTACKER_KEY], salt="portalauth.session", digest_method=hashlib.sha256)
        .sign(session_id)
        .decode()
    )
    flow_salt = (
        itsdangerous.Signer(
            auth.keyring.oldest_first, salt="portalauth.flow", digest_method=hashlib.sha256
        )
        .sign(session_id)
        .decode()
    )
    unsalted = (
        itsdangerous.Signer(auth.keyring.oldest_first, digest_method=hashlib.sha256)
        .sign(session_id)
        .decode()
    )
    sha1 = (
        itsdangerous.Signer(auth.keyring.oldest_first, salt="portalauth.session")
        .sign(session_id)
        .decode()
    )
    candidates = [
        *_variants(session),
        ("re-signed with another key", resigned),
        ("signed with the flow salt", flow_salt),
        ("signed without a salt", unsalted),
        ("signed with SHA-1", sha1),
        ("the bare id", session_id),
        ("a flow token", tokens["flow"]),
        ("a link token", tokens["magic_link"]),
    ]
    for name, value in candidates:
        _refuses(SessionInvalid, name, lambda v=value: auth.sessions.validate(v))
        _refuses(
            SessionInvalid, name, lambda v=value: auth.passwords.change(v, PASSWORD, NEW_PASSWORD)
        )
    assert auth.sessions.validate(session).identity_id == tokens["victim"].id


LINK_USES: dict[str, Callable[[Auth, str, object, Any], object]] = {
    "magic_link": lambda a, p, t, c: a.magic_links.redeem(p, t, client=c),
    "reset": lambda a, p, t, c: a.passwords.reset(p, t, NEW_PASSWORD, client=c),
    "invite": lambda a, p, t, c: a.passwords.accept_invite(p, t, NEW_PASSWORD, client=c),
    "confirm": lambda a, p, t, c: a.passwords.confirm(p, t, client=c),
}
#: which link page accepts each kind of link (a magic-link invitation is redeemed like a link)
LINK_PAGE = {
    "magic_link": "magic_link",
    "magic_link_invite": "magic_link",
    "reset": "reset",
    "invite": "invite",
    "confirm": "confirm",
}


def _status(auth: Auth, kind: str, token: object) -> Any:
    if LINK_PAGE[kind] == "magic_link":
        return auth.magic_links.inspect(PORTAL, token)
    return auth.passwords.inspect(PORTAL, token)


@pytest.mark.parametrize("kind", sorted(LINK_PAGE))
def test_link_token_variants_and_wrong_purposes_are_refused(
    tokens: dict[str, Any], kind: str
) -> None:  # R26 R54
    auth: Auth = tokens["auth"]
    token: str = tokens[kind]
    candidates = [
        *_variants(token),
        ("a flow token", tokens["flow"]),
        ("a session token", tokens["session"]),
    ]
    clients = (attacker(n) for n in range(10_000))  # a fresh address per try: no IP throttle
    for name, value in candidates:
        for page, use in LINK_USES.items():
            _refuses(
                VerificationFailed,
                (name, page),
                lambda u=use, v=value: u(auth, PORTAL, v, next(clients)),
            )
        assert not auth.magic_links.inspect(PORTAL, value).valid
        assert not auth.passwords.inspect(PORTAL, value).valid
    # The real token at every other page: refused too (R26)...
    for page, use in LINK_USES.items():
        if page != LINK_PAGE[kind]:
            _refuses(VerificationFailed, page, lambda u=use: u(auth, PORTAL, token, next(clients)))
    # ...and none of it used the link up.
    assert _status(auth, kind, token).valid


@pytest.mark.parametrize("kind", sorted(LINK_PAGE))
def test_a_link_of_one_portal_is_refused_in_another(
    tokens: dict[str, Any], kind: str
) -> None:  # R26
    auth: Auth = tokens["auth"]
    open_portal(auth, "other-firm")
    use = LINK_USES[LINK_PAGE[kind]]
    _refuses(VerificationFailed, kind, lambda: use(auth, "other-firm", tokens[kind], CLIENT))
    assert not auth.magic_links.inspect("other-firm", tokens[kind]).valid
    assert not auth.passwords.inspect("other-firm", tokens[kind]).valid
    assert _status(auth, kind, tokens[kind]).valid

"""The built-in ``share_code`` strategy (the Complyr case-portal sign-in), end to end.

Every test drives the generic API (``auth.start`` / ``auth.advance``) or the staff API
(``auth.share_codes``) against the memory and the SQLite store, reads codes from the outbox feed
(simulate mode) as a client would read their e-mail, and moves the frozen clock for every expiry.
Requirement numbers refer to ``../shared/SECURITY-REQUIREMENTS.md``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import CLIENT, SECRET_KEYS, EmailCodePlugin
from portalauth import (
    Auth,
    ClientInfo,
    ConfigError,
    FrozenClock,
    InvalidInput,
    MethodDisabled,
    NotReady,
    PortalAuthError,
    SignedIn,
    Step,
    Throttled,
    VerificationFailed,
    hookimpl,
)
from portalauth.errors import DeliveryFailed
from portalauth.events import Event
from portalauth.records import Identity, Message
from portalauth.strategies.share_code import ShareCode, new_share_code

PORTAL = "acme"
METHOD = "share_code"
CONFIRM = "share_code_login"  # purpose of the confirmation code (and of its e-mail)
INVITE = "share_code"  # purpose of the share code (and of the invitation e-mail)
CASE = "case-42"
BASE_URL = "https://portal.acme.example"
DAY = 86400
SHARE_CODE_SHAPE = re.compile(r"[A-Z][0-9][A-Z]-[0-9][A-Z][0-9]")
LOOK_ALIKES = set("ILOSZB01258")
ALPHABET = set("ACDEFGHJKMNPQRTUVWXY") | set("34679")


# -- helpers -----------------------------------------------------------------------------------
def create_portal(auth: Auth, slug: str = PORTAL, **settings: Any) -> None:
    settings.setdefault("methods", {METHOD})
    settings.setdefault("simulate", True)
    settings.setdefault("base_url", BASE_URL)
    auth.portals.create(slug, "Acme Law LLP", **settings)


@pytest.fixture
def auth(make_auth: Callable[..., Auth], store_kind: str) -> Auth:
    """An ``Auth`` on every store kind with portal ``acme`` enabling ``share_code``."""
    auth = make_auth(store_kind)
    create_portal(auth)
    return auth


@pytest.fixture
def party(auth: Auth) -> Identity:
    return auth.directory.add(PORTAL, "Jane Roe", email="Jane.Roe@Example.com")


def issue(auth: Auth, who: Identity, scope: str = CASE, **kw: Any) -> ShareCode:
    kw.setdefault("send", False)
    return auth.share_codes.issue(who, scope=scope, **kw)


def enter(auth: Auth, share_code: str, client: ClientInfo = CLIENT, portal: str = PORTAL) -> Step:
    step = auth.start(portal, METHOD, {"share_code": share_code}, client=client)
    assert isinstance(step, Step)
    assert step.flow is not None
    return step


def advance(auth: Auth, step: Step, code: object, client: ClientInfo = CLIENT) -> Step | SignedIn:
    assert step.flow is not None
    return auth.advance(step.flow, {"code": code}, client=client)


def messages(auth: Auth, purpose: str | None = None, portal: str = PORTAL) -> list[Message]:
    return [m for m in auth.outbox.messages(portal) if purpose is None or m.purpose == purpose]


def confirmation_code(auth: Auth, who: Identity, digits: int = 5) -> str:
    """The code in the party's newest confirmation e-mail."""
    sent = [m for m in auth.outbox.messages(PORTAL, identity=who.id) if m.purpose == CONFIRM]
    assert sent, "no confirmation code was e-mailed"
    found = re.search(rf"(?<![0-9])([0-9]{{{digits}}})(?![0-9])", sent[0].text)
    assert found, "no code in the message"
    return found.group(1)


def wrong(code: str) -> str:
    return ("0" if code[0] != "0" else "1") * len(code)


def shape(step: Step) -> tuple[object, ...]:
    """Everything a client can observe about a Step (the flow token only by its length)."""
    assert step.flow is not None
    return (
        step.method,
        step.next,
        step.fields,
        step.notice,
        step.sent_to,
        step.expires_at,
        len(step.flow),
    )


class FailingSender:
    channel = "email"

    def __init__(self) -> None:
        self.calls = 0

    def send(self, message: Message, *, portal: object) -> None:
        self.calls += 1
        raise DeliveryFailed()


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    @hookimpl
    def portalauth_event(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item)


# -- staff side: issuing -----------------------------------------------------------------------
def test_issued_share_codes_have_the_documented_shape(auth: Auth, party: Identity) -> None:
    issued = [issue(auth, party).code for _ in range(5)]
    for code in issued:
        assert SHARE_CODE_SHAPE.fullmatch(code), code
        assert not set(code) & LOOK_ALIKES
    assert len(set(issued)) == 5
    # The generator itself, over many draws: the letters are exactly the look-alike-free ones.
    used = set("".join(new_share_code() for _ in range(3000)))
    assert {ch for ch in used if ch.isalpha()} == {ch for ch in ALPHABET if ch.isalpha()}
    assert {ch for ch in used if ch.isdigit()} >= set("34679")
    # The code is shown to staff once, never in a repr (R66).
    assert issued[-1] not in repr(auth.share_codes.issue(party, scope="case-7", send=False))


def test_share_codes_never_use_look_alike_characters() -> None:
    used = set("".join(new_share_code() for _ in range(3000)))
    assert not used & LOOK_ALIKES
    assert used == ALPHABET


@pytest.mark.parametrize(
    "spell",
    [
        pytest.param(lambda c: c, id="as-issued"),
        pytest.param(str.lower, id="lower"),
        pytest.param(lambda c: c.replace("-", ""), id="no-hyphen"),
        pytest.param(lambda c: f"  {c[0]} {c[1:3].lower()} - {c[4:]}\t", id="spaces"),
        pytest.param(lambda c: c.replace("-", "\u2013"), id="en-dash"),
        pytest.param(
            lambda c: "".join(chr(ord(ch) + 0xFEE0) for ch in c.lower()), id="fullwidth-nfkc"
        ),
    ],
)
def test_entry_ignores_case_spaces_and_hyphens(
    auth: Auth, party: Identity, spell: Callable[[str], str]
) -> None:
    share = issue(auth, party)
    step = enter(auth, spell(share.code))
    assert [m.to for m in messages(auth, CONFIRM)] == [party.email]
    assert isinstance(advance(auth, step, confirmation_code(auth, party)), SignedIn)


def test_a_near_miss_is_not_accepted(auth: Auth, party: Identity) -> None:
    share = issue(auth, party)
    other = "A" if share.code[0] != "A" else "C"
    enter(auth, other + share.code[1:])
    assert messages(auth) == []


def test_issuing_again_replaces_the_share_code(
    auth: Auth, party: Identity, clock: FrozenClock
) -> None:  # R25
    old = issue(auth, party)
    clock.advance(DAY)
    new = issue(auth, party)
    assert new.code != old.code
    assert new.expires_at == clock.now() + 30 * DAY
    status = auth.share_codes.status(party, CASE)
    assert status.invited and status.expires_at == new.expires_at
    # The old share code now gets the same answer as any unknown one, and sends nothing.
    stale = enter(auth, old.code)
    assert messages(auth) == []
    fresh = enter(auth, new.code, client=ClientInfo(ip="192.0.2.99"))
    assert shape(stale) == shape(fresh)
    assert isinstance(advance(auth, fresh, confirmation_code(auth, party)), SignedIn)


def test_replacing_the_share_code_ends_a_sign_in_it_started(
    auth: Auth, party: Identity
) -> None:  # R25 R29
    step = enter(auth, issue(auth, party).code)
    code = confirmation_code(auth, party)
    issue(auth, party)
    with pytest.raises(VerificationFailed):
        advance(auth, step, code)
    assert auth.sessions.list(party.id) == []


def test_one_share_code_per_party_and_scope(auth: Auth, party: Identity) -> None:
    family = issue(auth, party, scope="case-1")
    probate = issue(auth, party, scope="case-2")
    for share, scope in ((family, "case-1"), (probate, "case-2")):
        assert auth.share_codes.status(party, scope).invited
        step = enter(auth, share.code)
        done = advance(auth, step, confirmation_code(auth, party))
        assert isinstance(done, SignedIn)
        assert done.session.scope == scope


@pytest.mark.parametrize(
    ("method_settings", "days"), [({}, 30), ({"share_code": {"validity_days": 7}}, 7)]
)
def test_share_code_validity(
    make_auth: Callable[..., Auth],
    store_kind: str,
    clock: FrozenClock,
    method_settings: dict[str, Any],
    days: int,
) -> None:  # R27
    auth = make_auth(store_kind)
    create_portal(auth, method_settings=method_settings)
    party = auth.directory.add(PORTAL, "Jane Roe", email="jane@example.com")
    share = issue(auth, party)
    assert share.expires_at == clock.now() + days * DAY
    assert auth.share_codes.status(party, CASE).expires_at == share.expires_at
    clock.advance(days * DAY - 1)
    step = enter(auth, share.code)
    assert len(messages(auth, CONFIRM)) == 1
    assert isinstance(advance(auth, step, confirmation_code(auth, party)), SignedIn)
    clock.advance(1)
    assert not auth.share_codes.status(party, CASE).invited
    enter(auth, share.code)
    assert len(messages(auth, CONFIRM)) == 1  # nothing more was sent


def test_status_invited_and_not_invited(auth: Auth, party: Identity, clock: FrozenClock) -> None:
    assert auth.share_codes.status(party, CASE).invited is False  # never issued
    first = issue(auth, party)
    status = auth.share_codes.status(party.id, CASE)
    assert (status.invited, status.expires_at, status.issued_at) == (
        True,
        first.expires_at,
        clock.now(),
    )
    assert auth.share_codes.status(party, "another-case").invited is False
    clock.advance(5 * DAY)
    second = issue(auth, party)  # replaced: still invited, with the new expiry
    status = auth.share_codes.status(party, CASE)
    assert status.invited and status.expires_at == second.expires_at != first.expires_at
    assert auth.share_codes.revoke(party, CASE) is True  # revoked
    assert auth.share_codes.status(party, CASE).invited is False
    assert auth.share_codes.status(party, CASE).expires_at is None
    issue(auth, party)
    clock.advance(30 * DAY)  # expired
    assert auth.share_codes.status(party, CASE).invited is False


def test_revoke_ends_the_share_code_and_a_code_already_sent(
    auth: Auth, party: Identity
) -> None:  # R29
    share = issue(auth, party)
    step = enter(auth, share.code)
    code = confirmation_code(auth, party)
    assert auth.share_codes.revoke(party, CASE, actor="staff-1") is True
    with pytest.raises(VerificationFailed):
        advance(auth, step, code)
    assert auth.sessions.list(party.id) == []
    sent = len(messages(auth))
    enter(auth, share.code, client=ClientInfo(ip="192.0.2.77"))
    assert len(messages(auth)) == sent
    assert auth.share_codes.revoke(party, CASE) is False  # nothing left to revoke


# -- staff side: invitations -------------------------------------------------------------------
def test_invitation_email_carries_the_firm_name_and_share_code(auth: Auth, party: Identity) -> None:
    share = auth.share_codes.issue(party, scope=CASE, scope_label="Roe v Roe (family)")
    assert share.sent is True
    [invite] = messages(auth)
    assert invite.purpose == INVITE
    assert invite.to == party.email
    assert invite.identity_id == party.id
    assert "Acme Law LLP" in invite.subject
    assert share.code not in invite.subject  # a secret never goes in a subject line
    assert "Acme Law LLP" in invite.text
    assert share.code in invite.text
    assert "Roe v Roe (family)" in invite.text
    assert f"{BASE_URL}/portal" in invite.text
    assert auth.directory.get(party.id).invited_method == METHOD


@pytest.mark.parametrize(
    ("auto_invite", "default", "kind", "sent"),
    [
        ({"family": False}, True, "family", False),
        ({"family": False}, True, "probate", True),
        ({"family": False}, True, None, True),
        ({"family": True}, False, "family", True),
        ({"family": True}, False, "probate", False),
        ({}, False, None, False),
    ],
)
def test_auto_invite_per_case_type(
    make_auth: Callable[..., Auth],
    store_kind: str,
    auto_invite: dict[str, bool],
    default: bool,
    kind: str | None,
    sent: bool,
) -> None:
    auth = make_auth(store_kind)
    create_portal(
        auth,
        method_settings={
            "share_code": {"auto_invite": auto_invite, "auto_invite_default": default}
        },
    )
    party = auth.directory.add(PORTAL, "Jane Roe", email="jane@example.com")
    share = auth.share_codes.issue(party, scope=CASE, scope_kind=kind)
    assert share.sent is sent
    assert len(messages(auth, INVITE)) == int(sent)
    # Staff can always force it either way.
    assert auth.share_codes.issue(party, scope=CASE, scope_kind=kind, send=True).sent
    assert not auth.share_codes.issue(party, scope=CASE, scope_kind=kind, send=False).sent
    assert len(messages(auth, INVITE)) == int(sent) + 1


def test_send_resends_the_invitation_with_a_fresh_share_code(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:
    auth = make_auth(store_kind)
    create_portal(auth, method_settings={"share_code": {"auto_invite_default": False}})
    party = auth.directory.add(PORTAL, "Jane Roe", email="jane@example.com")
    first = auth.share_codes.issue(party, scope=CASE)
    assert messages(auth) == []
    resent = auth.share_codes.send(party, scope=CASE, scope_label="Case 42")
    assert resent.sent and resent.code != first.code
    [invite] = messages(auth, INVITE)
    assert resent.code in invite.text and first.code not in invite.text
    again = auth.share_codes.send(party.id, scope=CASE)
    assert len(messages(auth, INVITE)) == 2
    assert again.code in messages(auth, INVITE)[0].text
    # Only the newest share code works.
    enter(auth, resent.code)
    assert messages(auth, CONFIRM) == []
    step = enter(auth, again.code, client=ClientInfo(ip="192.0.2.50"))
    assert isinstance(advance(auth, step, confirmation_code(auth, party)), SignedIn)


def test_not_ready_when_required_fields_are_missing(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:
    auth = make_auth(store_kind)
    create_portal(auth, required_fields={"mobile"})
    party = auth.directory.add(PORTAL, "Jane Roe", email="jane@example.com")
    with pytest.raises(NotReady) as refused:
        auth.share_codes.issue(party, scope=CASE)
    assert refused.value.missing == ("mobile",)
    assert messages(auth) == []
    assert auth.share_codes.status(party, CASE).invited is False
    auth.directory.update(party.id, phone="(202) 555-0143")
    assert auth.share_codes.issue(party, scope=CASE).sent


@pytest.mark.parametrize(
    "bad",
    [
        {"code_digits": 4},
        {"code_minutes": 0},
        {"validity_days": 0},
        {"max_attempts": True},
        {"guesses_per_ip": "lots"},
        {"auto_invite": {"family": "no"}},
        {"share_code_length": 8},
    ],
)
def test_invalid_settings_are_refused_when_the_portal_is_saved(
    auth: Auth, bad: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError):
        auth.portals.update(PORTAL, method_settings={"share_code": bad})
    assert auth.strategy_config(PORTAL, METHOD).code_digits == 5  # the old settings stand


def test_method_disabled_when_the_portal_does_not_offer_share_codes(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:
    auth = make_auth(store_kind)
    create_portal(auth, methods={"email_code"})
    party = auth.directory.add(PORTAL, "Jane Roe", email="jane@example.com")
    with pytest.raises(MethodDisabled):
        auth.share_codes.issue(party, scope=CASE)
    with pytest.raises(MethodDisabled):
        auth.share_codes.send(party, scope=CASE)
    with pytest.raises(MethodDisabled):
        auth.start(PORTAL, METHOD, {"share_code": "A3C-4D6"}, client=CLIENT)
    assert messages(auth) == []


# -- client side -------------------------------------------------------------------------------
def test_a_party_signs_in_with_share_code_and_emailed_code(auth: Auth, party: Identity) -> None:
    share = issue(auth, party)
    step = enter(auth, share.code)
    assert step.next == "code"
    assert step.method == METHOD
    assert [(f.name, f.max_length, f.autocomplete) for f in step.fields] == [
        ("code", 5, "one-time-code")
    ]
    assert step.flow is not None and party.id not in step.flow
    [mail] = messages(auth)
    assert mail.purpose == CONFIRM
    assert mail.to == party.email == "Jane.Roe@example.com"  # the party's record, nothing typed
    assert mail.identity_id == party.id
    assert "Acme Law LLP" in mail.text and "15 minutes" in mail.text
    code = confirmation_code(auth, party)
    assert re.fullmatch(r"[0-9]{5}", code)
    done = advance(auth, step, code)
    assert isinstance(done, SignedIn)
    assert done.identity.id == party.id
    assert done.method == METHOD
    assert done.session.scope == CASE
    assert auth.sessions.validate(done.token).scope == CASE
    with pytest.raises(VerificationFailed):  # R24: the code works once
        advance(auth, step, code)


def test_the_share_code_keeps_working_for_later_sign_ins(
    auth: Auth, party: Identity, clock: FrozenClock
) -> None:
    share = issue(auth, party)
    tokens = []
    for _ in range(3):
        step = enter(auth, share.code)
        done = advance(auth, step, confirmation_code(auth, party))
        assert isinstance(done, SignedIn) and done.session.scope == CASE
        tokens.append(done.token)
        clock.advance(9 * DAY)
    assert len(set(tokens)) == 3
    assert auth.share_codes.status(party, CASE).invited


@pytest.mark.parametrize(("digits", "minutes"), [(7, 5), (5, 1), (10, 60)])
def test_code_length_and_lifetime_are_portal_settings(
    make_auth: Callable[..., Auth],
    store_kind: str,
    clock: FrozenClock,
    digits: int,
    minutes: int,
) -> None:  # R27
    auth = make_auth(store_kind)
    create_portal(
        auth, method_settings={"share_code": {"code_digits": digits, "code_minutes": minutes}}
    )
    party = auth.directory.add(PORTAL, "Jane Roe", email="jane@example.com")
    share = issue(auth, party)
    step = enter(auth, share.code)
    assert step.fields[0].max_length == digits
    assert step.expires_at == clock.now() + minutes * 60
    code = confirmation_code(auth, party, digits)
    clock.advance(minutes * 60)
    with pytest.raises(VerificationFailed):
        advance(auth, step, code)
    # Enter the share code again: a fresh code, which works within its lifetime.
    step = enter(auth, share.code)
    clock.advance(minutes * 60 - 1)
    assert isinstance(advance(auth, step, confirmation_code(auth, party, digits)), SignedIn)


def test_a_newer_code_supersedes_the_previous_one(
    auth: Auth, party: Identity, clock: FrozenClock
) -> None:  # R25
    share = issue(auth, party)
    first = enter(auth, share.code)
    first_code = confirmation_code(auth, party)
    clock.advance(60)
    second = enter(auth, share.code)
    assert len(messages(auth, CONFIRM)) == 2
    with pytest.raises(VerificationFailed) as failed:
        advance(auth, first, first_code)
    assert failed.value.reason == "superseded"
    assert "newer" in failed.value.message
    assert isinstance(advance(auth, second, confirmation_code(auth, party)), SignedIn)


def test_five_attempts_per_code(auth: Auth, party: Identity) -> None:  # R6
    step = enter(auth, issue(auth, party).code)
    code = confirmation_code(auth, party)
    for _ in range(5):
        with pytest.raises(VerificationFailed) as failed:
            advance(auth, step, wrong(code))
        assert failed.value.reason == "invalid"
    with pytest.raises(VerificationFailed) as failed:
        advance(auth, step, code)
    assert failed.value.reason == "invalid"  # the generic answer, not "superseded"
    assert auth.sessions.list(party.id) == []


def test_code_is_valid_until_15_minutes(auth: Auth, party: Identity, clock: FrozenClock) -> None:
    # R27
    step = enter(auth, issue(auth, party).code)
    assert step.expires_at == clock.now() + 900
    clock.advance(900 - 1)
    assert isinstance(advance(auth, step, confirmation_code(auth, party)), SignedIn)


def test_code_expires_at_15_minutes_and_reentering_the_share_code_gets_a_new_one(
    auth: Auth, party: Identity, clock: FrozenClock
) -> None:  # R27
    share = issue(auth, party)
    step = enter(auth, share.code)
    code = confirmation_code(auth, party)
    clock.advance(900)
    with pytest.raises(VerificationFailed) as failed:
        advance(auth, step, code)
    assert failed.value.reason == "invalid"
    again = enter(auth, share.code)
    assert len(messages(auth, CONFIRM)) == 2
    assert again.expires_at == clock.now() + 900
    assert isinstance(advance(auth, again, confirmation_code(auth, party)), SignedIn)


def test_reentering_within_the_cooldown_resends_nothing(
    auth: Auth, party: Identity, clock: FrozenClock
) -> None:  # R15
    share = issue(auth, party)
    first = enter(auth, share.code)
    code = confirmation_code(auth, party)
    clock.advance(59)
    second = enter(auth, share.code.lower())
    assert len(messages(auth, CONFIRM)) == 1
    assert shape(second) == shape(first)  # the same challenge, so the same expiry
    assert isinstance(advance(auth, second, code), SignedIn)  # the code already sent
    clock.advance(1)
    enter(auth, share.code)
    assert len(messages(auth, CONFIRM)) == 2


def test_codes_per_hour_caps_confirmation_emails(
    auth: Auth, party: Identity, clock: FrozenClock
) -> None:  # R15
    share = issue(auth, party)
    for _ in range(5):
        enter(auth, share.code)
        clock.advance(60)
    with pytest.raises(Throttled) as throttled:
        enter(auth, share.code)
    assert throttled.value.retry_after <= 3600
    assert len(messages(auth, CONFIRM)) == 5
    clock.advance(throttled.value.retry_after)
    step = enter(auth, share.code)
    assert len(messages(auth, CONFIRM)) == 6
    assert isinstance(advance(auth, step, confirmation_code(auth, party)), SignedIn)


def test_codes_per_hour_is_a_portal_setting(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock
) -> None:  # R15
    auth = make_auth(store_kind)
    create_portal(auth, method_settings={"share_code": {"codes_per_hour": 2}})
    party = auth.directory.add(PORTAL, "Jane Roe", email="jane@example.com")
    share = issue(auth, party)
    for _ in range(2):
        enter(auth, share.code)
        clock.advance(60)
    with pytest.raises(Throttled):
        enter(auth, share.code)
    assert len(messages(auth, CONFIRM)) == 2


def _script(code: str, zero: int) -> str:
    return "".join(chr(zero + int(d)) for d in code)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda c: [c], id="list"),
        pytest.param(lambda c: int(c), id="int"),
        pytest.param(lambda c: None, id="none"),
        pytest.param(lambda c: {"code": c}, id="dict"),
        pytest.param(lambda c: "", id="empty"),
        pytest.param(lambda c: c + "\n", id="newline"),
        pytest.param(lambda c: " " + c, id="leading-space"),
        pytest.param(lambda c: c + " ", id="trailing-space"),
        pytest.param(lambda c: "0" + c, id="too-long"),
        pytest.param(lambda c: c[0] + "_" + c[1:], id="underscore"),
        pytest.param(lambda c: _script(c, 0xFF10), id="fullwidth"),
        pytest.param(lambda c: _script(c, 0x0660), id="arabic-indic"),
    ],
)
def test_malformed_codes_are_refused_without_a_crash(
    auth: Auth, party: Identity, mangle: Callable[[str], object]
) -> None:  # R21 R23
    step = enter(auth, issue(auth, party).code)
    code = confirmation_code(auth, party)
    with pytest.raises((InvalidInput, VerificationFailed)):
        advance(auth, step, mangle(code))
    assert auth.sessions.list(party.id) == []
    # Malformed input counts as a failed attempt, like a wrong code (R21).
    assert auth.challenges.failures(PORTAL, METHOD, party.id) <= 1


def test_a_code_works_only_in_its_own_flow(auth: Auth, party: Identity) -> None:  # R26
    other = auth.directory.add(PORTAL, "Kim Poe", email="kim@example.com")
    mine = enter(auth, issue(auth, party).code)
    my_code = confirmation_code(auth, party)
    theirs = enter(auth, issue(auth, other).code)
    with pytest.raises(VerificationFailed):
        advance(auth, theirs, my_code)
    assert isinstance(advance(auth, mine, my_code), SignedIn)


# -- anti-enumeration --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["unknown", "malformed", "revoked", "expired", "other-portal"])
def test_invalid_share_codes_get_the_same_answer_and_nothing_is_sent(
    auth: Auth, party: Identity, clock: FrozenClock, kind: str
) -> None:  # R31 R33
    create_portal(auth, "beta")
    stale = issue(auth, party)
    if kind == "revoked":
        auth.share_codes.revoke(party, CASE)
    elif kind == "expired":
        clock.advance(30 * DAY)
    typed = {
        "unknown": "A3C-4D6" if stale.code != "A3C-4D6" else "C3A-4D6",
        "malformed": "not a share code",
        "revoked": stale.code,
        "expired": stale.code,
        "other-portal": stale.code,
    }[kind]
    bad = enter(auth, typed, portal="beta" if kind == "other-portal" else PORTAL)
    assert messages(auth) == [] and messages(auth, portal="beta") == []
    # A valid share code, entered at the same moment, for comparison.
    kim = auth.directory.add(PORTAL, "Kim Poe", email="kim@example.com")
    good = enter(auth, issue(auth, kim).code, client=ClientInfo(ip="192.0.2.200"))
    assert len(messages(auth)) == 1
    assert shape(bad) == shape(good)
    assert bad.sent_to is None
    for guess in ("00000", "12345", "99999"):
        with pytest.raises(VerificationFailed) as failed:
            advance(auth, bad, guess)
        assert failed.value.reason == "invalid"


def test_decoys_behave_like_real_share_codes_within_the_cooldown(
    auth: Auth, clock: FrozenClock
) -> None:  # R31
    first = enter(auth, "A3C-4D6")
    clock.advance(30)
    second = enter(auth, "a3c 4d6")
    assert second.expires_at == first.expires_at  # the same (decoy) challenge stands
    clock.advance(30)
    third = enter(auth, "A3C4D6")
    assert third.expires_at == clock.now() + 900
    assert messages(auth) == []


@pytest.mark.parametrize("change", ["opted_out", "invalid", "disabled"])
def test_unreachable_or_disabled_party_gets_the_decoy_answer(
    auth: Auth, party: Identity, change: str
) -> None:  # R31
    share = issue(auth, party)
    if change == "disabled":
        auth.directory.update(party.id, disabled=True)
    else:
        auth.directory.update(party.id, email_status=change)
    bad = enter(auth, share.code)
    assert messages(auth) == []
    kim = auth.directory.add(PORTAL, "Kim Poe", email="kim@example.com")
    good = enter(auth, issue(auth, kim).code, client=ClientInfo(ip="192.0.2.200"))
    assert shape(bad) == shape(good)
    with pytest.raises(VerificationFailed):
        advance(auth, bad, "12345")
    assert auth.sessions.list(party.id) == []


@pytest.mark.parametrize("change", ["deleted", "disabled"])
def test_party_removed_between_the_two_steps_cannot_sign_in(
    auth: Auth, party: Identity, change: str
) -> None:  # R29
    step = enter(auth, issue(auth, party).code)
    code = confirmation_code(auth, party)
    if change == "deleted":
        auth.directory.delete(party.id)
    else:
        auth.directory.update(party.id, disabled=True)
    with pytest.raises(VerificationFailed):
        advance(auth, step, code)
    assert auth.sessions.list(party.id) == []


def test_helpful_errors_say_the_share_code_is_unknown(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:
    auth = make_auth(store_kind)
    create_portal(auth, helpful_errors=True)
    party = auth.directory.add(PORTAL, "Jane Roe", email="jane@example.com")
    with pytest.raises(VerificationFailed) as failed:
        auth.start(PORTAL, METHOD, {"share_code": "A3C-4D6"}, client=CLIENT)
    assert "share code" in failed.value.message
    assert "office" in failed.value.message
    share = issue(auth, party)
    step = enter(auth, share.code)
    assert step.sent_to is not None
    assert "@example.com" in step.sent_to and "jane" not in step.sent_to
    assert len(messages(auth)) == 1


# -- throttles ---------------------------------------------------------------------------------
def test_share_code_guessing_is_throttled_per_client_address(
    auth: Auth, party: Identity, clock: FrozenClock
) -> None:  # R9 R14 R33
    share = issue(auth, party)
    guesses = [g for g in (new_share_code() for _ in range(12)) if g not in share.code]
    for guess in guesses[:10]:
        enter(auth, guess)
    with pytest.raises(Throttled) as unknown:
        enter(auth, "A3C-4D6")
    # A valid share code from the throttled address gets the same answer, and nothing is sent.
    with pytest.raises(Throttled) as known:
        enter(auth, share.code)
    assert (known.value.code, known.value.message, known.value.retry_after) == (
        unknown.value.code,
        unknown.value.message,
        unknown.value.retry_after,
    )
    assert 1 <= known.value.retry_after <= 60
    assert messages(auth) == []
    # Another address is another bucket (as is the same address once the minute is over).
    enter(auth, share.code, client=ClientInfo(ip="192.0.2.11"))
    assert len(messages(auth)) == 1
    clock.advance(60)
    enter(auth, "A3C-4D6")


def test_an_ipv6_64_shares_one_bucket(auth: Auth) -> None:  # R9
    for i in range(10):
        enter(auth, "A3C-4D6", client=ClientInfo(ip=f"2001:db8:1:2::{i + 1:x}"))
    with pytest.raises(Throttled):
        enter(auth, "A3C-4D6", client=ClientInfo(ip="2001:DB8:1:2:ffff:ffff:ffff:ffff"))
    enter(auth, "A3C-4D6", client=ClientInfo(ip="2001:db8:1:3::1"))


def test_share_code_guessing_is_throttled_per_portal(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock
) -> None:  # R33
    auth = make_auth(store_kind)
    create_portal(auth, method_settings={"share_code": {"guesses_per_portal": "20/minute"}})
    create_portal(auth, "beta")
    for i in range(20):
        enter(auth, "A3C-4D6", client=ClientInfo(ip=f"198.51.100.{i}"))
    with pytest.raises(Throttled):
        enter(auth, "A3C-4D6", client=ClientInfo(ip="203.0.113.1"))
    enter(auth, "A3C-4D6", client=ClientInfo(ip="203.0.113.1"), portal="beta")  # its own bucket
    clock.advance(60)
    enter(auth, "A3C-4D6", client=ClientInfo(ip="203.0.113.1"))


def test_consecutive_failures_survive_reentering_the_share_code(
    auth: Auth, party: Identity, clock: FrozenClock
) -> None:  # R5 R7 R12
    share = issue(auth, party)
    share_id = _share_id(auth, party)
    first = enter(auth, share.code)
    for _ in range(5):
        with pytest.raises(VerificationFailed):
            advance(auth, first, wrong(confirmation_code(auth, party)))
    clock.advance(60)  # the resend cooldown
    second = enter(auth, share.code)
    clock.advance(59)
    for _ in range(5):
        with pytest.raises(VerificationFailed):
            advance(auth, second, wrong(confirmation_code(auth, party)))
    # The count belongs to the share code (what the client types), not reset by new codes...
    assert auth.challenges.failures(PORTAL, METHOD, party.id, share_id) == 10
    assert auth.challenges.failures(PORTAL, METHOD, party.id) == 0
    clock.advance(1)
    third = enter(auth, share.code)  # a fresh code: the count is not reset
    code = confirmation_code(auth, party)
    # ...and 10 is the hard limit for 5-digit codes (1 in 10,000): the share code is locked.
    with pytest.raises(Throttled) as throttled:
        advance(auth, third, code)
    assert throttled.value.retry_after == 3600
    assert auth.share_codes.status(party, CASE).locked
    clock.advance(86400)
    sent = len(messages(auth, CONFIRM))
    later = enter(auth, share.code)  # the same answer as for an unknown share code...
    assert later.next == third.next and later.fields == third.fields
    assert len(messages(auth, CONFIRM)) == sent  # ...and nothing is sent: it cannot be used
    with pytest.raises(Throttled):
        advance(auth, later, code)
    # Staff issue a new share code: it has a count of its own, and the old one is dead.
    renewed = issue(auth, party)
    assert not auth.share_codes.status(party, CASE).locked
    done = advance(auth, enter(auth, renewed.code), confirmation_code(auth, party))
    assert isinstance(done, SignedIn)


def test_six_digit_share_codes_delay_past_ten_failures(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock
) -> None:  # R5 R7
    auth = make_auth(store_kind)
    create_portal(auth, method_settings={"share_code": {"code_digits": 6}})
    party = auth.directory.add(PORTAL, "Jane Roe", email="jane@example.com")
    share = issue(auth, party)
    for tries in (5, 4, 1):  # ten wrong codes over three codes
        clock.advance(60)  # the resend cooldown
        step = enter(auth, share.code)
        for _ in range(tries):
            with pytest.raises(VerificationFailed):
                advance(auth, step, wrong(confirmation_code(auth, party, 6)))
    code = confirmation_code(auth, party, 6)
    with pytest.raises(Throttled) as throttled:
        advance(auth, step, code)
    assert throttled.value.retry_after == 30  # a delay, not the lock
    clock.advance(throttled.value.retry_after)
    with pytest.raises(VerificationFailed):  # one attempt is allowed; a wrong one doubles it
        advance(auth, step, wrong(code))
    with pytest.raises(Throttled) as throttled:
        advance(auth, step, code)
    assert throttled.value.retry_after == 60
    clock.advance(60)
    assert isinstance(advance(auth, step, code), SignedIn)
    assert auth.challenges.failures(PORTAL, METHOD, party.id, _share_id(auth, party)) == 0


def _share_id(auth: Auth, party: Identity) -> str:
    record = auth.challenges.latest(PORTAL, party.id, "share_code", CASE)
    assert record is not None
    return record.id


def test_throttled_answers_do_not_reveal_a_valid_share_code(
    auth: Auth, party: Identity, clock: FrozenClock
) -> None:  # R14
    share = issue(auth, party)
    outcomes = []
    # Ten failures against a real party and against a decoy: both are then delayed alike.
    for typed, ip in ((share.code, "192.0.2.1"), ("A3C-4D6", "192.0.2.2")):
        client = ClientInfo(ip=ip)

        def guess(real: bool = typed == share.code) -> str:
            return wrong(confirmation_code(auth, party)) if real else "00000"

        for wait in (0, 59):
            step = enter(auth, typed, client=client)
            clock.advance(wait)
            for _ in range(5):
                with pytest.raises(VerificationFailed):
                    advance(auth, step, guess(), client=client)
            clock.advance(60 - wait)
        step = enter(auth, typed, client=client)
        with pytest.raises(Throttled) as throttled:
            advance(auth, step, guess(), client=client)
        error = throttled.value
        outcomes.append((type(error), error.code, error.message, error.retry_after))
        clock.advance(3600)
    assert outcomes[0] == outcomes[1]


# -- delivery failures -------------------------------------------------------------------------
def test_a_failed_delivery_leaves_no_usable_code(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:
    sender = FailingSender()
    auth = make_auth(store_kind, email=sender)
    create_portal(auth, simulate=False)
    party = auth.directory.add(PORTAL, "Jane Roe", email="jane@example.com")
    share = issue(auth, party, send=False)
    with pytest.raises(DeliveryFailed):
        auth.start(PORTAL, METHOD, {"share_code": share.code}, client=CLIENT)
    assert sender.calls == 1
    record = auth.store.latest_challenge(PORTAL, party.id, CONFIRM, CASE)
    assert record is not None and record.state != "live"
    assert auth.challenges.latest(PORTAL, party.id, CONFIRM, CASE) is None
    # Trying again at once is not held back by a cooldown on a code nobody received.
    with pytest.raises(DeliveryFailed):
        auth.start(PORTAL, METHOD, {"share_code": share.code}, client=CLIENT)
    assert sender.calls == 2
    assert auth.outbox.messages(PORTAL) == []


def test_a_failed_invitation_leaves_no_live_share_code(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:
    auth = make_auth(store_kind, email=FailingSender())
    create_portal(auth, simulate=False)
    party = auth.directory.add(PORTAL, "Jane Roe", email="jane@example.com")
    with pytest.raises(DeliveryFailed):
        auth.share_codes.issue(party, scope=CASE, send=True)
    assert auth.share_codes.status(party, CASE).invited is False


# -- events ------------------------------------------------------------------------------------
def test_events_for_every_state_change_never_carry_a_secret(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock
) -> None:  # R65 R66
    recorder = Recorder()
    auth = make_auth(store_kind, plugins=[EmailCodePlugin(), recorder])
    create_portal(auth)
    party = auth.directory.add(PORTAL, "Jane Roe", email="jane@example.com")
    share = auth.share_codes.issue(party, scope=CASE, actor="staff-1")
    [issued] = recorder.of("share_code.issued")
    assert (issued.portal, issued.identity_id, issued.method, issued.actor) == (
        PORTAL,
        party.id,
        METHOD,
        "staff-1",
    )
    assert issued.detail["scope"] == CASE
    step = enter(auth, share.code)
    code = confirmation_code(auth, party)
    with pytest.raises(VerificationFailed):
        advance(auth, step, wrong(code))
    assert isinstance(advance(auth, step, code), SignedIn)
    for _ in range(11):
        try:
            enter(auth, "A3C-4D6")
        except Throttled:
            break
    assert auth.share_codes.revoke(party, CASE, actor="staff-2")
    sent = recorder.of("message.sent")
    assert [e.detail["purpose"] for e in sent] == [INVITE, CONFIRM]
    assert all(e.identity_id == party.id for e in sent)
    [failed] = recorder.of("verification.failed")
    assert failed.identity_id == party.id and failed.method == METHOD
    [signed_in] = recorder.of("signed_in")
    assert signed_in.identity_id == party.id and signed_in.detail["scope"] == CASE
    assert signed_in.ip == CLIENT.ip
    assert recorder.of("throttled")
    [revoked] = recorder.of("share_code.revoked")
    assert (revoked.identity_id, revoked.actor) == (party.id, "staff-2")
    # No event carries the share code (in any spelling) or the confirmation code.
    secrets_ = {share.code, share.code.replace("-", ""), share.code.lower(), code}
    for event in recorder.events:
        for text in _strings(attrs.asdict(event, recurse=False)):
            assert not any(s in text for s in secrets_), event.kind
        assert share.code.replace("-", "") not in repr(event)


def test_share_code_guessing_throttle_event_names_the_portal(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:  # R65
    recorder = Recorder()
    auth = make_auth(store_kind, plugins=[EmailCodePlugin(), recorder])
    create_portal(auth)
    for _ in range(10):
        enter(auth, "A3C-4D6")
    with pytest.raises(Throttled):
        enter(auth, "A3C-4D6")
    [event] = recorder.of("throttled")
    assert (event.portal, event.method, event.ip) == (PORTAL, METHOD, CLIENT.ip)


# -- property: wrong guesses never sign anyone in ----------------------------------------------
_SCRIPTS = (
    "０１２３４５６７８９",  # fullwidth
    "٠١٢٣٤٥٦٧٨٩",  # Arabic-Indic
    "۰۱۲۳۴۵۶۷۸۹",  # Persian
    "०१२३४५६७८९",  # Devanagari
    "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗",  # mathematical bold
    "⁰¹²³⁴⁵⁶⁷⁸⁹",  # superscripts (str.isdigit() is True)
)
# Ways to mangle the *real* code: none of them is the code, so none may sign anyone in.
_VARIANTS: tuple[Callable[[str], object], ...] = (
    *(lambda c, s=s: "".join(s[int(d)] for d in c) for s in _SCRIPTS),
    lambda c: c + "\n",
    lambda c: " " + c,
    lambda c: c + " ",
    lambda c: c[:2] + " " + c[2:],
    lambda c: c[:2] + "_" + c[3:],
    lambda c: c + "\x00",
    lambda c: "0" + c,
    lambda c: c[1:],
    lambda c: [c],
    lambda c: [c, c],
    lambda c: {"code": c},
    lambda c: int(c),
    lambda c: c.encode(),
)
_GUESSES = st.one_of(
    st.text(max_size=8),
    st.from_regex(r"[0-9]{5}", fullmatch=True),
    st.text(st.characters(categories=("Nd",)), min_size=5, max_size=5),
    st.text(st.sampled_from(" \t\n\r\x0b\x0c\u00a0\u2028\u3000"), max_size=6),
    st.lists(st.text(max_size=6), max_size=3),
    st.integers(),
    st.none(),
    st.booleans(),
)
_ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("guess"), _GUESSES),
        st.tuples(st.just("variant"), st.integers(0, len(_VARIANTS) - 1)),
        st.tuples(st.just("reenter"), st.integers(0, 1000)),
    ),
    min_size=1,
    max_size=30,
)


def _outcome(call: Callable[[], object]) -> object:
    try:
        result = call()
    except PortalAuthError as exc:
        return exc
    assert isinstance(result, Step | SignedIn), type(result)
    return result


@settings(max_examples=50, deadline=None)
@given(actions=_ACTIONS)
def test_no_sequence_of_wrong_guesses_signs_anyone_in(
    actions: list[tuple[str, Any]],
) -> None:  # R6 R7 R21 R23
    clock = FrozenClock()
    auth = Auth(SECRET_KEYS, "memory://", clock=clock, entry_points=False)
    try:
        create_portal(auth)
        party = auth.directory.add(PORTAL, "Jane Roe", email="jane@example.com")
        share = issue(auth, party)
        flow = enter(auth, share.code).flow
        sent = {confirmation_code(auth, party)}
        for kind, arg in actions:
            if kind == "reenter":
                clock.advance(arg)
                result = _outcome(
                    lambda: auth.start(PORTAL, METHOD, {"share_code": share.code}, client=CLIENT)
                )
                assert not isinstance(result, SignedIn)
                if isinstance(result, Step):
                    flow = result.flow
                    sent.add(confirmation_code(auth, party))
                continue
            guess = _VARIANTS[arg](confirmation_code(auth, party)) if kind == "variant" else arg
            if isinstance(guess, str) and guess in sent:
                continue  # not a wrong guess
            result = _outcome(lambda g=guess, f=flow: auth.advance(f, {"code": g}, client=CLIENT))
            assert not isinstance(result, SignedIn), guess
        assert auth.sessions.list(party.id) == []
    finally:
        auth.close()

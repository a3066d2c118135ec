"""The built-in ``password`` strategy (the Lexzur client portal), end to end.

Every test runs against the memory and the SQLite store, through the generic flow API
(``auth.start(portal, "password", {"email", "password"})``) and ``auth.passwords`` (invite,
inspect, accept_invite, request_reset, reset, sign_up, confirm, change). Links are read from the
simulated outbox feed as a client would read their mail, and the frozen clock is moved for every
expiry. Requirement numbers refer to ``../shared/SECURITY-REQUIREMENTS.md``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import bcrypt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CLIENT, SECRET_KEYS, EmailCodePlugin
from portalauth import (
    Auth,
    ClientInfo,
    ConfigError,
    FrozenClock,
    Identity,
    InvalidInput,
    Message,
    NotReady,
    PasswordHasher,
    PortalAuthError,
    SessionInvalid,
    SignedIn,
    SignupDisabled,
    Step,
    Throttled,
    VerificationFailed,
    hookimpl,
)
from portalauth.events import Event
from portalauth.stores.memory import MemoryStore
from portalauth.strategies.password import PasswordSettings

PORTAL = "lx"
PORTAL_NAME = "Lexzur Law"
BASE_URL = "https://lx.example"
METHOD = "password"
INVITE = "password_invite"
RESET = "password_reset"
CONFIRM = "signup_confirm"

JANE = "jane.roe@example.com"
NOBODY = "nobody@example.com"
PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a brand new pass phrase for me"
OTHER_PASSWORD = "yet another long pass phrase"

INVITE_TTL = 7 * 86400
RESET_TTL = 60 * 60
CONFIRM_TTL = 24 * 3600

#: Entries of the shipped list (src/portalauth/data/common-passwords.txt.gz) of 15+ characters.
COMMON_15 = ("qwerty123456789", "manchesterunited", "1q2w3e4r5t6y7u8i9o0p")

_URL = re.compile(r"https?://\S+")


# -- helpers ------------------------------------------------------------------------------------
class Recorder:
    """Keeps every audit event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    @hookimpl
    def portalauth_event(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]

    def of(self, kind: str) -> list[Event]:
        return [event for event in self.events if event.kind == kind]


def open_lx(auth: Auth, slug: str = PORTAL, name: str = PORTAL_NAME, **settings: Any) -> None:
    settings.setdefault("methods", {METHOD})
    settings.setdefault("simulate", True)
    settings.setdefault("base_url", f"https://{slug}.example")
    auth.portals.create(slug, name, **settings)


def feed(auth: Auth, identity: Identity | str | None = None, portal: str = PORTAL) -> list[Message]:
    """The simulated-message feed, newest first (the portal's, or one client's)."""
    who = identity.id if isinstance(identity, Identity) else identity
    return auth.outbox.messages(portal, identity=who)


def latest(auth: Auth, identity: Identity | str, portal: str = PORTAL) -> Message:
    messages = feed(auth, identity, portal)
    assert messages, "nothing was recorded for this client"
    return messages[0]


def token_of(message: Message) -> str:
    found = _URL.search(message.text)
    assert found, "no link in the message"
    [token] = parse_qs(urlsplit(found.group(0)).query)["token"]
    return token


def sign_in(
    auth: Auth, email: object, password: object, portal: str = PORTAL, client: ClientInfo = CLIENT
) -> Step | SignedIn:
    return auth.start(portal, METHOD, {"email": email, "password": password}, client=client)


def invite_token(auth: Auth, identity: Identity, portal: str = PORTAL) -> str:
    auth.passwords.invite(identity)
    message = latest(auth, identity, portal)
    assert message.purpose == INVITE
    return token_of(message)


def with_password(
    auth: Auth, identity: Identity, password: str = PASSWORD, portal: str = PORTAL
) -> SignedIn:
    """Invite ``identity`` and accept with ``password`` (a portal without a second factor)."""
    done = auth.passwords.accept_invite(portal, invite_token(auth, identity, portal), password)
    assert isinstance(done, SignedIn)
    return done


def reset_token(auth: Auth, identity: Identity, portal: str = PORTAL) -> str:
    step = auth.passwords.request_reset(portal, {"email": identity.email}, client=CLIENT)
    assert isinstance(step, Step) and step.done
    message = latest(auth, identity, portal)
    assert message.purpose == RESET
    return token_of(message)


def fails(call: Callable[[], object]) -> VerificationFailed:
    with pytest.raises(VerificationFailed) as failed:
        call()
    return failed.value


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def auth(make_auth: Callable[..., Auth], store_kind: str, recorder: Recorder) -> Auth:
    """An ``Auth`` on every store kind with portal ``lx`` (Lexzur Law, password only)."""
    auth = make_auth(store_kind, plugins=[EmailCodePlugin(), recorder])
    # Most reset tests follow the client into the portal afterwards: opt into sign-in after a
    # reset here; test_a_reset_does_not_sign_in_by_default covers the default.
    auth.portals.create(
        PORTAL,
        PORTAL_NAME,
        methods={METHOD},
        simulate=True,
        base_url=BASE_URL,
        method_settings={METHOD: {"sign_in_after_reset": True}},
    )
    return auth


def test_a_reset_does_not_sign_in_by_default(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:  # decision 4
    auth = make_auth(store_kind)
    open_lx(auth)
    jane = auth.directory.add(PORTAL, "Jane Roe", email="jane@example.com")
    auth.passwords.invite(jane)
    invite = token_of(feed(auth, jane)[0])
    auth.passwords.accept_invite(PORTAL, invite, "first long passphrase here")
    auth.passwords.request_reset(PORTAL, {"email": "jane@example.com"}, client=CLIENT)
    reset = token_of(feed(auth, jane)[0])
    done = auth.passwords.reset(PORTAL, reset, "second long passphrase here", client=CLIENT)
    assert isinstance(done, Step)
    assert done.done
    assert done.notice is not None and "sign in" in done.notice
    assert auth.sessions.list(jane.id) == []
    signed = auth.start(
        PORTAL, METHOD, {"email": "jane@example.com", "password": "second long passphrase here"}
    )
    assert isinstance(signed, SignedIn)


@pytest.fixture
def jane(auth: Auth) -> Identity:
    return auth.directory.add(PORTAL, "Jane Roe", email=JANE)


@pytest.fixture
def signed_up(auth: Auth) -> Auth:
    """``auth`` with self sign-up switched on for ``lx``."""
    auth.portals.update(PORTAL, signup_enabled=True)
    return auth


# -- staff invitation ---------------------------------------------------------------------------
def test_invite_emails_a_set_password_link_and_records_the_invitation(
    auth: Auth, jane: Identity, clock: FrozenClock, recorder: Recorder
) -> None:  # R3 R50
    expires_at = auth.passwords.invite(jane, actor="staff:7")
    assert expires_at == clock.now() + INVITE_TTL
    message = latest(auth, jane)
    assert (message.purpose, message.to, message.channel) == (INVITE, JANE, "email")
    assert PORTAL_NAME in message.subject
    link = _URL.search(message.text)
    assert link and link.group(0).startswith(f"{BASE_URL}/password/set?token=")
    token = token_of(message)
    assert len(token) >= 43  # 256 bits
    status = auth.passwords.inspect(PORTAL, token)
    assert (status.state, status.purpose, status.expires_at) == ("valid", INVITE, expires_at)
    invited = auth.directory.get(jane.id)
    assert (invited.invited_method, invited.invited_at) == (METHOD, clock.now())
    [sent] = recorder.of("invitation.sent")
    assert (sent.identity_id, sent.method, sent.actor) == (jane.id, METHOD, "staff:7")
    # Inspecting changed nothing: the link still works.
    assert auth.passwords.inspect(PORTAL, token).valid


def test_accept_invite_sets_the_password_and_signs_in(auth: Auth, jane: Identity) -> None:
    token = invite_token(auth, jane)
    done = auth.passwords.accept_invite(PORTAL, token, PASSWORD, client=CLIENT)
    assert isinstance(done, SignedIn)
    assert (done.identity.id, done.method) == (jane.id, METHOD)
    assert auth.sessions.validate(done.token).identity_id == jane.id
    stored = auth.directory.get(jane.id)
    assert stored.password_hash is not None and stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash
    assert isinstance(sign_in(auth, JANE, PASSWORD), SignedIn)


def test_an_invitation_link_works_once(auth: Auth, jane: Identity) -> None:  # R24 R50
    token = invite_token(auth, jane)
    assert isinstance(auth.passwords.accept_invite(PORTAL, token, PASSWORD), SignedIn)
    assert auth.passwords.inspect(PORTAL, token).state == "used"
    fails(lambda: auth.passwords.accept_invite(PORTAL, token, OTHER_PASSWORD))
    # The second use changed nothing.
    assert isinstance(sign_in(auth, JANE, PASSWORD), SignedIn)
    fails(lambda: sign_in(auth, JANE, OTHER_PASSWORD))


def test_an_invitation_link_is_valid_until_the_last_second_of_seven_days(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:  # R27
    token = invite_token(auth, jane)
    clock.advance(INVITE_TTL - 1)
    assert auth.passwords.inspect(PORTAL, token).state == "valid"
    assert isinstance(auth.passwords.accept_invite(PORTAL, token, PASSWORD), SignedIn)


def test_an_invitation_link_expires_at_seven_days(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:  # R27
    token = invite_token(auth, jane)
    clock.advance(INVITE_TTL)
    assert auth.passwords.inspect(PORTAL, token).state == "expired"
    failed = fails(lambda: auth.passwords.accept_invite(PORTAL, token, PASSWORD))
    assert failed.reason == "invalid"
    assert auth.directory.get(jane.id).password_hash is None
    assert auth.sessions.list(jane.id) == []


def test_a_new_invitation_supersedes_the_previous_one(auth: Auth, jane: Identity) -> None:  # R25
    first = invite_token(auth, jane)
    second = invite_token(auth, jane)
    assert first != second
    assert auth.passwords.inspect(PORTAL, first).state == "superseded"
    assert fails(lambda: auth.passwords.accept_invite(PORTAL, first, PASSWORD)).reason == (
        "superseded"
    )
    assert isinstance(auth.passwords.accept_invite(PORTAL, second, PASSWORD), SignedIn)


def test_invite_is_refused_while_required_fields_are_missing(auth: Auth) -> None:
    open_lx(auth, "lx-firm", required_fields={"email", "mobile"})
    kim = auth.directory.add("lx-firm", "Kim Lee", email="kim@example.com")
    with pytest.raises(NotReady) as not_ready:
        auth.passwords.invite(kim)
    assert not_ready.value.missing == ("mobile",)
    assert feed(auth, portal="lx-firm") == []
    assert auth.directory.get(kim.id).invited_method is None
    assert auth.store.latest_challenge("lx-firm", kim.id, INVITE) is None

    auth.directory.update(kim.id, phone="(202) 555-0143")
    auth.passwords.invite(kim)
    assert auth.directory.get(kim.id).invited_method == METHOD
    assert latest(auth, kim, "lx-firm").purpose == INVITE


def test_an_undeliverable_invitation_leaves_no_live_link(auth: Auth) -> None:
    nomail = auth.directory.add(PORTAL, "No Mail")
    with pytest.raises(PortalAuthError):
        auth.passwords.invite(nomail)
    assert auth.directory.get(nomail.id).invited_method is None
    assert auth.challenges.latest(PORTAL, nomail.id, INVITE) is None


def test_a_password_portal_needs_a_base_url(auth: Auth) -> None:  # R37
    with pytest.raises(ConfigError):
        auth.portals.create("lx-nourl", PORTAL_NAME, methods={METHOD}, simulate=True)
    assert auth.portals.find("lx-nourl") is None


def test_accept_invite_continues_to_the_portal_second_factor(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:
    auth = make_auth(store_kind)
    open_lx(auth, second_factor="email_code")
    kim = auth.directory.add(PORTAL, "Kim Lee", email="kim@example.com")
    step = auth.passwords.accept_invite(PORTAL, invite_token(auth, kim), "eight ch")
    assert isinstance(step, Step)
    assert step.next == "second_factor" and step.flow is not None
    assert auth.sessions.list(kim.id) == []
    code = re.search(r"\b(\d{6})\b", latest(auth, kim).text)
    assert code
    done = auth.advance(step.flow, {"code": code.group(1)}, client=CLIENT)
    assert isinstance(done, SignedIn)
    assert (done.identity.id, done.method) == (kim.id, METHOD)


# -- sign-in ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "typed", [JANE, "Jane.Roe@Example.COM", "  jane.roe@example.com ", "JANE.ROE@EXAMPLE.COM\t"]
)
def test_sign_in_with_the_address_in_any_case_or_spacing(
    auth: Auth, jane: Identity, recorder: Recorder, typed: str
) -> None:  # R63
    with_password(auth, jane)
    done = sign_in(auth, typed, PASSWORD)
    assert isinstance(done, SignedIn)
    assert (done.identity.id, done.method) == (jane.id, METHOD)
    assert auth.directory.get(jane.id).last_sign_in_method == METHOD
    assert recorder.of("signed_in")[-1].identity_id == jane.id


def test_the_password_is_not_trimmed_or_case_folded(auth: Auth, jane: Identity) -> None:  # R42
    with_password(auth, jane)
    for near in (PASSWORD.upper(), f" {PASSWORD}", f"{PASSWORD} ", PASSWORD[:-1]):
        fails(partial(sign_in, auth, JANE, near))


def test_wrong_password_and_unknown_address_look_the_same(
    auth: Auth, jane: Identity
) -> None:  # R31 R32 R34
    with_password(auth, jane)
    sessions = len(auth.sessions.list(jane.id))
    before = auth.hasher.calls
    wrong = fails(lambda: sign_in(auth, JANE, OTHER_PASSWORD))
    wrong_cost = auth.hasher.calls - before
    before = auth.hasher.calls
    unknown = fails(lambda: sign_in(auth, NOBODY, OTHER_PASSWORD))
    unknown_cost = auth.hasher.calls - before
    assert wrong_cost == unknown_cost == 1
    assert (wrong.code, wrong.message, wrong.reason) == (
        unknown.code,
        unknown.message,
        unknown.reason,
    )
    assert len(auth.sessions.list(jane.id)) == sessions


def test_accounts_that_cannot_sign_in_cost_the_same_and_say_the_same(
    auth: Auth, jane: Identity
) -> None:  # R31 R32 R34
    with_password(auth, jane)
    invited = auth.directory.add(PORTAL, "No Password Yet", email="invited@example.com")
    auth.passwords.invite(invited)
    disabled = auth.directory.add(PORTAL, "Dee Sabled", email="dee@example.com")
    with_password(auth, disabled)
    auth.directory.update(disabled.id, disabled=True)
    answers = set()
    for address in (JANE, NOBODY, "invited@example.com", "dee@example.com"):
        before = auth.hasher.calls
        failed = fails(partial(sign_in, auth, address, OTHER_PASSWORD))
        assert auth.hasher.calls - before == 1, address
        answers.add((failed.code, failed.message, failed.reason))
    assert len(answers) == 1
    # The disabled account's right password does not sign in either.
    fails(lambda: sign_in(auth, "dee@example.com", PASSWORD))


def test_consecutive_failures_escalate_and_a_success_clears_them(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:  # R7 R12 R14
    with_password(auth, jane)
    for _ in range(10):  # the portal's failure budget
        fails(lambda: sign_in(auth, JANE, OTHER_PASSWORD))
        fails(lambda: sign_in(auth, NOBODY, OTHER_PASSWORD))
    before = auth.hasher.calls
    with pytest.raises(Throttled) as known:
        sign_in(auth, JANE, PASSWORD)
    with pytest.raises(Throttled) as unknown:
        sign_in(auth, NOBODY, PASSWORD)
    assert auth.hasher.calls == before  # refused before any hashing
    assert known.value.retry_after == unknown.value.retry_after == 30
    assert known.value.message == unknown.value.message
    clock.advance(29)
    with pytest.raises(Throttled) as throttled:
        sign_in(auth, JANE, PASSWORD)
    assert throttled.value.retry_after == 1
    clock.advance(1)
    fails(lambda: sign_in(auth, JANE, OTHER_PASSWORD))  # the 11th failure: the delay doubles
    with pytest.raises(Throttled) as throttled:
        sign_in(auth, JANE, PASSWORD)
    assert throttled.value.retry_after == 60
    clock.advance(60)
    assert isinstance(sign_in(auth, JANE, PASSWORD), SignedIn)
    assert auth.challenges.failures(PORTAL, METHOD, jane.id) == 0
    # Cleared: the next wrong password is an ordinary failure, not a wait.
    fails(lambda: sign_in(auth, JANE, OTHER_PASSWORD))


def _lock_out(auth: Auth, clock: FrozenClock, identity: Identity) -> None:
    """Fail until the portal's hard limit (set to 5 by the caller), waiting out each delay."""
    while auth.challenges.failures(PORTAL, METHOD, identity.id) < 5:
        try:
            sign_in(auth, identity.email, OTHER_PASSWORD)
        except Throttled as throttled:
            clock.advance(throttled.retry_after)
        except VerificationFailed:
            pass
    # Locked: even the right password, long after, is refused.
    clock.advance(2 * 3600)
    with pytest.raises(Throttled):
        sign_in(auth, identity.email, PASSWORD)


def test_a_lockout_never_closes_the_reset_path(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:  # R12
    auth.portals.update(PORTAL, failure_budget=3, failure_hard_limit=5)
    with_password(auth, jane)
    _lock_out(auth, clock, jane)
    assert auth.challenges.failures(PORTAL, METHOD, jane.id) >= 5
    token = reset_token(auth, jane)  # requesting works and never adds to the lock
    done = auth.passwords.reset(PORTAL, token, NEW_PASSWORD, client=CLIENT)
    assert isinstance(done, SignedIn)
    assert done.identity.id == jane.id
    assert auth.sessions.validate(done.token).identity_id == jane.id


def test_a_reset_ends_the_password_lock(auth: Auth, jane: Identity, clock: FrozenClock) -> None:
    # R12
    auth.portals.update(PORTAL, failure_budget=3, failure_hard_limit=5)
    with_password(auth, jane)
    _lock_out(auth, clock, jane)
    assert isinstance(auth.passwords.reset(PORTAL, reset_token(auth, jane), NEW_PASSWORD), SignedIn)
    assert isinstance(sign_in(auth, JANE, NEW_PASSWORD), SignedIn)


# -- hashing: upgrade on sign-in ----------------------------------------------------------------
def _bcrypt_identity(auth: Auth, clock: FrozenClock, password: bytes) -> tuple[Identity, str]:
    kim = auth.directory.add(PORTAL, "Kim Lee", email="kim@example.com")
    legacy = bcrypt.hashpw(password, bcrypt.gensalt(rounds=4)).decode("ascii")
    assert auth.store.replace_password_hash(kim.id, legacy, expected=None, now=clock.now())
    return auth.directory.get(kim.id), legacy


def test_a_bcrypt_hash_signs_in_and_is_upgraded_to_argon2id(
    auth: Auth, clock: FrozenClock, recorder: Recorder
) -> None:  # R44
    kim, legacy = _bcrypt_identity(auth, clock, PASSWORD.encode())
    done = sign_in(auth, "kim@example.com", PASSWORD)
    assert isinstance(done, SignedIn)
    stored = auth.directory.get(kim.id)
    assert stored.password_hash is not None and stored.password_hash.startswith("$argon2id$")
    assert stored.password_changed_at is None  # an upgrade is not a password change
    [upgraded] = recorder.of("password.upgraded")
    assert upgraded.identity_id == kim.id
    # Still the same password; the old hash is gone and no second upgrade happens.
    assert isinstance(sign_in(auth, "kim@example.com", PASSWORD), SignedIn)
    assert len(recorder.of("password.upgraded")) == 1
    assert auth.directory.get(kim.id).password_hash != legacy


def test_an_upgrade_is_not_a_password_change(auth: Auth, clock: FrozenClock) -> None:  # R44
    kim, legacy = _bcrypt_identity(auth, clock, PASSWORD.encode())
    earlier = auth.sign_in(kim, method=METHOD)  # a session from before the upgrade
    token = reset_token(auth, kim)  # a reset link from before the upgrade
    assert isinstance(sign_in(auth, "kim@example.com", PASSWORD), SignedIn)
    assert auth.directory.get(kim.id).password_hash != legacy  # upgraded...
    assert auth.sessions.validate(earlier.token).identity_id == kim.id  # ...nothing else ended
    assert auth.passwords.inspect(PORTAL, token).valid
    assert isinstance(auth.passwords.reset(PORTAL, token, NEW_PASSWORD), SignedIn)


def test_a_failed_sign_in_does_not_upgrade(auth: Auth, clock: FrozenClock) -> None:  # R44
    kim, legacy = _bcrypt_identity(auth, clock, PASSWORD.encode())
    fails(lambda: sign_in(auth, "kim@example.com", OTHER_PASSWORD))
    assert auth.directory.get(kim.id).password_hash == legacy


def test_bcrypt_never_verifies_past_72_bytes(auth: Auth, clock: FrozenClock) -> None:  # R45
    stored = "x" * 72
    _bcrypt_identity(auth, clock, stored.encode())
    before = auth.hasher.calls
    fails(lambda: sign_in(auth, "kim@example.com", stored + "y"))
    assert auth.hasher.calls - before == 1
    assert isinstance(sign_in(auth, "kim@example.com", stored), SignedIn)


def test_a_password_changed_during_the_upgrade_is_not_overwritten(
    auth: Auth, clock: FrozenClock, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:  # R44 (compare-and-swap)
    kim, legacy = _bcrypt_identity(auth, clock, PASSWORD.encode())
    concurrent = auth.hasher.hash(NEW_PASSWORD)
    verify = auth.hasher.verify

    def verify_then_race(password: object, stored: str | None) -> tuple[bool, str | None]:
        result = verify(password, stored)
        # Another request changes the password after this one read the old hash.
        assert auth.store.replace_password_hash(
            kim.id, concurrent, expected=legacy, now=clock.now(), changed=True
        )
        return result

    monkeypatch.setattr(auth.hasher, "verify", verify_then_race)
    # The password it checked is no longer the password: no session either (R57).
    fails(lambda: sign_in(auth, "kim@example.com", PASSWORD))
    assert auth.sessions.list(kim.id) == []
    monkeypatch.undo()
    assert auth.directory.get(kim.id).password_hash == concurrent
    assert recorder.of("password.upgraded") == []
    assert isinstance(sign_in(auth, "kim@example.com", NEW_PASSWORD), SignedIn)
    fails(lambda: sign_in(auth, "kim@example.com", PASSWORD))


# -- self sign-up -------------------------------------------------------------------------------
def _sign_up(
    auth: Auth, email: str = "kim@example.com", password: str = PASSWORD, name: str = "Kim Lee"
) -> Step:
    step = auth.passwords.sign_up(
        PORTAL, {"name": name, "email": email, "password": password}, client=CLIENT
    )
    assert isinstance(step, Step) and step.done
    return step


def test_sign_up_is_refused_alike_for_new_and_existing_addresses_when_off(
    auth: Auth, jane: Identity
) -> None:  # R31 R49
    with_password(auth, jane)
    identities = auth.directory.list(PORTAL)
    messages = feed(auth)
    before = auth.hasher.calls
    answers = []
    for address in ("kim@example.com", JANE):
        with pytest.raises(SignupDisabled) as refused:
            auth.passwords.sign_up(
                PORTAL,
                {"name": "Kim Lee", "email": address, "password": NEW_PASSWORD},
                client=CLIENT,
            )
        answers.append((refused.value.code, refused.value.message))
    assert answers[0] == answers[1]
    assert auth.directory.list(PORTAL) == identities
    assert feed(auth) == messages
    assert auth.hasher.calls == before
    assert isinstance(sign_in(auth, JANE, PASSWORD), SignedIn)  # Jane's password is untouched


def test_a_signed_up_account_waits_for_its_confirmation_link(
    signed_up: Auth, recorder: Recorder
) -> None:
    auth = signed_up
    step = _sign_up(auth)
    kim = auth.directory.find_by_email(PORTAL, "kim@example.com")
    assert kim is not None
    assert (kim.name, kim.email_confirmed) == ("Kim Lee", False)
    assert kim.password_hash is not None and kim.password_hash.startswith("$argon2id$")
    assert "e-mail" in (step.notice or "")
    message = latest(auth, kim)
    assert message.purpose == CONFIRM
    token = token_of(message)
    # Not usable before the address is confirmed, and the answer is the ordinary one.
    unconfirmed = fails(lambda: sign_in(auth, "kim@example.com", PASSWORD))
    unknown = fails(lambda: sign_in(auth, NOBODY, PASSWORD))
    assert unconfirmed.message == unknown.message
    assert auth.passwords.inspect(PORTAL, token).state == "valid"
    done = auth.passwords.confirm(PORTAL, token, client=CLIENT)
    assert isinstance(done, SignedIn)
    assert done.identity.id == kim.id
    assert auth.directory.get(kim.id).email_confirmed
    assert isinstance(sign_in(auth, "kim@example.com", PASSWORD), SignedIn)
    # The confirmation link works once.
    fails(lambda: auth.passwords.confirm(PORTAL, token))
    assert auth.passwords.inspect(PORTAL, token).state == "used"
    assert recorder.of("signed_in")


def test_a_confirmation_link_lasts_24_hours(signed_up: Auth, clock: FrozenClock) -> None:  # R27
    auth = signed_up
    _sign_up(auth)
    _sign_up(auth, email="lee@example.com", name="Lee Kim")
    kim = auth.directory.find_by_email(PORTAL, "kim@example.com")
    lee = auth.directory.find_by_email(PORTAL, "lee@example.com")
    assert kim is not None and lee is not None
    kim_token, lee_token = token_of(latest(auth, kim)), token_of(latest(auth, lee))
    clock.advance(CONFIRM_TTL - 1)
    assert isinstance(auth.passwords.confirm(PORTAL, kim_token), SignedIn)
    clock.advance(1)
    assert auth.passwords.inspect(PORTAL, lee_token).state == "expired"
    fails(lambda: auth.passwords.confirm(PORTAL, lee_token))
    assert not auth.directory.get(lee.id).email_confirmed


def test_signing_up_again_with_an_existing_address_changes_nothing(
    signed_up: Auth, jane: Identity
) -> None:  # R31 R32 R49
    auth = signed_up
    with_password(auth, jane)
    identities = auth.directory.list(PORTAL)
    before = auth.hasher.calls
    new = _sign_up(auth)
    new_cost = auth.hasher.calls - before
    before = auth.hasher.calls
    existing = _sign_up(auth, email=" Jane.Roe@EXAMPLE.com", password=NEW_PASSWORD, name="Eve")
    existing_cost = auth.hasher.calls - before
    assert existing == new
    assert existing_cost == new_cost == 1
    # Only Kim's account was created; Jane's is as it was.
    assert len(auth.directory.list(PORTAL)) == len(identities) + 1
    assert auth.directory.get(jane.id).name == "Jane Roe"
    notice = latest(auth, jane)
    assert notice.purpose == "account_exists"
    assert "already" in notice.text
    assert NEW_PASSWORD not in notice.text
    assert isinstance(sign_in(auth, JANE, PASSWORD), SignedIn)
    fails(lambda: sign_in(auth, JANE, NEW_PASSWORD))


@pytest.mark.parametrize("missing", ["name", "email", "password"])
def test_sign_up_needs_name_email_and_password(signed_up: Auth, missing: str) -> None:  # R23
    data = {"name": "Kim Lee", "email": "kim@example.com", "password": PASSWORD}
    for bad in (None, [data[missing]], ""):
        form: dict[str, Any] = dict(data)
        if bad is None:
            del form[missing]
        else:
            form[missing] = bad
        with pytest.raises(InvalidInput):
            signed_up.passwords.sign_up(PORTAL, form, client=CLIENT)
    assert signed_up.directory.list(PORTAL) == []
    assert feed(signed_up) == []


def test_sign_up_applies_the_password_policy(signed_up: Auth) -> None:  # R39 R41
    for weak in ("fourteen chars", "kim@example.com", COMMON_15[0], "KIM LEE KIM LEE"):
        name = "Kim Lee Kim Lee" if weak.startswith("KIM") else "Kim Lee"
        with pytest.raises(InvalidInput) as refused:
            signed_up.passwords.sign_up(
                PORTAL, {"name": name, "email": "kim@example.com", "password": weak}
            )
        assert refused.value.field == "password"
    assert signed_up.directory.list(PORTAL) == []


def test_an_unconfirmed_sign_up_can_be_recovered_by_the_address_owner(
    signed_up: Auth, clock: FrozenClock
) -> None:  # R49 (pre-registration)
    auth = signed_up
    _sign_up(auth, password="the squatter's long password")
    clock.advance(CONFIRM_TTL)
    kim = auth.directory.find_by_email(PORTAL, "kim@example.com")
    assert kim is not None
    auth.passwords.request_reset(PORTAL, {"email": "kim@example.com"}, client=CLIENT)
    message = latest(auth, kim)
    assert message.purpose == RESET
    assert isinstance(auth.passwords.reset(PORTAL, token_of(message), NEW_PASSWORD), SignedIn)
    fails(lambda: sign_in(auth, "kim@example.com", "the squatter's long password"))


# -- forgotten password -------------------------------------------------------------------------
def test_a_reset_request_answers_alike_and_mails_only_a_known_address(
    auth: Auth, jane: Identity
) -> None:  # R31 R32 R48
    with_password(auth, jane)
    sent = len(feed(auth))
    before = auth.hasher.calls
    unknown = auth.passwords.request_reset(PORTAL, {"email": NOBODY}, client=CLIENT)
    assert len(feed(auth)) == sent
    known = auth.passwords.request_reset(PORTAL, {"email": "JANE.Roe@example.com "}, client=CLIENT)
    assert auth.hasher.calls == before
    assert known == unknown
    assert (known.flow, known.next, known.sent_to) == (None, None, None)
    messages = feed(auth)
    assert len(messages) == sent + 1
    assert (messages[0].purpose, messages[0].to) == (RESET, JANE)
    assert token_of(messages[0]) and f"{BASE_URL}/password/reset?token=" in messages[0].text


def test_a_reset_link_works_once(auth: Auth, jane: Identity) -> None:  # R24 R30
    with_password(auth, jane)
    token = reset_token(auth, jane)
    assert isinstance(auth.passwords.reset(PORTAL, token, NEW_PASSWORD), SignedIn)
    assert auth.passwords.inspect(PORTAL, token).state == "used"
    fails(lambda: auth.passwords.reset(PORTAL, token, OTHER_PASSWORD))
    assert isinstance(sign_in(auth, JANE, NEW_PASSWORD), SignedIn)
    fails(lambda: sign_in(auth, JANE, PASSWORD))
    fails(lambda: sign_in(auth, JANE, OTHER_PASSWORD))


def test_a_reset_link_works_until_the_last_second_of_the_hour(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:  # R27 R48
    with_password(auth, jane)
    token = reset_token(auth, jane)
    clock.advance(RESET_TTL - 1)
    assert auth.passwords.inspect(PORTAL, token).valid
    assert isinstance(auth.passwords.reset(PORTAL, token, NEW_PASSWORD), SignedIn)


def test_a_reset_link_expires_after_an_hour(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:  # R27 R48
    with_password(auth, jane)
    token = reset_token(auth, jane)
    clock.advance(RESET_TTL)
    assert auth.passwords.inspect(PORTAL, token).state == "expired"
    fails(lambda: auth.passwords.reset(PORTAL, token, NEW_PASSWORD))
    assert isinstance(sign_in(auth, JANE, PASSWORD), SignedIn)


def test_the_newer_of_two_reset_links_kills_the_older(auth: Auth, jane: Identity) -> None:
    # R25 R30
    with_password(auth, jane)
    older = reset_token(auth, jane)
    newer = reset_token(auth, jane)
    assert older != newer
    assert auth.passwords.inspect(PORTAL, older).state == "superseded"
    assert isinstance(auth.passwords.reset(PORTAL, newer, NEW_PASSWORD), SignedIn)
    failed = fails(lambda: auth.passwords.reset(PORTAL, older, OTHER_PASSWORD))
    assert failed.reason == "superseded"
    assert isinstance(sign_in(auth, JANE, NEW_PASSWORD), SignedIn)


def test_a_reset_link_dies_when_the_password_is_changed(auth: Auth, jane: Identity) -> None:
    # R29 R30
    session = with_password(auth, jane)
    token = reset_token(auth, jane)
    auth.passwords.change(session.token, PASSWORD, NEW_PASSWORD)
    assert not auth.passwords.inspect(PORTAL, token).valid
    fails(lambda: auth.passwords.reset(PORTAL, token, OTHER_PASSWORD))
    assert isinstance(sign_in(auth, JANE, NEW_PASSWORD), SignedIn)


def test_a_reset_link_dies_when_an_invitation_is_accepted(auth: Auth, jane: Identity) -> None:
    # R29 R30
    with_password(auth, jane)
    invitation = invite_token(auth, jane)  # staff re-invite
    token = reset_token(auth, jane)
    assert isinstance(auth.passwords.accept_invite(PORTAL, invitation, NEW_PASSWORD), SignedIn)
    fails(lambda: auth.passwords.reset(PORTAL, token, OTHER_PASSWORD))
    assert isinstance(sign_in(auth, JANE, NEW_PASSWORD), SignedIn)


def test_a_reset_link_is_bound_to_the_password_it_was_sent_for(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:  # R30: a change that bypassed auth.passwords (another system) still kills the link
    with_password(auth, jane)
    token = reset_token(auth, jane)
    current = auth.directory.get(jane.id).password_hash
    clock.advance(1)
    assert auth.store.replace_password_hash(
        jane.id, auth.hasher.hash(NEW_PASSWORD), expected=current, now=clock.now(), changed=True
    )
    fails(lambda: auth.passwords.reset(PORTAL, token, OTHER_PASSWORD))
    assert isinstance(sign_in(auth, JANE, NEW_PASSWORD), SignedIn)


def test_a_reset_ends_every_session_and_sends_a_notice(
    auth: Auth, jane: Identity, recorder: Recorder
) -> None:  # R47 R48 R57
    first = with_password(auth, jane)
    second = sign_in(auth, JANE, PASSWORD)
    assert isinstance(second, SignedIn)
    done = auth.passwords.reset(PORTAL, reset_token(auth, jane), NEW_PASSWORD)
    assert isinstance(done, SignedIn)
    for old in (first, second):
        with pytest.raises(SessionInvalid):
            auth.sessions.validate(old.token)
    assert [s.key for s in auth.sessions.list(jane.id)] == [done.session.key]
    notice = latest(auth, jane)
    assert notice.purpose == "password_changed"
    assert NEW_PASSWORD not in notice.text and PASSWORD not in notice.text
    assert recorder.of("password.set")[-1].detail["how"] == "reset"


def test_a_reset_does_not_skip_the_second_factor(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:  # R48
    auth = make_auth(store_kind)
    open_lx(
        auth,
        second_factor="email_code",
        method_settings={METHOD: {"sign_in_after_reset": True}},
    )
    kim = auth.directory.add(PORTAL, "Kim Lee", email="kim@example.com")
    first = auth.passwords.accept_invite(PORTAL, invite_token(auth, kim), "eight ch")
    assert isinstance(first, Step)
    step = auth.passwords.reset(PORTAL, reset_token(auth, kim), "another one")
    assert isinstance(step, Step) and step.next == "second_factor"
    assert auth.sessions.list(kim.id) == []


@pytest.mark.parametrize("bad", [None, 7, ["t"], {"t": 1}, "", "x" * 5000, "a.b", "\x00" * 43])
def test_malformed_link_tokens_are_refused(auth: Auth, jane: Identity, bad: object) -> None:
    # R21 R23
    with_password(auth, jane)
    assert auth.passwords.inspect(PORTAL, bad).state == "invalid"
    for use in (
        lambda: auth.passwords.reset(PORTAL, bad, NEW_PASSWORD),
        lambda: auth.passwords.accept_invite(PORTAL, bad, NEW_PASSWORD),
        lambda: auth.passwords.confirm(PORTAL, bad),
    ):
        fails(use)
    assert isinstance(sign_in(auth, JANE, PASSWORD), SignedIn)


def test_a_portal_cannot_make_reset_links_outlive_an_hour(auth: Auth) -> None:  # R48
    open_lx(auth, "lx-slow", method_settings={METHOD: {"reset_minutes": 60}})
    with pytest.raises(ConfigError):
        open_lx(auth, "lx-slower", method_settings={METHOD: {"reset_minutes": 61}})


def test_a_link_of_one_purpose_does_not_work_for_another(auth: Auth, jane: Identity) -> None:
    # R26
    invitation = invite_token(auth, jane)
    fails(lambda: auth.passwords.reset(PORTAL, invitation, NEW_PASSWORD))
    fails(lambda: auth.passwords.confirm(PORTAL, invitation))
    assert isinstance(auth.passwords.accept_invite(PORTAL, invitation, PASSWORD), SignedIn)
    reset = reset_token(auth, jane)
    fails(lambda: auth.passwords.accept_invite(PORTAL, reset, NEW_PASSWORD))
    fails(lambda: auth.passwords.confirm(PORTAL, reset))


# -- change -------------------------------------------------------------------------------------
def test_change_keeps_the_calling_session_and_ends_the_others(
    auth: Auth, jane: Identity, recorder: Recorder
) -> None:  # R47
    here = with_password(auth, jane)
    elsewhere = sign_in(auth, JANE, PASSWORD)
    assert isinstance(elsewhere, SignedIn)
    auth.passwords.change(here.token, PASSWORD, NEW_PASSWORD)
    assert auth.sessions.validate(here.token).identity_id == jane.id
    with pytest.raises(SessionInvalid):
        auth.sessions.validate(elsewhere.token)
    assert isinstance(sign_in(auth, JANE, NEW_PASSWORD), SignedIn)
    fails(lambda: sign_in(auth, JANE, PASSWORD))
    notice = latest(auth, jane)
    assert notice.purpose == "password_changed"
    assert NEW_PASSWORD not in notice.text
    assert recorder.of("password.set")[-1].detail["how"] == "changed"


def test_change_needs_the_current_password(auth: Auth, jane: Identity) -> None:  # R47
    here = with_password(auth, jane)
    elsewhere = sign_in(auth, JANE, PASSWORD)
    assert isinstance(elsewhere, SignedIn)
    for wrong in (OTHER_PASSWORD, ""):
        fails(partial(auth.passwords.change, here.token, wrong, NEW_PASSWORD))
    for malformed in (None, [PASSWORD]):  # not text: refused before any hashing (R23)
        with pytest.raises(InvalidInput):
            auth.passwords.change(here.token, malformed, NEW_PASSWORD)
    auth.sessions.validate(elsewhere.token)
    assert isinstance(sign_in(auth, JANE, PASSWORD), SignedIn)
    fails(lambda: sign_in(auth, JANE, NEW_PASSWORD))


def test_change_needs_a_live_session(auth: Auth, jane: Identity) -> None:  # R47
    here = with_password(auth, jane)
    auth.sessions.revoke(here.token)
    for token in (here.token, "", "not-a-session"):
        with pytest.raises(SessionInvalid):
            auth.passwords.change(token, PASSWORD, NEW_PASSWORD)
    assert isinstance(sign_in(auth, JANE, PASSWORD), SignedIn)


def test_change_applies_the_policy_to_the_new_password(auth: Auth, jane: Identity) -> None:
    here = with_password(auth, jane)
    for weak in ("too short", JANE, COMMON_15[1], "Jane.Roe@Example.com"):
        with pytest.raises(InvalidInput):
            auth.passwords.change(here.token, PASSWORD, weak)
    assert isinstance(sign_in(auth, JANE, PASSWORD), SignedIn)


# -- policy -------------------------------------------------------------------------------------
def _try_set(auth: Auth, identity: Identity, password: object, portal: str = PORTAL) -> object:
    """Set ``password`` through a fresh invitation link (a refused password does not use it)."""
    return auth.passwords.accept_invite(portal, invite_token(auth, identity, portal), password)


def test_fifteen_characters_when_the_password_is_the_only_factor(
    auth: Auth, jane: Identity
) -> None:  # R39
    token = invite_token(auth, jane)
    with pytest.raises(InvalidInput) as refused:
        auth.passwords.accept_invite(PORTAL, token, "a" * 12 + " b")
    assert refused.value.field == "password"
    assert "15" in refused.value.message
    assert auth.passwords.inspect(PORTAL, token).valid  # a refused password leaves the link
    assert isinstance(auth.passwords.accept_invite(PORTAL, token, "a" * 13 + " b"), SignedIn)


def test_eight_characters_when_the_portal_requires_a_second_factor(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:  # R39
    auth = make_auth(store_kind)
    open_lx(auth, second_factor="sms_code")
    kim = auth.directory.add(PORTAL, "Kim Lee", email="kim@example.com", phone="+12025550143")
    token = invite_token(auth, kim)
    with pytest.raises(InvalidInput) as refused:
        auth.passwords.accept_invite(PORTAL, token, "seven c")
    assert "8" in refused.value.message
    assert isinstance(auth.passwords.accept_invite(PORTAL, token, "eight ch"), Step)


@pytest.mark.parametrize(
    ("portal_settings", "minimum"),
    [
        ({"method_settings": {METHOD: {"min_length": 20}}}, 20),
        (
            {
                "second_factor": "email_code",
                "method_settings": {METHOD: {"min_length_with_second_factor": 12}},
            },
            12,
        ),
    ],
)
def test_a_portal_may_raise_either_minimum(
    make_auth: Callable[..., Auth], store_kind: str, portal_settings: dict[str, Any], minimum: int
) -> None:  # R39
    auth = make_auth(store_kind)
    open_lx(auth, **portal_settings)
    kim = auth.directory.add(PORTAL, "Kim Lee", email="kim@example.com")
    token = invite_token(auth, kim)
    with pytest.raises(InvalidInput):
        auth.passwords.accept_invite(PORTAL, token, "q" * (minimum - 3) + " z")
    assert isinstance(
        auth.passwords.accept_invite(PORTAL, token, "q" * (minimum - 1) + "z"), (SignedIn, Step)
    )


@pytest.mark.parametrize("lowered", [8, 14])
def test_a_portal_cannot_lower_the_single_factor_minimum(auth: Auth, lowered: int) -> None:
    # R39
    with pytest.raises(ConfigError):
        open_lx(auth, "lx-low", method_settings={METHOD: {"min_length": lowered}})


def test_a_first_sign_in_only_check_is_not_a_second_factor(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:  # R39
    auth = make_auth(store_kind)
    open_lx(auth, second_factor="tax_id_last4")
    kim = auth.directory.add(PORTAL, "Kim Lee", email="kim@example.com", tax_id_last4="1234")
    with pytest.raises(InvalidInput) as refused:
        _try_set(auth, kim, "fourteen chars")
    assert "15" in refused.value.message
    first = _try_set(auth, kim, "fifteen chars!!")
    assert isinstance(first, Step) and first.next == "second_factor"


def test_long_passwords_are_accepted_and_never_truncated(auth: Auth, jane: Identity) -> None:
    # R39 R42
    long_password = "".join(chr(ord("a") + i % 26) for i in range(1000))
    with_password(auth, jane, long_password)
    assert isinstance(sign_in(auth, JANE, long_password), SignedIn)
    fails(lambda: sign_in(auth, JANE, long_password[:-1] + "!"))
    fails(lambda: sign_in(auth, JANE, long_password[:-1]))
    fails(lambda: sign_in(auth, JANE, long_password[:64]))
    fails(lambda: sign_in(auth, JANE, long_password[:72]))
    kim = auth.directory.add(PORTAL, "Kim Lee", email="kim@example.com")
    sixty_four = "the sixty-four character pass phrase is long enough for anyone!"
    sixty_four += "!" * (64 - len(sixty_four))
    assert len(sixty_four) == 64
    with_password(auth, kim, sixty_four)
    assert isinstance(sign_in(auth, "kim@example.com", sixty_four), SignedIn)


def test_over_max_length_is_refused_before_any_hashing(
    signed_up: Auth, jane: Identity
) -> None:  # R22
    auth = signed_up
    with_password(auth, jane)
    limit = PasswordSettings().max_length
    oversized = "o" * (limit + 1)
    at_limit = "p" * limit
    invitation = invite_token(auth, auth.directory.add(PORTAL, "Kim Lee", email="kim@example.com"))
    reset = reset_token(auth, jane)
    before = auth.hasher.calls
    attempts: list[Callable[[], object]] = [
        lambda: sign_in(auth, JANE, oversized),
        lambda: sign_in(auth, JANE, "x" * 1_000_000),
        lambda: auth.passwords.sign_up(
            PORTAL, {"name": "Lee Kim", "email": "lee@example.com", "password": oversized}
        ),
        lambda: auth.passwords.accept_invite(PORTAL, invitation, oversized),
        lambda: auth.passwords.reset(PORTAL, reset, oversized),
        lambda: auth.passwords.reset(PORTAL, reset, "x" * 1_000_000),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidInput):
            attempt()
    assert auth.hasher.calls == before
    assert auth.directory.find_by_email(PORTAL, "lee@example.com") is None
    # The limit itself is accepted.
    assert isinstance(auth.passwords.reset(PORTAL, reset, at_limit), SignedIn)
    assert isinstance(sign_in(auth, JANE, at_limit), SignedIn)


def test_change_refuses_oversized_passwords_before_any_hashing(
    auth: Auth, jane: Identity
) -> None:  # R22
    here = with_password(auth, jane)
    oversized = "o" * (PasswordSettings().max_length + 1)
    before = auth.hasher.calls
    with pytest.raises(InvalidInput):
        auth.passwords.change(here.token, PASSWORD, oversized)
    with pytest.raises(InvalidInput):
        auth.passwords.change(here.token, "x" * 1_000_000, NEW_PASSWORD)
    assert auth.hasher.calls == before


def test_a_portal_may_lower_the_maximum_to_64(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:  # R39
    auth = make_auth(store_kind)
    open_lx(auth, method_settings={METHOD: {"max_length": 64}})
    kim = auth.directory.add(PORTAL, "Kim Lee", email="kim@example.com")
    token = invite_token(auth, kim)
    with pytest.raises(InvalidInput):
        auth.passwords.accept_invite(PORTAL, token, "m" * 65)
    assert isinstance(auth.passwords.accept_invite(PORTAL, token, "m" * 64), SignedIn)
    with pytest.raises(ConfigError):
        open_lx(auth, "lx-short", method_settings={METHOD: {"max_length": 63}})


@pytest.mark.parametrize("common", [*COMMON_15, "ManchesterUnited", "QWERTY123456789"])
def test_common_passwords_are_refused_with_a_reason(
    auth: Auth, jane: Identity, common: str
) -> None:  # R41
    with pytest.raises(InvalidInput) as refused:
        _try_set(auth, jane, common)
    assert refused.value.field == "password"
    assert "common" in refused.value.message
    assert auth.directory.get(jane.id).password_hash is None


def test_a_common_password_inside_a_longer_one_is_accepted(auth: Auth, jane: Identity) -> None:
    # R41: the whole password is compared, never substrings
    with_password(auth, jane, "manchesterunited forever")
    assert isinstance(sign_in(auth, JANE, "manchesterunited forever"), SignedIn)


LONG_NAME = "Maximilian Oberhauser"
LONG_EMAIL = "maximilian.oberhauser@example.com"


@pytest.mark.parametrize(
    "word",
    [
        LONG_EMAIL,
        LONG_EMAIL.upper(),
        "maximilian.oberhauser",
        LONG_NAME,
        LONG_NAME.lower(),
        "Lexzur Law Client Portal",
        "LEXZUR LAW CLIENT PORTAL",
    ],
)
def test_the_clients_own_details_are_refused_as_the_whole_password(
    auth: Auth, word: str
) -> None:  # R41
    open_lx(auth, "lx-long", name="Lexzur Law Client Portal")
    max_ = auth.directory.add("lx-long", LONG_NAME, email=LONG_EMAIL)
    with pytest.raises(InvalidInput) as refused:
        _try_set(auth, max_, word, "lx-long")
    assert refused.value.field == "password"
    # ...but a longer password that contains it is fine.
    done = _try_set(auth, max_, f"{word} rides a bicycle", "lx-long")
    assert isinstance(done, SignedIn)


@pytest.mark.parametrize("word", [PORTAL_NAME, "lexzur law", "Jane Roe", "jane.roe"])
def test_short_context_words_are_refused_where_eight_characters_suffice(
    make_auth: Callable[..., Auth], store_kind: str, word: str
) -> None:  # R41 (portal name, name and local part with a second factor)
    auth = make_auth(store_kind)
    open_lx(auth, second_factor="email_code")
    jane = auth.directory.add(PORTAL, "Jane Roe", email=JANE)
    with pytest.raises(InvalidInput) as refused:
        _try_set(auth, jane, word)
    assert "name" in refused.value.message
    assert isinstance(_try_set(auth, jane, f"{word} and more"), Step)


@pytest.mark.parametrize(
    "password",
    [
        "all lowercase words with spaces",
        "               x",  # mostly spaces
        "ÄÖÜ äöü ß → ✓ 日本語のパスワード",
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
        "\U0001f600" * 15,  # 15 code points, 60 bytes
    ],
)
def test_no_composition_rules(auth: Auth, jane: Identity, password: str) -> None:  # R40
    with_password(auth, jane, password)
    assert isinstance(sign_in(auth, JANE, password), SignedIn)


@pytest.mark.parametrize(
    ("set_as", "typed_as"),
    [
        ("\u212bngstr\u00f6m fjord walks", "\u00c5ngstr\u00f6m fjord walks"),
        ("\u00c5ngstr\u00f6m fjord walks", "\u212bngstr\u00f6m fjord walks"),
        ("A\u030angstro\u0308m fjord walks", "\u00c5ngstr\u00f6m fjord walks"),
    ],
)
def test_unicode_is_normalised_nfkc_at_set_and_at_sign_in(
    auth: Auth, jane: Identity, set_as: str, typed_as: str
) -> None:  # R42
    with_password(auth, jane, set_as)
    assert isinstance(sign_in(auth, JANE, typed_as), SignedIn)
    assert isinstance(sign_in(auth, JANE, set_as), SignedIn)


@pytest.mark.parametrize("bad", [None, 123456789012345678, ["x" * 20], {"p": "x" * 20}, b"x" * 20])
def test_non_string_passwords_are_refused(auth: Auth, jane: Identity, bad: object) -> None:
    # R23
    with_password(auth, jane)
    with pytest.raises(InvalidInput):
        sign_in(auth, JANE, bad)
    with pytest.raises(InvalidInput):
        _try_set(auth, auth.directory.add(PORTAL, "Kim Lee", email="kim@example.com"), bad)


# -- events -------------------------------------------------------------------------------------
def test_events_record_each_change_and_never_a_secret(
    signed_up: Auth, jane: Identity, clock: FrozenClock, recorder: Recorder
) -> None:
    auth = signed_up
    secrets_seen = [PASSWORD, NEW_PASSWORD, OTHER_PASSWORD]
    token = invite_token(auth, jane)
    secrets_seen.append(token)
    auth.passwords.accept_invite(PORTAL, token, PASSWORD, client=CLIENT)
    fails(lambda: sign_in(auth, JANE, OTHER_PASSWORD))
    fails(lambda: sign_in(auth, NOBODY, OTHER_PASSWORD))
    done = sign_in(auth, JANE, PASSWORD)
    assert isinstance(done, SignedIn)
    secrets_seen.append(done.token)
    reset = reset_token(auth, jane)
    secrets_seen.append(reset)
    auth.passwords.reset(PORTAL, reset, NEW_PASSWORD)
    kim, _ = _bcrypt_identity(auth, clock, OTHER_PASSWORD.encode())
    sign_in(auth, "kim@example.com", OTHER_PASSWORD)
    _sign_up(auth, email="lee@example.com", name="Lee Kim", password="lee's own pass phrase")
    secrets_seen.append("lee's own pass phrase")
    lee = auth.directory.find_by_email(PORTAL, "lee@example.com")
    assert lee is not None
    confirm = token_of(latest(auth, lee))
    secrets_seen.append(confirm)
    auth.passwords.confirm(PORTAL, confirm)

    kinds = set(recorder.kinds())
    for kind in (
        "invitation.sent",
        "password.set",
        "password.upgraded",
        "verification.failed",
        "signed_in",
    ):
        assert kind in kinds, kind
    assert {e.detail["how"] for e in recorder.of("password.set")} == {"set", "reset"}
    failed = [e for e in recorder.of("verification.failed") if e.method == METHOD]
    assert len(failed) == 2 and all(e.detail["purpose"] == "password" for e in failed)
    # The unknown address appears only as a keyed digest.
    assert all("@" not in (e.identity_id or "") for e in recorder.events)
    hashes = [auth.directory.get(i.id).password_hash for i in (jane, kim, lee)]
    for event in recorder.events:
        text = repr(event) + repr(dict(event.detail))
        for secret in [*secrets_seen, *hashes]:
            assert secret and secret not in text, event.kind


# -- property: no wrong password ever signs in --------------------------------------------------
_HOSTILE = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), min_size=15, max_size=60),
    # lone surrogates (UTF-8 cannot encode them) mixed with anything else, NUL included
    st.text(st.one_of(st.characters(categories=["Cs"]), st.characters()), max_size=30),
    st.sampled_from(
        [
            "",
            "\x00",
            PASSWORD + "\x00",
            "\x00" + PASSWORD,
            PASSWORD.upper(),
            PASSWORD[:-1],
            " " + PASSWORD,
            "\udcff" * 20,
            "\u202e" + PASSWORD,
            "x" * 5000,
            PASSWORD * 200,
            "' OR '1'='1' -- long enough",
            "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
        ]
    ),
    st.none(),
    st.integers(),
    st.booleans(),
    st.lists(st.just(PASSWORD), min_size=1, max_size=2),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    st.binary(max_size=20),
)


@pytest.fixture
def hostile_auth() -> Iterator[Callable[[], Auth]]:
    built: list[Auth] = []

    def make() -> Auth:
        auth = Auth(
            SECRET_KEYS,
            MemoryStore(),
            clock=FrozenClock(),
            entry_points=False,
            password_hasher=PasswordHasher(memory_cost=1024, rounds=1, parallelism=1),
        )
        built.append(auth)
        return auth

    yield make
    for auth in built:
        auth.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(attempts=st.lists(st.tuples(st.sampled_from([JANE, NOBODY]), _HOSTILE), max_size=8))
def test_no_sequence_of_wrong_passwords_signs_anyone_in(
    hostile_auth: Callable[[], Auth], attempts: list[tuple[str, object]]
) -> None:
    auth = hostile_auth()
    open_lx(auth)
    jane = auth.directory.add(PORTAL, "Jane Roe", email=JANE)
    with_password(auth, jane)
    sessions = len(auth.sessions.list(jane.id))
    for address, password in attempts:
        if password == PASSWORD or (isinstance(password, str) and _nfkc_equal(password, PASSWORD)):
            continue
        try:
            result = sign_in(auth, address, password)
        except PortalAuthError:
            continue
        pytest.fail(f"a wrong password returned {type(result).__name__}")
    assert len(auth.sessions.list(jane.id)) == sessions
    # Fewer failures than the budget: the right password still works, at once.
    assert isinstance(sign_in(auth, JANE, PASSWORD), SignedIn)


def _nfkc_equal(a: str, b: str) -> bool:
    return unicodedata.normalize("NFKC", a) == unicodedata.normalize("NFKC", b)

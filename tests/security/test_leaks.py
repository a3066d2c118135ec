"""Secrets never leak (issue 7, item 5): the leak scan itself, and every flow under it.

The scan (``leaks.py``, the autouse ``secret_leaks`` fixture) collects every secret issued during
a test and fails the test if one shows up in a log record, an event, an exception, the ``repr()``
of an object the public API returned, or a store row outside the simulated-message feed.

The first tests prove the scan catches what it must (a secret deliberately put in each place) and
ignores what it must (the outbox feed, hashes at rest, digits that merely contain a code). The
others drive every strategy's whole flow, on the memory store and a SQLite file, with the scan
active, and check both that it saw the secrets the client received and that none of them leaked.
Requirement numbers refer to ``../shared/SECURITY-REQUIREMENTS.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import pytest

from conftest import SECRET_KEYS, EmailCodePlugin
from portalauth import (
    Auth,
    Context,
    Field,
    FlowState,
    FrozenClock,
    InvalidInput,
    PortalAuthError,
    SignedIn,
    Step,
    VerificationFailed,
    hookimpl,
)
from portalauth.events import Event
from portalauth.records import Identity
from portalauth.strategies.share_code import ShareCode
from portalauth.strategies.staff_pin import Pin

from .helpers import (
    CLIENT,
    EMAIL,
    NEW_PASSWORD,
    PASSWORD,
    PHONE,
    PORTAL,
    SCOPE,
    add_victim,
    code_in,
    newest,
    open_portal,
    token_in,
)
from .leaks import (
    MIN_LENGTH,
    Leak,
    Secret,
    SecretIndex,
    SecretLeaks,
    check_after_call,
    tokens,
)

THIRD_PASSWORD = "marble falcon teapot 3150"  # a test password


# -- helpers ------------------------------------------------------------------------------------
def _victim(make_auth: Callable[..., Auth], kind: str = "memory", **portal: Any) -> Auth:
    auth = make_auth(kind)
    open_portal(auth, **portal)
    add_victim(auth)
    return auth


def _step(outcome: object) -> Step:
    assert isinstance(outcome, Step) and outcome.flow is not None, outcome
    return outcome


def _signed_in(outcome: object) -> SignedIn:
    assert isinstance(outcome, SignedIn), outcome
    return outcome


def _otp(auth: Auth, victim: Identity, contact: str = EMAIL) -> tuple[Step, str]:
    step = _step(auth.start(PORTAL, "contact_otp", {"contact": contact}, client=CLIENT))
    return step, code_in(newest(auth, victim, "contact_login"))


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def _clean(scan: SecretLeaks, **expected: str | list[str]) -> None:
    """The scan saw what it had to search and collected the secrets the client received (by
    kind), and none of them leaked."""
    for kind, values in expected.items():
        for value in [values] if isinstance(values, str) else values:
            assert value in scan.collected(kind), f"the scan missed a {kind}"
    for sink in ("event", "repr", "store"):
        assert scan.seen(sink) > 0, f"nothing was seen in {sink}"
    assert scan.findings() == []


def _sinks(found: list[Leak], value: str) -> set[str]:
    return {leak.sink for leak in found if leak.value == value}


class LeakyStrategy:
    """A (badly written) strategy that issues a code and then fails with it in the message."""

    name = "leaky"
    label = "Leaky"

    def __init__(self, fail: Callable[[str], Exception]) -> None:
        self.fail = fail

    def configure(self, raw: Mapping[str, Any]) -> None:
        return None

    def fields(self, step: str, config: object) -> tuple[Field, ...]:
        return (Field("email", "email", "E-mail address"),)

    def start(self, ctx: Context) -> NoReturn:
        code = ctx.challenges.new_code(6)
        raise self.fail(code)

    def advance(self, ctx: Context, state: FlowState) -> NoReturn:
        raise VerificationFailed()


class LeakyPlugin:
    def __init__(self, strategy: LeakyStrategy) -> None:
        self.strategy = strategy

    @hookimpl
    def portalauth_add_strategies(self) -> list[object]:
        return [self.strategy]


class BrokenListener:
    """An audit sink that fails on every event (the emitter logs it, with a traceback)."""

    @hookimpl
    def portalauth_event(self, event: Event) -> None:
        raise RuntimeError(f"audit sink down ({event.kind})")


# -- matching -----------------------------------------------------------------------------------
def test_codes_match_only_as_whole_tokens() -> None:  # R66
    index = SecretIndex([Secret("code", "123456")])
    caught = ["code=123456", "x-123456.", "(123456)", "recovery_code: 123456", "'123456'"]
    missed = ["91234567", "t=1712345670.5", "a123456", "1234567", "12345"]
    for text in caught:
        assert index.search("log", {text: "here"}), text
    for text in missed:
        assert not index.search("log", {text: "here"}), text


def test_share_codes_match_with_and_without_the_hyphen_in_any_case() -> None:  # R66
    index = SecretIndex([Secret("share_code", "K7M4P9")])
    for text in ("K7M-4P9", "share k7m4p9", "code=k7m-4p9", "K7M4P9"):
        assert index.search("event", {text: "here"}), text
    for text in ("AK7M4P9", "K7M4P", "K7M-4P"):
        assert not index.search("event", {text: "here"}), text


def test_tokens_and_passwords_match_as_issued_and_in_other_cases() -> None:  # R66
    token = "q3V-8xY_w2ZpR7tK1mN4bC6dF9gH0jL5sA8eU2iO3yT"
    typed = "ｔａｎｇｅｒｉｎｅ kayak umbrella 1987"  # fullwidth, as typed on some keyboards
    index = SecretIndex([Secret("link_token", token), Secret("password", typed)])
    assert index.search("log", {f"GET /link?token={token}&next=/": "here"})
    assert index.search("log", {f"token {token.upper()}": "here"})
    assert not index.search("log", {f"x{token}": "here"})  # not a whole token
    assert index.search("log", {f"login failed for {typed.upper()}!": "here"})
    assert index.search("log", {f"hashing {PASSWORD.title()}": "here"})  # as hashed (NFKC)


def test_short_secrets_are_not_searched() -> None:  # R66
    index = SecretIndex([Secret("code", "4821"), Secret("password", "x" * (MIN_LENGTH - 1))])
    assert not index
    assert not index.search("log", {"Tax ID 4821, password xxxx": "here"})
    assert tokens("A1b-2C3 ok_42") >= {"a1b", "2c3", "a1b-2c3", "ok", "42", "ok_42"}


def test_password_hashes_are_expected_in_the_store_only() -> None:  # R66 R18
    index = SecretIndex([Secret("password_hash", "$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA")])
    row = {"$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA": "identities.password_hash"}
    assert index.search("store", row) == []
    assert [leak.sink for leak in index.search("log", row)] == ["log"]


# -- the scan catches each kind of leak ---------------------------------------------------------
def test_a_logged_code_is_caught(
    make_auth: Callable[..., Auth], secret_leaks: SecretLeaks
) -> None:  # R66
    auth = _victim(make_auth)
    victim = auth.directory.find_by_email(PORTAL, EMAIL)
    assert victim is not None
    _, code = _otp(auth, victim)
    logging.getLogger("portalauth.custom").debug("sent code %s", code)  # DEBUG is searched
    logging.getLogger("app").warning("contact_otp code=%s", code)  # so is the root logger
    assert secret_leaks.findings() != []
    found = secret_leaks.take()
    assert [(leak.kind, leak.sink) for leak in found] == [("code", "log")] * 2
    assert {leak.where for leak in found} == {
        "log record portalauth.custom DEBUG",
        "log record app WARNING",
    }
    assert secret_leaks.findings() == []  # taken: no longer fails the test


def test_a_logged_traceback_is_searched(
    make_auth: Callable[..., Auth], secret_leaks: SecretLeaks
) -> None:  # R66 R68
    strategy = LeakyStrategy(lambda code: ValueError(f"bad code {code}"))
    auth = make_auth("memory", plugins=[EmailCodePlugin(), LeakyPlugin(strategy)])
    auth.portals.create(PORTAL, "Acme Law LLP", methods={"leaky"}, simulate=True)
    with pytest.raises(PortalAuthError) as failed:
        auth.start(PORTAL, "leaky", {"email": EMAIL}, client=CLIENT)
    assert type(failed.value) is PortalAuthError  # fail closed, generic
    (code,) = secret_leaks.collected("code")
    found = secret_leaks.take()
    # The strategy's message reaches only the DEBUG traceback Auth._run logs; the error the
    # caller gets is generic and does not chain it (``from None``).
    assert _sinks(found, code) == {"log"}
    assert all(leak.where == "log record portalauth DEBUG" for leak in found)


def test_a_secret_in_an_exception_is_caught(
    make_auth: Callable[..., Auth], secret_leaks: SecretLeaks
) -> None:  # R66
    strategy = LeakyStrategy(lambda code: InvalidInput(f"{code} is not right"))
    auth = make_auth("memory", plugins=[EmailCodePlugin(), LeakyPlugin(strategy)])
    auth.portals.create(PORTAL, "Acme Law LLP", methods={"leaky"}, simulate=True)
    with pytest.raises(InvalidInput):
        auth.start(PORTAL, "leaky", {"email": EMAIL}, client=CLIENT)
    (code,) = secret_leaks.collected("code")
    found = secret_leaks.take()
    assert _sinks(found, code) == {"exception"}
    assert "Auth.start() raised InvalidInput" in {leak.where for leak in found}


def test_a_secret_in_an_event_is_caught(
    make_auth: Callable[..., Auth], secret_leaks: SecretLeaks
) -> None:  # R66 R65
    auth = _victim(make_auth)
    victim = auth.directory.find_by_email(PORTAL, EMAIL)
    assert victim is not None
    pin = auth.pins.issue(victim, actor="staff:1")
    auth.emitter.emit("pin.issued", portal=PORTAL, identity_id=victim.id, detail={"pin": pin.pin})
    found = secret_leaks.take()
    assert _sinks(found, pin.pin) == {"event"}
    assert [leak.where for leak in found] == ["event pin.issued"]


def test_a_secret_in_a_repr_is_caught(
    make_auth: Callable[..., Auth], secret_leaks: SecretLeaks, monkeypatch: pytest.MonkeyPatch
) -> None:  # R66 R51
    # As if ``repr=False`` were dropped from the fields that hold the secret (allauth 0.63.4).
    monkeypatch.setattr(Pin, "__repr__", lambda self: f"Pin(pin={self.pin!r})")
    monkeypatch.setattr(ShareCode, "__repr__", lambda self: f"ShareCode(code={self.code!r})")
    monkeypatch.setattr(SignedIn, "__repr__", lambda self: f"SignedIn(token={self.token!r})")
    auth = _victim(make_auth)
    victim = auth.directory.find_by_email(PORTAL, EMAIL)
    assert victim is not None
    pin = auth.pins.issue(victim)
    share = auth.share_codes.issue(victim, scope=SCOPE, send=False)
    signed = _signed_in(auth.start(PORTAL, "staff_pin", {"email": EMAIL, "pin": pin.pin}))
    found = secret_leaks.take()
    assert _sinks(found, pin.pin) == {"repr"}
    assert _sinks(found, share.code.replace("-", "")) == {"repr"}
    assert _sinks(found, signed.token.rpartition(".")[0]) == {"repr"}
    assert "repr() of what Pins.issue() returned" in {leak.where for leak in found}


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_secret_in_a_store_row_is_caught(
    make_auth: Callable[..., Auth], secret_leaks: SecretLeaks, kind: str
) -> None:  # R66 R18 R51
    auth = _victim(make_auth, kind)
    victim = auth.directory.find_by_email(PORTAL, EMAIL)
    assert victim is not None
    pin = auth.pins.issue(victim)
    assert secret_leaks.findings() == []
    auth.directory.update(victim.id, attributes={"note": f"PIN {pin.pin} given by phone"})
    found = secret_leaks.take()
    assert _sinks(found, pin.pin) == {"store", "repr"}  # the row, and the Identity returned
    rows = {leak.where for leak in found if leak.sink == "store"}
    if kind == "memory":
        assert any(w.startswith("MemoryStore._identities") and "attributes" in w for w in rows)
    else:
        assert rows == {"sqlite portalauth.db: portalauth_identities.attributes"}


def test_a_session_id_in_the_sqlite_file_is_caught(
    make_auth: Callable[..., Auth], secret_leaks: SecretLeaks
) -> None:  # R59 R66
    auth = _victim(make_auth, "sqlite")
    victim = auth.directory.find_by_email(PORTAL, EMAIL)
    assert victim is not None
    signed = auth.sign_in(victim, method="password")
    session_id = signed.token.rpartition(".")[0]
    # Stored raw in a column of its own: found by the row scan and in the file's raw bytes.
    auth.portals.update(PORTAL, name=f"Acme {session_id}")
    found = secret_leaks.take()
    wheres = {leak.where for leak in found if leak.value == session_id and leak.sink == "store"}
    assert "sqlite portalauth.db: portalauth_portals.settings" in wheres
    assert "raw bytes of portalauth.db (with its WAL and journal)" in wheres


def test_the_message_feed_is_not_searched(
    make_auth: Callable[..., Auth], secret_leaks: SecretLeaks, store_kind: str
) -> None:  # R66 R18
    auth = _victim(make_auth, store_kind)
    victim = auth.directory.find_by_email(PORTAL, EMAIL)
    assert victim is not None
    _, code = _otp(auth, victim)
    auth.magic_links.invite(victim)
    token = token_in(newest(auth, victim, "magic_link_invite"))
    assert code in newest(auth, victim, "contact_login").text  # the feed holds them, by design
    _clean(secret_leaks, code=code, link_token=token)


def test_a_leak_fails_the_test_when_its_body_returns(
    make_auth: Callable[..., Auth], secret_leaks: SecretLeaks, request: pytest.FixtureRequest
) -> None:  # R66
    auth = _victim(make_auth)
    victim = auth.directory.find_by_email(PORTAL, EMAIL)
    assert victim is not None
    _, code = _otp(auth, victim)
    check_after_call(request.node)  # what tests/conftest.py's pytest_runtest_call runs: clean
    logging.getLogger("portalauth").error("otp %s", code)
    with pytest.raises(pytest.fail.Exception, match=r"R66: 1 issued secret\(s\) leaked") as failed:
        check_after_call(request.node)
    assert "in 1 place(s)" in str(failed.value)
    assert "a code (6 chars) in log: log record portalauth ERROR" in str(failed.value)
    assert secret_leaks.findings() == []  # reported once, not again at teardown


def test_a_collector_that_breaks_fails_the_test(secret_leaks: SecretLeaks) -> None:  # R66
    # As if Sessions.create stopped returning (token, record): the library call is untouched,
    # but the scan cannot vouch for the test any more, and says so.
    secret_leaks._collect("_on_session", (), {}, None)
    with pytest.raises(pytest.fail.Exception, match="could not collect secrets") as failed:
        secret_leaks.assert_clean()
    assert "_on_session: TypeError" in str(failed.value)
    secret_leaks.assert_clean()  # reported once


# -- every flow, with the scan active -----------------------------------------------------------
def test_every_kind_of_secret_is_collected(
    make_auth: Callable[..., Auth], secret_leaks: SecretLeaks
) -> None:  # R66
    auth = _victim(make_auth)
    victim = auth.directory.get(auth.directory.list(PORTAL)[0].id)
    pin = auth.pins.issue(victim)
    share = auth.share_codes.issue(victim, scope=SCOPE, send=False)
    auth.magic_links.invite(victim)
    signed = auth.sign_in(victim, method="password")
    assert victim.password_hash is not None
    _clean(
        secret_leaks,
        code=pin.pin,
        share_code=share.code.replace("-", ""),
        link_token=token_in(newest(auth, victim, "magic_link_invite")),
        session=[signed.token, signed.token.rpartition(".")[0]],
        password=PASSWORD,
        password_hash=victim.password_hash,
        key=SECRET_KEYS,
    )


def test_share_code_flow_leaks_nothing(
    make_auth: Callable[..., Auth], secret_leaks: SecretLeaks, store_kind: str
) -> None:  # R66 R18
    auth = _victim(make_auth, store_kind)
    victim = auth.directory.get(auth.directory.list(PORTAL)[0].id)
    share = auth.share_codes.issue(victim, scope=SCOPE, send=True, actor="staff:1")
    assert share.code in newest(auth, victim, "share_code").text  # the invitation e-mail
    assert auth.share_codes.status(victim, SCOPE).invited
    typed = share.code.replace("-", "").lower()
    step = _step(auth.start(PORTAL, "share_code", {"share_code": typed}, client=CLIENT))
    code = code_in(newest(auth, victim, "share_code_login"))
    with pytest.raises(VerificationFailed):
        auth.advance(step.flow or "", {"code": _wrong(code)}, client=CLIENT)
    signed = _signed_in(auth.advance(step.flow or "", {"code": code}, client=CLIENT))
    assert auth.sessions.validate(signed.token).scope == SCOPE
    assert auth.share_codes.revoke(victim, SCOPE, actor="staff:1")
    assert auth.sessions.revoke(signed.token)
    assert secret_leaks.seen("exception") > 0
    _clean(
        secret_leaks,
        share_code=typed.upper(),
        code=code,
        session=signed.token.rpartition(".")[0],
    )


@pytest.mark.parametrize("contact", [EMAIL, PHONE], ids=["email", "sms"])
def test_contact_otp_flow_leaks_nothing(
    make_auth: Callable[..., Auth],
    secret_leaks: SecretLeaks,
    store_kind: str,
    clock: FrozenClock,
    contact: str,
) -> None:  # R66 R18
    auth = _victim(make_auth, store_kind)
    victim = auth.directory.get(auth.directory.list(PORTAL)[0].id)
    first, old = _otp(auth, victim, contact)
    clock.advance(61)  # past the resend cooldown: a new code supersedes the first
    step, code = _otp(auth, victim, contact)
    with pytest.raises(VerificationFailed) as superseded:
        auth.advance(first.flow or "", {"code": old}, client=CLIENT)
    assert superseded.value.reason == "superseded"
    with pytest.raises(VerificationFailed):
        auth.advance(step.flow or "", {"code": _wrong(code)}, client=CLIENT)
    signed = _signed_in(auth.advance(step.flow or "", {"code": code}, client=CLIENT))
    assert [s.identity_id for s in auth.sessions.list(victim.id)] == [victim.id]
    assert auth.sessions.revoke_all(victim.id) == 1
    _clean(secret_leaks, code=[old, code], session=signed.token)


def test_staff_pin_flow_leaks_nothing(
    make_auth: Callable[..., Auth], secret_leaks: SecretLeaks, store_kind: str
) -> None:  # R66 R51 R18
    auth = _victim(make_auth, store_kind)
    victim = auth.directory.get(auth.directory.list(PORTAL)[0].id)
    pin = auth.pins.issue(victim, actor="staff:1")
    assert auth.pins.status(victim).outstanding  # a second API response, never the PIN
    with pytest.raises(VerificationFailed):
        auth.start(PORTAL, "staff_pin", {"email": EMAIL, "pin": _wrong(pin.pin)}, client=CLIENT)
    data = {"email": EMAIL, "pin": pin.pin}
    signed = _signed_in(auth.start(PORTAL, "staff_pin", data, client=CLIENT))
    assert not auth.pins.status(victim).outstanding
    later = auth.pins.issue(victim, actor="staff:1")
    assert auth.pins.revoke(victim, actor="staff:1")
    _clean(secret_leaks, code=[pin.pin, later.pin], session=signed.token)


def test_magic_link_flow_leaks_nothing(
    make_auth: Callable[..., Auth],
    secret_leaks: SecretLeaks,
    store_kind: str,
    clock: FrozenClock,
) -> None:  # R66 R18
    auth = _victim(make_auth, store_kind)
    victim = auth.directory.get(auth.directory.list(PORTAL)[0].id)
    auth.magic_links.invite(victim, actor="staff:1")
    invite = token_in(newest(auth, victim, "magic_link_invite"))
    assert auth.magic_links.inspect(PORTAL, invite).valid
    first = _signed_in(auth.magic_links.redeem(PORTAL, invite, client=CLIENT))
    with pytest.raises(VerificationFailed):
        auth.magic_links.redeem(PORTAL, invite, client=CLIENT)  # used
    # Asking for a link: the e-mail carries a link and a code; the code signs in here...
    step = _step(auth.start(PORTAL, "magic_link", {"email": EMAIL}, client=CLIENT))
    mail = newest(auth, victim, "magic_link")
    code, link = code_in(mail), token_in(mail)
    second = _signed_in(auth.advance(step.flow or "", {"code": code}, client=CLIENT))
    assert auth.magic_links.inspect(PORTAL, link).state == "used"
    # ... and a later link is opened on another device.
    clock.advance(61)
    auth.start(PORTAL, "magic_link", {"email": EMAIL}, client=CLIENT)
    later = token_in(newest(auth, victim, "magic_link"))
    third = _signed_in(auth.magic_links.redeem(PORTAL, later, client=CLIENT))
    _clean(
        secret_leaks,
        link_token=[invite, link, later],
        code=code,
        session=[first.token, second.token, third.token],
    )


def test_password_flows_leak_nothing(
    make_auth: Callable[..., Auth], secret_leaks: SecretLeaks, store_kind: str
) -> None:  # R66 R18 R47
    auth = make_auth(store_kind)
    open_portal(auth, signup_enabled=True)
    victim = add_victim(auth, password=None)
    # Invitation: the client sets the first password through the link and is signed in.
    auth.passwords.invite(victim, actor="staff:1")
    invite = token_in(newest(auth, victim, "password_invite"))
    assert auth.passwords.inspect(PORTAL, invite).valid
    first = _signed_in(auth.passwords.accept_invite(PORTAL, invite, PASSWORD, client=CLIENT))
    # Sign-in, a wrong password, then a reset.
    with pytest.raises(VerificationFailed):
        auth.start(PORTAL, "password", {"email": EMAIL, "password": NEW_PASSWORD}, client=CLIENT)
    data = {"email": EMAIL, "password": PASSWORD}
    second = _signed_in(auth.start(PORTAL, "password", data, client=CLIENT))
    auth.passwords.request_reset(PORTAL, {"email": EMAIL}, client=CLIENT)
    reset = token_in(newest(auth, victim, "password_reset"))
    done = auth.passwords.reset(PORTAL, reset, NEW_PASSWORD, client=CLIENT)
    assert isinstance(done, Step) and done.done
    # Change, signed in, with a wrong current password first.
    data = {"email": EMAIL, "password": NEW_PASSWORD}
    third = _signed_in(auth.start(PORTAL, "password", data, client=CLIENT))
    with pytest.raises(VerificationFailed):
        auth.passwords.change(third.token, PASSWORD, THIRD_PASSWORD, client=CLIENT)
    auth.passwords.change(third.token, NEW_PASSWORD, THIRD_PASSWORD, client=CLIENT)
    # Self sign-up and its confirmation link.
    signup = {"name": "Sam Poe", "email": "sam.poe@example.com", "password": PASSWORD}
    assert auth.passwords.sign_up(PORTAL, signup, client=CLIENT).done
    newcomer = auth.directory.find_by_email(PORTAL, "sam.poe@example.com")
    assert newcomer is not None
    confirm = token_in(newest(auth, newcomer, "signup_confirm"))
    fourth = _signed_in(auth.passwords.confirm(PORTAL, confirm, client=CLIENT))
    hashes = [h for h in (auth.directory.get(i.id).password_hash for i in (victim, newcomer)) if h]
    assert len(hashes) == 2
    _clean(
        secret_leaks,
        password=[PASSWORD, NEW_PASSWORD, THIRD_PASSWORD],
        password_hash=hashes,
        link_token=[invite, reset, confirm],
        session=[s.token for s in (first, second, third, fourth)],
    )


@pytest.mark.parametrize("kind", ["email_code", "sms_code", "tax_id_last4"])
def test_second_factor_flows_leak_nothing(
    make_auth: Callable[..., Auth], secret_leaks: SecretLeaks, store_kind: str, kind: str
) -> None:  # R66 R18
    auth = _victim(make_auth, store_kind, methods={"password"}, second_factor=kind)
    victim = auth.directory.get(auth.directory.list(PORTAL)[0].id)
    data = {"email": EMAIL, "password": PASSWORD}
    step = _step(auth.start(PORTAL, "password", data, client=CLIENT))
    assert step.next == "second_factor"
    if kind == "tax_id_last4":
        field, answer, codes = "tax_id_last4", "4821", []
    else:
        field, answer = "code", code_in(newest(auth, victim, "second_factor"))
        codes = [answer]
    with pytest.raises(VerificationFailed):
        auth.advance(step.flow or "", {field: _wrong(answer)}, client=CLIENT)
    signed = _signed_in(auth.advance(step.flow or "", {field: answer}, client=CLIENT))
    _clean(secret_leaks, code=codes, password=PASSWORD, session=signed.token)


def test_injected_failures_log_no_secret(
    make_auth: Callable[..., Auth],
    secret_leaks: SecretLeaks,
    store_kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # R66 R68
    # An audit sink that raises (logged with its traceback by the emitter, for every event) and
    # a store that fails mid-verification (logged at ERROR, and at DEBUG with the traceback).
    auth = make_auth(store_kind, plugins=[EmailCodePlugin(), BrokenListener()])
    open_portal(auth)
    victim = add_victim(auth)
    step, code = _otp(auth, victim)

    def broken(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("disk I/O error while consuming")

    monkeypatch.setattr(auth.store, "consume_challenge", broken)
    with pytest.raises(PortalAuthError) as failed:
        auth.advance(step.flow or "", {"code": code}, client=CLIENT)
    assert type(failed.value) is PortalAuthError
    assert secret_leaks.seen("log") >= 3  # the sink's tracebacks, the error and its traceback
    assert secret_leaks.seen("exception") > 0
    _clean(secret_leaks, code=code, password=PASSWORD)

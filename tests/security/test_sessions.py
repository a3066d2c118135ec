"""Sessions (issue 7, item 6, the core half): fixation, half-finished flows, strict mode, key
rotation and the revocation triggers, across every way of signing in."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import itsdangerous
import pytest

from conftest import SECRET_KEYS
from portalauth import (
    Auth,
    FrozenClock,
    PasswordHasher,
    SessionInvalid,
    SignedIn,
    Step,
)
from portalauth.records import Identity
from portalauth.stores.sql import SQLStore

from .helpers import (
    CLIENT,
    EMAIL,
    NEW_PASSWORD,
    PASSWORD,
    PORTAL,
    SCOPE,
    Recorder,
    add_victim,
    code_in,
    newest,
    open_portal,
    token_in,
)


def _code_step(auth: Auth, victim: Identity, step: object, purpose: str) -> object:
    assert isinstance(step, Step) and step.flow is not None
    return auth.advance(step.flow, {"code": code_in(newest(auth, victim, purpose))}, client=CLIENT)


def _share(auth: Auth, victim: Identity) -> object:
    share = auth.share_codes.issue(victim, scope=SCOPE, send=False).code
    step = auth.start(PORTAL, "share_code", {"share_code": share}, client=CLIENT)
    return _code_step(auth, victim, step, "share_code_login")


def _otp(auth: Auth, victim: Identity) -> object:
    step = auth.start(PORTAL, "contact_otp", {"contact": EMAIL}, client=CLIENT)
    return _code_step(auth, victim, step, "contact_login")


def _link_code(auth: Auth, victim: Identity) -> object:
    step = auth.start(PORTAL, "magic_link", {"email": EMAIL}, client=CLIENT)
    return _code_step(auth, victim, step, "magic_link")


def _link(auth: Auth, victim: Identity) -> object:
    auth.start(PORTAL, "magic_link", {"email": EMAIL}, client=CLIENT)
    return auth.magic_links.redeem(PORTAL, token_in(newest(auth, victim, "magic_link")))


def _pin(auth: Auth, victim: Identity) -> object:
    pin = auth.pins.issue(victim).pin
    return auth.start(PORTAL, "staff_pin", {"email": EMAIL, "pin": pin}, client=CLIENT)


def _password(auth: Auth, victim: Identity) -> object:
    return auth.start(PORTAL, "password", {"email": EMAIL, "password": PASSWORD}, client=CLIENT)


SIGN_INS: dict[str, Callable[[Auth, Identity], object]] = {
    "share_code": _share,
    "contact_otp": _otp,
    "magic_link code": _link_code,
    "magic_link link": _link,
    "staff_pin": _pin,
    "password": _password,
}


# -- R52: fixation ---------------------------------------------------------------------------
@pytest.mark.parametrize("how", sorted(SIGN_INS))
def test_every_sign_in_mints_a_new_session_id(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock, how: str
) -> None:  # R52
    auth = make_auth(store_kind)
    open_portal(auth)
    victim = add_victim(auth)
    tokens = []
    for _ in range(3):
        clock.advance(61)  # past every resend cooldown
        result = SIGN_INS[how](auth, victim)
        assert isinstance(result, SignedIn), result
        tokens.append(result.token)
    ids = [t.split(".")[0] for t in tokens]
    assert len(set(ids)) == 3
    # Each sign-in is its own session: the earlier ones are neither reused nor replaced.
    keys = {auth.sessions.validate(t).key for t in tokens}
    assert len(keys) == 3


@pytest.mark.parametrize("second_factor", ["none", "email_code"])
def test_a_flow_in_progress_never_yields_a_session(
    make_auth: Callable[..., Auth], store_kind: str, second_factor: str
) -> None:  # R52
    recorder = Recorder()
    auth = make_auth(store_kind, plugins=[recorder])
    open_portal(auth, second_factor=second_factor)
    victim = add_victim(auth)
    share = auth.share_codes.issue(victim, scope=SCOPE, send=False).code
    pending = [
        auth.start(PORTAL, "share_code", {"share_code": share}, client=CLIENT),
        auth.start(PORTAL, "contact_otp", {"contact": EMAIL}, client=CLIENT),
        auth.start(PORTAL, "magic_link", {"email": EMAIL}, client=CLIENT),
    ]
    if second_factor != "none":  # the primary passed, the second step is pending
        pending.append(_password(auth, victim))
        pending.append(_pin(auth, victim))
    for step in pending:
        assert isinstance(step, Step) and step.flow is not None, step
        assert not hasattr(step, "token")
        with pytest.raises(SessionInvalid):  # a flow token is no session
            auth.sessions.validate(step.flow)
    assert auth.sessions.list(victim.id) == []
    assert not recorder.kinds("session.created")
    assert not recorder.kinds("signed_in")


# -- R52 R53: strict mode ----------------------------------------------------------------------
def test_a_validly_signed_id_the_server_never_issued_is_refused(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:  # R52 R53
    auth = make_auth(store_kind)
    open_portal(auth)
    victim = add_victim(auth)
    real = auth.sign_in(victim, method="password").token
    signer = itsdangerous.Signer(
        auth.keyring.oldest_first, salt="portalauth.session", digest_method=hashlib.sha256
    )
    for _ in range(20):
        forged = signer.sign(secrets.token_urlsafe(32)).decode()  # chosen by the attacker
        with pytest.raises(SessionInvalid):
            auth.sessions.validate(forged)
    assert auth.sessions.validate(real).identity_id == victim.id


@pytest.mark.parametrize("ending", ["revoke", "revoke_all", "delete identity", "disable"])
def test_a_token_whose_record_is_gone_is_refused(
    make_auth: Callable[..., Auth], store_kind: str, ending: str
) -> None:  # R53
    auth = make_auth(store_kind)
    open_portal(auth)
    victim = add_victim(auth)
    token = auth.sign_in(victim, method="password").token
    if ending == "revoke":
        assert auth.sessions.revoke(token)
    elif ending == "revoke_all":
        assert auth.sessions.revoke_all(victim.id) == 1
    elif ending == "delete identity":
        auth.directory.delete(victim.id)
    else:
        auth.directory.update(victim.id, disabled=True)
    with pytest.raises(SessionInvalid):
        auth.sessions.validate(token)
    assert not auth.sessions.revoke(token)


# -- R55: key rotation -------------------------------------------------------------------------
def test_sessions_survive_a_key_rotation_until_the_old_key_is_removed(
    tmp_path: Path, clock: FrozenClock, fast_hasher: PasswordHasher
) -> None:  # R19 R55
    newest, older = SECRET_KEYS
    uri = f"sqlite:///{tmp_path / 'rotation.db'}"

    def auth_with(keys: list[str]) -> Auth:
        return Auth(
            keys, SQLStore(uri), clock=clock, entry_points=False, password_hasher=fast_hasher
        )

    with closing(auth_with([older])) as before:
        open_portal(before)
        victim = add_victim(before)
        old_token = before.start(
            PORTAL, "password", {"email": EMAIL, "password": PASSWORD}, client=CLIENT
        )
        assert isinstance(old_token, SignedIn)
    with closing(auth_with([newest, older])) as rotating:
        assert rotating.sessions.validate(old_token.token).identity_id == victim.id
        new_token = rotating.sign_in(victim, method="password").token
    with closing(auth_with([newest])) as after:
        with pytest.raises(SessionInvalid):
            after.sessions.validate(old_token.token)
        assert after.sessions.validate(new_token).identity_id == victim.id  # newest key signed it


# -- R57: revocation triggers -------------------------------------------------------------------
def _three_sessions(auth: Auth, clock: FrozenClock, victim: Identity) -> list[str]:
    tokens = []
    for how in ("password", "staff_pin", "contact_otp"):
        clock.advance(61)
        result = SIGN_INS[how](auth, victim)
        assert isinstance(result, SignedIn)
        tokens.append(result.token)
    return tokens


def _alive(auth: Auth, tokens: list[str]) -> list[bool]:
    alive = []
    for token in tokens:
        try:
            auth.sessions.validate(token)
            alive.append(True)
        except SessionInvalid:
            alive.append(False)
    return alive


def test_a_password_change_ends_every_other_session(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock
) -> None:  # R57
    auth = make_auth(store_kind)
    open_portal(auth)
    victim = add_victim(auth)
    tokens = _three_sessions(auth, clock, victim)
    auth.passwords.change(tokens[1], PASSWORD, NEW_PASSWORD)
    assert _alive(auth, tokens) == [False, True, False]
    assert len(auth.sessions.list(victim.id)) == 1


def _reset(auth: Auth, victim: Identity) -> object:
    auth.passwords.request_reset(PORTAL, {"email": EMAIL}, client=CLIENT)
    token = token_in(newest(auth, victim, "password_reset"))
    return auth.passwords.reset(PORTAL, token, NEW_PASSWORD, client=CLIENT)


@pytest.mark.parametrize("sign_in_after_reset", [False, True])
def test_a_reset_ends_every_session(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock, sign_in_after_reset: bool
) -> None:  # R48 R57
    auth = make_auth(store_kind)
    open_portal(auth, method_settings={"password": {"sign_in_after_reset": sign_in_after_reset}})
    victim = add_victim(auth)
    tokens = _three_sessions(auth, clock, victim)
    result = _reset(auth, victim)
    assert _alive(auth, tokens) == [False, False, False]
    survivors = auth.sessions.list(victim.id)
    if sign_in_after_reset:  # only the fresh session the reset itself created
        assert isinstance(result, SignedIn)
        assert [s.key for s in survivors] == [auth.sessions.validate(result.token).key]
    else:
        assert isinstance(result, Step) and result.done
        assert survivors == []


TRIGGERS: dict[str, Callable[[Auth, Identity], object]] = {
    "e-mail changed": lambda a, v: a.directory.update(v.id, email="jane.new@example.com"),
    "phone changed": lambda a, v: a.directory.update(v.id, phone="+1 202 555 0177"),
    "phone removed": lambda a, v: a.directory.update(v.id, phone=None),
    "identity disabled": lambda a, v: a.directory.update(v.id, disabled=True),
    "identity deleted": lambda a, v: a.directory.delete(v.id),
    "staff ends all sessions": lambda a, v: a.sessions.revoke_all(v.id),
}


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_account_changes_end_every_session(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock, trigger: str
) -> None:  # R57
    auth = make_auth(store_kind)
    open_portal(auth)
    victim = add_victim(auth)
    tokens = _three_sessions(auth, clock, victim)
    TRIGGERS[trigger](auth, victim)
    assert _alive(auth, tokens) == [False, False, False]
    assert auth.sessions.list(victim.id) == []


def test_a_first_password_ends_the_sessions_and_signs_in_afresh(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock
) -> None:  # R57
    auth = make_auth(store_kind)
    open_portal(auth)
    victim = add_victim(auth, password=None)
    tokens = []
    for how in ("staff_pin", "contact_otp"):
        clock.advance(61)
        result = SIGN_INS[how](auth, victim)
        assert isinstance(result, SignedIn)
        tokens.append(result.token)
    auth.passwords.invite(victim)
    accepted = auth.passwords.accept_invite(
        PORTAL, token_in(newest(auth, victim, "password_invite")), NEW_PASSWORD, client=CLIENT
    )
    assert isinstance(accepted, SignedIn)
    assert _alive(auth, [*tokens, accepted.token]) == [False, False, True]
    assert accepted.token not in tokens

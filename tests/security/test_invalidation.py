"""Invalidation (issue 7, item 7): every outstanding secret dies with the account state it was
issued for (R29, R30).

Each test first issues one secret of every kind to the same client: a ``contact_otp`` code (by
SMS), a sign-in link with its code, a magic-link invitation, a staff PIN, a share code with a
confirmation code in flight, a reset link, a set-your-password invitation and a pending
second-factor step. It checks that all of them are live, fires one trigger, then *uses* each one
through the public API: every use must fail. The portal requires an e-mailed second factor, so a
secret that still worked would show up as a second-factor ``Step`` rather than an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest

from portalauth import Auth, FrozenClock, NotFound, PortalAuthError, Step, VerificationFailed
from portalauth.flows import FlowCodec
from portalauth.records import Identity

from .helpers import (
    CLIENT,
    EMAIL,
    NEW_PASSWORD,
    PASSWORD,
    PORTAL,
    SCOPE,
    add_victim,
    attacker,
    code_in,
    newest,
    open_portal,
    token_in,
)

NEW_EMAIL = "jane.new@example.com"
NEW_PHONE = "+1 202 555 0177"


@attrs.define
class Outstanding:
    """One secret of every kind, as the client holds them."""

    otp_flow: str
    otp_code: str
    link: str
    link_flow: str
    link_code: str
    link_invite: str
    pin: str
    share: str
    share_flow: str
    share_code: str
    reset: str
    invite: str
    second_flow: str
    second_code: str
    session: str


def _flow(step: object) -> str:
    assert isinstance(step, Step) and step.flow is not None, step
    return step.flow


def issue_everything(auth: Auth, clock: FrozenClock, victim: Identity) -> Outstanding:
    session = auth.sign_in(victim, method="password").token  # for the change trigger
    auth.passwords.invite(victim)
    invite = token_in(newest(auth, victim, "password_invite"))
    auth.magic_links.invite(victim)
    link_invite = token_in(newest(auth, victim, "magic_link_invite"))
    auth.passwords.request_reset(PORTAL, {"email": EMAIL}, client=CLIENT)
    reset = token_in(newest(auth, victim, "password_reset"))
    link_flow = _flow(auth.start(PORTAL, "magic_link", {"email": EMAIL}, client=CLIENT))
    link_mail = newest(auth, victim, "magic_link")
    otp_flow = _flow(auth.start(PORTAL, "contact_otp", {"contact": victim.phone}, client=CLIENT))
    otp_code = code_in(newest(auth, victim, "contact_login"))
    pin = auth.pins.issue(victim, actor="staff:1").pin
    share = auth.share_codes.issue(victim, scope=SCOPE, send=False).code
    share_flow = _flow(auth.start(PORTAL, "share_code", {"share_code": share}, client=CLIENT))
    share_code = code_in(newest(auth, victim, "share_code_login"))
    second_flow = _flow(
        auth.start(PORTAL, "password", {"email": EMAIL, "password": PASSWORD}, client=CLIENT)
    )
    second_code = code_in(newest(auth, victim, "second_factor"))
    return Outstanding(
        otp_flow=otp_flow,
        otp_code=otp_code,
        link=token_in(link_mail),
        link_flow=link_flow,
        link_code=code_in(link_mail),
        link_invite=link_invite,
        pin=pin,
        share=share,
        share_flow=share_flow,
        share_code=share_code,
        reset=reset,
        invite=invite,
        second_flow=second_flow,
        second_code=second_code,
        session=session,
    )


def live(auth: Auth, victim: Identity, held: Outstanding) -> dict[str, bool]:
    """Which secrets are live, seen without using any (inspect, status, the store's state)."""

    def challenge(flow: str) -> bool:
        """Whether the challenge the flow token names is still usable."""
        state = FlowCodec(auth.keyring, auth.clock).load(flow)
        record = auth.store.get_challenge(state.challenge_id or "")
        return record is not None and record.usable_at(auth.clock.now())

    try:
        pin = auth.pins.status(victim.id).outstanding
        share = auth.share_codes.status(victim.id, SCOPE).invited
    except NotFound:  # deleted
        pin = share = False
    return {
        "contact_otp code": challenge(held.otp_flow),
        "sign-in link": auth.magic_links.inspect(PORTAL, held.link).valid,
        "sign-in link code": challenge(held.link_flow),
        "magic-link invitation": auth.magic_links.inspect(PORTAL, held.link_invite).valid,
        "staff PIN": pin,
        "share code": share,
        "share code confirmation": challenge(held.share_flow),
        "reset link": auth.passwords.inspect(PORTAL, held.reset).valid,
        "password invitation": auth.passwords.inspect(PORTAL, held.invite).valid,
        "second-factor step": challenge(held.second_flow),
    }


def uses(auth: Auth, email: str, held: Outstanding) -> dict[str, Callable[[], object]]:
    """Using each secret through the public API, as its holder would."""
    return {
        "contact_otp code": lambda: auth.advance(held.otp_flow, {"code": held.otp_code}),
        "sign-in link": lambda: auth.magic_links.redeem(PORTAL, held.link),
        "sign-in link code": lambda: auth.advance(held.link_flow, {"code": held.link_code}),
        "magic-link invitation": lambda: auth.magic_links.redeem(PORTAL, held.link_invite),
        "staff PIN": lambda: auth.start(PORTAL, "staff_pin", {"email": email, "pin": held.pin}),
        "share code confirmation": lambda: auth.advance(held.share_flow, {"code": held.share_code}),
        "reset link": lambda: auth.passwords.reset(PORTAL, held.reset, "a third passphrase here"),
        "password invitation": lambda: auth.passwords.accept_invite(
            PORTAL, held.invite, "a third passphrase here"
        ),
        "second-factor step": lambda: auth.advance(held.second_flow, {"code": held.second_code}),
    }


def _change(auth: Auth, victim: Identity, held: Outstanding) -> None:
    auth.passwords.change(held.session, PASSWORD, NEW_PASSWORD)


def _set(auth: Auth, victim: Identity, held: Outstanding) -> None:
    auth.passwords.accept_invite(PORTAL, held.invite, NEW_PASSWORD, client=CLIENT)


def _reset(auth: Auth, victim: Identity, held: Outstanding) -> None:
    step = auth.passwords.reset(PORTAL, held.reset, NEW_PASSWORD, client=CLIENT)
    assert isinstance(step, Step) and step.done


TRIGGERS: dict[str, Callable[[Auth, Identity, Outstanding], Any]] = {
    "password set (invitation accepted)": _set,
    "password changed": _change,
    "password reset": _reset,
    "e-mail changed": lambda a, v, h: a.directory.update(v.id, email=NEW_EMAIL),
    "phone changed": lambda a, v, h: a.directory.update(v.id, phone=NEW_PHONE),
    "identity disabled": lambda a, v, h: a.directory.update(v.id, disabled=True),
    "identity deleted": lambda a, v, h: a.directory.delete(v.id),
}


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_every_outstanding_secret_fails_after(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock, trigger: str
) -> None:  # R29 R30
    auth = make_auth(store_kind)
    open_portal(auth, second_factor="email_code")
    victim = add_victim(auth)
    held = issue_everything(auth, clock, victim)
    assert all(live(auth, victim, held).values()), live(auth, victim, held)

    TRIGGERS[trigger](auth, victim, held)

    assert not any(live(auth, victim, held).values()), live(auth, victim, held)
    current = auth.directory.find(victim.id)
    email = current.email if current is not None and current.email else EMAIL
    for name, use in uses(auth, email, held).items():
        clock.advance(1)
        try:
            result = use()
        except VerificationFailed:
            continue
        except PortalAuthError as exc:
            pytest.fail(f"{name} after {trigger}: {exc!r} (expected the generic failure)")
        pytest.fail(f"{name} still works after {trigger}: {result!r}")
    # The share code itself finds nobody to send a code to any more.
    clock.advance(61)
    before = len(auth.outbox.messages(PORTAL, limit=10_000))
    entered = auth.start(PORTAL, "share_code", {"share_code": held.share}, client=attacker(1))
    assert isinstance(entered, Step)
    assert len(auth.outbox.messages(PORTAL, limit=10_000)) == before


def test_staff_revoking_a_pin_or_a_share_code_ends_it(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock
) -> None:  # R29 R51
    auth = make_auth(store_kind)
    open_portal(auth)
    victim = add_victim(auth)
    pin = auth.pins.issue(victim).pin
    share = auth.share_codes.issue(victim, scope=SCOPE, send=False).code
    share_flow = _flow(auth.start(PORTAL, "share_code", {"share_code": share}, client=CLIENT))
    share_code = code_in(newest(auth, victim, "share_code_login"))

    assert auth.pins.revoke(victim, actor="staff:1")
    assert auth.share_codes.revoke(victim, SCOPE, actor="staff:1")

    with pytest.raises(VerificationFailed):
        auth.start(PORTAL, "staff_pin", {"email": EMAIL, "pin": pin}, client=CLIENT)
    with pytest.raises(VerificationFailed):
        auth.advance(share_flow, {"code": share_code}, client=CLIENT)
    clock.advance(61)
    sent = len(auth.outbox.messages(PORTAL))
    auth.start(PORTAL, "share_code", {"share_code": share}, client=CLIENT)
    assert len(auth.outbox.messages(PORTAL)) == sent  # a revoked share code sends nothing


def test_revoking_a_share_code_ends_a_second_factor_step_it_started(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:  # R29
    auth = make_auth(store_kind)
    open_portal(auth, second_factor="email_code")
    victim = add_victim(auth)
    share = auth.share_codes.issue(victim, scope=SCOPE, send=False).code
    step = auth.start(PORTAL, "share_code", {"share_code": share}, client=CLIENT)
    code = code_in(newest(auth, victim, "share_code_login"))
    second = auth.advance(_flow(step), {"code": code}, client=CLIENT)
    assert isinstance(second, Step) and second.next == "second_factor"

    assert auth.share_codes.revoke(victim, SCOPE, actor="staff:1")  # staff end the case access

    with pytest.raises(VerificationFailed):
        auth.advance(
            _flow(second),
            {"code": code_in(newest(auth, victim, "second_factor"))},
            client=CLIENT,
        )
    assert auth.sessions.list(victim.id) == []

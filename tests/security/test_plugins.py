"""Plugin isolation (R72): a strategy plugin cannot sign anyone in around the core.

A hostile or broken strategy returns something that is not an outcome (a user object, a
``SignedIn`` it built itself, ``True``), vouches for an identity the core refuses (disabled,
another portal's), or raises. Every case ends in a typed error with no session, and the core's
throttles still run before the strategy is called.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from portalauth import (
    Auth,
    ClientInfo,
    Field,
    PortalAuthError,
    SignedIn,
    Throttled,
    VerificationFailed,
    hookimpl,
)
from portalauth.flows import Authenticated, FlowState
from portalauth.records import Identity, SessionRecord
from portalauth.strategies.base import Context

from .helpers import CLIENT, EMAIL, PORTAL, add_victim, open_portal

ROGUE = "rogue"


class Rogue:
    """A strategy whose ``start`` returns whatever the test hands it."""

    name = ROGUE
    label = "Rogue"

    def __init__(self) -> None:
        self.outcome: Callable[[Context], object] = lambda ctx: None
        self.calls = 0

    def configure(self, raw: Mapping[str, Any]) -> object:
        return object()

    def fields(self, step: str, config: object) -> tuple[Field, ...]:
        return (Field("email", "email", "E-mail address"),)

    def start(self, ctx: Context) -> object:
        self.calls += 1
        return self.outcome(ctx)

    def advance(self, ctx: Context, state: FlowState) -> object:
        return self.outcome(ctx)


class RoguePlugin:
    def __init__(self, rogue: Rogue) -> None:
        self.rogue = rogue

    @hookimpl
    def portalauth_add_strategies(self) -> list[object]:
        return [self.rogue]


def _setup(make_auth: Callable[..., Auth], **limits: str) -> tuple[Auth, Rogue, Identity]:
    rogue = Rogue()
    auth = make_auth("sqlite", plugins=[RoguePlugin(rogue)], limits=limits or None)
    settings = open_portal(auth)
    auth.portals.update(PORTAL, methods={*settings.methods, ROGUE})
    return auth, rogue, add_victim(auth)


def _forged_session(victim: Identity) -> SignedIn:
    record = SessionRecord(
        key=b"k" * 32,
        identity_id=victim.id,
        portal=PORTAL,
        method=ROGUE,
        created_at=0.0,
        last_seen_at=0.0,
        idle_expires_at=9e9,
        absolute_expires_at=9e9,
    )
    return SignedIn(identity=victim, session=record, token="forged", method=ROGUE)


HOSTILE: dict[str, Callable[[Identity], Callable[[Context], object]]] = {
    "a user object": lambda victim: lambda ctx: victim,
    "a SignedIn it built": lambda victim: lambda ctx: _forged_session(victim),
    "True": lambda victim: lambda ctx: True,
    "a dict": lambda victim: lambda ctx: {"identity": victim.id},
    "None": lambda victim: lambda ctx: None,
    "a crash": lambda victim: lambda ctx: 1 / 0,
    "a disabled identity": lambda victim: (
        lambda ctx: Authenticated(identity=victim.evolve(disabled=True))
    ),
    "another portal's identity": lambda victim: (
        lambda ctx: Authenticated(identity=victim.evolve(portal="elsewhere"))
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_strategy_cannot_sign_in_around_the_core(
    make_auth: Callable[..., Auth], case: str
) -> None:  # R72
    auth, rogue, victim = _setup(make_auth)
    rogue.outcome = HOSTILE[case](victim)
    with pytest.raises(PortalAuthError) as refused:
        auth.start(PORTAL, ROGUE, {"email": EMAIL}, client=CLIENT)
    assert rogue.calls == 1
    assert refused.value.code in ("error", "verification_failed")
    assert auth.sessions.list(victim.id) == []
    # The safe message never carries what the plugin was handling.
    assert victim.id not in str(refused.value) and EMAIL not in str(refused.value)


def test_a_disabled_identity_is_refused_even_when_vouched_for(
    make_auth: Callable[..., Auth],
) -> None:  # R72
    auth, rogue, victim = _setup(make_auth)
    auth.directory.update(victim.id, disabled=True)
    rogue.outcome = lambda ctx: Authenticated(identity=victim)  # a stale read, not disabled
    with pytest.raises(VerificationFailed):
        auth.start(PORTAL, ROGUE, {"email": EMAIL}, client=CLIENT)
    assert auth.sessions.list(victim.id) == []


def test_the_core_throttles_run_before_the_plugin(make_auth: Callable[..., Auth]) -> None:  # R72
    auth, rogue, _ = _setup(make_auth, start_per_ip="3/minute")
    rogue.outcome = lambda ctx: 1 / 0
    for _ in range(3):
        with pytest.raises(PortalAuthError):
            auth.start(PORTAL, ROGUE, {"email": EMAIL}, client=CLIENT)
    with pytest.raises(Throttled):
        auth.start(PORTAL, ROGUE, {"email": EMAIL}, client=CLIENT)
    assert rogue.calls == 3  # the fourth request never reached the plugin
    other = ClientInfo(ip="198.51.100.7")
    with pytest.raises(PortalAuthError):
        auth.start(PORTAL, ROGUE, {"email": EMAIL}, client=other)
    assert rogue.calls == 4


def test_an_honest_outcome_goes_through_the_core(make_auth: Callable[..., Auth]) -> None:
    # The harness is not blind: the same plugin signs in when it returns a real outcome.
    auth, rogue, victim = _setup(make_auth)
    rogue.outcome = lambda ctx: Authenticated(identity=ctx.directory.get(victim.id))
    signed = auth.start(PORTAL, ROGUE, {"email": EMAIL}, client=CLIENT)
    assert isinstance(signed, SignedIn) and signed.method == ROGUE
    assert [s.method for s in auth.sessions.list(victim.id)] == [ROGUE]

"""``staff_pin``: the SimplePractice "Sign in via PIN code" fallback.

Staff generate a 6-digit PIN for a client (``auth.pins.issue``) and tell it to them, e.g. by
phone. The client signs in with their e-mail address and the PIN. A PIN works once, expires in
24 hours, and a new PIN replaces the old one; staff can see that a PIN is outstanding and until
when, never its value again (only its keyed digest is stored).

The PIN is bound to the identity: the right PIN with another e-mail address fails. It has an
attempt budget per PIN (5) and the identity's consecutive-failure budget for this method, and it
is the recovery path when another method is locked (its failures are counted separately).

Two counts keep that path open (R12): wrong PINs typed against an outstanding PIN count toward
the method's hard lock (100 in a row: 1 in 10,000 of the PIN space for a guesser, however many
PINs staff issue); *every* wrong PIN, outstanding or not, counts toward a second count that only
ever delays (30 s doubling to 1 h) and never locks. Typing PINs for an address that holds none
cannot succeed, so it may slow an attacker but must not close the path before staff give the
client a PIN; and because both kinds of failure delay alike, the answers do not tell whether a
PIN is outstanding or the address has an account.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from ..errors import MethodDisabled, VerificationFailed
from ..flows import Authenticated, Field, FlowState
from ..hooks import hookimpl
from ..records import Identity
from ..strategies.base import START, Context
from ..validation import check_limit, int_range, settings_from

if TYPE_CHECKING:
    from ..auth import Auth

__all__ = ["Pin", "PinStatus", "Pins", "StaffPinSettings", "StaffPinStrategy"]

#: The count of every wrong PIN typed for an address (delays only, never a lock).
TYPED = "typed"

NAME = "staff_pin"
PURPOSE = "staff_pin"
DIGITS = 6


@frozen(kw_only=True)
class StaffPinSettings:
    """Per-portal settings of ``staff_pin`` (``method_settings["staff_pin"]``)."""

    #: How long a PIN stays valid.
    valid_hours: int = field(default=24, validator=int_range(1, 168))
    #: Attempts per PIN.
    max_attempts: int = field(default=5, validator=int_range(1, 10))
    #: Sign-in attempts per e-mail address (canonical), whoever makes them.
    attempts_per_address: str = field(default="10/hour", validator=check_limit)


@frozen
class Pin:
    """A newly issued PIN. ``pin`` is shown to staff once and never stored."""

    pin: str = field(repr=False)
    identity_id: str
    expires_at: float


@frozen
class PinStatus:
    outstanding: bool
    expires_at: float | None = None
    issued_at: float | None = None


class StaffPinStrategy:
    """Sign in with your e-mail address and the PIN the office gave you."""

    name = NAME
    label = "Sign in with a PIN from the office"

    def configure(self, raw: Mapping[str, Any]) -> StaffPinSettings:
        return settings_from(StaffPinSettings, raw, NAME)

    def fields(self, step: str, config: StaffPinSettings) -> tuple[Field, ...]:
        if step != START:
            return ()
        return (
            Field("email", "email", "E-mail address", autocomplete="username"),
            Field(
                "pin",
                "code",
                "PIN",
                max_length=DIGITS,
                numeric=True,
                autocomplete="one-time-code",
                help="The 6-digit PIN the office gave you.",
            ),
        )

    def start(self, ctx: Context) -> Authenticated:
        config: StaffPinSettings = ctx.config
        slug = ctx.portal.slug
        # A PIN sends nothing, so a bouncing or opted-out e-mail does not stop it: it is the
        # fallback for exactly those clients.
        identity, subject = ctx.lookup_email(ctx.form["email"], channel=None)
        ctx.hit(config.attempts_per_address, "pin_address", slug, subject)
        # The subject's newest PIN: a known identity's (if any), never another's. Unknown
        # addresses and identities without a PIN fail the same way, through the same budget.
        challenges = ctx.challenges
        typed = challenges.check_failures(ctx.portal, NAME, subject, TYPED, lock=False)
        pin = challenges.latest(slug, subject, PURPOSE)
        if pin is None:
            challenges.record_failure(slug, NAME, subject, TYPED)
            raise VerificationFailed()
        try:
            challenges.verify(
                pin.id,
                ctx.read_code("pin", DIGITS),
                settings=ctx.portal,
                purpose=PURPOSE,
                method=NAME,
                digits=DIGITS,
                read=pin,
            )
        except VerificationFailed:
            challenges.record_failure(slug, NAME, subject, TYPED)
            raise
        challenges.clear_failures(slug, NAME, subject, TYPED, read=typed)
        if identity is None:  # unreachable: decoy subjects never hold a PIN
            raise VerificationFailed()
        return Authenticated(identity=identity)

    def advance(self, ctx: Context, state: FlowState) -> Authenticated:
        raise VerificationFailed()  # a one-step method: there is nothing to advance

    def staff(self, auth: Auth) -> Pins:
        return Pins(auth)


class Pins:
    """Staff side of ``staff_pin``: ``auth.pins``."""

    def __init__(self, auth: Auth) -> None:
        self._auth = auth

    def _party(self, identity: Identity | str) -> Identity:
        return self._auth.directory.get(identity if isinstance(identity, str) else identity.id)

    def issue(self, identity: Identity | str, *, actor: str | None = None) -> Pin:
        """A new PIN for the identity, replacing any outstanding one; show it to staff once."""
        party = self._party(identity)
        settings = self._auth.portals.get(party.portal)
        if NAME not in settings.methods:
            raise MethodDisabled("PIN sign-in is not enabled for this portal.")
        config: StaffPinSettings = self._auth.strategy_config(settings.slug, NAME)
        pin = self._auth.challenges.new_code(DIGITS)
        record = self._auth.challenges.issue(
            portal=settings.slug,
            subject=party.id,
            purpose=PURPOSE,
            secret=pin,
            ttl=config.valid_hours * 3600,
            max_attempts=config.max_attempts,
            method=NAME,
        )
        self._auth.emitter.emit(
            "pin.issued",
            portal=settings.slug,
            identity_id=party.id,
            method=NAME,
            actor=actor,
            detail={"expires_at": record.expires_at},
        )
        return Pin(pin=pin, identity_id=party.id, expires_at=record.expires_at)

    def status(self, identity: Identity | str) -> PinStatus:
        """Whether a PIN is outstanding and until when (never its value)."""
        party = self._party(identity)
        record = self._auth.challenges.latest(party.portal, party.id, PURPOSE)
        if record is None or record.attempts >= record.max_attempts:
            return PinStatus(outstanding=False)
        return PinStatus(
            outstanding=True, expires_at=record.expires_at, issued_at=record.created_at
        )

    def revoke(self, identity: Identity | str, *, actor: str | None = None) -> bool:
        party = self._party(identity)
        count = self._auth.challenges.revoke(party.portal, party.id, purposes=[PURPOSE])
        if count:
            self._auth.emitter.emit(
                "pin.revoked", portal=party.portal, identity_id=party.id, method=NAME, actor=actor
            )
        return count > 0


@hookimpl
def portalauth_add_strategies() -> list[object]:
    return [StaffPinStrategy()]

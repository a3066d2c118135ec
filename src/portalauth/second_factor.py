"""Second factors: the step a portal may require after any primary sign-in method succeeds.

A portal's ``second_factor`` setting is ``none``, ``sms_code`` (a code to the identity's mobile),
``email_code`` (a code to its e-mail) or ``tax_id_last4`` (the last four digits of the Tax ID, asked
on the first sign-in only, as Firm360 describes). The core inserts the step between a strategy's
success and :class:`~portalauth.flows.SignedIn`, so strategies never special-case each other.

The step is bound to the identity through a challenge (the flow token carries only its id), has
an attempt budget and an expiry like every other challenge, and counts failures per identity
under the method ``second_factor`` (its own budget, so failing it never locks the primary method).
"""

from __future__ import annotations

from collections.abc import Mapping

from attrs import frozen

from .challenges import read_code
from .config import PortalSettings
from .contacts import mask_email, mask_phone, sms_allowed
from .errors import VerificationFailed
from .flows import Field
from .records import ChallengeRecord, Identity
from .strategies.base import Services

__all__ = ["STEP", "SecondFactor"]

#: The flow step name of the second factor.
STEP = "second_factor"
PURPOSE = "second_factor"
METHOD = "second_factor"

CODE_DIGITS = 6
CODE_TTL = 600
MAX_ATTEMPTS = 5
#: Within this many seconds of a code, another primary success reuses it: nothing is sent (R15).
SEND_COOLDOWN = 60
#: Second-factor codes sent to one identity (R15: hourly and daily caps per identifier).
SENDS_PER_IDENTITY = "10/hour;30/day"


@frozen
class Pending:
    """A second-factor step that was started: its challenge and what to tell the client."""

    challenge: ChallengeRecord
    notice: str
    sent_to: str | None


class SecondFactor:
    """Starts and checks second-factor steps."""

    def __init__(self, services: Services) -> None:
        self._services = services

    @staticmethod
    def required(settings: PortalSettings, identity: Identity) -> str | None:
        """The kind of second factor ``identity`` must pass now, or ``None``."""
        kind = settings.second_factor
        if kind == "none":
            return None
        if kind == "tax_id_last4" and identity.last_sign_in_at is not None:
            return None  # asked on the first sign-in only
        return kind

    @staticmethod
    def fields(kind: str) -> tuple[Field, ...]:
        if kind == "tax_id_last4":
            return (
                Field(
                    "tax_id_last4",
                    "code",
                    "Last four digits of your Tax ID",
                    max_length=4,
                    numeric=True,
                    autocomplete="off",
                ),
            )
        where = "phone" if kind == "sms_code" else "e-mail"
        return (
            Field(
                "code",
                "code",
                f"Code sent to your {where}",
                max_length=CODE_DIGITS,
                numeric=True,
                autocomplete="one-time-code",
            ),
        )

    def begin(
        self, settings: PortalSettings, identity: Identity, kind: str, *, method: str, scope: str
    ) -> Pending:
        """Issue the second-factor challenge (and send its code); raise ``VerificationFailed``
        when the identity has no usable contact for it (a portal that requires a second factor
        should also require that contact: see readiness)."""
        services = self._services
        data = {"kind": kind, "method": method, "scope": scope}
        if kind == "tax_id_last4":
            if identity.tax_id_digest is None:
                raise VerificationFailed(
                    "Your account is not ready yet. Please contact the office."
                )
            record = services.challenges.issue(
                portal=settings.slug,
                subject=identity.id,
                purpose=PURPOSE,
                secret="",
                ttl=CODE_TTL,
                max_attempts=MAX_ATTEMPTS,
                data=data,
                method=METHOD,
                decoy=True,  # nothing to compare: the check is against the stored digest
            )
            return Pending(record, "Please confirm the last four digits of your Tax ID.", None)
        channel = "sms" if kind == "sms_code" else "email"
        reachable = services.dispatcher.can_reach(identity, channel)
        if channel == "sms" and identity.phone is not None:
            # The same SMS gate as every other SMS (R16): no premium, VoIP or foreign numbers.
            reachable = reachable and sms_allowed(identity.phone, settings.sms_countries)
        if not reachable:
            raise VerificationFailed("Your account is not ready yet. Please contact the office.")
        to = identity.phone if channel == "sms" else identity.email
        masked = (mask_phone(to) if channel == "sms" else mask_email(to)) if to else None
        notice = "We sent you a code to confirm it's you."
        live = services.challenges.latest(settings.slug, identity.id, PURPOSE)
        now = services.clock.now()
        if (
            live is not None
            and live.data == data
            and live.usable_at(now)
            and now - live.created_at < SEND_COOLDOWN
        ):
            # A primary success within the cooldown continues with the code already sent:
            # signing in again and again with a password does not flood the phone (R15).
            return Pending(live, notice, masked)
        services.throttles.hit(
            SENDS_PER_IDENTITY,
            "second_factor_sends",
            settings.slug,
            identity.id,
            portal=settings.slug,
            method=METHOD,
        )
        code = services.challenges.new_code(CODE_DIGITS)
        record = services.challenges.issue(
            portal=settings.slug,
            subject=identity.id,
            purpose=PURPOSE,
            secret=code,
            ttl=CODE_TTL,
            max_attempts=MAX_ATTEMPTS,
            data=data,
            method=METHOD,
        )
        services.dispatcher.send(
            identity,
            settings,
            channel=channel,
            template="code",
            context={
                "code": code,
                "minutes": CODE_TTL // 60,
                "purpose_label": "confirm it's you",
            },
            purpose=PURPOSE,
            method=METHOD,
            # A code nobody received must not stay usable.
            on_failure=lambda: services.challenges.revoke(
                settings.slug, identity.id, purposes=[PURPOSE]
            ),
        )
        return Pending(record, notice, masked)

    def check(
        self, settings: PortalSettings, challenge_id: str | None, form: Mapping[str, str]
    ) -> tuple[Identity, str, str]:
        """Verify the step; return ``(identity, primary method, scope)`` or raise."""
        services = self._services
        record = services.challenges.get_live(challenge_id or "")
        kind = str(record.data.get("kind", "")) if record is not None else ""
        if kind == "tax_id_last4":
            identity = services.directory.find(record.subject) if record is not None else None
            typed = form.get("tax_id_last4", "")

            def matches(_: ChallengeRecord) -> bool:
                return identity is not None and services.directory.check_tax_id(identity, typed)

            record = services.challenges.verify(
                challenge_id,
                None,
                settings=settings,
                purpose=PURPOSE,
                method=METHOD,
                check=matches,
                counter=primary_method,
            )
        else:
            record = services.challenges.verify(
                challenge_id,
                read_code(form.get("code"), CODE_DIGITS),
                settings=settings,
                purpose=PURPOSE,
                method=METHOD,
                digits=CODE_DIGITS,
                counter=primary_method,
            )
        identity = services.directory.find(record.subject)
        if identity is None:
            raise VerificationFailed()
        return identity, str(record.data.get("method", "")), str(record.data.get("scope", ""))


def primary_method(record: ChallengeRecord) -> str:
    """The failure counter of a second-factor step: the method that began it. A guesser who
    holds one primary credential (a password) locks the second factor after that method only;
    a staff PIN, or a new password, still reaches it (R12)."""
    return str(record.data.get("method", "")) if record.data else ""

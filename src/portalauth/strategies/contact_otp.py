"""``contact_otp``: the eCourtDate agency-portal sign-in.

The client types a phone number (any common format, read in the portal's default region) or an
e-mail address. A one-time code goes to that same contact, by SMS or e-mail, only when it belongs
to an identity of this portal and is valid and opted in; entering the code signs the client in.
A portal turns "client authentication" on by enabling the ``contact_otp`` method and off by
removing it (``start`` then raises ``MethodDisabled``, and an integration shows no form).

Security reasoning (see ``docs/strategies/contact_otp.md``):

- Unknown, opted-out and invalid contacts get the same answer as a known one (unless the portal
  chose helpful errors), the same kind of stored (decoy) challenge, the same cooldown and the
  same per-destination throttles; nothing is sent to them.
- Codes are 6 digits, live 10 minutes, have 5 attempts, and a newer code supersedes the older
  one; a superseded code fails with ``reason="superseded"`` so the page can say a newer code was
  sent. The consecutive-failure budget per identity (10, then delays) survives resends.
- SMS pumping (R16): only numbers of the portal's ``sms_countries`` and of mobile types (no
  premium-rate, shared-cost, toll-free, VoIP, pager or unknown types); per-destination,
  per-prefix and per-portal hourly caps; a send only ever goes to a number already on an
  identity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from attrs import field, frozen

from ..contacts import email_send_key, mask_email, mask_phone, sms_allowed
from ..errors import (
    ConfigError,
    InvalidContact,
    Throttled,
    UnknownContact,
    VerificationFailed,
)
from ..flows import Authenticated, Continue, Field, FlowState
from ..hooks import hookimpl
from ..records import ChallengeRecord, Identity
from ..strategies.base import START, Context
from ..validation import check_limit, int_range, settings_from

__all__ = ["ContactOtpSettings", "ContactOtpStrategy"]

NAME = "contact_otp"
PURPOSE = "contact_login"
NOTICE = "If that contact is registered with us, we have sent it a code."
CHANNELS = ("sms", "email")


def _channels(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        value = [value]
    result = frozenset(value)
    if not result or not result <= set(CHANNELS):
        raise ConfigError("contact_otp.channels must name 'sms' and/or 'email'.")
    return result


@frozen(kw_only=True)
class ContactOtpSettings:
    """Per-portal settings of ``contact_otp`` (``method_settings["contact_otp"]``)."""

    code_digits: int = field(default=6, validator=int_range(6, 10))
    code_minutes: int = field(default=10, validator=int_range(1, 60))
    max_attempts: int = field(default=5, validator=int_range(1, 10))
    #: A second request within this many seconds reuses the code already sent (no new message).
    resend_cooldown: int = field(default=60, validator=int_range(0, 3600))
    #: Codes per destination (e-mail without its +tag, or phone number).
    codes_per_destination: str = field(default="5/hour", validator=check_limit)
    #: SMS codes per number prefix (the number without its last four digits).
    sms_per_prefix: str = field(default="20/hour", validator=check_limit)
    #: SMS codes the whole portal may send (a toll-fraud circuit breaker).
    sms_per_portal: str = field(default="200/hour", validator=check_limit)
    #: Which contacts clients may sign in with.
    channels: frozenset[str] = field(default=frozenset(CHANNELS), converter=_channels)
    #: Put the code in the e-mail subject (some clients read codes from previews). Off: a
    #: subject shows up in notifications and logs more readily than a body.
    code_in_subject: bool = False


class ContactOtpStrategy:
    """Enter your phone number or e-mail address, then the code sent to it."""

    name = NAME
    label = "Get a code by text or e-mail"

    def configure(self, raw: Mapping[str, Any]) -> ContactOtpSettings:
        return settings_from(ContactOtpSettings, raw, NAME)

    def fields(self, step: str, config: ContactOtpSettings) -> tuple[Field, ...]:
        if step == START:
            label = {
                frozenset({"sms"}): "Mobile phone number",
                frozenset({"email"}): "E-mail address",
            }.get(config.channels, "Phone number or e-mail address")
            return (Field("contact", "contact", label, max_length=254, autocomplete="username"),)
        return (
            Field(
                "code",
                "code",
                "Verification code",
                max_length=config.code_digits,
                numeric=True,
                autocomplete="one-time-code",
            ),
        )

    def start(self, ctx: Context) -> Continue:
        config: ContactOtpSettings = ctx.config
        slug = ctx.portal.slug
        try:
            contact = ctx.directory.read_contact(ctx.portal, ctx.form["contact"])
        except InvalidContact as exc:
            raise InvalidContact(exc.message, field="contact") from None
        if contact.channel not in config.channels:
            raise InvalidContact(
                "Please enter your e-mail address."
                if contact.channel == "sms"
                else "Please enter your mobile phone number.",
                field="contact",
            )
        if contact.channel == "sms" and not sms_allowed(contact.key, ctx.portal.sms_countries):
            # Premium, VoIP, toll-free, foreign...: refused for everyone alike (R16).
            raise InvalidContact("We can't send a code to that number.", field="contact")

        identity = ctx.directory.find_contact(slug, contact)
        if identity is not None and not ctx.dispatcher.can_reach(identity, contact.channel):
            identity = None  # opted out, invalid or disabled: treated as unknown
        if identity is None:
            if ctx.portal.helpful_errors:
                raise UnknownContact()
            subject = ctx.challenges.decoy_subject(slug, f"{contact.channel}:{contact.key}")
        else:
            subject = identity.id

        existing = ctx.challenges.latest(slug, subject, PURPOSE)
        if (
            existing is not None
            and ctx.now - existing.created_at < config.resend_cooldown
            and existing.data.get("channel", contact.channel) == contact.channel
        ):
            # Within the cooldown the code already sent on this channel stands (R15); asking
            # on the other channel sends a new code there (and supersedes this one).
            return self._continue(ctx, existing, identity, contact.channel)

        destination = email_send_key(contact.key) if contact.channel == "email" else contact.key
        ctx.hit(config.codes_per_destination, "otp_destination", slug, destination)
        if contact.channel == "sms":
            ctx.hit(config.sms_per_prefix, "otp_prefix", slug, contact.key[:-4])
            # The portal-wide SMS budget is spent only by real sends but checked for every
            # request alike, so an exhausted budget answers known and unknown numbers the same.
            if not ctx.throttles.test(config.sms_per_portal, "sms_portal", slug):
                ctx.emit("throttled", detail={"limit": "sms_per_portal"})
                raise Throttled()

        code = ctx.challenges.new_code(config.code_digits)
        challenge = ctx.challenges.issue(
            portal=slug,
            subject=subject,
            purpose=PURPOSE,
            secret=code,
            ttl=config.code_minutes * 60,
            max_attempts=config.max_attempts,
            data={"channel": contact.channel},
            method=NAME,
            decoy=identity is None,
        )
        context = {
            "code": code,
            "minutes": config.code_minutes,
            "purpose_label": "sign in",
            "code_in_subject": config.code_in_subject,
        }
        if identity is None:
            # The same rendering and queued job as a real code (R32).
            ctx.dispatcher.send_nothing(
                ctx.portal, channel=contact.channel, template="code", context=context
            )
            return self._continue(ctx, challenge, identity, contact.channel)
        if contact.channel == "sms":
            ctx.hit(config.sms_per_portal, "sms_portal", slug)
        ctx.dispatcher.send(
            identity,
            ctx.portal,
            channel=contact.channel,
            template="code",
            context=context,
            purpose=PURPOSE,
            method=NAME,
            # A code nobody received must not stay usable.
            on_failure=lambda: ctx.challenges.revoke(slug, subject, purposes=[PURPOSE]),
        )
        return self._continue(ctx, challenge, identity, contact.channel)

    @staticmethod
    def _continue(
        ctx: Context, challenge: ChallengeRecord, identity: Identity | None, channel: str
    ) -> Continue:
        sent_to = None
        if ctx.portal.helpful_errors and identity is not None:
            contact = identity.email if channel == "email" else identity.phone
            if contact:
                sent_to = mask_email(contact) if channel == "email" else mask_phone(contact)
        return Continue(step="code", challenge=challenge, notice=NOTICE, sent_to=sent_to)

    def advance(self, ctx: Context, state: FlowState) -> Authenticated:
        config: ContactOtpSettings = ctx.config
        record = ctx.challenges.verify(
            state.challenge_id,
            ctx.read_code("code", config.code_digits),
            settings=ctx.portal,
            purpose=PURPOSE,
            method=NAME,
            digits=config.code_digits,
        )
        identity = ctx.directory.find(record.subject)
        if identity is None:  # deleted since the code was sent
            raise VerificationFailed()
        return Authenticated(identity=identity)


@hookimpl
def portalauth_add_strategies() -> list[object]:
    return [ContactOtpStrategy()]

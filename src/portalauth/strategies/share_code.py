"""``share_code``: the Complyr case-portal sign-in.

Staff issue a *share code* (``K7M-4P9``) to one party for one scope (a case). The party enters it;
a short confirmation code is e-mailed to the address on the party's record; entering that code
signs the party in with a session scoped to the case. The share code keeps working for later
sign-ins until it expires (default 30 days), is replaced by a new one or is revoked.

Security reasoning (see ``docs/strategies/share_code.md``):

- The share code is an *identifier*, not the proof: a correct share code only makes the library
  e-mail a code to the address staff recorded, so guessing share codes gains nothing but a
  throttled nuisance e-mail. Unknown, revoked and expired share codes get the same answer, the
  same kind of stored (decoy) challenge and the same throttles as valid ones, and nothing is
  sent, so the answer never tells whether a share code is valid.
- The confirmation code (5 digits by default, as the seed describes) has 5 attempts, expires in
  15 minutes, is superseded by a newer one, and sits behind its share code's consecutive-failure
  count, which re-entering the share code does not reset: at 10 wrong codes in a row (the hard
  limit for 5-digit codes, see ``challenges.hard_limit``) that share code is locked, so whoever
  holds it gets at most 1 in 10,000; staff issue a new share code to end a lock.
- Share codes are stored only as keyed digests; staff see a code once, when it is issued.
  "Resending" therefore issues a fresh share code (the previous one stops working).
"""

from __future__ import annotations

import secrets
import time
import unicodedata
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from ..challenges import hard_limit
from ..config import PortalSettings
from ..contacts import mask_email
from ..errors import ConfigError, DeliveryFailed, MethodDisabled, NotReady, VerificationFailed
from ..flows import Authenticated, Continue, Field, FlowState
from ..hooks import hookimpl
from ..records import ChallengeRecord, Identity
from ..strategies.base import START, Context
from ..validation import check_limit, int_range, settings_from

if TYPE_CHECKING:
    from ..auth import Auth

__all__ = ["ShareCode", "ShareCodeSettings", "ShareCodeStatus", "ShareCodeStrategy", "ShareCodes"]

NAME = "share_code"
#: The challenge purpose of a share code, and of the confirmation code it triggers.
SHARE = "share_code"
CONFIRM = "share_code_login"

# No look-alikes: no I/L/1, O/0, S/5, Z/2, B/8.
LETTERS = "ACDEFGHJKMNPQRTUVWXY"
DIGITS = "34679"
_SHAPE = (LETTERS, DIGITS, LETTERS, DIGITS, LETTERS, DIGITS)
_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212"

NOTICE = "If that share code is valid, we have e-mailed a confirmation code to the party's address."


def _auto_invite(value: Mapping[str, bool] | None) -> Mapping[str, bool]:
    result = dict(value or {})
    if not all(isinstance(k, str) and isinstance(v, bool) for k, v in result.items()):
        raise ConfigError("share_code.auto_invite maps case types to true/false.")
    return result


@frozen(kw_only=True)
class ShareCodeSettings:
    """Per-portal settings of ``share_code`` (``method_settings["share_code"]``)."""

    #: How long a share code stays valid.
    validity_days: int = field(default=30, validator=int_range(1, 365))
    #: Digits of the e-mailed confirmation code (5 as in the seed; 6+ is NIST's floor).
    code_digits: int = field(default=5, validator=int_range(5, 10))
    #: Lifetime of a confirmation code.
    code_minutes: int = field(default=15, validator=int_range(1, 60))
    #: Attempts per confirmation code.
    max_attempts: int = field(default=5, validator=int_range(1, 10))
    #: Re-entering the share code within this many seconds reuses the code already sent.
    resend_cooldown: int = field(default=60, validator=int_range(0, 3600))
    #: At most this many confirmation codes per party per hour.
    codes_per_hour: int = field(default=5, validator=int_range(1, 100))
    #: Share-code entries per client address (IPv6 by /64).
    guesses_per_ip: str = field(default="10/minute;60/hour", validator=check_limit)
    #: Share-code entries per portal, from all clients together.
    guesses_per_portal: str = field(default="60/minute;2000/day", validator=check_limit)
    #: Whether issuing sends the invitation e-mail, per case type; ``auto_invite_default``
    #: for case types not listed.
    auto_invite: Mapping[str, bool] = field(factory=dict, converter=_auto_invite)
    auto_invite_default: bool = True
    #: Where the invitation sends people, appended to the portal's ``base_url``.
    sign_in_path: str = "/portal"


@frozen
class ShareCode:
    """A newly issued share code. ``code`` is shown to staff once and never stored."""

    code: str = field(repr=False)
    identity_id: str
    scope: str
    expires_at: float
    sent: bool


@frozen
class ShareCodeStatus:
    """Whether a party is invited to a scope: a live share code, and until when. ``locked``: the
    share code has met its hard limit of wrong confirmation codes in a row and no longer signs
    anyone in; issue a new one (``auth.share_codes.send``)."""

    invited: bool
    expires_at: float | None = None
    issued_at: float | None = None
    locked: bool = False


def canonical(value: str) -> str | None:
    """``" k7m-4p9 "`` → ``"K7M4P9"``; ``None`` if it cannot be a share code."""
    text = unicodedata.normalize("NFKC", value).upper()
    text = "".join(ch for ch in text if not ch.isspace() and ch not in _DASHES)
    if len(text) != 6 or not all(ch in allowed for ch, allowed in zip(text, _SHAPE, strict=True)):
        return None
    return text


def display(code: str) -> str:
    """``"K7M4P9"`` → ``"K7M-4P9"``."""
    return f"{code[:3]}-{code[3:]}"


def new_share_code() -> str:
    """A random share code in canonical form (20·5·20·5·20·5 = 1,000,000 values)."""
    return "".join(secrets.choice(alphabet) for alphabet in _SHAPE)


class ShareCodeStrategy:
    """Enter a share code, then the confirmation code e-mailed to you."""

    name = NAME
    label = "Sign in with a share code"

    def configure(self, raw: Mapping[str, Any]) -> ShareCodeSettings:
        return settings_from(ShareCodeSettings, raw, NAME)

    def fields(self, step: str, config: ShareCodeSettings) -> tuple[Field, ...]:
        if step == START:
            return (
                Field(
                    "share_code",
                    "text",
                    "Share code",
                    max_length=64,
                    autocomplete="off",
                    help="The access code you were given, like A1B-2C3.",
                ),
            )
        return (
            Field(
                "code",
                "code",
                "Confirmation code",
                max_length=config.code_digits,
                numeric=True,
                autocomplete="one-time-code",
                help=f"The {config.code_digits}-digit code we e-mailed you.",
            ),
        )

    def start(self, ctx: Context) -> Continue:
        config: ShareCodeSettings = ctx.config
        slug = ctx.portal.slug
        ctx.hit(config.guesses_per_ip, "share_code_ip", slug, ctx.client.ip_key)
        ctx.hit(config.guesses_per_portal, "share_code_portal", slug)
        typed = canonical(ctx.form["share_code"])
        share = ctx.challenges.find(slug, SHARE, typed) if typed else None
        identity = ctx.directory.find(share.subject) if share else None
        if identity is not None and not ctx.dispatcher.can_reach(identity, "email"):
            identity = None
        if identity is None or share is None:
            if ctx.portal.helpful_errors:
                raise VerificationFailed(
                    "We don't recognise that share code. Check it, or ask the office for a new one."
                )
            # A decoy keyed on what was typed: the same cooldown, caps and answer as a real one.
            key = typed or ctx.form["share_code"].strip().upper()[:64]
            subject, scope = ctx.challenges.decoy_subject(slug, f"share:{key}"), ""
        else:
            subject, scope = identity.id, share.scope

        data = {"share": share.id} if share is not None and identity is not None else None
        # A locked share code can no longer sign in, so it sends nothing; its flow carries on as
        # before (and meets the same lock at the next step) so that the answers stay those of
        # any other guessed share code (staff see ``locked`` and issue a new share code). The
        # count is read for unknown share codes too: the same work either way (R32).
        counter = (data or {}).get("share", "")
        locked = ctx.challenges.failures(slug, NAME, subject, counter) >= hard_limit(
            ctx.portal, config.code_digits
        )
        existing = ctx.challenges.latest(slug, subject, CONFIRM, scope)
        if (
            existing is not None
            and ctx.now - existing.created_at < config.resend_cooldown
            and failure_counter(existing) == counter
        ):
            # Within the cooldown the code already sent stands: no second e-mail (R15). (A code
            # started by a share code that was since replaced is not reused: it cannot finish.)
            return self._continue(ctx, existing, identity)
        ctx.hit(f"{config.codes_per_hour}/hour", "share_code_sends", slug, subject)
        code = ctx.challenges.new_code(config.code_digits)
        challenge = ctx.challenges.issue(
            portal=slug,
            subject=subject,
            purpose=CONFIRM,
            scope=scope,
            secret=code,
            ttl=config.code_minutes * 60,
            max_attempts=config.max_attempts,
            data=data,
            method=NAME,
            decoy=identity is None,
        )
        context = {
            "code": code,
            "minutes": config.code_minutes,
            "purpose_label": "sign in to your case portal",
        }
        if identity is None or locked:
            # The same rendering and queued job as a real code (R32).
            ctx.dispatcher.send_nothing(
                ctx.portal, channel="email", template="code", context=context
            )
        else:
            ctx.dispatcher.send(
                identity,
                ctx.portal,
                channel="email",
                template="code",
                context=context,
                purpose=CONFIRM,
                method=NAME,
                # A code nobody received must not stay usable.
                on_failure=lambda: ctx.challenges.revoke(
                    slug, subject, purposes=[CONFIRM], scope=scope
                ),
            )
        return self._continue(ctx, challenge, identity)

    @staticmethod
    def _continue(ctx: Context, challenge: ChallengeRecord, identity: Identity | None) -> Continue:
        sent_to = None
        if ctx.portal.helpful_errors and identity is not None and identity.email:
            sent_to = mask_email(identity.email)
        return Continue(step="code", challenge=challenge, notice=NOTICE, sent_to=sent_to)

    def advance(self, ctx: Context, state: FlowState) -> Authenticated:
        config: ShareCodeSettings = ctx.config
        if state.step != "code":
            raise VerificationFailed()
        record = ctx.challenges.verify(
            state.challenge_id,
            ctx.read_code("code", config.code_digits),
            settings=ctx.portal,
            purpose=CONFIRM,
            method=NAME,
            digits=config.code_digits,
            # The identifier a client types here is the share code: each share code has its own
            # count, so a guesser who holds one locks only that code (10 guesses for 5 digits),
            # and the new share code staff issue starts afresh.
            counter=failure_counter,
        )
        # The share code must still be valid when the confirmation code is used: revoking a
        # share code (or issuing a new one) ends the sign-ins it started.
        share = ctx.challenges.get_live(str(record.data.get("share", "")))
        identity = ctx.directory.find(record.subject)
        if share is None or share.subject != record.subject or identity is None:
            raise VerificationFailed()
        return Authenticated(identity=identity, scope=record.scope)

    def staff(self, auth: Auth) -> ShareCodes:
        return ShareCodes(auth, self)


def failure_counter(record: ChallengeRecord) -> str:
    """The consecutive-failure counter of a confirmation code: its share code's id."""
    return str(record.data.get("share", "")) if record.data else ""


class ShareCodes:
    """Staff side of ``share_code``: ``auth.share_codes``."""

    def __init__(self, auth: Auth, strategy: ShareCodeStrategy) -> None:
        self._auth = auth
        self._strategy = strategy

    def _settings(self, identity: Identity) -> tuple[PortalSettings, ShareCodeSettings]:
        settings = self._auth.portals.get(identity.portal)
        if NAME not in settings.methods:
            raise MethodDisabled("Share codes are not enabled for this portal.")
        config: ShareCodeSettings = self._auth.strategy_config(settings.slug, NAME)
        return settings, config

    def _identity(self, identity: Identity | str) -> Identity:
        return self._auth.directory.get(identity if isinstance(identity, str) else identity.id)

    def issue(
        self,
        identity: Identity | str,
        *,
        scope: str,
        scope_kind: str | None = None,
        scope_label: str | None = None,
        send: bool | None = None,
        actor: str | None = None,
    ) -> ShareCode:
        """Issue the share code for ``identity`` and ``scope``, replacing any live one.

        ``send=None`` sends the invitation e-mail when the portal's ``auto_invite`` setting for
        ``scope_kind`` says so; ``True`` / ``False`` force it. Raises ``NotReady`` when the
        portal's required fields are missing, ``MethodDisabled`` when share codes are off.
        """
        party = self._identity(identity)
        settings, config = self._settings(party)
        if not isinstance(scope, str) or not 0 < len(scope) <= 128:
            raise ConfigError("scope must be 1 to 128 characters.")
        readiness = self._auth.directory.readiness(party)
        if not readiness.ready:
            raise NotReady(missing=readiness.missing)
        if send is None:
            send = config.auto_invite.get(scope_kind or "", config.auto_invite_default)
        if send and not settings.base_url:
            raise ConfigError("Set the portal's base_url to send share-code invitations.")
        code = self._unique_code(settings.slug)
        record = self._auth.challenges.issue(
            portal=settings.slug,
            subject=party.id,
            purpose=SHARE,
            scope=scope,
            secret=code,
            ttl=config.validity_days * 86400,
            max_attempts=1,
            findable=True,
            method=NAME,
        )
        self._auth.emitter.emit(
            "share_code.issued",
            portal=settings.slug,
            identity_id=party.id,
            method=NAME,
            actor=actor,
            detail={"scope": scope, "expires_at": record.expires_at},
        )
        if send:
            try:
                self._send(party, settings, config, code, record, scope_label or scope)
            except DeliveryFailed:
                # An invitation that never arrived must not leave a live share code behind.
                self._auth.challenges.revoke(
                    settings.slug, party.id, purposes=[SHARE, CONFIRM], scope=scope
                )
                raise
        return ShareCode(
            code=display(code),
            identity_id=party.id,
            scope=scope,
            expires_at=record.expires_at,
            sent=bool(send),
        )

    def _unique_code(self, portal: str) -> str:
        # Share codes are found by value, so two live ones in a portal must differ.
        for _ in range(20):
            code = new_share_code()
            if self._auth.challenges.find(portal, SHARE, code) is None:
                return code
        raise ConfigError("Could not find a free share code; the portal has too many live ones.")

    def _send(
        self,
        party: Identity,
        settings: PortalSettings,
        config: ShareCodeSettings,
        code: str,
        record: ChallengeRecord,
        scope_label: str,
    ) -> None:
        if not settings.base_url:
            raise ConfigError("Set the portal's base_url to send share-code invitations.")
        self._auth.dispatcher.send(
            party,
            settings,
            channel="email",
            template="share_code_invite",
            context={
                "share_code": display(code),
                "scope_label": scope_label,
                "expires_on": time.strftime("%d %B %Y", time.gmtime(record.expires_at)),
                "sign_in_url": settings.base_url.rstrip("/") + config.sign_in_path,
            },
            purpose=SHARE,
            method=NAME,
            wait=True,  # staff see at once whether the invitation went out
        )
        self._auth.directory.record_invitation(party, NAME)
        self._auth.emitter.emit(
            "invitation.sent",
            portal=settings.slug,
            identity_id=party.id,
            method=NAME,
            detail={"expires_at": record.expires_at},
        )

    def send(
        self,
        identity: Identity | str,
        *,
        scope: str,
        scope_label: str | None = None,
        actor: str | None = None,
    ) -> ShareCode:
        """Send (or resend) the invitation by hand. Share codes are stored only as digests, so
        this issues a fresh share code; the previous one stops working."""
        return self.issue(identity, scope=scope, scope_label=scope_label, send=True, actor=actor)

    def status(self, identity: Identity | str, scope: str) -> ShareCodeStatus:
        """Invited (a live share code, with its expiry) or not invited (never issued, expired,
        replaced or revoked)."""
        party = self._identity(identity)
        settings, config = self._settings(party)
        challenges = self._auth.challenges
        record = challenges.latest(party.portal, party.id, SHARE, scope)
        if record is None:
            return ShareCodeStatus(invited=False)
        failures = challenges.failures(party.portal, NAME, party.id, record.id)
        return ShareCodeStatus(
            invited=True,
            expires_at=record.expires_at,
            issued_at=record.created_at,
            locked=failures >= hard_limit(settings, config.code_digits),
        )

    def revoke(self, identity: Identity | str, scope: str, *, actor: str | None = None) -> bool:
        """End the party's share code for ``scope`` and any confirmation code it started."""
        party = self._identity(identity)
        count = self._auth.challenges.revoke(
            party.portal, party.id, purposes=[SHARE, CONFIRM], scope=scope
        )
        # A second-factor step the share code started must not finish into the revoked case.
        for pending in self._auth.challenges.pending_second_factors(party.portal, party.id):
            if pending.data.get("scope") == scope:
                self._auth.challenges.revoke(party.portal, party.id, purposes=["second_factor"])
        if count:
            self._auth.emitter.emit(
                "share_code.revoked",
                portal=party.portal,
                identity_id=party.id,
                method=NAME,
                actor=actor,
                detail={"scope": scope},
            )
        return count > 0


@hookimpl
def portalauth_add_strategies() -> list[object]:
    return [ShareCodeStrategy()]

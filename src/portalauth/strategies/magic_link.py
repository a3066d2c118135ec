"""``magic_link``: SimplePractice "Instant Sign In".

Staff invite a client (``auth.magic_links.invite``): an e-mail with a unique first sign-in link,
valid 7 days. Afterwards the client types their e-mail address and gets a new sign-in link each
time (15 minutes); only the most recent link works, and each works once. The same e-mail carries
a short code, so a client who reads the mail on another device can type the code where they asked.

Mail scanners open links before people do, so looking at a link (:meth:`MagicLinks.inspect`: no
side effect) is separate from using it (:meth:`MagicLinks.redeem`); integrations show a confirm
page on GET and redeem only on POST. Newest-wins must not become a lever against the client: a
resend cooldown per address, a cap on how many links one identity can be sent per hour, and a
``superseded`` result distinct from ``expired`` so the page can say "a newer link was sent".

Link tokens carry 256 bits (R3) and are stored only as keyed digests; the code has an attempt
budget of 5 and the identity's consecutive-failure budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from ..client import ClientInfo
from ..config import PortalSettings
from ..contacts import email_send_key, normalize_email
from ..errors import (
    ConfigError,
    MethodDisabled,
    UnknownContact,
    VerificationFailed,
)
from ..flows import Authenticated, Continue, Field, FlowState, SignedIn, Step
from ..hooks import hookimpl
from ..links import LinkStatus, find_link, link_status, link_url, send_invitation
from ..records import Identity
from ..strategies.base import START, Context
from ..validation import check_limit, int_range, settings_from

if TYPE_CHECKING:
    from ..auth import Auth

__all__ = ["MagicLinkSettings", "MagicLinkStrategy", "MagicLinks"]

NAME = "magic_link"
SIGN_IN = "magic_link"
INVITE = "magic_link_invite"
CODE_DIGITS = 6
NOTICE = "If that address is registered, we have e-mailed it a sign-in link and a code."


@frozen(kw_only=True)
class MagicLinkSettings:
    """Per-portal settings of ``magic_link`` (``method_settings["magic_link"]``)."""

    #: Lifetime of a sign-in link (and its code).
    link_minutes: int = field(default=15, validator=int_range(1, 60))
    #: Lifetime of an invitation link.
    invite_days: int = field(default=7, validator=int_range(1, 30))
    #: Attempts for the code in the sign-in e-mail.
    max_attempts: int = field(default=5, validator=int_range(1, 10))
    #: A second request within this many seconds reuses the link already sent.
    resend_cooldown: int = field(default=60, validator=int_range(0, 3600))
    #: At most this many links (each superseding the last) per identity per hour.
    links_per_hour: int = field(default=5, validator=int_range(1, 100))
    #: Requests per e-mail address (without +tag), whoever makes them.
    requests_per_address: str = field(default="5/hour", validator=check_limit)
    #: Mail unknown addresses a "there is no account here" notice (off: nothing is sent).
    notify_unknown: bool = False
    #: The page that receives links, appended to the portal's ``base_url``.
    link_path: str = "/sign-in/link"


class MagicLinkStrategy:
    """Enter your e-mail address; we e-mail you a sign-in link and a code."""

    name = NAME
    label = "E-mail me a sign-in link"

    def configure(self, raw: Mapping[str, Any]) -> MagicLinkSettings:
        return settings_from(MagicLinkSettings, raw, NAME)

    def fields(self, step: str, config: MagicLinkSettings) -> tuple[Field, ...]:
        if step == START:
            return (Field("email", "email", "E-mail address", autocomplete="username"),)
        return (
            Field(
                "code",
                "code",
                "Code from the e-mail",
                max_length=CODE_DIGITS,
                numeric=True,
                autocomplete="one-time-code",
                help="Or open the link in the e-mail.",
            ),
        )

    def check_portal(self, portal: PortalSettings) -> None:
        """Links are built on the portal's ``base_url``: refuse to enable without one."""
        if not portal.base_url:
            raise ConfigError("magic_link needs the portal's base_url to build links.")

    def start(self, ctx: Context) -> Continue:
        config: MagicLinkSettings = ctx.config
        slug = ctx.portal.slug
        self.check_portal(ctx.portal)  # before anything, so the answer never depends on who
        address, key = normalize_email(ctx.form["email"])
        identity, subject = ctx.lookup_email(address)
        if identity is None and ctx.portal.helpful_errors:
            raise UnknownContact(
                "We don't know that e-mail address here. Check it, or ask the office."
            )
        ctx.hit(config.requests_per_address, "link_address", slug, email_send_key(key))
        existing = ctx.challenges.latest(slug, subject, SIGN_IN)
        if existing is not None and ctx.now - existing.created_at < config.resend_cooldown:
            return Continue(step="code", challenge=existing, notice=NOTICE)
        # Each new link supersedes the last: cap how often that can happen to one person.
        ctx.hit(f"{config.links_per_hour}/hour", "link_supersede", slug, subject)
        token = ctx.challenges.new_token()
        code = ctx.challenges.new_code(CODE_DIGITS)
        challenge = ctx.challenges.issue(
            portal=slug,
            subject=subject,
            purpose=SIGN_IN,
            secret=code,
            lookup_secret=token,
            ttl=config.link_minutes * 60,
            max_attempts=config.max_attempts,
            method=NAME,
            decoy=identity is None,
        )
        context = {
            "link": link_url(ctx.portal, config.link_path, token),
            "code": code,
            "minutes": config.link_minutes,
        }
        if identity is not None:
            ctx.dispatcher.send(
                identity,
                ctx.portal,
                channel="email",
                template="magic_link",
                context=context,
                purpose=SIGN_IN,
                method=NAME,
                on_failure=lambda: ctx.challenges.revoke(slug, subject, purposes=[SIGN_IN]),
            )
        elif not config.notify_unknown:
            # The same rendering and queued job as a real link (R32).
            ctx.dispatcher.send_nothing(
                ctx.portal, channel="email", template="magic_link", context=context
            )
        else:
            ctx.dispatcher.notify_address(
                address,
                ctx.portal,
                template="no_account",
                context={"sign_up_url": None},
                purpose="no_account",
                method=NAME,
            )
        return Continue(step="code", challenge=challenge, notice=NOTICE)

    def advance(self, ctx: Context, state: FlowState) -> Authenticated:
        record = ctx.challenges.verify(
            state.challenge_id,
            ctx.read_code("code", CODE_DIGITS),
            settings=ctx.portal,
            purpose=SIGN_IN,
            method=NAME,
            digits=CODE_DIGITS,
        )
        identity = ctx.directory.find(record.subject)
        if identity is None:
            raise VerificationFailed()
        return Authenticated(identity=identity)

    def staff(self, auth: Auth) -> MagicLinks:
        return MagicLinks(auth)


class MagicLinks:
    """Staff and link-page side of ``magic_link``: ``auth.magic_links``."""

    def __init__(self, auth: Auth) -> None:
        self._auth = auth

    def _config(self, portal: str) -> tuple[PortalSettings, MagicLinkSettings]:
        settings = self._auth.portals.get(portal)
        if NAME not in settings.methods:
            raise MethodDisabled("Sign-in links are not enabled for this portal.")
        config: MagicLinkSettings = self._auth.strategy_config(settings.slug, NAME)
        return settings, config

    def invite(self, identity: Identity | str, *, actor: str | None = None) -> float:
        """E-mail the identity a first sign-in link (single use, ``invite_days``); returns when
        it expires. The invitation date is recorded on the identity for staff. Raises
        ``NotReady`` while the portal's required fields are missing."""
        party = self._auth.directory.get(identity if isinstance(identity, str) else identity.id)
        settings, config = self._config(party.portal)
        if not settings.base_url:
            raise ConfigError("magic_link needs the portal's base_url to build links.")
        return send_invitation(
            self._auth,
            party,
            settings,
            method=NAME,
            purpose=INVITE,
            template="magic_link_invite",
            path=config.link_path,
            days=config.invite_days,
            actor=actor,
        )

    def inspect(self, portal: str, token: object) -> LinkStatus:
        """What the link is, with no side effect (safe for a GET a mail scanner makes)."""
        record = find_link(self._auth.challenges, portal, (SIGN_IN, INVITE), token)
        return link_status(record, self._auth.clock.now())

    def redeem(
        self, portal: str, token: object, *, client: ClientInfo | None = None
    ) -> Step | SignedIn:
        """Use the link (POST only): consume it atomically and sign the client in (or continue
        to the portal's second factor). ``VerificationFailed`` with ``reason="superseded"``
        when a newer link was sent, else the generic failure."""
        with self._auth.batch():
            return self._redeem(portal, token, client or ClientInfo())

    def _redeem(self, portal: str, token: object, client: ClientInfo) -> Step | SignedIn:
        settings, _ = self._config(portal)
        self._auth.guard(settings, NAME, "redeem", client, {}, "advance_per_ip")
        record = find_link(self._auth.challenges, settings.slug, (SIGN_IN, INVITE), token)
        if record is None:
            raise VerificationFailed()
        if record.state == "superseded":
            raise VerificationFailed(reason="superseded")
        if not self._auth.challenges.consume(record):
            raise VerificationFailed()  # used, expired or revoked (or lost a race)
        identity = self._auth.directory.find(record.subject)
        if identity is None:
            raise VerificationFailed()
        self._auth.challenges.clear_failures(settings.slug, NAME, identity.id)
        return self._auth.complete(settings, identity, method=NAME, client=client)


@hookimpl
def portalauth_add_strategies() -> list[object]:
    return [MagicLinkStrategy()]

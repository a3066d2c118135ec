"""``password``: the Lexzur client-portal sign-in.

Staff add a client and invite them (``auth.passwords.invite``): an e-mail with a set-your-password
link (single use, 7 days). Clients sign in with e-mail + password through the generic flow API.
Self sign-up exists only when the portal's ``signup_enabled`` setting is on, and the account is
usable once its e-mail address is confirmed by a link. A forgotten password is reset through an
e-mailed link (same answer whether or not the address exists; single use; 1 hour; dead once the
password changes). Setting, resetting or changing a password ends every other session of the
identity, withdraws outstanding reset and invitation links, and e-mails a notice (R47).

Policy after NIST SP 800-63B-4 §3.1.1.2 (see :func:`check_password`): at least 15 characters when
the password is the only factor and 8 when the portal requires a second factor (a portal may raise
either), at least 64 allowed (``max_length``, default 1024), never truncated, no composition rules,
and the whole password may not be a common password (a shipped list of 8,000+) nor the client's
own e-mail address, its local part, their name or the portal's name.
"""

from __future__ import annotations

import gzip
import unicodedata
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, NoReturn

from attrs import field, frozen

from ..client import ClientInfo
from ..config import PortalSettings
from ..contacts import email_send_key, normalize_email
from ..errors import (
    ConfigError,
    ContactTaken,
    InvalidInput,
    MethodDisabled,
    SignupDisabled,
    VerificationFailed,
)
from ..flows import Authenticated, Field, FlowState, SignedIn, Step, read_form
from ..hooks import hookimpl
from ..links import LinkStatus, find_link, link_status, link_url, send_invitation
from ..records import ChallengeRecord, Identity
from ..second_factor import METHOD as SECOND_FACTOR
from ..strategies.base import START, Context
from ..validation import check_limit, int_range, settings_from

if TYPE_CHECKING:
    from ..auth import Auth

__all__ = ["PasswordSettings", "PasswordStrategy", "Passwords", "check_password"]

NAME = "password"
INVITE = "password_invite"
RESET = "password_reset"
CONFIRM = "signup_confirm"


@frozen(kw_only=True)
class PasswordSettings:
    """Per-portal settings of ``password`` (``method_settings["password"]``)."""

    #: Minimum length when the password is the only factor (NIST: 15).
    min_length: int = field(default=15, validator=int_range(15, 128))
    #: Minimum length when the portal requires a second factor (NIST: 8).
    min_length_with_second_factor: int = field(default=8, validator=int_range(8, 128))
    #: Longest password accepted (NIST: at least 64), in characters; never truncated.
    max_length: int = field(default=1024, validator=int_range(64, 4096))
    invite_days: int = field(default=7, validator=int_range(1, 30))
    #: Lifetime of a reset link (R48: at most an hour).
    reset_minutes: int = field(default=60, validator=int_range(5, 60))
    confirm_hours: int = field(default=24, validator=int_range(1, 168))
    #: Sign the client in right after a reset. Off by default (security requirements,
    #: decision 4): a reset proves the mailbox, not the person, so the client signs in anew.
    sign_in_after_reset: bool = False
    #: Reset requests per e-mail address (without +tag), whoever makes them.
    resets_per_address: str = field(default="3/hour", validator=check_limit)
    #: Sign-up attempts per client address.
    signups_per_ip: str = field(default="10/hour", validator=check_limit)
    #: Pages that receive the links, appended to the portal's ``base_url``.
    set_password_path: str = "/password/set"  # noqa: S105 (a URL path, not a secret)
    reset_path: str = "/password/reset"
    confirm_path: str = "/sign-up/confirm"
    sign_in_path: str = "/sign-in"


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    # A list of common passwords of 8+ characters (lowercased), from public breach corpora as
    # compiled by Royce Williams and shipped by Django; see src/portalauth/data/.
    raw = (resources.files("portalauth") / "data" / "common-passwords.txt.gz").read_bytes()
    words = set()
    for word in gzip.decompress(raw).decode("utf-8").split():
        if word.startswith("$hex[") and word.endswith("]"):
            # Entries the compilers hex-encoded (they contain separators or odd bytes).
            try:
                word = bytes.fromhex(word[5:-1]).decode("utf-8").lower()
            except ValueError:
                continue
        words.add(word)
    return frozenset(words)


def _fold(value: str) -> str:
    return unicodedata.normalize("NFKC", value).casefold()


def check_password(
    password: object,
    *,
    min_length: int,
    max_length: int = 1024,
    context: tuple[str | None, ...] = (),
) -> str:
    """Return ``password`` if it meets the policy, else raise ``InvalidInput`` with a reason.

    Length counts Unicode code points after NFKC (NIST). ``context`` holds words the whole
    password may not be (the client's e-mail, its local part, their name, the portal's name).
    """
    if not isinstance(password, str):
        raise InvalidInput(field="password")
    normalized = unicodedata.normalize("NFKC", password)
    if len(normalized) < min_length:
        raise InvalidInput(
            f"Use at least {min_length} characters. A few unrelated words work well.",
            field="password",
        )
    if len(normalized) > max_length:
        raise InvalidInput(f"Use at most {max_length} characters.", field="password")
    folded = _fold(normalized)
    if folded in _common_passwords():
        raise InvalidInput("That password is too common. Please choose another.", field="password")
    for word in context:
        if word and folded == _fold(word):
            raise InvalidInput(
                "Your password cannot be your name, e-mail address or the portal's name.",
                field="password",
            )
    return password


class PasswordStrategy:
    """Sign in with your e-mail address and password."""

    name = NAME
    label = "Sign in with a password"

    def configure(self, raw: Mapping[str, Any]) -> PasswordSettings:
        return settings_from(PasswordSettings, raw, NAME)

    def check_portal(self, portal: PortalSettings) -> None:
        """Invitation, reset and confirmation links need the portal's ``base_url``."""
        if not portal.base_url:
            raise ConfigError("password needs the portal's base_url to build its links.")

    def fields(self, step: str, config: PasswordSettings) -> tuple[Field, ...]:
        if step != START:
            return ()
        return (
            Field("email", "email", "E-mail address", autocomplete="username"),
            Field(
                "password",
                "password",
                "Password",
                max_length=config.max_length,
                autocomplete="current-password",
            ),
        )

    def start(self, ctx: Context) -> Authenticated:
        slug = ctx.portal.slug
        key = normalize_email(ctx.form["email"]).key
        identity = ctx.directory.find_by_email_key(slug, key)
        subject = identity.id if identity is not None else ctx.challenges.decoy_subject(slug, key)
        failures = ctx.challenges.check_failures(ctx.portal, NAME, subject)
        usable = (
            identity is not None
            and identity.password_hash is not None
            and identity.email_confirmed
            and not identity.disabled
        )
        if not usable or identity is None or identity.password_hash is None:
            # The same hashing work as a real check: time does not tell accounts apart.
            ctx.hasher.dummy_verify()
            self._fail(ctx, subject)
        ok, upgraded = ctx.hasher.verify(ctx.form["password"], identity.password_hash)
        if not ok:
            self._fail(ctx, subject)
        # Compare-and-swap: a password changed meanwhile is never overwritten.
        if upgraded is not None and ctx.directory.replace_password_hash(
            identity, upgraded, expected=identity.password_hash
        ):
            ctx.emit("password.upgraded", identity_id=identity.id)
            # The sign-in checks that the hash it verified is still the stored one (R57).
            identity = identity.evolve(password_hash=upgraded)
        ctx.challenges.clear_failures(slug, NAME, identity.id, read=failures)
        return Authenticated(identity=identity)

    @staticmethod
    def _fail(ctx: Context, subject: str) -> NoReturn:
        count = ctx.challenges.record_failure(ctx.portal.slug, NAME, subject)
        ctx.emit(
            "verification.failed",
            identity_id=subject,
            detail={"purpose": "password", "consecutive": count},
        )
        raise VerificationFailed("That e-mail address and password do not match.")

    def advance(self, ctx: Context, state: FlowState) -> Authenticated:
        raise VerificationFailed()  # one step: nothing to advance

    def staff(self, auth: Auth) -> Passwords:
        return Passwords(auth)


_RESET_DONE = "Your password was changed. Please sign in with your new password."
_SIGNUP_NOTICE = "Check your e-mail: we have sent you a link to confirm your address."
_RESET_NOTICE = "If that address has an account, we have e-mailed it a link to reset the password."


class Passwords:
    """The password flows outside sign-in: ``auth.passwords``."""

    def __init__(self, auth: Auth) -> None:
        self._auth = auth

    # -- helpers --------------------------------------------------------------------------
    def _config(self, portal: str) -> tuple[PortalSettings, PasswordSettings]:
        settings = self._auth.portals.get(portal)
        if NAME not in settings.methods:
            raise MethodDisabled("Password sign-in is not enabled for this portal.")
        config: PasswordSettings = self._auth.strategy_config(settings.slug, NAME)
        return settings, config

    @staticmethod
    def _min_length(settings: PortalSettings, config: PasswordSettings) -> int:
        # Only a factor asked at every sign-in makes the password one of two (NIST 8-char
        # floor); a Tax ID asked once does not.
        if settings.second_factor in ("sms_code", "email_code"):
            return config.min_length_with_second_factor
        return config.min_length

    def _check(
        self,
        password: object,
        settings: PortalSettings,
        config: PasswordSettings,
        *,
        name: str | None,
        email: str | None,
    ) -> str:
        local = email.rpartition("@")[0] if email else None
        return check_password(
            password,
            min_length=self._min_length(settings, config),
            max_length=config.max_length,
            context=(name, email, local, settings.name, settings.slug),
        )

    def _set(
        self, identity: Identity, password: str, *, how: str, keep: str | None = None
    ) -> Identity:
        """Store a new hash, end other sessions and every outstanding secret, notify (R29, R30,
        R47)."""
        auth = self._auth
        new_hash = auth.hasher.hash(password)
        if not auth.directory.replace_password_hash(
            identity, new_hash, expected=identity.password_hash, changed=True
        ):
            raise VerificationFailed("Your password was changed meanwhile. Please try again.")
        # R29/R30: every outstanding secret of the identity (reset and invitation links, codes,
        # PINs, sign-in links) dies with the old password.
        auth.challenges.revoke(identity.portal, identity.id)
        auth.sessions.revoke_all(identity.id, keep=keep)
        # Whoever used up the second factor after a password sign-in held the old password: the
        # new one closes that path, so the second factor's lock for it goes too (R12).
        auth.challenges.clear_failures(identity.portal, SECOND_FACTOR, identity.id, NAME)
        auth.emitter.emit(
            "password.set", portal=identity.portal, identity_id=identity.id, detail={"how": how}
        )
        updated = auth.directory.get(identity.id)
        if updated.email_usable:
            settings = auth.portals.get(identity.portal)
            auth.dispatcher.send(
                updated,
                settings,
                channel="email",
                template="password_changed",
                context={"how": how},
                purpose="password_changed",
                method=NAME,
            )
        return updated

    def _issue_link(
        self,
        settings: PortalSettings,
        identity: Identity,
        *,
        purpose: str,
        ttl: float,
        data: Mapping[str, Any] | None = None,
    ) -> tuple[ChallengeRecord, str]:
        token = self._auth.challenges.new_token()
        record = self._auth.challenges.issue(
            portal=settings.slug,
            subject=identity.id,
            purpose=purpose,
            secret=self._auth.challenges.new_token(),
            lookup_secret=token,
            ttl=ttl,
            max_attempts=1,
            data=data,
            method=NAME,
        )
        return record, token

    def _redeem(self, portal: str, token: object, purpose: str) -> tuple[Identity, ChallengeRecord]:
        record = find_link(self._auth.challenges, portal, (purpose,), token)
        if record is None:
            raise VerificationFailed("This link is not valid. Please request a new one.")
        if record.state == "superseded":
            raise VerificationFailed(reason="superseded")
        if record.state != "live" or self._auth.clock.now() >= record.expires_at:
            raise VerificationFailed("This link has expired or was used. Please request a new one.")
        identity = self._auth.directory.find(record.subject)
        if identity is None:
            raise VerificationFailed()
        return identity, record

    # -- staff: invitation ----------------------------------------------------------------
    def invite(self, identity: Identity | str, *, actor: str | None = None) -> float:
        """E-mail a set-your-password link (single use, ``invite_days``); returns its expiry.
        ``NotReady`` while the portal's required fields are missing."""
        party = self._auth.directory.get(identity if isinstance(identity, str) else identity.id)
        settings, config = self._config(party.portal)
        return send_invitation(
            self._auth,
            party,
            settings,
            method=NAME,
            purpose=INVITE,
            template="password_invite",
            path=config.set_password_path,
            days=config.invite_days,
            actor=actor,
        )

    def inspect(self, portal: str, token: object) -> LinkStatus:
        """What a set-password, reset or confirmation link is, with no side effect."""
        record = find_link(self._auth.challenges, portal, (INVITE, RESET, CONFIRM), token)
        return link_status(record, self._auth.clock.now())

    def accept_invite(
        self, portal: str, token: object, password: object, *, client: ClientInfo | None = None
    ) -> Step | SignedIn:
        """Set the first password through an invitation link and sign the client in."""
        return self._set_through_link(portal, token, password, INVITE, client, how="set")

    # -- client: forgotten password ---------------------------------------------------------
    def request_reset(
        self, portal: str, data: Mapping[str, Any], *, client: ClientInfo | None = None
    ) -> Step:
        """``data = {"email": ...}``: e-mail a reset link if the address has an account. The
        answer is the same either way, and requesting never locks an account (R12)."""
        client = client or ClientInfo()
        settings, config = self._config(portal)
        form = read_form(data, (Field("email", "email", "E-mail address"),))
        self._auth.guard(settings, NAME, "reset", client, form, "start_per_ip")
        key = normalize_email(form["email"]).key
        self._auth.throttles.hit(
            config.resets_per_address,
            "reset_address",
            settings.slug,
            email_send_key(key),
            portal=settings.slug,
            method=NAME,
            ip=client.ip,
        )
        identity = self._auth.directory.find_by_email_key(settings.slug, key)
        # Unconfirmed accounts may reset too: the link proves the mailbox, so an owner can take
        # back an address somebody else signed up with and never confirmed.
        if identity is not None and identity.email_usable:
            _, token = self._issue_link(
                settings,
                identity,
                purpose=RESET,
                ttl=config.reset_minutes * 60,
                data={"changed_at": identity.password_changed_at},
            )
            self._auth.dispatcher.send(
                identity,
                settings,
                channel="email",
                template="password_reset",
                context={
                    "link": link_url(settings, config.reset_path, token),
                    "minutes": config.reset_minutes,
                },
                purpose=RESET,
                method=NAME,
                on_failure=lambda: self._auth.challenges.revoke(
                    settings.slug, identity.id, purposes=[RESET]
                ),
            )
        else:
            # The same rendering and queued job as a real reset mail (R32).
            self._auth.dispatcher.send_nothing(
                settings,
                channel="email",
                template="password_reset",
                context={
                    "link": link_url(
                        settings, config.reset_path, self._auth.challenges.new_token()
                    ),
                    "minutes": config.reset_minutes,
                },
            )
            subject = self._auth.challenges.decoy_subject(settings.slug, key)
            self._auth.challenges.issue(
                portal=settings.slug,
                subject=subject,
                purpose=RESET,
                secret="",
                lookup_secret="",
                ttl=config.reset_minutes * 60,
                max_attempts=1,
                decoy=True,
            )
        return Step(flow=None, method=NAME, next=None, notice=_RESET_NOTICE)

    def reset(
        self, portal: str, token: object, password: object, *, client: ClientInfo | None = None
    ) -> Step | SignedIn:
        """Set a new password through a reset link: single use, and dead once the password
        changed after the link was sent. Ends every session; then a finished :class:`Step`
        asking the client to sign in (or, with ``sign_in_after_reset``, a sign-in)."""
        return self._set_through_link(portal, token, password, RESET, client, how="reset")

    def _set_through_link(
        self,
        portal: str,
        token: object,
        password: object,
        purpose: str,
        client: ClientInfo | None,
        *,
        how: str,
    ) -> Step | SignedIn:
        client = client or ClientInfo()
        settings, config = self._config(portal)
        self._auth.guard(settings, NAME, purpose, client, {}, "advance_per_ip")
        identity, record = self._redeem(settings.slug, token, purpose)
        if purpose == RESET and record.data.get("changed_at") != identity.password_changed_at:
            raise VerificationFailed("This link is no longer valid. Please request a new one.")
        checked = self._check(password, settings, config, name=identity.name, email=identity.email)
        if not self._auth.challenges.consume(record):
            raise VerificationFailed("This link has expired or was used. Please request a new one.")
        if not identity.email_confirmed:
            # Opening the e-mailed link proves the address.
            identity = self._auth.directory.update(identity.id, email_confirmed=True)
        updated = self._set(identity, checked, how=how)
        # A new password through an e-mailed link is the recovery path: it ends a lockout of
        # password sign-in (R12).
        self._auth.challenges.clear_failures(settings.slug, NAME, updated.id)
        if purpose == RESET and not config.sign_in_after_reset:
            return Step(flow=None, method=NAME, next=None, notice=_RESET_DONE)
        return self._auth.complete(settings, updated, method=NAME, client=client)

    # -- client: sign-up --------------------------------------------------------------------
    def sign_up(
        self, portal: str, data: Mapping[str, Any], *, client: ClientInfo | None = None
    ) -> Step:
        """``data = {"name", "email", "password"}``: create an unconfirmed account and e-mail a
        confirmation link. ``SignupDisabled`` when the portal's sign-up setting is off (for new
        and existing addresses alike, creating nothing). With it on, an existing address gets
        the same answer and its owner an "account already exists" e-mail (R49)."""
        client = client or ClientInfo()
        settings, config = self._config(portal)
        if not settings.signup_enabled:
            raise SignupDisabled()
        form = read_form(
            data,
            (
                Field("name", "name", "Name", max_length=200),
                Field("email", "email", "E-mail address"),
                Field("password", "password", "Password", max_length=config.max_length),
            ),
        )
        self._auth.guard(settings, NAME, "sign_up", client, form, "start_per_ip")
        self._auth.throttles.hit(
            config.signups_per_ip,
            "signup_ip",
            settings.slug,
            client.ip_key,
            portal=settings.slug,
            method=NAME,
            ip=client.ip,
        )
        address, key = normalize_email(form["email"])
        password = self._check(form["password"], settings, config, name=form["name"], email=address)
        # Hash before looking the address up, so both outcomes cost the same (R31).
        password_hash = self._auth.hasher.hash(password)
        existing = self._auth.directory.find_by_email_key(settings.slug, key)
        if existing is not None:
            self._notify_existing(settings, config, existing)
            return Step(flow=None, method=NAME, next=None, notice=_SIGNUP_NOTICE)
        try:
            identity = self._auth.directory.add(
                settings.slug, form["name"], email=address, email_confirmed=False
            )
        except ContactTaken:  # a concurrent sign-up won: answer as for an existing address
            return Step(flow=None, method=NAME, next=None, notice=_SIGNUP_NOTICE)
        self._auth.directory.replace_password_hash(identity, password_hash, expected=None)
        _, token = self._issue_link(
            settings, identity, purpose=CONFIRM, ttl=config.confirm_hours * 3600
        )
        self._auth.dispatcher.send(
            identity,
            settings,
            channel="email",
            template="signup_confirm",
            context={
                "link": link_url(settings, config.confirm_path, token),
                "minutes": config.confirm_hours * 60,
            },
            purpose=CONFIRM,
            method=NAME,
        )
        return Step(flow=None, method=NAME, next=None, notice=_SIGNUP_NOTICE)

    def _notify_existing(
        self, settings: PortalSettings, config: PasswordSettings, identity: Identity
    ) -> None:
        sign_in = settings.base_url.rstrip("/") + config.sign_in_path if settings.base_url else None
        if not identity.email_usable:
            self._auth.dispatcher.send_nothing(
                settings,
                channel="email",
                template="account_exists",
                context={"sign_in_url": sign_in},
            )
            return
        self._auth.dispatcher.send(
            identity,
            settings,
            channel="email",
            template="account_exists",
            context={"sign_in_url": sign_in},
            purpose="account_exists",
            method=NAME,
        )

    def confirm(
        self, portal: str, token: object, *, client: ClientInfo | None = None
    ) -> Step | SignedIn:
        """Confirm a sign-up through its e-mailed link and sign the client in."""
        client = client or ClientInfo()
        settings, _ = self._config(portal)
        self._auth.guard(settings, NAME, CONFIRM, client, {}, "advance_per_ip")
        identity, record = self._redeem(settings.slug, token, CONFIRM)
        if not self._auth.challenges.consume(record):
            raise VerificationFailed("This link has expired or was used. Please sign up again.")
        identity = self._auth.directory.update(identity.id, email_confirmed=True)
        return self._auth.complete(settings, identity, method=NAME, client=client)

    # -- signed-in client: change -----------------------------------------------------------
    def change(
        self,
        session_token: str,
        current: object,
        new: object,
        *,
        client: ClientInfo | None = None,
    ) -> None:
        """Change the password of a signed-in client: needs the session and the current
        password (R47); ends every other session of the identity."""
        auth = self._auth
        session = auth.sessions.validate(session_token)
        identity = auth.directory.get(session.identity_id)
        settings, config = self._config(identity.portal)
        auth.guard(settings, NAME, "change", client or ClientInfo(), {}, "advance_per_ip")
        # Both inputs are checked before any hashing (R22).
        if not isinstance(current, str) or len(current) > config.max_length:
            raise InvalidInput(field="current_password")
        checked = self._check(new, settings, config, name=identity.name, email=identity.email)
        auth.challenges.check_failures(settings, NAME, identity.id)
        ok = (
            identity.password_hash is not None
            and auth.hasher.verify(current, identity.password_hash)[0]
        )
        if not ok:
            auth.challenges.record_failure(settings.slug, NAME, identity.id)
            raise VerificationFailed("Your current password is not correct.")
        self._set(identity, checked, how="changed", keep=session_token)


@hookimpl
def portalauth_add_strategies() -> list[object]:
    return [PasswordStrategy()]

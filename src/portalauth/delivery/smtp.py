"""``smtp://`` and ``smtps://``: deliver e-mail through an SMTP relay with the standard library.

Guarantees a caller may rely on:

- **TLS is never downgraded.** With ``security="starttls"`` (the default) a server that does not
  offer STARTTLS, or whose certificate does not verify against ``ssl_context``, gets nothing:
  no credentials, no message. ``security="ssl"`` is TLS from the first byte (port 465).
  Credentials are refused outright with ``security="none"``.
- **No header injection.** The recipient must be exactly one bare address (no display name, no
  list, no line break); the subject and the firm's name (the From display name) may not contain
  line breaks or RFC 2047 encoded words. Anything else raises
  :class:`~portalauth.errors.DeliveryFailed` before a connection is opened.
- **One outcome.** :meth:`SmtpSender.send` returns once the relay has accepted the message, or
  raises :class:`SmtpDeliveryFailed` (a ``DeliveryFailed``). Its message is the generic,
  user-safe one; ``reason``, ``error_type`` and ``smtp_code`` say what went wrong and are safe to
  log. Passwords, message bodies and server replies never appear in it, and the original
  exception is not chained (its text may echo what the server was sent).
- **No secrets in logs.** Only the message id, the relay and the failure reason are logged;
  never the body, the recipient or the credentials. ``repr()`` hides the password.

One connection is opened per message: simple and robust for the low volume of sign-in mail. A
pooled sender for bulk invitations is a separate concern.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import smtplib
import ssl
import unicodedata
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, getaddresses
from typing import Literal, cast, get_args
from urllib.parse import parse_qsl, unquote, urlsplit

import email_validator

from ..config import PortalSettings, check_header_text
from ..errors import ConfigError, DeliveryFailed
from ..records import Message

__all__ = ["Security", "SmtpDeliveryFailed", "SmtpSender"]

_log = logging.getLogger("portalauth.delivery.smtp")

Security = Literal["none", "starttls", "ssl"]
_SECURITIES: tuple[str, ...] = get_args(Security)
_DEFAULT_PORTS: dict[str, int] = {"none": 25, "starttls": 587, "ssl": 465}
_URI_PARAMS = frozenset({"from", "security", "reply_to", "timeout", "local_hostname"})
# Characters that must never reach an SMTP command line or a header line.
_CONTROL = frozenset(chr(c) for c in range(32)) | {"\x7f", "\x85", "\u2028", "\u2029"}
_SUBJECT_MAX = 400
# Characters with a structural meaning in address headers: lists, display names, comments,
# quoting, groups and domain literals. None is needed in a plain local@domain address.
_ADDRESS_SPECIALS = frozenset(',;<>"()\\[]: \t')
# What an SMTP exchange can raise: protocol and network errors (ssl.SSLError is an OSError), and
# encoding errors smtplib raises itself (for example for a non-ASCII command it cannot send).
# Catching them all keeps send()'s promise: it returns or raises DeliveryFailed.
_SESSION_ERRORS = (smtplib.SMTPException, OSError, MessageError, UnicodeError, ValueError)


class SmtpDeliveryFailed(DeliveryFailed):
    """A :class:`DeliveryFailed` from :class:`SmtpSender`, with log-safe diagnostics.

    ``reason`` is one of ``"invalid_message"`` (refused before connecting: bad recipient, subject
    or sender name, wrong channel), ``"connect_failed"``, ``"tls_failed"``,
    ``"starttls_unavailable"``, ``"auth_failed"``, ``"auth_unavailable"``,
    ``"recipient_refused"``, ``"sender_refused"``, ``"data_refused"`` or ``"smtp_error"``.
    ``error_type`` is the class name of the underlying exception (or ``None``); ``smtp_code`` the
    server's reply code when there was one. None of them holds a secret.
    """

    def __init__(
        self, reason: str, *, error_type: str | None = None, smtp_code: int | None = None
    ) -> None:
        super().__init__()
        self.reason = reason
        self.error_type = error_type
        self.smtp_code = smtp_code

    def __repr__(self) -> str:
        return (
            f"SmtpDeliveryFailed(reason={self.reason!r}, error_type={self.error_type!r}, "
            f"smtp_code={self.smtp_code!r})"
        )


class _NoStartTLS(smtplib.SMTPException):
    """The server did not offer STARTTLS although it is required."""


def _check_address(value: object, what: str) -> str:
    if not isinstance(value, str) or any(ch in _CONTROL for ch in value):
        raise ConfigError(f"{what} must be a plain e-mail address.")
    try:
        checked = email_validator.validate_email(
            value.strip(),
            check_deliverability=False,
            allow_smtputf8=False,
            allow_display_name=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            # An internal relay may legitimately use a non-public domain for its sender.
            globally_deliverable=False,
        )
    except (email_validator.EmailNotValidError, UnicodeError, ValueError):
        raise ConfigError(
            f"{what} must be a plain ASCII e-mail address such as noreply@firm.example."
        ) from None
    return checked.normalized


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or any(ch in _CONTROL for ch in value):
        raise ConfigError(f"{what} must be non-empty text without control characters.")
    return value


def _check_credential(value: object, what: str) -> str:
    text = _check_text(value, what)
    if not text.isascii():
        # smtplib encodes AUTH exchanges as ASCII; fail here rather than at the first send.
        raise ConfigError(f"The SMTP {what} must be ASCII.")
    return text


class SmtpSender:
    """Sends e-mail through one SMTP relay; a :class:`~portalauth.delivery.base.Sender`.

    All arguments are keyword-only. ``port`` defaults by ``security``: 25 for ``"none"``, 587 for
    ``"starttls"``, 465 for ``"ssl"``. ``ssl_context`` defaults to
    :func:`ssl.create_default_context` (certificate and host name verified, TLS 1.2 or newer).
    ``from_address`` is a bare address; the portal's name becomes its display name on each
    message. Invalid settings raise :class:`~portalauth.errors.ConfigError` here, not at send.
    """

    channel = "email"

    __slots__ = (
        "_password",
        "from_address",
        "host",
        "local_hostname",
        "port",
        "reply_to",
        "security",
        "ssl_context",
        "timeout",
        "username",
    )

    def __init__(
        self,
        *,
        host: str,
        port: int | None = None,
        security: Security = "starttls",
        username: str | None = None,
        password: str | None = None,
        from_address: str,
        reply_to: str | None = None,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        if security not in _SECURITIES:
            raise ConfigError("security must be 'none', 'starttls' or 'ssl'.")
        self.security: Security = security
        self.host = _check_text(host, "host")
        if port is None:
            port = _DEFAULT_PORTS[security]
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ConfigError("port must be a whole number from 1 to 65535.")
        self.port = port
        if (username is None) != (password is None):
            raise ConfigError("username and password must be given together.")
        if username is not None and security == "none":
            # Never send credentials over an unencrypted connection.
            raise ConfigError("A username and password need security='starttls' or 'ssl'.")
        self.username = None if username is None else _check_credential(username, "username")
        self._password = None if password is None else _check_credential(password, "password")
        self.from_address = _check_address(from_address, "from_address")
        self.reply_to = None if reply_to is None else _check_address(reply_to, "reply_to")
        if (
            not isinstance(timeout, int | float)
            or isinstance(timeout, bool)
            or not 0 < timeout <= 600
        ):
            raise ConfigError("timeout must be a number of seconds from 0 to 600.")
        self.timeout = float(timeout)
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise ConfigError("ssl_context must be an ssl.SSLContext.")
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.local_hostname = (
            None if local_hostname is None else _check_text(local_hostname, "local_hostname")
        )

    def __repr__(self) -> str:
        return (
            f"SmtpSender(host={self.host!r}, port={self.port!r}, security={self.security!r}, "
            f"username={self.username!r}, from_address={self.from_address!r})"
        )

    @classmethod
    def from_uri(cls, uri: str, *, ssl_context: ssl.SSLContext | None = None) -> SmtpSender:
        """Build a sender from ``smtp://user:pass@host:port?from=noreply@firm.example``.

        ``smtp://`` uses STARTTLS unless ``security=none`` (or ``ssl``) is given; ``smtps://``
        is TLS from the start. The user name and password are percent-decoded (write ``@`` as
        ``%40``, ``:`` as ``%3A``). Query parameters: ``from`` (required), ``security``,
        ``reply_to``, ``timeout``, ``local_hostname``; any other raises ``ConfigError``. Error
        messages never repeat the URI, which holds the password.
        """
        if not isinstance(uri, str):
            raise ConfigError("The SMTP URI must be text.")
        try:
            parts = urlsplit(uri.strip())
            port = parts.port
            params = parse_qsl(
                parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)
            )
        except ValueError:
            raise ConfigError("The SMTP URI is malformed.") from None
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps"):
            raise ConfigError("The SMTP URI must start with smtp:// or smtps://.")
        if not parts.hostname:
            raise ConfigError("The SMTP URI must name a host.")
        if parts.path not in ("", "/") or parts.fragment:
            raise ConfigError("The SMTP URI may not have a path or a fragment.")
        query: dict[str, str] = {}
        for key, value in params:
            if key not in _URI_PARAMS:
                raise ConfigError(f"Unknown SMTP URI parameter {key[:40]!r}.")
            if key in query:
                raise ConfigError(f"The SMTP URI parameter {key!r} is given twice.")
            query[key] = value
        if "from" not in query:
            raise ConfigError("The SMTP URI needs a from= parameter (the sender address).")

        security = query.get("security", "ssl" if scheme == "smtps" else "starttls")
        if security not in _SECURITIES:
            raise ConfigError("security must be 'none', 'starttls' or 'ssl'.")
        if scheme == "smtps" and security != "ssl":
            raise ConfigError("smtps:// always uses security=ssl.")
        timeout = 10.0
        if "timeout" in query:
            try:
                timeout = float(query["timeout"])
            except ValueError:
                raise ConfigError("timeout must be a number of seconds.") from None

        # A user without a password (or the reverse) is left for the constructor to refuse.
        username = unquote(parts.username) if parts.username else None
        password = None if parts.password is None else unquote(parts.password)
        return cls(
            host=parts.hostname,
            port=port,
            security=cast(Security, security),
            username=username,
            password=password,
            from_address=query["from"],
            reply_to=query.get("reply_to") or None,
            timeout=timeout,
            ssl_context=ssl_context,
            local_hostname=query.get("local_hostname") or None,
        )

    # -- sending

    def send(self, message: Message, *, portal: PortalSettings) -> None:
        """Deliver ``message`` through the relay, branded with ``portal.name``.

        Returns once the relay accepted it. Raises :class:`SmtpDeliveryFailed` otherwise,
        including for an unsafe recipient, subject or sender name, in which case no connection
        is made. A failure while saying goodbye *after* the relay accepted the message is
        ignored: the message is on its way, so its secret must stay valid.
        """
        mail, recipient = self._build(message, portal)
        try:
            self._deliver(mail, recipient)
        except SmtpDeliveryFailed as exc:
            _log.warning(
                "E-mail %s not sent via %s:%s: %s (%s, %s)",
                message.id,
                self.host,
                self.port,
                exc.reason,
                exc.error_type,
                exc.smtp_code,
            )
            raise
        _log.info("E-mail %s sent via %s:%s", message.id, self.host, self.port)

    def _build(self, message: Message, portal: PortalSettings) -> tuple[EmailMessage, str]:
        if message.channel != self.channel:
            raise SmtpDeliveryFailed("invalid_message", error_type="WrongChannel")
        recipient = _single_recipient(message.to)
        try:
            subject = check_header_text(message.subject, "subject", max_len=_SUBJECT_MAX)
            sender_name = check_header_text(portal.name, "portal name")
            # Address() quotes or RFC 2047-encodes the display name as needed, so a name such
            # as 'Smith, Jones & Co' or 'Müller & Söhne' cannot split into two addresses.
            sender = Address(display_name=sender_name, addr_spec=self.from_address)
            mail = EmailMessage(policy=SMTP_POLICY)
            mail["From"] = sender
            # Set as text: Address() refuses a non-ASCII local part, which smtplib sends with
            # SMTPUTF8 when the relay offers it. _single_recipient already vetted the text.
            mail["To"] = recipient
            if self.reply_to:
                mail["Reply-To"] = Address(addr_spec=self.reply_to)
            mail["Subject"] = subject
            mail["Date"] = formatdate(usegmt=True)
            mail["Message-ID"] = self._message_id()
            # RFC 3834: tells auto-responders (out-of-office, vacation) not to reply.
            mail["Auto-Submitted"] = "auto-generated"
            mail["X-Auto-Response-Suppress"] = "All"
            mail.set_content(message.text)
            if message.html:
                mail.add_alternative(message.html, subtype="html")
        except (ConfigError, MessageError, ValueError, TypeError, IndexError) as exc:
            raise SmtpDeliveryFailed("invalid_message", error_type=type(exc).__name__) from None
        return mail, recipient

    def _message_id(self) -> str:
        # Like email.utils.make_msgid with the sender's domain, but from the CSPRNG and without
        # the process id and timestamp make_msgid would disclose.
        domain = self.from_address.rpartition("@")[2]
        return f"<{secrets.token_hex(16)}@{domain}>"

    def _deliver(self, mail: EmailMessage, recipient: str) -> None:
        try:
            smtp = self._connect()
        except (smtplib.SMTPException, OSError) as exc:
            raise _failure(exc, default="connect_failed") from None
        try:
            try:
                smtp.ehlo_or_helo_if_needed()
                if self.security == "starttls":
                    if not smtp.has_extn("starttls"):
                        raise _NoStartTLS
                    smtp.starttls(context=self.ssl_context)
                    smtp.ehlo()  # the pre-TLS capability list must not be trusted
                if self.username is not None and self._password is not None:
                    smtp.login(self.username, self._password)
                smtp.send_message(mail, from_addr=self.from_address, to_addrs=[recipient])
            except _SESSION_ERRORS as exc:
                raise _failure(exc, default="smtp_error") from None
            # The relay has accepted the message: a failed goodbye must not undo that (send()).
            with contextlib.suppress(*_SESSION_ERRORS):
                smtp.quit()
        finally:
            smtp.close()

    def _connect(self) -> smtplib.SMTP:
        if self.security == "ssl":
            return smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=self.local_hostname,
                timeout=self.timeout,
                context=self.ssl_context,
            )
        return smtplib.SMTP(
            self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
        )


def _single_recipient(to: object) -> str:
    """``to`` as one bare addr-spec, or :class:`SmtpDeliveryFailed` (header-injection guard).

    Deliberately stricter than RFC 5322: no display names, comments, quoted local parts, domain
    literals, groups or lists; just ``local@domain``. Non-ASCII letters are allowed (the relay
    must then offer SMTPUTF8), but no control, format or separator character of any script.
    """
    if (
        not isinstance(to, str)
        or not 3 <= len(to) <= 254
        or any(ch in _CONTROL or ch in _ADDRESS_SPECIALS for ch in to)
        or any(not ch.isascii() and unicodedata.category(ch)[0] in "CZ" for ch in to)
    ):
        raise SmtpDeliveryFailed("invalid_message", error_type="InvalidRecipient")
    local, at, domain = to.rpartition("@")
    if not at or not local or not domain or "@" in local:
        raise SmtpDeliveryFailed("invalid_message", error_type="InvalidRecipient")
    # The stdlib parser refuses non-ASCII local parts outright, so it checks an ASCII stand-in
    # (a letter cannot end or split an address). Belt and braces: the address must parse whole,
    # and read back as exactly one mailbox.
    probe = "".join(ch if ch.isascii() else "x" for ch in to)
    try:
        parsed = Address(addr_spec=probe)
    except (MessageError, ValueError, TypeError, IndexError):
        raise SmtpDeliveryFailed("invalid_message", error_type="InvalidRecipient") from None
    if parsed.addr_spec != probe or getaddresses([to]) != [("", to)]:
        raise SmtpDeliveryFailed("invalid_message", error_type="InvalidRecipient")
    return to


def _failure(exc: BaseException, *, default: str) -> SmtpDeliveryFailed:
    code = getattr(exc, "smtp_code", None)
    smtp_code = code if isinstance(code, int) else None
    if isinstance(exc, _NoStartTLS):
        reason = "starttls_unavailable"
    elif isinstance(exc, smtplib.SMTPAuthenticationError):
        reason = "auth_failed"
    elif isinstance(exc, smtplib.SMTPNotSupportedError):
        reason = "auth_unavailable" if "auth" in str(exc).lower() else "smtp_error"
    elif isinstance(exc, smtplib.SMTPRecipientsRefused):
        reason = "recipient_refused"
        # The per-recipient replies hold the address; keep only the (single) code.
        codes = [c for c, _ in exc.recipients.values() if isinstance(c, int)]
        smtp_code = codes[0] if codes else None
    elif isinstance(exc, smtplib.SMTPSenderRefused):
        reason = "sender_refused"
    elif isinstance(exc, smtplib.SMTPDataError):
        reason = "data_refused"
    elif isinstance(exc, ssl.SSLError | ssl.CertificateError):
        reason = "tls_failed"
    else:
        reason = default
    return SmtpDeliveryFailed(reason, error_type=type(exc).__name__, smtp_code=smtp_code)

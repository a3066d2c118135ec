"""``twilio://``: deliver SMS through an HTTP provider with the Twilio Messages API's shape.

One ``POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json`` per message, with the form
fields ``To``, ``From`` (or ``MessagingServiceSid``) and ``Body`` and HTTP basic authentication.
Needs the optional ``httpx`` dependency: ``pip install portalauth[sms]``.

Guarantees a caller may rely on:

- **TLS only.** ``base_url`` must be ``https://``; plain ``http://`` is accepted only for a
  loopback host (``127.0.0.1``, ``localhost``, ``::1``), for local test servers. Certificates are
  verified (httpx's default). Redirects are never followed, so the credentials and the message go
  to the configured host and nowhere else.
- **No injection.** The recipient must be exactly one E.164 number (``+`` and 7 to 15 digits, no
  spaces, no line breaks, no list) and the body 1 to 1,600 characters (the provider's limit).
  Anything else raises :class:`SmsDeliveryFailed` before a request is made. The account SID, the
  only value placed in the URL, is restricted to letters, digits and hyphens.
- **One outcome.** :meth:`TwilioSmsSender.send` returns ``None`` once the provider accepted the
  message (a 2xx answer whose JSON holds a ``sid``), or raises :class:`SmsDeliveryFailed` (a
  ``DeliveryFailed``). Its message is the generic, user-safe one; ``reason``, ``status_code``,
  ``provider_code`` and ``error_type`` say what went wrong and are safe to log. The auth token,
  the message body, the recipient and the provider's reply text never appear in it, and the
  original exception is not chained.
- **No retries.** A 429 or 5xx answer or a timeout is reported, not retried: the caller decides
  (it usually withdraws the secret and lets the person ask again). After a timeout the provider
  may still have accepted the message; withdrawing its secret is the safe reading.
- **No secrets in logs.** Only the message id, the provider's host, the provider's message sid
  and the failure reason are logged; never the body, the recipient or the token. ``repr()`` hides
  the token.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any
from urllib.parse import unquote, urlsplit

import phonenumbers

from ..config import PortalSettings
from ..errors import ConfigError, DeliveryFailed
from ..records import Message

try:
    import httpx
except ImportError:  # the "sms" extra is not installed: refused when a sender is built
    _HAVE_HTTPX = False
else:
    _HAVE_HTTPX = True

__all__ = ["SmsDeliveryFailed", "TwilioSmsSender"]

_log = logging.getLogger("portalauth.delivery.sms")

DEFAULT_BASE_URL = "https://api.twilio.com"
#: The most characters the provider accepts in one message body (it splits it into segments).
BODY_MAX = 1600
# E.164: "+", a non-zero country code digit, at most 15 digits in all. Matched whole (fullmatch,
# ASCII digits only), so no line break, space, separator or second number can ride along.
_E164 = re.compile(r"\+[1-9][0-9]{6,14}", re.ASCII)
# The account SID is the one value placed in the URL path: no "/", ".", "%", "?" or "#".
_SID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{1,63}", re.ASCII)
_HOST = re.compile(r"[a-z0-9.:-]+", re.ASCII)
_PATH = re.compile(r"(/[A-Za-z0-9._~-]+)*/?", re.ASCII)
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_CONTROL = frozenset(chr(c) for c in range(32)) | {"\x7f", "\x85", "\u2028", "\u2029"}
_URI_PARAMS = frozenset({"from", "messaging_service", "timeout"})
_SCHEMES = {"twilio": "https", "twilio+http": "http"}
# A provider's answer is a small JSON object; anything larger is not one (and is not read).
_RESPONSE_MAX = 64 * 1024
# Provider error codes that mean "this number cannot receive the message" (invalid, not a
# mobile, unreachable, opted out): the caller may want to mark the contact rather than retry.
_RECIPIENT_CODES = frozenset({21211, 21217, 21401, 21421, 21610, 21612, 21614})


class SmsDeliveryFailed(DeliveryFailed):
    """A :class:`DeliveryFailed` from :class:`TwilioSmsSender`, with log-safe diagnostics.

    ``reason`` is one of:

    - ``"invalid_recipient"``: the recipient is not one E.164 number (no request was made), or
      the provider refused the number (``provider_code`` says why, for example 21211);
    - ``"invalid_message"``: refused before any request (empty or over-long body, wrong channel);
    - ``"auth"``: the provider refused the credentials (401 or 403);
    - ``"rate_limited"``: 429; ``"server_error"``: 5xx; ``"rejected"``: any other 4xx;
    - ``"timeout"``: connecting, sending or reading took longer than the timeout;
    - ``"unreachable"``: no connection (refused, DNS, TLS verification) or it broke;
    - ``"bad_response"``: a 2xx without a JSON ``sid``, a redirect (never followed), or an
      answer that is not HTTP the sender understands.

    ``status_code`` is the HTTP status when there was one, ``provider_code`` the provider's
    numeric ``code`` from its JSON error, ``error_type`` the class name of the underlying
    exception (or ``None``). None of them holds a secret, the body or the recipient.
    """

    def __init__(
        self,
        reason: str,
        *,
        status_code: int | None = None,
        provider_code: int | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__()
        self.reason = reason
        self.status_code = status_code
        self.provider_code = provider_code
        self.error_type = error_type

    def __repr__(self) -> str:
        return (
            f"SmsDeliveryFailed(reason={self.reason!r}, status_code={self.status_code!r}, "
            f"provider_code={self.provider_code!r}, error_type={self.error_type!r})"
        )


def _check_sid(value: object, what: str) -> str:
    if not isinstance(value, str) or not _SID.fullmatch(value):
        raise ConfigError(f"{what} must be 2 to 64 letters, digits and hyphens.")
    return value


def _check_token(value: object) -> str:
    if (
        not isinstance(value, str)
        or not value
        or not value.isascii()
        or any(ch in _CONTROL for ch in value)
    ):
        # Said without the value: it is a secret.
        raise ConfigError("auth_token must be non-empty ASCII text without control characters.")
    return value


def _check_from_number(value: object) -> str:
    if not isinstance(value, str) or not _E164.fullmatch(value):
        raise ConfigError("from_number must be an E.164 number such as +12025550123.")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ConfigError("from_number must be an E.164 number such as +12025550123.") from None
    if not phonenumbers.is_valid_number(number) or (
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) != value
    ):
        raise ConfigError("from_number must be a valid phone number in E.164 form.")
    return value


def _check_base_url(value: object) -> tuple[str, bool]:
    """``value`` without a trailing slash, and whether its host is a loopback address."""
    if not isinstance(value, str) or any(ch in _CONTROL or ch.isspace() for ch in value):
        raise ConfigError("base_url must be an absolute https:// URL.")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise ConfigError("base_url must be an absolute https:// URL.") from None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in ("https", "http") or not host or not _HOST.fullmatch(host):
        raise ConfigError("base_url must be an absolute https:// URL.")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ConfigError("base_url may not hold credentials, a query or a fragment.")
    if not _PATH.fullmatch(parts.path):
        raise ConfigError("base_url may have only a plain path prefix.")
    loopback = host in _LOOPBACK
    if scheme == "http" and not loopback:
        # The token travels in every request: never in the clear over a network.
        raise ConfigError("base_url must use https:// (http:// only for a loopback host).")
    return value.rstrip("/"), loopback


def _check_timeout(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= 600:
        raise ConfigError("timeout must be a number of seconds from 0 to 600.")
    return float(value)


class TwilioSmsSender:
    """Sends SMS through a Twilio-shaped HTTP API; a :class:`~portalauth.delivery.base.Sender`.

    All arguments are keyword-only. Exactly one of ``from_number`` (a valid E.164 number) and
    ``messaging_service_sid`` names the sender. ``timeout`` (seconds) applies to each of
    connecting, writing, each read and waiting for a pooled connection. ``client`` is an
    ``httpx.Client`` to share (its owner closes it); without one, the sender creates one
    long-lived client on first use and :meth:`close` releases it. Either way the sender sets the
    URL, credentials, timeout and no-redirect policy on every request itself. Invalid settings
    raise :class:`~portalauth.errors.ConfigError` here, not at send; so does a missing ``httpx``.

    A sender is safe to share between threads.
    """

    channel = "sms"

    __slots__ = (
        "_auth_token",
        "_client",
        "_host",
        "_lock",
        "_loopback",
        "_owned",
        "_timeout",
        "_url",
        "account_sid",
        "base_url",
        "from_number",
        "messaging_service_sid",
        "timeout",
    )

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        if not _HAVE_HTTPX:
            raise ConfigError("The SMS sender needs httpx: pip install portalauth[sms]")
        self.account_sid = _check_sid(account_sid, "account_sid")
        self._auth_token = _check_token(auth_token)
        if (from_number is None) == (messaging_service_sid is None):
            raise ConfigError("Give exactly one of from_number and messaging_service_sid.")
        self.from_number = None if from_number is None else _check_from_number(from_number)
        self.messaging_service_sid = (
            None
            if messaging_service_sid is None
            else _check_sid(messaging_service_sid, "messaging_service_sid")
        )
        self.base_url, self._loopback = _check_base_url(base_url)
        self._host = urlsplit(self.base_url).hostname
        self.timeout = _check_timeout(timeout)
        if client is not None and not isinstance(client, httpx.Client):
            raise ConfigError("client must be an httpx.Client.")
        self._client = client
        self._owned: httpx.Client | None = None
        self._lock = threading.Lock()
        self._timeout = httpx.Timeout(self.timeout)
        self._url = f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    def __repr__(self) -> str:
        return (
            f"TwilioSmsSender(account_sid={self.account_sid!r}, from_number={self.from_number!r}, "
            f"messaging_service_sid={self.messaging_service_sid!r}, base_url={self.base_url!r})"
        )

    @classmethod
    def from_uri(cls, uri: str, *, client: httpx.Client | None = None) -> TwilioSmsSender:
        """Build a sender from ``twilio://SID:TOKEN@api.twilio.com?from=%2B15005550006``.

        The user name is the account SID and the password the auth token, both percent-decoded.
        The host (and port) make the ``https://`` base URL; ``twilio+http://`` makes an
        ``http://`` one and is accepted only for a loopback host (local tests). Query parameters:
        exactly one of ``from`` (an E.164 number; ``+`` may be written as is or as ``%2B``) and
        ``messaging_service`` (a messaging service SID), and optionally ``timeout``; any other
        raises ``ConfigError``. Error messages never repeat the URI, which holds the token.
        """
        if not isinstance(uri, str):
            raise ConfigError("The SMS URI must be text.")
        try:
            parts = urlsplit(uri.strip())
            parts.port  # noqa: B018 - raises ValueError for a malformed port
        except ValueError:
            raise ConfigError("The SMS URI is malformed.") from None
        scheme = _SCHEMES.get(parts.scheme.lower())
        if scheme is None:
            raise ConfigError("The SMS URI must start with twilio:// or twilio+http://.")
        if not parts.hostname:
            raise ConfigError("The SMS URI must name a host.")
        if parts.path not in ("", "/") or parts.fragment:
            raise ConfigError("The SMS URI may not have a path or a fragment.")
        if not parts.username or not parts.password:
            raise ConfigError("The SMS URI needs the account SID and auth token as SID:TOKEN@.")
        query = _parse_query(parts.query)
        timeout = 10.0
        if "timeout" in query:
            try:
                timeout = float(query["timeout"])
            except ValueError:
                raise ConfigError("timeout must be a number of seconds.") from None
        host_port = parts.netloc.rpartition("@")[2]
        return cls(
            account_sid=unquote(parts.username),
            auth_token=unquote(parts.password),
            from_number=query.get("from"),
            messaging_service_sid=query.get("messaging_service"),
            base_url=f"{scheme}://{host_port}",
            timeout=timeout,
            client=client,
        )

    # -- the HTTP client

    def _http(self) -> httpx.Client:
        if self._client is not None:
            return self._client
        with self._lock:
            if self._owned is None:
                self._owned = httpx.Client(
                    timeout=self._timeout,
                    follow_redirects=False,
                    # A proxy from the environment makes no sense for a loopback test server.
                    trust_env=not self._loopback,
                )
            return self._owned

    def close(self) -> None:
        """Release the connections of the client this sender created (a shared ``client`` is
        left to its owner). The sender stays usable: a later send creates a new client."""
        with self._lock:
            owned, self._owned = self._owned, None
        if owned is not None:
            owned.close()

    def __enter__(self) -> TwilioSmsSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending

    def send(self, message: Message, *, portal: PortalSettings) -> None:
        """Hand ``message`` to the provider; return ``None`` once it accepted it.

        Raises :class:`SmsDeliveryFailed` otherwise, without retrying (a 429 or 5xx is the
        caller's to retry or not), and without any request for an unsafe recipient or body.
        ``portal`` is not used: the rendered text already names the firm.
        """
        form = self._form(message)
        try:
            sid = self._post(form)
        except SmsDeliveryFailed as exc:
            _log.warning(
                "SMS %s not sent via %s: %s (%s, %s, %s)",
                message.id,
                self._host,
                exc.reason,
                exc.status_code,
                exc.provider_code,
                exc.error_type,
            )
            raise
        _log.info("SMS %s accepted by %s as %s", message.id, self._host, sid)

    def _form(self, message: Message) -> dict[str, str]:
        if message.channel != self.channel:
            raise SmsDeliveryFailed("invalid_message", error_type="WrongChannel")
        to = message.to
        if not isinstance(to, str) or not _E164.fullmatch(to):
            raise SmsDeliveryFailed("invalid_recipient", error_type="InvalidRecipient")
        text = message.text
        if not isinstance(text, str) or not text.strip() or len(text) > BODY_MAX:
            raise SmsDeliveryFailed("invalid_message", error_type="InvalidBody")
        try:
            text.encode("utf-8")  # a lone surrogate cannot be form-encoded
        except UnicodeEncodeError:
            raise SmsDeliveryFailed("invalid_message", error_type="InvalidBody") from None
        form = {"To": to, "Body": text}
        if self.messaging_service_sid is not None:
            form["MessagingServiceSid"] = self.messaging_service_sid
        elif self.from_number is not None:
            form["From"] = self.from_number
        return form

    def _post(self, form: dict[str, str]) -> str:
        """POST the message; the provider's message sid, or :class:`SmsDeliveryFailed`."""
        try:
            with self._http().stream(
                "POST",
                self._url,
                data=form,
                auth=(self.account_sid, self._auth_token),
                headers={"Accept": "application/json", "Accept-Encoding": "identity"},
                timeout=self._timeout,
                follow_redirects=False,
            ) as response:
                status = response.status_code
                body = _read_capped(response)
        except httpx.TimeoutException as exc:
            raise SmsDeliveryFailed("timeout", error_type=type(exc).__name__) from None
        except (httpx.TransportError, RuntimeError) as exc:
            # RuntimeError: the shared client was closed under us (httpx.StreamError is one too).
            raise SmsDeliveryFailed("unreachable", error_type=type(exc).__name__) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise SmsDeliveryFailed("bad_response", error_type=type(exc).__name__) from None

        payload = _json_object(body)
        if 200 <= status <= 299:
            sid = None if payload is None else payload.get("sid")
            if not isinstance(sid, str) or not sid:
                raise SmsDeliveryFailed("bad_response", status_code=status)
            # Only a plain sid reaches the log: the provider's text must not forge log lines.
            return sid if _SID.fullmatch(sid) else "(unprintable sid)"
        code = None if payload is None else payload.get("code")
        provider_code = code if isinstance(code, int) and not isinstance(code, bool) else None
        raise SmsDeliveryFailed(
            _reason_for(status, provider_code), status_code=status, provider_code=provider_code
        )


def _parse_query(query: str) -> dict[str, str]:
    # Split by hand rather than with parse_qsl, which turns "+" into a space: "from=+1202..."
    # must keep its plus. No legitimate value here contains a space.
    found: dict[str, str] = {}
    for pair in query.split("&") if query else ():
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError("The SMS URI query must be name=value pairs.")
        if key not in _URI_PARAMS:
            raise ConfigError(f"Unknown SMS URI parameter {key[:40]!r}.")
        if key in found:
            raise ConfigError(f"The SMS URI parameter {key!r} is given twice.")
        found[key] = unquote(value)
    return found


def _read_capped(response: httpx.Response) -> bytes | None:
    """The raw body, or ``None`` if it is larger than any answer the provider sends."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_raw():
        size += len(chunk)
        if size > _RESPONSE_MAX:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _json_object(body: bytes | None) -> dict[str, Any] | None:
    if body is None:
        return None
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def _reason_for(status: int, provider_code: int | None) -> str:
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "rate_limited"
    if 500 <= status <= 599:
        return "server_error"
    if 400 <= status <= 499:
        return "invalid_recipient" if provider_code in _RECIPIENT_CODES else "rejected"
    # 1xx and 3xx: a redirect is never followed, so it is an answer the sender cannot use.
    return "bad_response"

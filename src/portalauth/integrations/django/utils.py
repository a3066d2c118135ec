"""Request and response helpers shared by the views, the middleware and the decorator.

They are public so a project can build pages of its own (a staff sign-in with a second cookie,
say) with the same rules: :func:`client_info`, :func:`safe_next`, :func:`form_data`,
:func:`set_session_cookie`, :func:`delete_session_cookie` and :func:`error_status`.
"""

from __future__ import annotations

import unicodedata
from typing import Any
from urllib.parse import unquote

from django.utils.http import url_has_allowed_host_and_scheme

from ...client import ClientInfo, client_ip_from_forwarded
from ...errors import (
    ConfigError,
    DeliveryFailed,
    FlowInvalid,
    InvalidInput,
    MethodDisabled,
    NotFound,
    PortalAuthError,
    SessionInvalid,
    SignupDisabled,
    StoreUnavailable,
    Throttled,
    UnknownContact,
    VerificationFailed,
)
from .conf import get_settings

__all__ = [
    "RESERVED_FIELDS",
    "client_info",
    "delete_session_cookie",
    "error_status",
    "form_data",
    "safe_next",
    "set_session_cookie",
]

#: Form fields the pages use themselves; never handed to a strategy.
RESERVED_FIELDS = frozenset({"csrfmiddlewaretoken", "flow", "next", "token"})

_MAX_NEXT = 2048


def client_info(request: Any) -> ClientInfo:
    """Who is asking: the address (``X-Forwarded-For`` only behind ``TRUSTED_PROXIES``), the
    user agent and a request id if a proxy set one."""
    meta = request.META
    ip = client_ip_from_forwarded(
        meta.get("REMOTE_ADDR"),
        meta.get("HTTP_X_FORWARDED_FOR"),
        get_settings().trusted_proxies,
    )
    request_id = meta.get("HTTP_X_REQUEST_ID")
    return ClientInfo(
        ip=ip or None,
        user_agent=meta.get("HTTP_USER_AGENT"),
        request_id=request_id[:64] if isinstance(request_id, str) else None,
    )


def _clean(value: str) -> bool:
    if "\\" in value:
        return False
    return not any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value)


def safe_next(request: Any, value: object) -> str | None:
    """``value`` if it is a safe place on this site to send the client, else ``None``.

    Safe means a path starting with exactly one ``/`` (or an absolute URL on this very host and
    scheme, as :func:`django.utils.http.url_has_allowed_host_and_scheme` judges it), with no
    backslash and no control or invisible formatting character, before or after percent-decoding
    (so ``/%2F%2Fevil.com`` and ``/%5Cevil.com`` are refused too).
    """
    if not isinstance(value, str) or not value or len(value) > _MAX_NEXT:
        return None
    decoded = unquote(value)
    for text in (value, decoded):
        if not _clean(text):
            return None
    try:
        host = request.get_host()
    except Exception:  # DisallowedHost: no trustworthy origin to compare with
        return None
    for text in (value, decoded):
        if text.startswith("/") and (text.startswith("//") or text[1:2] in ("/", "\\")):
            return None
        if not url_has_allowed_host_and_scheme(
            text, allowed_hosts={host}, require_https=request.is_secure()
        ):
            return None
    if not value.startswith("/") and not value.lower().startswith(("http://", "https://")):
        return None  # an absolute URL must be this host over http(s), as checked above
    return value


def form_data(query: Any) -> dict[str, Any]:
    """The submitted fields for the core: one value as a string, a repeated field as a list
    (the core refuses lists, so ``code=1&code=2`` can never be read as either value)."""
    data: dict[str, Any] = {}
    for name in query:
        if name in RESERVED_FIELDS:
            continue
        values = query.getlist(name)
        data[name] = values[0] if len(values) == 1 else list(values)
    return data


def single(query: Any, name: str) -> Any:
    """A reserved field's value: a string, or a list when it was repeated (refused later)."""
    values = query.getlist(name)
    if len(values) == 1:
        return values[0]
    return list(values) if values else None


def set_session_cookie(response: Any, token: str, *, name: str | None = None) -> None:
    """Set the session cookie: HttpOnly, SameSite=Lax, Path=/, no Domain, Secure by setting."""
    conf = get_settings()
    response.set_cookie(
        name or conf.cookie_name,
        token,
        path="/",
        secure=conf.cookie_secure,
        httponly=True,
        samesite="Lax",
    )


def delete_session_cookie(response: Any, *, name: str | None = None) -> None:
    """Expire the session cookie (with the same attributes it was set with)."""
    conf = get_settings()
    response.set_cookie(
        name or conf.cookie_name,
        "",
        max_age=0,
        expires="Thu, 01 Jan 1970 00:00:00 GMT",
        path="/",
        secure=conf.cookie_secure,
        httponly=True,
        samesite="Lax",
    )


def error_status(error: PortalAuthError) -> int:
    """The HTTP status for a typed error; the page shows ``error.message`` whatever it is."""
    if isinstance(error, Throttled):
        return 429
    if isinstance(error, ConfigError):
        return 500
    if isinstance(error, (InvalidInput, FlowInvalid, VerificationFailed, UnknownContact)):
        return 400
    if isinstance(error, SessionInvalid):
        return 401
    if isinstance(error, SignupDisabled):
        return 403
    if isinstance(error, (MethodDisabled, NotFound)):
        return 404
    if isinstance(error, (DeliveryFailed, StoreUnavailable)):
        return 503
    # The generic failure (a strategy failed closed) is the server's fault; others the input's.
    return 500 if type(error) is PortalAuthError else 400

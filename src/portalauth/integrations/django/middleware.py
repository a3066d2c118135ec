"""Sets the signed-in client on every request.

``request.portalauth_identity`` (an :class:`~portalauth.Identity`) and
``request.portalauth_session`` (a :class:`~portalauth.SessionRecord`) are ``None`` unless the
session cookie names a live session of the request's portal. A cookie that does not (tampered,
expired, revoked, another portal's) is deleted on the way out. Put the middleware after
``CsrfViewMiddleware``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ...errors import PortalAuthError, SessionInvalid
from .conf import get_auth, get_settings, portal_for
from .utils import delete_session_cookie

__all__ = ["PortalAuthMiddleware", "load_session"]

_log = logging.getLogger("portalauth.django")


def load_session(request: Any) -> bool:
    """Validate the request's session cookie and set the two attributes. Returns ``False``
    when a cookie was present but is not a live session (so it should be deleted)."""
    request.portalauth_identity = None
    request.portalauth_session = None
    token = request.COOKIES.get(get_settings().cookie_name)
    if token is None:
        return True
    auth = get_auth()
    try:
        record = auth.sessions.validate(token, portal=portal_for(request))
        identity = auth.directory.find(record.identity_id)
        if identity is None or identity.disabled:
            raise SessionInvalid()
    except SessionInvalid:
        return False
    except PortalAuthError as exc:
        # The store is down, say: nobody is signed in for this request (fail closed), and the
        # cookie stays, since it may well be valid.
        _log.warning("session check failed: %s", exc.code)
        return True
    request.portalauth_session = record
    request.portalauth_identity = identity
    return True


class PortalAuthMiddleware:
    """Reads the portalauth session cookie into ``request.portalauth_identity`` / ``_session``."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        valid = load_session(request)
        response = self.get_response(request)
        name = get_settings().cookie_name
        if not valid and name not in response.cookies:  # a view's new cookie wins
            delete_session_cookie(response)
        return response

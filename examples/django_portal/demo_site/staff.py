"""Staff sign-in: a password account in the separate staff portal, with its own cookie.

Client sessions belong to the portal ``acme`` and staff sessions to ``acme-staff``; each cookie
is validated against its own portal, so a client's session never opens a staff page.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.http import HttpResponse, HttpResponseRedirect
from django.middleware.csrf import rotate_token
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods, require_POST

from portalauth import PortalAuthError, SignedIn
from portalauth.integrations.django.conf import get_auth
from portalauth.integrations.django.utils import (
    client_info,
    delete_session_cookie,
    error_status,
    form_data,
    safe_next,
    set_session_cookie,
    single,
)

from .portal import STAFF_COOKIE, STAFF_PORTAL


def staff_identity(request: Any) -> Any:
    """The signed-in staff member, or ``None``."""
    token = request.COOKIES.get(STAFF_COOKIE)
    if not token:
        return None
    auth = get_auth()
    try:
        record = auth.sessions.validate(token, portal=STAFF_PORTAL)
    except PortalAuthError:
        return None
    identity = auth.directory.find(record.identity_id)
    if identity is None or identity.disabled:
        return None
    return identity


def staff_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Only signed-in staff; anyone else goes to the staff sign-in page."""

    @functools.wraps(view)
    def wrapper(request: Any, *args: Any, **kwargs: Any) -> HttpResponse:
        request.staff = staff_identity(request)
        if request.staff is None:
            target = "/staff/sign-in?" + urlencode({"next": request.get_full_path()})
            return HttpResponseRedirect(target)
        response = view(request, *args, **kwargs)
        add_never_cache_headers(response)
        return response

    return wrapper


@csrf_protect
@require_http_methods(["GET", "HEAD", "POST"])
def sign_in(request: Any) -> HttpResponse:
    query = request.POST if request.method == "POST" else request.GET
    next_url = safe_next(request, single(query, "next"))
    if next_url is not None and not next_url.startswith("/staff/"):
        next_url = None
    context: dict[str, Any] = {"next": next_url or "", "email": ""}
    if request.method == "POST":
        data = form_data(request.POST)
        try:
            done = get_auth().start(STAFF_PORTAL, "password", data, client=client_info(request))
            if not isinstance(done, SignedIn):  # the staff portal has no second factor
                raise PortalAuthError()
        except PortalAuthError as exc:
            email = data.get("email")
            context.update(error=exc, email=email if isinstance(email, str) else "")
            response = render(request, "demo/staff_sign_in.html", context, status=error_status(exc))
            if exc.code == "throttled":
                response["Retry-After"] = str(getattr(exc, "retry_after", 60))
            return response
        old = request.COOKIES.get(STAFF_COOKIE)
        if old:
            get_auth().sessions.revoke(old)
        rotate_token(request)
        response = HttpResponseRedirect(next_url or "/staff/")
        response.status_code = 303
        set_session_cookie(response, done.token, name=STAFF_COOKIE)
        return response
    return render(request, "demo/staff_sign_in.html", context)


@csrf_protect
@require_POST
def sign_out(request: Any) -> HttpResponse:
    token = request.COOKIES.get(STAFF_COOKIE)
    if token:
        get_auth().sessions.revoke(token)
    response = HttpResponseRedirect("/staff/sign-in")
    response.status_code = 303
    delete_session_cookie(response, name=STAFF_COOKIE)
    return response

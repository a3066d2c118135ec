"""The sign-in pages: chooser, generic steps, link pages, password pages and sign-out.

Every page is rendered from the core's values: the chooser from ``auth.methods(portal)``, each
form from :class:`~portalauth.Field` descriptors (so any strategy, a third party's too, works
without a template of its own). Errors are the core's typed errors: the page shows the error's
safe message with a fitting status (``Throttled``: 429 with ``Retry-After``), never a traceback.
State-changing requests are POSTs protected by Django's CSRF middleware (and ``csrf_protect``,
so the protection holds even in a project that forgot the middleware).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast
from urllib.parse import urlencode

from django.http import HttpResponse, HttpResponseRedirect
from django.middleware.csrf import rotate_token
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.csrf import csrf_protect as _csrf_protect
from django.views.decorators.http import require_http_methods as _require_http_methods

from ...auth import Auth
from ...config import PortalSettings
from ...errors import (
    FlowInvalid,
    InvalidInput,
    MethodDisabled,
    PortalAuthError,
    SignupDisabled,
    Throttled,
)
from ...flows import Field, FlowCodec, FlowState, SignedIn, Step
from ...second_factor import STEP as SECOND_STEP
from ...second_factor import SecondFactor
from .conf import get_auth, get_settings, portal_for
from .decorators import portalauth_required
from .utils import client_info, delete_session_cookie, error_status, form_data, safe_next, single
from .utils import set_session_cookie as _set_cookie

__all__ = [
    "change_password",
    "chooser",
    "confirm_sign_up",
    "forgot_password",
    "magic_link",
    "reset_password",
    "set_password",
    "sign_out",
    "sign_up",
    "start",
    "step",
]

_F = TypeVar("_F", bound=Callable[..., Any])


def _typed(decorator: Any) -> Callable[[_F], _F]:
    return cast(Callable[[_F], _F], decorator)


csrf_protect = _typed(_csrf_protect)
_GET = _typed(_require_http_methods(["GET", "HEAD"]))
_GET_POST = _typed(_require_http_methods(["GET", "HEAD", "POST"]))
_POST = _typed(_require_http_methods(["POST"]))

_PASSWORD_MISMATCH = "The two passwords are not the same."  # noqa: S105 (a message)

# -- rendering ----------------------------------------------------------------------------------

_INPUT_TYPES = {
    "email": ("email", "email"),
    "tel": ("tel", "tel"),
    "contact": ("text", "username"),
    "code": ("text", "one-time-code"),
    "password": ("password", "current-password"),
    "name": ("text", "name"),
    "text": ("text", None),
}
#: Values typed into these kinds are shown again after an error; secrets never are.
_ECHO = {"email", "tel", "contact", "name", "text"}


def widgets(
    fields: Iterable[Field], data: Mapping[str, Any] | None = None, error: object = None
) -> list[dict[str, Any]]:
    """What a template needs to render each :class:`Field` as an accessible input."""
    result = []
    bad_field = getattr(error, "field", None)
    for item in fields:
        input_type, default_autocomplete = _INPUT_TYPES.get(item.kind, ("text", None))
        value = (data or {}).get(item.name) if item.kind in _ECHO else None
        result.append(
            {
                "name": item.name,
                "id": f"pa-{item.name}",
                "label": item.label,
                "type": input_type,
                "autocomplete": item.autocomplete or default_autocomplete,
                "inputmode": "numeric" if item.numeric else None,
                "pattern": "[0-9]*" if item.numeric else None,
                "maxlength": item.max_length,
                "help": item.help,
                "value": value if isinstance(value, str) else "",
                "invalid": bad_field == item.name,
            }
        )
    return result


def _portal(slug: str) -> PortalSettings | None:
    try:
        return get_auth().portals.find(slug)
    except PortalAuthError:
        return None


def _page(
    request: Any,
    template: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    error: PortalAuthError | None = None,
) -> HttpResponse:
    slug = portal_for(request)
    settings = _portal(slug)
    base = {
        "portal": settings,
        "portal_name": settings.name if settings is not None else "",
        "identity": getattr(request, "portalauth_identity", None),
        "error": error,
        "next": context.get("next") or "",
    }
    base.update(context)
    if error is not None:
        status = error_status(error)
    response: HttpResponse = render(request, template, base, status=status)
    if isinstance(error, Throttled):
        response["Retry-After"] = str(error.retry_after)
    # Pages carry flow and link tokens: never cached, and never sent to another site in a
    # Referer (R36). Not "no-referrer": under it browsers send "Origin: null" with the page's own
    # form posts, which Django's CSRF check rightly refuses; "same-origin" sends nothing across
    # origins and keeps the Origin header the CSRF check needs.
    add_never_cache_headers(response)
    response["Referrer-Policy"] = "same-origin"
    return response


def _error_page(request: Any, error: PortalAuthError, **context: Any) -> HttpResponse:
    return _page(request, "portalauth/error.html", context, error=error)


def _method_label(auth: Auth, method: str) -> str:
    strategy = auth.plugins.strategies.get(method)
    return str(getattr(strategy, "label", method))


def _next_of(request: Any, query: Any) -> str | None:
    return safe_next(request, single(query, "next"))


def _landing(request: Any, next_url: str | None) -> str:
    return next_url or get_settings().home_url


def _signed_in(request: Any, done: SignedIn, next_url: str | None) -> HttpResponse:
    """Set the new session cookie and leave the sign-in pages (no token in the URL)."""
    conf = get_settings()
    old = request.COOKIES.get(conf.cookie_name)
    if old and old != done.token:
        get_auth().sessions.revoke(old)  # whatever was there before is gone (R52)
    rotate_token(request)  # a new CSRF token for the signed-in client, as Django's login() does
    response = HttpResponseRedirect(_landing(request, next_url))
    response.status_code = 303
    _set_cookie(response, done.token)
    add_never_cache_headers(response)
    return response


def _outcome(
    request: Any, outcome: Step | SignedIn, next_url: str | None, *, heading: str | None = None
) -> HttpResponse:
    if isinstance(outcome, SignedIn):
        return _signed_in(request, outcome, next_url)
    if outcome.done or not outcome.flow:
        return _page(
            request,
            "portalauth/notice.html",
            {"notice": outcome.notice, "heading": heading or "Check your messages"},
        )
    return _step_page(
        request,
        outcome.flow,
        outcome.method,
        outcome.fields,
        next_url,
        step=outcome,
        second=outcome.next == SECOND_STEP,
    )


def _step_page(
    request: Any,
    flow: str,
    method: str,
    fields: Iterable[Field],
    next_url: str | None,
    *,
    step: Step | None = None,
    second: bool = False,
    data: Mapping[str, Any] | None = None,
    error: PortalAuthError | None = None,
) -> HttpResponse:
    return _page(
        request,
        "portalauth/form.html",
        {
            "heading": "One more step" if second else _method_label(get_auth(), method),
            "method": method,
            "action": reverse("portalauth:step"),
            "flow": flow,
            "next": next_url,
            "notice": step.notice if step is not None else None,
            "sent_to": step.sent_to if step is not None else None,
            "fields": widgets(fields, data, error),
            "submit": "Continue",
        },
        error=error,
    )


# -- flows ----------------------------------------------------------------------------------


def _codec(auth: Auth) -> FlowCodec:
    # Reads a flow token only to know which form to show again; ``auth.advance`` checks it
    # in full (age included) before anything else happens.
    return FlowCodec(auth.keyring, auth.clock, max_age=366 * 86400)


def _flow_state(auth: Auth, slug: str, flow: object) -> FlowState:
    state = _codec(auth).load(flow)
    if state.portal != slug:
        raise FlowInvalid()  # another portal's flow never continues here
    return state


def _flow_fields(auth: Auth, state: FlowState) -> tuple[Field, ...]:
    if state.step == SECOND_STEP:
        record = auth.challenges.get_live(state.challenge_id or "")
        kind = str(record.data.get("kind", "")) if record is not None else ""
        if not kind:
            kind = auth.portals.get(state.portal).second_factor
        return SecondFactor.fields(kind)
    return auth.fields(state.portal, state.method, state.step)


@_GET
def chooser(request: Any) -> HttpResponse:
    """The sign-in methods the portal offers."""
    auth = get_auth()
    slug = portal_for(request)
    next_url = _next_of(request, request.GET)
    try:
        settings = auth.portals.get(slug)
        methods = auth.methods(slug)
    except PortalAuthError as exc:
        return _error_page(request, exc)
    query = "?" + urlencode({"next": next_url}) if next_url else ""
    choices = [
        {
            "name": strategy.name,
            "label": getattr(strategy, "label", strategy.name),
            "url": reverse("portalauth:start", args=[strategy.name]) + query,
        }
        for strategy in methods
    ]
    password = "password" in settings.methods
    return _page(
        request,
        "portalauth/chooser.html",
        {
            "methods": choices,
            "next": next_url,
            "forgot_url": reverse("portalauth:forgot_password") if password else None,
            "sign_up_url": reverse("portalauth:sign_up")
            if password and settings.signup_enabled
            else None,
        },
    )


@csrf_protect
@_GET_POST
def start(request: Any, method: str) -> HttpResponse:
    """The first form of ``method`` (GET), and its submission (POST)."""
    auth = get_auth()
    slug = portal_for(request)
    query = request.POST if request.method == "POST" else request.GET
    next_url = _next_of(request, query)
    try:
        fields = auth.fields(slug, method)
    except PortalAuthError as exc:
        return _error_page(request, exc)
    context = {
        "heading": _method_label(auth, method),
        "method": method,
        "action": reverse("portalauth:start", args=[method]),
        "next": next_url,
        "submit": "Continue",
    }
    if request.method != "POST":
        return _page(request, "portalauth/form.html", {**context, "fields": widgets(fields)})
    data = form_data(request.POST)
    try:
        outcome = auth.start(slug, method, data, client=client_info(request))
    except PortalAuthError as exc:
        return _page(
            request,
            "portalauth/form.html",
            {**context, "fields": widgets(fields, data, exc)},
            error=exc,
        )
    return _outcome(request, outcome, next_url)


@csrf_protect
@_GET_POST
def step(request: Any) -> HttpResponse:
    """A later step of a flow (POST with the flow token); a GET goes back to the chooser."""
    if request.method != "POST":
        return HttpResponseRedirect(reverse("portalauth:chooser"))
    auth = get_auth()
    slug = portal_for(request)
    next_url = _next_of(request, request.POST)
    flow = single(request.POST, "flow")
    data = form_data(request.POST)
    try:
        state = _flow_state(auth, slug, flow)
    except PortalAuthError as exc:
        return _error_page(request, exc, restart_url=reverse("portalauth:chooser"))
    try:
        outcome = auth.advance(flow, data, client=client_info(request))
    except FlowInvalid as exc:
        return _error_page(request, exc, restart_url=reverse("portalauth:chooser"))
    except PortalAuthError as exc:
        try:
            fields = _flow_fields(auth, state)
        except PortalAuthError:
            return _error_page(request, exc, restart_url=reverse("portalauth:chooser"))
        return _step_page(
            request,
            str(flow),
            state.method,
            fields,
            next_url,
            second=state.step == SECOND_STEP,
            data=data,
            error=exc,
        )
    return _outcome(request, outcome, next_url)


# -- link pages ---------------------------------------------------------------------------------


def _link_page(
    request: Any,
    *,
    kind: str,
    purpose: str | None,
    token: object,
    inspect: Callable[[str, object], Any],
    fields: tuple[Field, ...] = (),
    heading: str,
    submit: str,
    status_override: str | None = None,
    error: PortalAuthError | None = None,
    data: Mapping[str, Any] | None = None,
) -> HttpResponse:
    """A page for an e-mailed link: what the link is (no side effect), and its form."""
    slug = portal_for(request)
    if status_override is not None:
        state = status_override
    else:
        try:
            status = inspect(slug, token)
        except PortalAuthError as exc:
            return _error_page(request, exc)
        state = status.state
        if purpose is not None and status.purpose not in (purpose, None):
            state = "invalid"
    return _page(
        request,
        "portalauth/link.html",
        {
            "kind": kind,
            "state": state,
            "heading": heading,
            "token": token if isinstance(token, str) else "",
            "action": request.path,
            "fields": widgets(fields, data, error),
            "submit": submit,
            "chooser_url": reverse("portalauth:chooser"),
            "forgot_url": reverse("portalauth:forgot_password"),
        },
        error=error,
    )


def _link_token(request: Any) -> object:
    query = request.POST if request.method == "POST" else request.GET
    return single(query, "token")


@csrf_protect
@_GET_POST
def magic_link(request: Any) -> HttpResponse:
    """GET/HEAD: a confirm page (the link is only inspected, so a mail scanner's visit changes
    nothing). POST from that page: redeem the link and sign in."""
    auth = get_auth()
    slug = portal_for(request)
    token = _link_token(request)
    page: dict[str, Any] = {
        "kind": "magic_link",
        "purpose": None,
        "token": token,
        "inspect": lambda portal, value: auth.magic_links.inspect(portal, value),
        "heading": "Sign in with your link",
        "submit": "Sign in",
    }
    if request.method != "POST":
        return _link_page(request, **page)
    try:
        outcome = auth.magic_links.redeem(slug, token, client=client_info(request))
    except PortalAuthError as exc:
        state = "superseded" if getattr(exc, "reason", "") == "superseded" else "failed"
        return _link_page(request, **page, status_override=state, error=exc)
    return _outcome(request, outcome, None)


def _new_password_fields(auth: Auth, slug: str) -> tuple[Field, ...]:
    max_length = 1024
    with contextlib.suppress(PortalAuthError, AttributeError, TypeError, ValueError):
        max_length = int(auth.strategy_config(slug, "password").max_length)
    return (
        Field(
            "password",
            "password",
            "New password",
            max_length=max_length,
            autocomplete="new-password",
            help="Use a long password: a few unrelated words work well.",
        ),
        Field(
            "password_repeat",
            "password",
            "New password again",
            max_length=max_length,
            autocomplete="new-password",
        ),
    )


def _new_password(request: Any) -> object:
    """The new password from the form, or ``InvalidInput`` when the two entries differ."""
    password = single(request.POST, "password")
    repeat = single(request.POST, "password_repeat")
    if isinstance(password, str) and isinstance(repeat, str) and password != repeat:
        raise InvalidInput(_PASSWORD_MISMATCH, field="password_repeat")
    return password


def _password_link(
    request: Any,
    *,
    kind: str,
    purpose: str,
    heading: str,
    submit: str,
    use: Callable[[Auth, str, object, object], Step | SignedIn],
) -> HttpResponse:
    auth = get_auth()
    slug = portal_for(request)
    token = _link_token(request)
    page: dict[str, Any] = {
        "kind": kind,
        "purpose": purpose,
        "token": token,
        "inspect": lambda portal, value: auth.passwords.inspect(portal, value),
        "fields": _new_password_fields(auth, slug),
        "heading": heading,
        "submit": submit,
    }
    if request.method != "POST":
        return _link_page(request, **page)
    try:
        password = _new_password(request)
        outcome = use(auth, slug, token, password)
    except InvalidInput as exc:  # the link is untouched: try again on the same page
        return _link_page(request, **page, status_override="valid", error=exc)
    except PortalAuthError as exc:
        state = "superseded" if getattr(exc, "reason", "") == "superseded" else "failed"
        return _link_page(request, **page, status_override=state, error=exc)
    return _outcome(request, outcome, None, heading="Password changed")


@csrf_protect
@_GET_POST
def set_password(request: Any) -> HttpResponse:
    """An invitation link: choose a first password (POST), then signed in."""
    client = client_info(request)
    return _password_link(
        request,
        kind="set_password",
        purpose="password_invite",
        heading="Choose your password",
        submit="Set password and sign in",
        use=lambda auth, slug, token, pw: auth.passwords.accept_invite(
            slug, token, pw, client=client
        ),
    )


@csrf_protect
@_GET_POST
def reset_password(request: Any) -> HttpResponse:
    """A reset link: choose a new password (POST)."""
    client = client_info(request)
    return _password_link(
        request,
        kind="reset_password",
        purpose="password_reset",
        heading="Choose a new password",
        submit="Change password",
        use=lambda auth, slug, token, pw: auth.passwords.reset(slug, token, pw, client=client),
    )


@csrf_protect
@_GET_POST
def confirm_sign_up(request: Any) -> HttpResponse:
    """A sign-up confirmation link: GET shows a button, POST confirms and signs in."""
    auth = get_auth()
    slug = portal_for(request)
    token = _link_token(request)
    page: dict[str, Any] = {
        "kind": "confirm",
        "purpose": "signup_confirm",
        "token": token,
        "inspect": lambda portal, value: auth.passwords.inspect(portal, value),
        "heading": "Confirm your e-mail address",
        "submit": "Confirm and sign in",
    }
    if request.method != "POST":
        return _link_page(request, **page)
    try:
        outcome = auth.passwords.confirm(slug, token, client=client_info(request))
    except PortalAuthError as exc:
        state = "superseded" if getattr(exc, "reason", "") == "superseded" else "failed"
        return _link_page(request, **page, status_override=state, error=exc)
    return _outcome(request, outcome, None)


# -- password pages ---------------------------------------------------------------------------


def _simple_form(
    request: Any,
    *,
    heading: str,
    fields: tuple[Field, ...],
    submit: str,
    action: str,
    intro: str | None = None,
    data: Mapping[str, Any] | None = None,
    error: PortalAuthError | None = None,
) -> HttpResponse:
    return _page(
        request,
        "portalauth/form.html",
        {
            "heading": heading,
            "intro": intro,
            "action": action,
            "fields": widgets(fields, data, error),
            "submit": submit,
            "chooser_url": reverse("portalauth:chooser"),
        },
        error=error,
    )


def _password_enabled(auth: Auth, slug: str) -> PortalSettings:
    settings = auth.portals.get(slug)
    if "password" not in settings.methods:
        raise MethodDisabled("Password sign-in is not enabled for this portal.")
    return settings


_EMAIL = Field("email", "email", "E-mail address", autocomplete="email")


@csrf_protect
@_GET_POST
def forgot_password(request: Any) -> HttpResponse:
    """Ask for a reset link (the answer is the same whether or not the address has an account)."""
    auth = get_auth()
    slug = portal_for(request)
    form: dict[str, Any] = {
        "heading": "Forgotten password",
        "intro": "Enter your e-mail address and we will send you a link to choose a new password.",
        "fields": (_EMAIL,),
        "submit": "Send me a link",
        "action": reverse("portalauth:forgot_password"),
    }
    try:
        _password_enabled(auth, slug)
    except PortalAuthError as exc:
        return _error_page(request, exc)
    if request.method != "POST":
        return _simple_form(request, **form)
    data = form_data(request.POST)
    try:
        outcome = auth.passwords.request_reset(slug, data, client=client_info(request))
    except PortalAuthError as exc:
        return _simple_form(request, **form, data=data, error=exc)
    return _outcome(request, outcome, None, heading="Check your e-mail")


@csrf_protect
@_GET_POST
def sign_up(request: Any) -> HttpResponse:
    """Self sign-up with a password, only where the portal allows it."""
    auth = get_auth()
    slug = portal_for(request)
    try:
        settings = _password_enabled(auth, slug)
        if not settings.signup_enabled:
            raise SignupDisabled()
        max_length = int(auth.strategy_config(slug, "password").max_length)
    except PortalAuthError as exc:
        return _error_page(request, exc)
    fields = (
        Field("name", "name", "Your name", max_length=200, autocomplete="name"),
        _EMAIL,
        Field(
            "password",
            "password",
            "Choose a password",
            max_length=max_length,
            autocomplete="new-password",
            help="Use a long password: a few unrelated words work well.",
        ),
    )
    form: dict[str, Any] = {
        "heading": "Create an account",
        "fields": fields,
        "submit": "Sign up",
        "action": reverse("portalauth:sign_up"),
    }
    if request.method != "POST":
        return _simple_form(request, **form)
    data = form_data(request.POST)
    try:
        outcome = auth.passwords.sign_up(slug, data, client=client_info(request))
    except PortalAuthError as exc:
        return _simple_form(request, **form, data=data, error=exc)
    return _outcome(request, outcome, None, heading="Check your e-mail")


@csrf_protect
@_GET_POST
@portalauth_required
def change_password(request: Any) -> HttpResponse:
    """A signed-in client changes their password (current one required); other sessions end."""
    auth = get_auth()
    slug = portal_for(request)
    try:
        _password_enabled(auth, slug)
    except PortalAuthError as exc:
        return _error_page(request, exc)
    current = Field(
        "current_password",
        "password",
        "Current password",
        max_length=4096,
        autocomplete="current-password",
    )
    form: dict[str, Any] = {
        "heading": "Change your password",
        "fields": (current, *_new_password_fields(auth, slug)),
        "submit": "Change password",
        "action": reverse("portalauth:change_password"),
    }
    if request.method != "POST":
        return _simple_form(request, **form)
    token = request.COOKIES.get(get_settings().cookie_name, "")
    try:
        password = _new_password(request)
        auth.passwords.change(
            token,
            single(request.POST, "current_password"),
            password,
            client=client_info(request),
        )
    except PortalAuthError as exc:
        return _simple_form(request, **form, error=exc)
    return _page(
        request,
        "portalauth/notice.html",
        {
            "heading": "Password changed",
            "notice": "Your password was changed. Your other sessions were signed out.",
            "continue_url": get_settings().home_url,
        },
    )


@csrf_protect
@_POST
def sign_out(request: Any) -> HttpResponse:
    """End the session (POST only, with the CSRF token) and delete the cookie."""
    conf = get_settings()
    token = request.COOKIES.get(conf.cookie_name)
    if token:
        # The cookie goes anyway; if the store is down, the record expires on its own.
        with contextlib.suppress(PortalAuthError):
            get_auth().sessions.revoke(token)
    response = HttpResponseRedirect(conf.signed_out_url or reverse("portalauth:chooser"))
    response.status_code = 303
    delete_session_cookie(response)
    add_never_cache_headers(response)
    return response

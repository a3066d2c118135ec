"""Flask integration: the sign-in pages of a portal as a Flask extension.

::

    from flask import Flask
    from portalauth import Auth
    from portalauth.integrations.flask import PortalAuth, current_identity, login_required

    app = Flask(__name__)
    auth = Auth(["a-long-random-server-key"], "sqlite:///portal.db")
    PortalAuth(app, auth=auth, portal="acme")  # pages under /auth, cookies, CSRF


    @app.get("/")
    @login_required
    def home() -> str:
        return f"Hello {current_identity().name}"

The extension registers a blueprint with the chooser, a generic page for every step of every
enabled strategy (rendered from the flow's :class:`~portalauth.flows.Field` descriptors, so a
third party's strategy needs no template), sign-out, the link pages (magic link, sign-up
confirmation, password set and reset) and the password forms. A ``before_request`` hook validates
the session cookie and puts the session and identity on ``g``.

Security (see ``docs/integrations/flask.md``): the session cookie is HttpOnly, SameSite=Lax, Path=/
without a Domain, Secure outside debug and testing (and then ``__Host-`` prefixed); every POST
carries a CSRF token (a random value signed with the server keys, in a cookie and in the form,
compared in constant time); GET never changes state (a link's GET only shows a confirm page);
``next`` redirects go only to same-origin relative paths; every typed error shows its safe
message, never a traceback.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast
from urllib.parse import quote, unquote, urlsplit

import attrs
import itsdangerous
from flask import Blueprint, Flask, current_app, g, make_response, redirect, request, url_for
from flask import render_template as _render
from markupsafe import Markup
from werkzeug.wrappers import Response

from ..auth import Auth
from ..client import ClientInfo, client_ip_from_forwarded
from ..config import PortalSettings
from ..errors import (
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
    VerificationFailed,
)
from ..flows import Field, SignedIn, Step
from ..records import Identity, SessionRecord
from ..strategies.base import START

__all__ = [
    "CsrfFailed",
    "PortalAuth",
    "current_identity",
    "current_session",
    "error_status",
    "input_attributes",
    "login_required",
    "safe_next",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The integration's own form fields (underscored, so they never meet a strategy's field names).
CSRF_FIELD = "_csrf_token"
_FLOW = "_flow"
_VIEW = "_view"
_NEXT = "_next"
_TOKEN = "_token"  # noqa: S105 (a form field name)
_OWN_FIELDS = frozenset({CSRF_FIELD, _FLOW, _VIEW, _NEXT, _TOKEN})
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NEXT_MAX = 2048

# Password link purposes (``portalauth.strategies.password``).
_PW_INVITE = "password_invite"
_PW_RESET = "password_reset"
_PW_CONFIRM = "signup_confirm"

_LINK_STATES = {
    "superseded": "A newer link was sent to you. Please use the link in the most recent e-mail.",
    "expired": "This link has expired. Please request a new one.",
    "used": "This link was already used. Please request a new one if you still need it.",
    "invalid": "This link is not valid. Please check that you copied all of it.",
}

_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


class CsrfFailed(PortalAuthError):
    """A state-changing request without the CSRF token of this browser (403)."""

    code = "csrf_failed"
    default_message = (
        "This form has expired or did not come from this site. Please reload the page and try "
        "again."
    )


# -- pure helpers ---------------------------------------------------------------------------------


def _clean_path(text: str) -> bool:
    if not text.startswith("/") or text.startswith(("//", "/\\")):
        return False
    if "\\" in text or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        return False
    parts = urlsplit(text)
    return not parts.scheme and not parts.netloc


def safe_next(value: object) -> str | None:
    """``value`` if it is a same-origin relative path (``/cases/42?tab=docs``), else ``None``.

    Accepted: printable ASCII without spaces or backslashes, starting with exactly one ``/``,
    with no scheme or host, and still so after percent-decoding (``/%2F%2Fevil.example`` and
    ``/%5Cevil.example`` are refused), at most 2048 characters. Everything else (``//evil``,
    ``/\\evil``, ``https://evil``, ``javascript:``, control characters, encoded variants) is
    refused, and the caller falls back to its default page (R60).
    """
    if not isinstance(value, str) or not 0 < len(value) <= _NEXT_MAX:
        return None
    if not all(0x21 <= ord(ch) < 0x7F for ch in value):
        return None
    text = value
    for _ in range(4):  # the value, then up to three rounds of percent-decoding
        if not _clean_path(text):
            return None
        decoded = unquote(text)
        if decoded == text:
            return value
        text = decoded
    return None  # still changing after three decodings: nobody needs that


def error_status(exc: PortalAuthError) -> int:
    """The HTTP status a page shows a typed error with."""
    for kind, status in (
        (Throttled, 429),
        (CsrfFailed, 403),
        (VerificationFailed, 401),
        (SessionInvalid, 401),
        (MethodDisabled, 403),
        (SignupDisabled, 403),
        (NotFound, 404),
        (StoreUnavailable, 503),
        (DeliveryFailed, 503),
        (ConfigError, 500),
        (InvalidInput, 400),
        (FlowInvalid, 400),
    ):
        if isinstance(exc, kind):
            return status
    return 400


def input_attributes(
    field: Field, *, value: str = "", invalid: bool = False, autofocus: bool = False
) -> dict[str, str]:
    """The ``<input>`` attributes of a field descriptor, by kind (see :class:`Field`)."""
    attrs_: dict[str, str] = {"id": f"field-{field.name}", "name": field.name, "type": "text"}
    kind = field.kind
    plain = False  # no spellcheck or capitalisation: addresses, codes
    if kind == "email":
        attrs_.update(type="email", autocomplete=field.autocomplete or "email")
        plain = True
    elif kind == "tel":
        attrs_.update(type="tel", autocomplete=field.autocomplete or "tel")
    elif kind == "contact":
        attrs_["autocomplete"] = field.autocomplete or "username"
        plain = True
    elif kind == "code":
        attrs_["autocomplete"] = field.autocomplete or "one-time-code"
        plain = True
    elif kind == "password":
        attrs_.update(type="password", autocomplete=field.autocomplete or "current-password")
    elif kind == "name":
        attrs_["autocomplete"] = field.autocomplete or "name"
    elif field.autocomplete:
        attrs_["autocomplete"] = field.autocomplete
    if field.numeric:
        attrs_["inputmode"] = "numeric"
    if plain:
        attrs_.update(spellcheck="false", autocapitalize="none")
    attrs_["maxlength"] = str(field.max_length)
    attrs_["required"] = "required"
    described = [f"field-{field.name}-help"] if field.help else []
    if invalid:
        attrs_["aria-invalid"] = "true"
        described.insert(0, "form-error")
    if described:
        attrs_["aria-describedby"] = " ".join(described)
    if value and kind not in ("password", "code"):
        attrs_["value"] = value  # never echo secrets back into a page
    if autofocus:
        attrs_["autofocus"] = "autofocus"
    return attrs_


def _request_path() -> str:
    """The current path and query, percent-encoded, for a ``next`` parameter."""
    path = quote(request.script_root + request.path, safe="/:@!$&'()*+,;=-._~")
    query = request.query_string.decode("latin-1")
    return f"{path}?{query}" if query else path


# -- the extension --------------------------------------------------------------------------------


class PortalAuth:
    """The portalauth Flask extension: sign-in pages, session cookie, CSRF, ``login_required``.

    ``auth``: the application's :class:`~portalauth.Auth`. ``portal``: the portal's slug, or a
    callable returning the slug for the current request (one app serving several firms).
    ``url_prefix``: where the pages live; the portal's ``base_url`` should end with it, since
    links are built as ``base_url + "/sign-in/link"`` and so on. ``trusted_proxies``: how many
    reverse proxies append to ``X-Forwarded-For`` in front of the app (0: ignore the header).
    ``cookie_name``: the session cookie (``portalauth_session``, ``portalauth_staff_session``
    with ``staff``); with Secure on it is sent as ``__Host-<name>``. ``cookie_secure``: ``None``
    means Secure unless the app is in debug or testing mode. ``staff``: the sign-in of a staff
    portal (no self sign-up pages, its own cookie and name ``portalauth_staff``). ``home``: where
    to go after signing in when there is no ``next``. ``name``: the blueprint's name, the key in
    ``app.extensions`` and the prefix of the ``g`` attributes (``g.portalauth_identity``).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        auth: Auth,
        portal: str | Callable[[], str | None],
        url_prefix: str = "/auth",
        trusted_proxies: int = 0,
        cookie_name: str | None = None,
        cookie_secure: bool | None = None,
        staff: bool = False,
        home: str = "/",
        name: str | None = None,
    ) -> None:
        if safe_next(home) is None:
            raise ConfigError("home must be a relative path such as '/'.")
        if not isinstance(trusted_proxies, int) or trusted_proxies < 0:
            raise ConfigError("trusted_proxies must be a whole number, 0 or more.")
        self.auth = auth
        self._portal = portal
        self.url_prefix = url_prefix.rstrip("/")
        self.trusted_proxies = trusted_proxies
        self.staff = staff
        self.name = name or ("portalauth_staff" if staff else "portalauth")
        self.cookie_base = (cookie_name or f"{self.name}_session").removeprefix("__Host-")
        self.cookie_secure = cookie_secure
        self.home = home
        self._signer = itsdangerous.Signer(
            auth.keyring.oldest_first, salt="portalauth.flask.csrf", digest_method=hashlib.sha256
        )
        self._views = itsdangerous.URLSafeSerializer(
            auth.keyring.oldest_first,
            salt="portalauth.flask.view",
            signer_kwargs={"digest_method": hashlib.sha256},
        )
        if app is not None:
            self.init_app(app)

    # -- wiring -----------------------------------------------------------------------------------
    def init_app(self, app: Flask) -> None:
        """Register the pages, the session hook and the template helpers on ``app``."""
        bp = Blueprint(
            self.name,
            __name__,
            url_prefix=self.url_prefix or None,
            template_folder="templates",
            static_folder="static/portalauth_flask",
            static_url_path="/static",
        )
        rules: list[tuple[str, str, Callable[..., Any], list[str]]] = [
            ("/", "chooser", self._chooser, ["GET"]),
            ("/sign-in", "sign_in", self._chooser, ["GET"]),
            ("/portal", "share_code_entry", self._share_code_entry, ["GET"]),
            ("/start/<method>", "start", self._start, ["GET", "POST"]),
            ("/step", "step", self._step, ["POST"]),
            ("/sign-out", "sign_out", self._sign_out, ["POST"]),
            ("/sign-in/link", "magic_link", self._magic_link, ["GET", "POST"]),
            ("/sign-up", "sign_up", self._sign_up, ["GET", "POST"]),
            ("/sign-up/confirm", "confirm", self._confirm, ["GET", "POST"]),
            ("/password/forgot", "forgot_password", self._forgot, ["GET", "POST"]),
            ("/password/reset", "reset_password", self._reset, ["GET", "POST"]),
            ("/password/set", "set_password", self._set_password, ["GET", "POST"]),
            ("/password/change", "change_password", self._change_password, ["GET", "POST"]),
        ]
        for rule, endpoint, view, methods in rules:
            bp.add_url_rule(rule, endpoint, view, methods=methods)
        bp.before_request(self._check_csrf_before)
        bp.after_request(self._page_headers)
        bp.register_error_handler(PortalAuthError, self._error_page)
        app.register_blueprint(bp)
        app.before_request(self._load_session)
        app.after_request(self._set_cookies)
        app.context_processor(lambda: {self.name: self})
        app.extensions[self.name] = self

    # -- per request ------------------------------------------------------------------------------
    def portal_slug(self) -> str:
        """The portal of the current request (``NotFound`` if the resolver gives none)."""
        slug = self._portal() if callable(self._portal) else self._portal
        if not slug:
            raise NotFound("No such portal.")
        return slug

    def portal_settings(self) -> PortalSettings:
        return self.auth.portals.get(self.portal_slug())

    def client(self) -> ClientInfo:
        """Who is asking: the address (``X-Forwarded-For`` only through trusted proxies)."""
        ip = client_ip_from_forwarded(
            request.remote_addr, request.headers.get("X-Forwarded-For"), self.trusted_proxies
        )
        return ClientInfo(ip=ip or None, user_agent=request.headers.get("User-Agent"))

    def secure(self) -> bool:
        """Whether cookies are Secure now (``cookie_secure``, else off in debug and testing)."""
        if self.cookie_secure is not None:
            return self.cookie_secure
        return not (current_app.debug or current_app.testing)

    def _cookie(self, base: str) -> str:
        # R58: a Secure cookie gets the __Host- prefix (no Domain, Path=/, Secure, this host).
        return f"__Host-{base}" if self.secure() else base

    @property
    def cookie_name(self) -> str:
        """The session cookie's name as sent now."""
        return self._cookie(self.cookie_base)

    @property
    def csrf_cookie_name(self) -> str:
        return self._cookie(f"{self.name}_csrf")

    def current_session(self) -> SessionRecord | None:
        """The signed-in session of this request (validated by the ``before_request`` hook)."""
        found = g.get(f"{self.name}_session")
        return found if isinstance(found, SessionRecord) else None

    def current_identity(self) -> Identity | None:
        """The signed-in person of this request, or ``None``."""
        found = g.get(f"{self.name}_identity")
        return found if isinstance(found, Identity) else None

    def session_token(self) -> str | None:
        """The session cookie's value, when it validated."""
        return request.cookies.get(self.cookie_name) if self.current_session() else None

    def _load_session(self) -> None:
        setattr(g, f"{self.name}_session", None)
        setattr(g, f"{self.name}_identity", None)
        endpoint = request.endpoint or ""
        if endpoint == "static" or endpoint.endswith(".static"):
            return  # files: no store round trip
        token = request.cookies.get(self.cookie_name)
        if not token:
            return
        try:
            record = self.auth.sessions.validate(token, portal=self.portal_slug())
            identity = self.auth.directory.find(record.identity_id)
            if identity is None or identity.disabled:
                raise SessionInvalid()
        except SessionInvalid:
            setattr(g, f"{self.name}_clear", True)  # the after_request hook clears the cookie
            return
        except PortalAuthError:
            return  # store down, unknown portal: nobody is signed in (fail closed)
        setattr(g, f"{self.name}_session", record)
        setattr(g, f"{self.name}_identity", identity)

    def _set_cookies(self, response: Response) -> Response:
        if g.get(f"{self.name}_clear"):
            self._delete_session_cookie(response)
        new_csrf = g.get(f"{self.name}_csrf_new")
        if isinstance(new_csrf, str):
            response.set_cookie(
                self.csrf_cookie_name,
                new_csrf,
                httponly=True,
                secure=self.secure(),
                samesite="Lax",
                path="/",
            )
        return response

    def _set_session_cookie(self, response: Response, token: str) -> None:
        # A browser-session cookie: the server-side record decides how long it lives.
        response.set_cookie(
            self.cookie_name, token, httponly=True, secure=self.secure(), samesite="Lax", path="/"
        )

    def _delete_session_cookie(self, response: Response) -> None:
        response.delete_cookie(
            self.cookie_name, path="/", secure=self.secure(), httponly=True, samesite="Lax"
        )

    # -- CSRF -------------------------------------------------------------------------------------
    def csrf_token(self) -> str:
        """This browser's CSRF token (set in a cookie with the response if new)."""
        token = g.get(f"{self.name}_csrf")
        if isinstance(token, str):
            return token
        cookie = request.cookies.get(self.csrf_cookie_name, "")
        if cookie and self._signer.validate(cookie):
            token = cookie
        else:
            token = self._signer.sign(secrets.token_urlsafe(32)).decode("ascii")
            setattr(g, f"{self.name}_csrf_new", token)
        setattr(g, f"{self.name}_csrf", token)
        return token

    def csrf_field(self) -> Markup:
        """The hidden input to put in every form that POSTs (``{{ portalauth.csrf_field() }}``)."""
        return Markup('<input type="hidden" name="{}" value="{}">').format(
            CSRF_FIELD, self.csrf_token()
        )

    def csrf_ok(self) -> bool:
        """Whether the request's form carries this browser's CSRF token (exactly once)."""
        cookie = request.cookies.get(self.csrf_cookie_name, "")
        sent = request.form.getlist(CSRF_FIELD)
        if not cookie or len(sent) != 1:
            return False
        same = hmac.compare_digest(
            sent[0].encode("utf-8", "replace"), cookie.encode("utf-8", "replace")
        )
        return same and self._signer.validate(cookie)

    def csrf_protect(self, view: F) -> F:
        """Decorate an application view: refuse a state-changing request without the token."""

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if request.method in _UNSAFE_METHODS and not self.csrf_ok():
                return self._error_page(CsrfFailed())
            return view(*args, **kwargs)

        return cast(F, wrapper)

    def _check_csrf_before(self) -> None:
        if request.method in _UNSAFE_METHODS and not self.csrf_ok():
            raise CsrfFailed()

    # -- decorators and URLs ----------------------------------------------------------------------
    def login_required(self, view: F) -> F:
        """Decorate a view: signed-out requests go to the sign-in page, with a safe ``next``."""

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self.current_session() is None:
                here = _request_path() if request.method in ("GET", "HEAD") else None
                return redirect(self.sign_in_url(next=here), code=302)
            return view(*args, **kwargs)

        return cast(F, wrapper)

    def sign_in_url(self, next: str | None = None) -> str:
        target = safe_next(next)
        if target:
            return url_for(f"{self.name}.chooser", next=target)
        return url_for(f"{self.name}.chooser")

    def sign_out_url(self) -> str:
        return url_for(f"{self.name}.sign_out")

    def stylesheet_url(self) -> str:
        return url_for(f"{self.name}.static", filename="portalauth.css")

    # -- rendering --------------------------------------------------------------------------------
    def template(self, name: str) -> str:
        """A template's name; override ``portalauth_flask/<name>`` in your app's templates."""
        return f"portalauth_flask/{name}"

    def _page(self, name: str, status: int = 200, **context: Any) -> Response:
        try:
            portal_name = self.portal_settings().name
        except PortalAuthError:
            portal_name = ""
        context.setdefault("title", portal_name)
        html = _render(self.template(name), pa=self, portal_name=portal_name, **context)
        response = make_response(html, status)
        return response

    def _message(
        self,
        message: str,
        *,
        title: str,
        status: int = 200,
        links: Iterable[tuple[str, str]] = (),
        error: bool = False,
    ) -> Response:
        response = self._page(
            "message.html", status, title=title, message=message, links=list(links), error=error
        )
        return response

    def _error_page(self, exc: PortalAuthError) -> Response:
        status = error_status(exc)
        response = self._message(
            exc.message,
            title="Something went wrong" if status >= 500 else "Please try again",
            status=status,
            links=[(self._chooser_url(), "Back to sign-in")],
            error=True,
        )
        if isinstance(exc, Throttled):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    def _page_headers(self, response: Response) -> Response:
        if request.endpoint != f"{self.name}.static":
            for header, value in _SECURITY_HEADERS.items():
                response.headers.setdefault(header, value)
        return response

    def _form(
        self,
        *,
        title: str,
        fields: Iterable[Field],
        action: str,
        submit: str,
        hidden: Mapping[str, str] | None = None,
        intro: str | None = None,
        notice: str | None = None,
        sent_to: str | None = None,
        error: PortalAuthError | None = None,
        values: Mapping[str, str] | None = None,
        links: Iterable[tuple[str, str]] = (),
        status: int | None = None,
    ) -> Response:
        values = values or {}
        bad = getattr(error, "field", None)
        listed = list(fields)
        names = {f.name for f in listed}
        inputs = [
            {
                "field": f,
                "attrs": input_attributes(
                    f,
                    value=values.get(f.name, ""),
                    invalid=error is not None and bad == f.name,
                    autofocus=f.name == bad if bad in names else i == 0,
                ),
            }
            for i, f in enumerate(listed)
        ]
        response = self._page(
            "form.html",
            status if status is not None else (error_status(error) if error else 200),
            title=title,
            inputs=inputs,
            action=action,
            submit=submit,
            hidden=dict(hidden or {}),
            intro=intro,
            notice=notice,
            sent_to=sent_to,
            error=error.message if error else None,
            links=list(links),
        )
        if isinstance(error, Throttled):
            response.headers["Retry-After"] = str(error.retry_after)
        return response

    # -- form reading -----------------------------------------------------------------------------
    @staticmethod
    def form_data() -> dict[str, str | list[str]]:
        """The posted fields (the integration's own left out). A repeated field is passed on as a
        list, which the core refuses (R23), never quietly reduced to one value."""
        data: dict[str, str | list[str]] = {}
        for key in request.form:
            if key in _OWN_FIELDS:
                continue
            values = request.form.getlist(key)
            data[key] = values[0] if len(values) == 1 else values
        return data

    @staticmethod
    def _single(name: str) -> str:
        values = request.form.getlist(name)
        if len(values) != 1:
            raise InvalidInput()
        return values[0]

    @staticmethod
    def _value(name: str) -> str | list[str]:
        values = request.form.getlist(name)
        return values[0] if len(values) == 1 else values

    @staticmethod
    def _echo() -> dict[str, str]:
        """Values to put back into a form after an error (single values only)."""
        return {k: v for k, v in PortalAuth.form_data().items() if isinstance(v, str)}

    def _next(self) -> str | None:
        values = request.form.getlist(_NEXT) if request.method == "POST" else []
        if not values:
            values = request.args.getlist("next")
        return safe_next(values[0]) if len(values) == 1 else None

    def _next_hidden(self, target: str | None) -> dict[str, str]:
        return {_NEXT: target} if target else {}

    def _chooser_url(self, target: str | None = None) -> str:
        try:
            return self.sign_in_url(next=target)
        except RuntimeError:  # pragma: no cover - outside a request
            return "/"

    def _label(self, method: str) -> str:
        strategy = self.auth.plugins.strategy(method)
        return str(getattr(strategy, "label", method)) if strategy is not None else method

    def _methods(self) -> list[str]:
        return [s.name for s in self.auth.methods(self.portal_slug())]

    def _signup_open(self, settings: PortalSettings) -> bool:
        return not self.staff and settings.signup_enabled and "password" in settings.methods

    # -- outcomes ---------------------------------------------------------------------------------
    def _outcome(self, result: Step | SignedIn, target: str | None) -> Response:
        if isinstance(result, SignedIn):
            return self._signed_in(result, target)
        if result.done or not result.flow:
            return self._message(
                result.notice or "Done.",
                title=self._label(result.method),
                links=[(self._chooser_url(target), "Back to sign-in")],
            )
        return self._step_form(result, target)

    def _signed_in(self, result: SignedIn, target: str | None) -> Response:
        old = request.cookies.get(self.cookie_name)
        if old and old != result.token:
            self.auth.sessions.revoke(old)  # one session per browser: the new one replaces it
        response = redirect(target or self.home, code=303)
        self._set_session_cookie(response, result.token)
        setattr(g, f"{self.name}_clear", False)
        return response

    def _dump_view(self, step: Step) -> str:
        view = {
            "m": step.method,
            "n": step.next,
            "t": step.notice,
            "s": step.sent_to,
            "f": [list(attrs.astuple(f)) for f in step.fields],
        }
        return str(self._views.dumps(view))

    def _load_view(self, text: str, flow: str) -> Step:
        try:
            view = self._views.loads(text)
            return Step(
                flow=flow,
                method=str(view["m"]),
                next=str(view["n"]),
                fields=[Field(*values) for values in view["f"]],
                notice=view["t"],
                sent_to=view["s"],
            )
        except (itsdangerous.BadData, KeyError, TypeError, ValueError):
            raise FlowInvalid() from None

    def _step_form(
        self,
        step: Step,
        target: str | None,
        *,
        error: PortalAuthError | None = None,
    ) -> Response:
        second = step.next == "second_factor"
        return self._form(
            title="One more step" if second else self._label(step.method),
            fields=step.fields,
            action=url_for(f"{self.name}.step"),
            submit="Continue",
            hidden={
                _FLOW: step.flow or "",
                _VIEW: self._dump_view(step),
                **self._next_hidden(target),
            },
            notice=step.notice,
            sent_to=step.sent_to,
            error=error,
            links=[(url_for(f"{self.name}.start", method=step.method, next=target), "Start again")],
        )

    # -- views: the flow --------------------------------------------------------------------------
    def _chooser(self) -> Response:
        settings = self.portal_settings()
        target = self._next()
        methods = self._methods()
        if len(methods) == 1:
            return redirect(url_for(f"{self.name}.start", method=methods[0], next=target))
        return self._page(
            "chooser.html",
            title="Staff sign-in" if self.staff else "Sign in",
            methods=[
                (url_for(f"{self.name}.start", method=m, next=target), self._label(m))
                for m in methods
            ],
            links=self._password_links(settings),
        )

    def _password_links(self, settings: PortalSettings) -> list[tuple[str, str]]:
        links = []
        if "password" in settings.methods:
            links.append((url_for(f"{self.name}.forgot_password"), "Forgot your password?"))
        if self._signup_open(settings):
            links.append((url_for(f"{self.name}.sign_up"), "Create an account"))
        return links

    def _share_code_entry(self) -> Response:
        """The page share-code invitations point at (``share_code``'s ``sign_in_path``)."""
        return redirect(url_for(f"{self.name}.start", method="share_code"))

    def _start(self, method: str) -> Response:
        slug = self.portal_slug()
        settings = self.auth.portals.get(slug)
        fields = self.auth.fields(slug, method, START)
        target = self._next()
        links = self._password_links(settings) if method == "password" else []
        if len(settings.methods) > 1:
            links.append((self._chooser_url(target), "Other ways to sign in"))
        error: PortalAuthError | None = None
        if request.method == "POST":
            try:
                result = self.auth.start(slug, method, self.form_data(), client=self.client())
            except PortalAuthError as exc:
                error = exc
            else:
                return self._outcome(result, target)
        return self._form(
            title=self._label(method),
            fields=fields,
            action=url_for(f"{self.name}.start", method=method),
            submit="Continue",
            hidden=self._next_hidden(target),
            error=error,
            values=self._echo() if error else None,
            links=links,
        )

    def _step(self) -> Response:
        target = self._next()
        flow = self._single(_FLOW)
        step = self._load_view(self._single(_VIEW), flow)
        try:
            result = self.auth.advance(flow, self.form_data(), client=self.client())
        except FlowInvalid as exc:
            return self._message(
                exc.message,
                title="Please start again",
                status=error_status(exc),
                links=[(self._chooser_url(target), "Start again")],
                error=True,
            )
        except PortalAuthError as exc:
            return self._step_form(step, target, error=exc)
        return self._outcome(result, target)

    def _sign_out(self) -> Response:
        token = request.cookies.get(self.cookie_name)
        if token:
            self.auth.sessions.revoke(token)
        response = redirect(self._next() or self.sign_in_url(), code=303)
        self._delete_session_cookie(response)
        return response

    # -- views: links -----------------------------------------------------------------------------
    def _link_state(self, state: str) -> Response:
        return self._message(
            _LINK_STATES.get(state, _LINK_STATES["invalid"]),
            title="This link cannot be used",
            status=404 if state == "invalid" else 410,
            links=[(self._chooser_url(), "Back to sign-in")],
            error=True,
        )

    def _link_confirm(self, *, title: str, intro: str, submit: str, token: str) -> Response:
        return self._form(
            title=title,
            fields=(),
            action=request.path,  # the token goes in the form, not the URL
            submit=submit,
            hidden={_TOKEN: token},
            intro=intro,
        )

    def _magic_link(self) -> Response:
        slug = self.portal_slug()
        if request.method == "POST":
            result = self.auth.magic_links.redeem(slug, self._single(_TOKEN), client=self.client())
            return self._outcome(result, None)
        token = request.args.get("token", "")
        status = self.auth.magic_links.inspect(slug, token)  # no side effect (R35)
        if not status.valid:
            return self._link_state(status.state)
        return self._link_confirm(
            title="Sign in",
            intro="Use the button to finish signing in on this device.",
            submit=f"Sign in to {self.portal_settings().name}",
            token=token,
        )

    def _password_link(self, purpose: str) -> tuple[str, Response | None]:
        """GET of a password link page: the token and, unless it is usable, the page to show."""
        token = request.args.get("token", "")
        status = self.auth.passwords.inspect(self.portal_slug(), token)
        if status.valid and status.purpose != purpose:
            return token, self._link_state("invalid")
        if not status.valid:
            return token, self._link_state(status.state)
        return token, None

    def _confirm(self) -> Response:
        slug = self.portal_slug()
        if request.method == "POST":
            result = self.auth.passwords.confirm(slug, self._single(_TOKEN), client=self.client())
            return self._outcome(result, None)
        token, refused = self._password_link(_PW_CONFIRM)
        return refused or self._link_confirm(
            title="Confirm your e-mail address",
            intro="Use the button to confirm your address and sign in.",
            submit="Confirm my address",
            token=token,
        )

    def _new_password_field(self, name: str = "password") -> Field:
        settings = self.portal_settings()
        config = self.auth.strategy_config(settings.slug, "password")
        minimum = self.auth.passwords._min_length(settings, config)
        return Field(
            name,
            "password",
            "New password",
            max_length=config.max_length,
            autocomplete="new-password",
            help=f"At least {minimum} characters. A few unrelated words work well.",
        )

    def _password_through_link(self, purpose: str) -> Response:
        slug = self.portal_slug()
        titles = {_PW_INVITE: "Set your password", _PW_RESET: "Choose a new password"}
        field = self._new_password_field()
        if request.method == "POST":
            token = self._single(_TOKEN)
            use = (
                self.auth.passwords.accept_invite
                if purpose == _PW_INVITE
                else (self.auth.passwords.reset)
            )
            try:
                result = use(slug, token, self._value("password"), client=self.client())
            except (InvalidInput, Throttled) as exc:
                return self._form(
                    title=titles[purpose],
                    fields=(field,),
                    action=request.path,
                    submit="Save password",
                    hidden={_TOKEN: token},
                    error=exc,
                )
            if isinstance(result, Step) and result.done:
                return self._message(
                    result.notice or "Your password was changed.",
                    title="Password changed",
                    links=[(self._chooser_url(), "Sign in")],
                )
            return self._outcome(result, None)
        token, refused = self._password_link(purpose)
        return refused or self._form(
            title=titles[purpose],
            fields=(field,),
            action=request.path,
            submit="Save password",
            hidden={_TOKEN: token},
        )

    def _reset(self) -> Response:
        return self._password_through_link(_PW_RESET)

    def _set_password(self) -> Response:
        return self._password_through_link(_PW_INVITE)

    # -- views: password forms --------------------------------------------------------------------
    def _sign_up(self) -> Response:
        settings = self.portal_settings()
        if not self._signup_open(settings):
            raise SignupDisabled()
        fields = (
            Field("name", "name", "Your name", max_length=200),
            Field("email", "email", "E-mail address", autocomplete="email"),
            self._new_password_field(),
        )
        error: PortalAuthError | None = None
        if request.method == "POST":
            try:
                step = self.auth.passwords.sign_up(
                    settings.slug, self.form_data(), client=self.client()
                )
            except PortalAuthError as exc:
                error = exc
            else:
                return self._message(step.notice or "", title="Check your e-mail")
        return self._form(
            title="Create an account",
            fields=fields,
            action=url_for(f"{self.name}.sign_up"),
            submit="Create account",
            error=error,
            values=self._echo() if error else None,
            links=[(self._chooser_url(), "I already have an account")],
        )

    def _forgot(self) -> Response:
        settings = self.portal_settings()
        if "password" not in settings.methods:
            raise MethodDisabled()
        fields = (Field("email", "email", "E-mail address", autocomplete="username"),)
        error: PortalAuthError | None = None
        if request.method == "POST":
            try:
                step = self.auth.passwords.request_reset(
                    settings.slug, self.form_data(), client=self.client()
                )
            except PortalAuthError as exc:
                error = exc
            else:
                return self._message(step.notice or "", title="Check your e-mail")
        return self._form(
            title="Reset your password",
            fields=fields,
            action=url_for(f"{self.name}.forgot_password"),
            submit="Send me a reset link",
            intro="We will e-mail you a link to choose a new password.",
            error=error,
            values=self._echo() if error else None,
            links=[(self._chooser_url(), "Back to sign-in")],
        )

    def _change_password(self) -> Response:
        token = self.session_token()
        if token is None:
            return redirect(self.sign_in_url(next=url_for(f"{self.name}.change_password")))
        fields = (
            Field(
                "current_password",
                "password",
                "Current password",
                max_length=4096,
                autocomplete="current-password",
            ),
            self._new_password_field("new_password"),
        )
        error: PortalAuthError | None = None
        if request.method == "POST":
            try:
                self.auth.passwords.change(
                    token,
                    self._value("current_password"),
                    self._value("new_password"),
                    client=self.client(),
                )
            except PortalAuthError as exc:
                if isinstance(exc, InvalidInput) and exc.field == "password":
                    exc.field = "new_password"
                error = exc
            else:
                return self._message(
                    "Your password was changed. Your other sessions were signed out.",
                    title="Password changed",
                    links=[(self.home, "Continue")],
                )
        return self._form(
            title="Change your password",
            fields=fields,
            action=url_for(f"{self.name}.change_password"),
            submit="Change password",
            error=error,
        )


# -- the app's default extension ------------------------------------------------------------------


def _default() -> PortalAuth:
    found = current_app.extensions.get("portalauth")
    if not isinstance(found, PortalAuth):
        raise RuntimeError("No PortalAuth named 'portalauth' is set up on this app.")
    return found


def current_identity() -> Identity | None:
    """The signed-in person of this request (the app's ``portalauth`` extension)."""
    return _default().current_identity()


def current_session() -> SessionRecord | None:
    """The signed-in session of this request (the app's ``portalauth`` extension)."""
    return _default().current_session()


def login_required(view: F) -> F:
    """Decorate a view so signed-out requests go to the sign-in page of the app's
    ``portalauth`` extension (``next`` brings them back)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return _default().login_required(view)(*args, **kwargs)

    return cast(F, wrapper)

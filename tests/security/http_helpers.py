"""Driving the two framework integrations as a browser would, and what an outsider sees of it.

- :class:`FlaskBrowser` and :class:`DjangoBrowser` put one :class:`~portalauth.Auth` behind the
  integration's pages (Flask: :class:`portalauth.integrations.flask.PortalAuth` on a bare app;
  Django: the example project's settings and URLs, configured once by
  ``tests/integrations/test_django.py``, with ``PORTALAUTH`` pointed at the given ``Auth``), with
  Secure cookies over HTTPS, and read every response into an :class:`Observed`.
- :func:`normalise_body`, :func:`normalise_location`, :func:`cookie_shape` and
  :func:`header_shape` are the normaliser: they replace per-request random values (and only
  those, see ``BODY_RULES``) so that two responses compare equal exactly when an outsider could
  not tell them apart.
- :class:`HasherSpy` counts password-hashing work through ``PasswordHasher``'s methods.
"""

from __future__ import annotations

import html
import importlib
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import attrs
import pytest

from portalauth import Auth, PasswordHasher

from .helpers import PORTAL

# -- the normaliser -----------------------------------------------------------------------------
#: Per-request random values in page bodies, replaced by ``{kind:length}`` (the length is kept,
#: so a token of another length, which an outsider could see, still shows):
#:
#: - ``csrf``: the CSRF token in every form: Flask's ``_csrf_token`` (32 random bytes, signed,
#:   new per browser) and Django's ``csrfmiddlewaretoken`` (masked afresh on every render).
#: - ``flow``: the flow token of a step page (Flask ``_flow``, Django ``flow``): a signed list of
#:   portal, method, step, the challenge id (random) and a random nonce, with a timestamp.
#: - ``token``: a ``token=`` / ``flow=`` query parameter in a URL (links, ``Location``).
#:
#: Deliberately *not* normalised: Flask's ``_view`` (a deterministic signature of what the step
#: page shows: method, notice, ``sent_to`` and fields; it is equal exactly when those are), the
#: ``next`` field, error messages, notices, input values other than the typed identifier (below).
BODY_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("csrf", re.compile(r'(name="(?:_csrf_token|csrfmiddlewaretoken)" value=")([^"]*)(")')),
    ("flow", re.compile(r'(name="_?flow" value=")([^"]*)(")')),
    ("token", re.compile(r"([?&](?:amp;)?(?:token|_?flow)=)([^&\"'#\s<]*)()")),
)
#: An RFC 9110 HTTP-date (``Expires`` and cookie ``expires=``): Django computes ``Expires`` from
#: the wall clock, not the injected one, so it is compared by presence only.
HTTP_DATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2}[ -](?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov"
    r"|Dec)[ -]\d{2,4} \d{2}:\d{2}:\d{2} GMT"
)
TYPED = "{typed}"


def _placeholder(kind: str) -> Callable[[re.Match[str]], str]:
    return lambda m: f"{m[1]}{{{kind}:{len(m[2])}}}{m[3]}"


def _placeholders(text: str) -> str:
    for kind, pattern in BODY_RULES:
        text = pattern.sub(_placeholder(kind), text)
    return text


def normalise_body(body: str, typed: Iterable[str] = ()) -> str:
    """``body`` with the random values of ``BODY_RULES`` and the identifiers the client typed
    replaced by placeholders.

    A typed identifier (an e-mail address, a phone number, a share code) is echoed back into the
    form after an error: that is the client's own input, not a fact about an account, so the
    exact typed string (raw and HTML-escaped) becomes ``{typed}``. Only that exact string: the
    address in any other spelling (the stored one, a masked ``j***@example.com``) stays as it is
    and fails the comparison, and so does a ``{typed}`` in a place the other response lacks. The
    harness also types known and unknown identifiers of the same length and shape, so the raw
    ``Content-Length`` (compared unnormalised) is equal too.
    """
    text = _placeholders(body)
    for value in sorted({v for v in typed if v}, key=len, reverse=True):
        for form in {value, html.escape(value, quote=True)}:
            text = text.replace(form, TYPED)
    return text


def normalise_location(location: str | None) -> str | None:
    return None if location is None else _placeholders(location)


def header_shape(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Every response header but ``Set-Cookie`` (see :func:`cookie_shape`) and ``Location`` (see
    :func:`normalise_location`), names lowercased, HTTP-dates replaced, sorted."""
    shaped = [
        (name.lower(), HTTP_DATE.sub("{http-date}", value))
        for name, value in headers
        if name.lower() not in ("set-cookie", "location")
    ]
    return tuple(sorted(shaped))


def cookie_shape(header: str) -> tuple[str, ...]:
    """A ``Set-Cookie`` header without its value: the name, the value's length (an empty value
    deletes the cookie), and every attribute (``Secure``, ``HttpOnly``, ``SameSite``, ``Path``,
    ``Domain``, ``Max-Age`` with their values; ``Expires`` by presence only)."""
    first, *rest = [part.strip() for part in header.split(";")]
    name, _, value = first.partition("=")
    shaped = [f"name={name}", f"value-length={len(value)}"]
    for attribute in rest:
        key, sep, val = attribute.partition("=")
        key = key.strip().lower()
        if not key:
            continue
        if key == "expires":
            shaped.append("expires")
        else:
            shaped.append(f"{key}={val.strip()}" if sep else key)
    return (shaped[0], shaped[1], *sorted(shaped[2:]))


@attrs.frozen
class Observed:
    """One response as an outsider sees it, normalised."""

    request: str
    status: int
    headers: tuple[tuple[str, str], ...]
    cookies: tuple[tuple[str, ...], ...]
    location: str | None
    body: str

    @property
    def retry_after(self) -> str | None:
        return dict(self.headers).get("retry-after")


@attrs.frozen
class Page:
    """A response: what is compared (``observed``) and the raw HTML (to fill in its form)."""

    observed: Observed
    html: str = attrs.field(repr=False)

    @property
    def status(self) -> int:
        return self.observed.status


_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
_ACTION = re.compile(r'<form[^>]* method="post" action="([^"]+)"')


def hidden_fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}


def form_action(page: str) -> str | None:
    """Where the page's main (last) form posts, if it has one."""
    found = _ACTION.findall(page)
    return html.unescape(found[-1]) if found else None


# -- browsers -----------------------------------------------------------------------------------
#: A response as read from a framework's test client: status, body, headers, the ``Set-Cookie``
#: headers and the ``Location``.
Raw = tuple[int, str, list[tuple[str, str]], list[str], str | None]


@attrs.frozen
class Routes:
    """Where an integration serves its pre-authentication pages."""

    start: str  # with {method}
    sign_up: str
    forgot: str

    def start_of(self, method: str) -> str:
        return self.start.format(method=method)


class Browser:
    """One browser (its own cookie jar) on an integration's pages."""

    name = ""
    routes: Routes
    csrf_field = ""
    #: a form page GET to obtain a CSRF token from, when the page under test has no form
    primer = "staff_pin"

    def __init__(self) -> None:
        #: the identifiers typed in this run, replaced by ``{typed}`` in bodies
        self.typed: tuple[str, ...] = ()
        self.csrf: str | None = None
        self.pages: list[Page] = []

    # -- per framework ----------------------------------------------------------------------
    def _get(self, path: str) -> Raw:
        raise NotImplementedError

    def _post(self, path: str, data: Mapping[str, str]) -> Raw:
        raise NotImplementedError

    def close(self) -> None:
        return None

    # -- shared -----------------------------------------------------------------------------
    def _page(
        self,
        request: str,
        raw: Raw,
    ) -> Page:
        status, body, headers, cookies, location = raw
        token = hidden_fields(body).get(self.csrf_field)
        if token:
            self.csrf = token
        observed = Observed(
            request=request,
            status=status,
            headers=header_shape(headers),
            cookies=tuple(sorted(cookie_shape(c) for c in cookies)),
            location=normalise_location(location),
            body=normalise_body(body, self.typed),
        )
        page = Page(observed, body)
        self.pages.append(page)
        return page

    def get(self, path: str) -> Page:
        return self._page(f"GET {path}", self._get(path))

    def post(self, path: str, data: Mapping[str, str]) -> Page:
        return self._page(f"POST {path}", self._post(path, data))

    def submit(self, page: Page, fields: Mapping[str, str], *, path: str | None = None) -> Page:
        """Post ``page``'s form (its hidden fields, CSRF token included, plus ``fields``); a page
        without a form (a refusal) is posted to ``path`` with this browser's CSRF token, got
        from a form page first if need be, as a hand-made request would be."""
        action = form_action(page.html)
        if action is not None:
            return self.post(action, {**hidden_fields(page.html), **fields})
        assert path is not None, "the page has no form and no path was given"
        if self.csrf is None:
            self.get(self.routes.start_of(self.primer))
        assert self.csrf is not None
        return self.post(path, {self.csrf_field: self.csrf, **fields})


class FlaskBrowser(Browser):
    """``PortalAuth`` (``/auth``) on a bare Flask app, Secure cookies over HTTPS."""

    name = "flask"
    routes = Routes(
        start="/auth/start/{method}", sign_up="/auth/sign-up", forgot="/auth/password/forgot"
    )
    csrf_field = "_csrf_token"
    base_url = "https://localhost"

    def __init__(self, auth: Auth) -> None:
        super().__init__()
        from flask import Flask

        from portalauth.integrations.flask import PortalAuth

        app = Flask(__name__)
        app.testing = True  # exceptions surface in the test (cookie_secure keeps cookies Secure)
        PortalAuth(app, auth=auth, portal=PORTAL, cookie_secure=True)
        self.client = app.test_client()

    @staticmethod
    def _read(response: Any) -> Raw:
        return (
            response.status_code,
            response.get_data(as_text=True),
            list(response.headers.items()),
            response.headers.getlist("Set-Cookie"),
            response.headers.get("Location"),
        )

    def _get(self, path: str) -> Raw:
        return self._read(self.client.get(path, base_url=self.base_url))

    def _post(self, path: str, data: Mapping[str, str]) -> Raw:
        return self._read(self.client.post(path, data=dict(data), base_url=self.base_url))


def django_configured() -> None:
    """Configure Django as the integration suite does (the example project's apps, middleware
    and URLs), importing that module once; skip when Django is not installed."""
    pytest.importorskip("django")
    importlib.import_module("integrations.test_django")


class DjangoBrowser(Browser):
    """The Django pages (the example project's URLs, which include the app at the root),
    ``PORTALAUTH`` pointed at ``auth`` with Secure cookies, requests over HTTPS with the Referer
    a browser sends (Django's CSRF check requires it on HTTPS)."""

    name = "django"
    routes = Routes(start="/sign-in/{method}", sign_up="/sign-up", forgot="/password/forgot")
    csrf_field = "csrfmiddlewaretoken"
    origin = "https://testserver"

    def __init__(self, auth: Auth) -> None:
        super().__init__()
        django_configured()
        from django.test import Client, override_settings

        self._override = override_settings(
            PORTALAUTH={"AUTH": auth, "PORTAL": PORTAL, "COOKIE_SECURE": True}
        )
        self._override.enable()
        self.client = Client(enforce_csrf_checks=True)
        self.referer = self.origin + "/"

    def close(self) -> None:
        self._override.disable()

    @staticmethod
    def _read(response: Any) -> Raw:
        return (
            response.status_code,
            response.content.decode(),
            list(response.headers.items()),
            [morsel.OutputString() for morsel in response.cookies.values()],
            response.headers.get("Location"),
        )

    def _get(self, path: str) -> Raw:
        self.referer = self.origin + path
        return self._read(self.client.get(path, secure=True))

    def _post(self, path: str, data: Mapping[str, str]) -> Raw:
        return self._read(
            self.client.post(path, dict(data), secure=True, HTTP_REFERER=self.referer)
        )


BROWSERS: dict[str, Callable[[Auth], Browser]] = {
    "flask": FlaskBrowser,
    "django": DjangoBrowser,
}


def integration_available(name: str) -> None:
    """Skip unless the integration's framework is installed."""
    if name == "django":
        django_configured()
    else:
        pytest.importorskip("flask")


@contextmanager
def browsing(name: str, auth: Auth) -> Iterator[Browser]:
    browser = BROWSERS[name](auth)
    try:
        yield browser
    finally:
        browser.close()


# -- instruments --------------------------------------------------------------------------------
class HasherSpy:
    """Counts password-hashing work through ``PasswordHasher.hash``, ``verify`` and
    ``dummy_verify`` (patched on the class). Each *outermost* call is one argon2 computation:
    ``verify`` falls back to ``dummy_verify`` internally, which is not counted twice."""

    METHODS = ("hash", "verify", "dummy_verify")

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._local = threading.local()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> HasherSpy:
        for name in self.METHODS:
            monkeypatch.setattr(
                PasswordHasher, name, self._wrap(name, getattr(PasswordHasher, name))
            )
        return self

    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        spy = self

        def counted(hasher: PasswordHasher, *args: Any, **kwargs: Any) -> Any:
            depth = getattr(spy._local, "depth", 0)
            if depth == 0:
                spy.calls.append(name)
            spy._local.depth = depth + 1
            try:
                return original(hasher, *args, **kwargs)
            finally:
                spy._local.depth = depth

        return counted

    def since(self, mark: int) -> tuple[str, ...]:
        return tuple(self.calls[mark:])

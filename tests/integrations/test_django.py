"""The Django integration through its pages, on the example project (examples/django_portal).

Django settings are configured once for this module (if nothing configured them before), with the
example's apps, middleware and URLs; every test then points ``PORTALAUTH`` at its own in-memory
``Auth`` (seeded like the demo) through ``override_settings``, so no state outlives a test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

pytest.importorskip("django")

import django
from django.conf import settings

from portalauth import Auth, Field, hookimpl

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "django_portal"
BASE = "http://testserver"


def _configure() -> None:
    if settings.configured:
        return
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    settings.configure(
        DEBUG=False,
        SECRET_KEY="django-test-secret-key-for-portalauth-tests",
        ALLOWED_HOSTS=["testserver", "127.0.0.1"],
        INSTALLED_APPS=["demo_site", "portalauth.integrations.django"],
        MIDDLEWARE=[
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "portalauth.integrations.django.middleware.PortalAuthMiddleware",
        ],
        ROOT_URLCONF="demo_site.urls",
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
            }
        ],
        DATABASES={},
        USE_TZ=True,
        LOGGING_CONFIG=None,  # leave the process's logging alone
        PORTALAUTH={"AUTH": "demo_site.portal.get_auth", "PORTAL": "acme"},
    )
    django.setup()


_configure()

from demo_site import portal as demo  # noqa: E402
from django.test import Client, RequestFactory, override_settings  # noqa: E402

from portalauth.integrations.django.utils import safe_next  # noqa: E402

CLIENT_COOKIE = "__Host-portalauth"


class Boom:
    """A strategy that fails with an unexpected exception: the core fails closed."""

    name = "boom"
    label = "A broken method"

    def configure(self, raw: Any) -> None:
        return None

    def fields(self, step: str, config: Any) -> tuple[Field, ...]:
        return (Field("anything", "text", "Anything"),)

    def start(self, ctx: Any) -> Any:
        raise RuntimeError("secret internals /etc/passwd")

    def advance(self, ctx: Any, state: Any) -> Any:
        raise RuntimeError("secret internals")


class BoomPlugin:
    @hookimpl
    def portalauth_add_strategies(self) -> list[object]:
        return [Boom()]


@pytest.fixture
def auth(make_auth: Callable[..., Auth]) -> Auth:
    from conftest import EmailCodePlugin  # the tests' third-party strategy

    built = make_auth("memory", plugins=[EmailCodePlugin(), BoomPlugin()])
    demo.seed(built, BASE)
    return built


@pytest.fixture
def conf(auth: Auth) -> Iterator[dict[str, Any]]:
    values = {"AUTH": auth, "PORTAL": "acme", "COOKIE_SECURE": True, "HOME_URL": "/home"}
    with override_settings(PORTALAUTH=values):
        yield values


@pytest.fixture
def client(conf: dict[str, Any]) -> Client:
    return Client(enforce_csrf_checks=True)


# -- helpers --------------------------------------------------------------------------------


def csrf(html: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def hidden(html: str, name: str) -> str:
    found = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden {name}"
    return found.group(1)


def party(auth: Auth, name: str) -> Any:
    return next(p for p in auth.directory.list("acme") if p.name == name)


def code_for(auth: Auth, identity_id: str, portal: str = "acme") -> str:
    message = auth.outbox.latest(portal, identity=identity_id)
    assert message is not None
    found = re.search(r"\b(\d{5,10})\b", message.text)
    assert found
    return found.group(1)


def link_for(auth: Auth, identity_id: str, path: str) -> str:
    for message in auth.outbox.messages("acme", identity=identity_id):
        found = re.search(
            rf"{re.escape(BASE)}({re.escape(path)}\?token=[A-Za-z0-9_%\-]+)", message.text
        )
        if found:
            return found.group(1)
    raise AssertionError(f"no {path} link")


def text(response: Any) -> str:
    return response.content.decode()


def post_form(client: Client, url: str, data: dict[str, Any], page: str | None = None) -> Any:
    """Submit a form the way a browser does: with the page's CSRF token."""
    page = page if page is not None else text(client.get(url))
    return client.post(url, {"csrfmiddlewaretoken": csrf(page), **data})


def start(client: Client, method: str, data: dict[str, Any], query: str = "") -> Any:
    url = f"/sign-in/{method}{query}"
    page = text(client.get(url))
    extra = {"next": hidden(page, "next")} if 'name="next"' in page else {}
    return client.post(f"/sign-in/{method}", {"csrfmiddlewaretoken": csrf(page), **extra, **data})


def advance(client: Client, step_page: Any, data: dict[str, Any]) -> Any:
    html = text(step_page)
    form = {"csrfmiddlewaretoken": csrf(html), "flow": hidden(html, "flow"), **data}
    if 'name="next"' in html:
        form["next"] = hidden(html, "next")
    return client.post("/sign-in/step", form)


def assert_signed_in(client: Client, name: str, response: Any, landing: str = "/home") -> None:
    assert response.status_code == 303, text(response)
    assert response["Location"] == landing
    home = client.get("/home")
    assert home.status_code == 200
    assert f"Welcome, {name}" in text(home)


# -- the chooser and generic rendering --------------------------------------------------------


def test_chooser_lists_every_enabled_method(client: Client, auth: Auth) -> None:
    page = client.get("/sign-in")
    assert page.status_code == 200
    html = text(page)
    for strategy in auth.methods("acme"):
        assert f'href="/sign-in/{strategy.name}"' in html
        assert str(strategy.label) in html
    assert "Forgotten your password?" in html
    assert "Create an account" not in html  # sign-up is off in the demo portal
    assert page["Cache-Control"].startswith("max-age=0") or "no-store" in page["Cache-Control"]


def test_code_fields_are_rendered_for_one_time_codes(client: Client) -> None:
    html = text(client.get("/sign-in/staff_pin"))
    pin = re.search(r'<input id="pa-pin"[^>]*>', html)
    assert pin
    tag = pin.group(0)
    assert 'autocomplete="one-time-code"' in tag and 'inputmode="numeric"' in tag
    assert 'type="password"' not in tag and "required" in tag
    assert '<label for="pa-pin">PIN</label>' in html
    assert '<label for="pa-email">E-mail address</label>' in html


def test_a_third_party_strategy_renders_without_a_template(client: Client, auth: Auth) -> None:
    auth.portals.update("acme", methods=auth.portals.get("acme").methods | {"email_code"})
    jane = party(auth, "Jane Roe")
    step = start(client, "email_code", {"email": "jane.roe@example.com"})
    assert step.status_code == 200
    assert 'autocomplete="one-time-code"' in text(step)
    done = advance(client, step, {"code": code_for(auth, jane.id)})
    assert_signed_in(client, "Jane Roe", done)


# -- each strategy through the pages -----------------------------------------------------------


def test_share_code_sign_in_scopes_the_session_to_the_case(client: Client, auth: Auth) -> None:
    jane = party(auth, "Jane Roe")
    issued = auth.share_codes.issue(jane, scope="case-42", send=False)
    step = start(client, "share_code", {"share_code": issued.code.lower()})
    assert step.status_code == 200
    assert "confirmation code" in text(step).lower()
    done = advance(client, step, {"code": code_for(auth, jane.id)})
    assert_signed_in(client, "Jane Roe", done)
    home = text(client.get("/home"))
    assert "case-42: Roe v. Doe" in home and "share_code" in home


def test_contact_otp_sign_in_by_phone(client: Client, auth: Auth) -> None:
    sam = party(auth, "Sam Poe")
    step = start(client, "contact_otp", {"contact": "202.555.0143"})
    assert step.status_code == 200
    done = advance(client, step, {"code": code_for(auth, sam.id)})
    assert_signed_in(client, "Sam Poe", done)


def test_staff_pin_sign_in(client: Client, auth: Auth) -> None:
    pat = party(auth, "Pat Lee")
    pin = auth.pins.issue(pat)
    done = start(client, "staff_pin", {"email": "pat.lee@example.com", "pin": pin.pin})
    assert_signed_in(client, "Pat Lee", done)


def test_password_sign_in(client: Client) -> None:
    done = start(
        client, "password", {"email": "pat.lee@example.com", "password": demo.CLIENT_PASSWORD}
    )
    assert_signed_in(client, "Pat Lee", done)


def test_magic_link_sign_in_with_the_emailed_code(client: Client, auth: Auth) -> None:
    mia = party(auth, "Mia Chen")
    step = start(client, "magic_link", {"email": "mia.chen@example.com"})
    assert "Or open the link in the e-mail." in text(step)
    done = advance(client, step, {"code": code_for(auth, mia.id)})
    assert_signed_in(client, "Mia Chen", done)


def test_magic_link_get_and_head_have_no_side_effect_and_post_redeems(
    client: Client, auth: Auth
) -> None:
    mia = party(auth, "Mia Chen")
    link = link_for(auth, mia.id, "/sign-in/link")  # the seed's invitation
    scanner = Client()
    for _ in range(3):
        seen = scanner.get(link)
        assert seen.status_code == 200
        assert CLIENT_COOKIE not in seen.cookies
        # The token never leaves the site in a Referer; "same-origin" rather than "no-referrer"
        # because under no-referrer browsers post the page's form with "Origin: null", which
        # Django's CSRF check refuses.
        assert seen["Referrer-Policy"] == "same-origin"
        assert "no-store" in seen["Cache-Control"]
        assert scanner.head(link).status_code == 200
    token = link.split("token=", 1)[1]
    assert auth.magic_links.inspect("acme", token).valid
    page = client.get(link)
    assert 'name="token"' in text(page)
    done = client.post("/sign-in/link", {"csrfmiddlewaretoken": csrf(text(page)), "token": token})
    assert_signed_in(client, "Mia Chen", done)
    assert "token" not in done["Location"]
    again = client.get(link)
    assert "already used" in text(again)


def test_a_superseded_link_says_a_newer_one_was_sent(client: Client, auth: Auth) -> None:
    mia = party(auth, "Mia Chen")
    first = link_for(auth, mia.id, "/sign-in/link")
    auth.magic_links.invite(mia)
    page = client.get(first)
    assert "A newer link was sent" in text(page)
    assert 'name="token"' not in text(page)
    posted = client.post(
        "/sign-in/link",
        {
            "csrfmiddlewaretoken": csrf(text(client.get("/password/forgot"))),
            "token": first.split("=")[1],
        },
    )
    assert posted.status_code == 400
    assert "newer code or link" in text(posted)
    assert CLIENT_COOKIE not in posted.cookies


def test_sign_up_with_confirmation_link(client: Client, auth: Auth) -> None:
    assert client.get("/sign-up").status_code == 403  # off in the demo portal
    auth.portals.update("acme", signup_enabled=True)
    assert "Create an account" in text(client.get("/sign-in"))
    done = post_form(
        client,
        "/sign-up",
        {"name": "Lee Park", "email": "lee.park@example.com", "password": "river stone cactus 9"},
    )
    assert done.status_code == 200 and "confirm your address" in text(done)
    lee = auth.directory.find_by_email("acme", "lee.park@example.com")
    assert lee is not None
    link = link_for(auth, lee.id, "/sign-up/confirm")
    page = client.get(link)
    assert CLIENT_COOKIE not in page.cookies
    confirmed = client.post(
        "/sign-up/confirm",
        {"csrfmiddlewaretoken": csrf(text(page)), "token": hidden(text(page), "token")},
    )
    assert_signed_in(client, "Lee Park", confirmed)


def test_forgotten_password_then_reset_link(client: Client, auth: Auth) -> None:
    pat = party(auth, "Pat Lee")
    asked = post_form(client, "/password/forgot", {"email": "pat.lee@example.com"})
    assert asked.status_code == 200 and "reset the password" in text(asked)
    unknown = post_form(client, "/password/forgot", {"email": "nobody@example.com"})
    assert text(unknown).count("reset the password") == text(asked).count("reset the password")
    link = link_for(auth, pat.id, "/password/reset")
    page = client.get(link)
    assert 'autocomplete="new-password"' in text(page)
    token = hidden(text(page), "token")
    mismatch = client.post(
        "/password/reset",
        {
            "csrfmiddlewaretoken": csrf(text(page)),
            "token": token,
            "password": "new long password one",
            "password_repeat": "new long password two",
        },
    )
    assert mismatch.status_code == 400 and "not the same" in text(mismatch)
    done = client.post(
        "/password/reset",
        {
            "csrfmiddlewaretoken": csrf(text(page)),
            "token": token,
            "password": "new long password one",
            "password_repeat": "new long password one",
        },
    )
    assert done.status_code == 200 and "Please sign in with your new password" in text(done)
    signed = start(
        client, "password", {"email": "pat.lee@example.com", "password": "new long password one"}
    )
    assert_signed_in(client, "Pat Lee", signed)


def test_set_password_invitation_signs_in(client: Client, auth: Auth) -> None:
    jane = party(auth, "Jane Roe")
    auth.passwords.invite(jane)
    link = link_for(auth, jane.id, "/password/set")
    assert "Choose your password" in text(client.get(link))
    # A reset or confirmation page does not take an invitation's token.
    assert "not valid" in text(client.get(link.replace("/password/set", "/password/reset")))
    page = text(client.get(link))
    done = client.post(
        "/password/set",
        {
            "csrfmiddlewaretoken": csrf(page),
            "token": hidden(page, "token"),
            "password": "harbor violet engine 5",
            "password_repeat": "harbor violet engine 5",
        },
    )
    assert_signed_in(client, "Jane Roe", done)


def test_change_password_needs_the_current_one(client: Client, auth: Auth) -> None:
    assert client.get("/password/change").status_code == 302  # signed out
    start(client, "password", {"email": "pat.lee@example.com", "password": demo.CLIENT_PASSWORD})
    wrong = post_form(
        client,
        "/password/change",
        {
            "current_password": "not my password at all",
            "password": "another fine long one",
            "password_repeat": "another fine long one",
        },
    )
    assert wrong.status_code == 400 and "current password is not correct" in text(wrong)
    done = post_form(
        client,
        "/password/change",
        {
            "current_password": demo.CLIENT_PASSWORD,
            "password": "another fine long one",
            "password_repeat": "another fine long one",
        },
    )
    assert done.status_code == 200 and "Your password was changed" in text(done)
    assert client.get("/home").status_code == 200  # this session stays


def test_second_factor_step_after_the_method(client: Client, auth: Auth) -> None:
    auth.portals.update("acme", second_factor="email_code")
    pat = party(auth, "Pat Lee")
    step = start(
        client, "password", {"email": "pat.lee@example.com", "password": demo.CLIENT_PASSWORD}
    )
    assert step.status_code == 200 and CLIENT_COOKIE not in step.cookies
    assert client.get("/home").status_code == 302  # partly signed in is not signed in
    wrong = advance(client, step, {"code": "000000"})
    assert wrong.status_code == 400 and 'name="flow"' in text(wrong)  # the same step again
    assert 'inputmode="numeric"' in text(wrong)
    done = advance(client, wrong, {"code": code_for(auth, pat.id)})
    assert_signed_in(client, "Pat Lee", done)


# -- sessions, sign-out, private pages ---------------------------------------------------------


def test_private_page_refused_when_signed_out(client: Client) -> None:
    response = client.get("/home")
    assert response.status_code == 302
    assert response["Location"] == "/sign-in?next=%2Fhome"


def test_next_is_kept_through_the_flow(client: Client, auth: Auth) -> None:
    pat = party(auth, "Pat Lee")
    pin = auth.pins.issue(pat)
    done = start(
        client, "staff_pin", {"email": "pat.lee@example.com", "pin": pin.pin}, "?next=/home%3Fx%3D1"
    )
    assert done.status_code == 303 and done["Location"] == "/home?x=1"


def test_sign_out_is_post_only_and_ends_the_session(client: Client, auth: Auth) -> None:
    start(client, "password", {"email": "pat.lee@example.com", "password": demo.CLIENT_PASSWORD})
    token = client.cookies[CLIENT_COOKIE].value
    assert client.get("/sign-out").status_code == 405
    assert client.get("/home").status_code == 200
    out = post_form(client, "/sign-out", {}, page=text(client.get("/home")))
    assert out.status_code == 303 and out["Location"] == "/sign-in"
    assert out.cookies[CLIENT_COOKIE]["max-age"] == 0
    assert client.get("/home").status_code == 302
    replay = Client()
    replay.cookies[CLIENT_COOKIE] = token
    assert replay.get("/home").status_code == 302  # the record is gone (R53)


def test_csrf_refused_without_token(client: Client, auth: Auth) -> None:
    client.get("/sign-in/staff_pin")  # has the CSRF cookie, but posts no token
    pin = auth.pins.issue(party(auth, "Pat Lee"))
    refused = client.post("/sign-in/staff_pin", {"email": "pat.lee@example.com", "pin": pin.pin})
    assert refused.status_code == 403
    assert CLIENT_COOKIE not in refused.cookies
    assert auth.pins.status(party(auth, "Pat Lee")).outstanding
    start(client, "password", {"email": "pat.lee@example.com", "password": demo.CLIENT_PASSWORD})
    assert client.post("/sign-out").status_code == 403
    assert client.get("/home").status_code == 200


def test_session_cookie_flags(client: Client) -> None:
    done = start(
        client, "password", {"email": "pat.lee@example.com", "password": demo.CLIENT_PASSWORD}
    )
    morsel = done.cookies[CLIENT_COOKIE]
    assert morsel["httponly"] and morsel["secure"]
    assert morsel["samesite"] == "Lax" and morsel["path"] == "/" and not morsel["domain"]
    header = morsel.output()
    assert "HttpOnly" in header and "Secure" in header and "SameSite=Lax" in header


def test_insecure_cookie_only_when_configured(conf: dict[str, Any]) -> None:
    with override_settings(PORTALAUTH={**conf, "COOKIE_SECURE": False}):
        client = Client(enforce_csrf_checks=True)
        done = start(
            client, "password", {"email": "pat.lee@example.com", "password": demo.CLIENT_PASSWORD}
        )
        morsel = done.cookies["portalauth"]
        assert morsel["httponly"] and not morsel["secure"] and morsel["samesite"] == "Lax"


def test_an_invalid_cookie_is_deleted(conf: dict[str, Any]) -> None:
    client = Client()
    client.cookies[CLIENT_COOKIE] = "forged.cookie"
    response = client.get("/sign-in")
    assert response.status_code == 200
    assert response.cookies[CLIENT_COOKIE]["max-age"] == 0


def test_signing_in_again_ends_the_previous_session(client: Client) -> None:
    start(client, "password", {"email": "pat.lee@example.com", "password": demo.CLIENT_PASSWORD})
    first = client.cookies[CLIENT_COOKIE].value
    start(client, "password", {"email": "pat.lee@example.com", "password": demo.CLIENT_PASSWORD})
    assert client.cookies[CLIENT_COOKIE].value != first
    replay = Client()
    replay.cookies[CLIENT_COOKIE] = first
    assert replay.get("/home").status_code == 302


# -- redirects -----------------------------------------------------------------------------------

HOSTILE_NEXT = [
    "http://example.com",
    "http:///example.com",
    "https://example.com",
    "ftp://example.com",
    r"\\example.com",
    r"\\\example.com",
    r"/\\/example.com",
    r"\\//example.com",
    r"/\/example.com",
    r"\/example.com",
    r"/\example.com",
    r"http:/\//example.com",
    r"http:\/example.com",
    r"http:/\example.com",
    'javascript:alert("XSS")',
    "\njavascript:alert(x)",
    "java\nscript:alert(x)",
    "\x08//example.com",
    r"http://otherserver\@example.com",
    r"http:\\testserver\@example.com",
    r"http://testserver\me:pass@example.com",
    r"http:\\testserver\confirm\me@example.com",
    "http:999999999",
    "ftp:9999999999",
    "\n",
    "http://[2001:cdba:0000:0000:0000:0000:3257:9652/",
    "http://2001:cdba:0000:0000:0000:0000:3257:9652]/",
    "//evil.com",
    "////evil.com",
    "/%2F%2Fevil.com",
    "/%5Cevil.com",
    "https://testserver.evil.com",
    "https://testserver@evil.com",
    "https://evil.com#@testserver",
    "data:text/html,<script>alert(1)</script>",
    "/\t/evil.com",
    "%0d%0aLocation:%20http://evil.com",
    "/home%0d%0aSet-Cookie:x=1",
    "\\\\\\github.com",
    "/\u2028/evil.com",
]


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_hostile_next_is_refused(conf: dict[str, Any], target: str) -> None:
    request = RequestFactory().get("/sign-in")
    assert safe_next(request, target) is None


@pytest.mark.parametrize(
    "target", ["/home", "/home?x=1#frag", "/staff/parties/new", "http://testserver/home"]
)
def test_same_origin_next_is_kept(conf: dict[str, Any], target: str) -> None:
    assert safe_next(RequestFactory().get("/sign-in"), target) == target


def test_hostile_next_lands_on_the_home_page(client: Client, auth: Auth) -> None:
    pat = party(auth, "Pat Lee")
    for target in ("//evil.com", r"/\evil.com", "https://evil.com/x", "/%2F%2Fevil.com"):
        pin = auth.pins.issue(pat)
        page = text(client.get("/sign-in/staff_pin", {"next": target}))
        assert 'name="next"' not in page  # never even put on the form
        done = client.post(
            "/sign-in/staff_pin",
            {
                "csrfmiddlewaretoken": csrf(page),
                "next": target,
                "email": "pat.lee@example.com",
                "pin": pin.pin,
            },
        )
        assert done.status_code == 303
        assert done["Location"] == "/home"
        assert urlsplit(done["Location"]).netloc == ""


# -- errors --------------------------------------------------------------------------------------


def test_wrong_code_shows_the_safe_message(client: Client, auth: Auth) -> None:
    step = start(client, "contact_otp", {"contact": "sam.poe@example.com"})
    wrong = advance(client, step, {"code": "000000"})
    assert wrong.status_code == 400
    html = text(wrong)
    assert "That did not work" in html and "Traceback" not in html
    assert 'aria-invalid="true"' not in html or 'id="pa-error"' in html


def test_throttled_is_429_with_retry_after(
    make_auth: Callable[..., Auth], conf: dict[str, Any]
) -> None:
    limited = make_auth("memory", limits={"start_per_ip": "2/minute"})
    demo.seed(limited, BASE)
    with override_settings(PORTALAUTH={**conf, "AUTH": limited}):
        client = Client(enforce_csrf_checks=True)
        for _ in range(2):
            start(client, "magic_link", {"email": "someone@example.com"})
        throttled = start(client, "magic_link", {"email": "someone@example.com"})
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) >= 1
    assert "Too many attempts" in text(throttled)


def test_a_repeated_field_is_refused(client: Client, auth: Auth) -> None:
    pin = auth.pins.issue(party(auth, "Pat Lee"))
    page = text(client.get("/sign-in/staff_pin"))
    refused = client.post(
        "/sign-in/staff_pin",
        {
            "csrfmiddlewaretoken": csrf(page),
            "email": "pat.lee@example.com",
            "pin": [pin.pin, "000000"],
        },
    )
    assert refused.status_code == 400
    assert "Please check what you entered" in text(refused)
    assert CLIENT_COOKIE not in refused.cookies


def test_a_tampered_or_repeated_flow_token_is_refused(client: Client) -> None:
    step = start(client, "contact_otp", {"contact": "sam.poe@example.com"})
    html = text(step)
    flow = hidden(html, "flow")
    for bad in (flow[:-2] + "xx", [flow, flow]):
        refused = client.post(
            "/sign-in/step", {"csrfmiddlewaretoken": csrf(html), "flow": bad, "code": "12345"}
        )
        assert refused.status_code == 400
        assert "This sign-in has expired" in text(refused)


def test_an_unknown_or_disabled_method_is_404(client: Client) -> None:
    assert client.get("/sign-in/nope").status_code == 404
    assert "not available here" in text(client.get("/sign-in/nope"))


def test_a_failing_strategy_fails_closed_without_a_traceback(client: Client, auth: Auth) -> None:
    auth.portals.update("acme", methods=auth.portals.get("acme").methods | {"boom"})
    failed = start(client, "boom", {"anything": "x"})
    assert failed.status_code == 500
    html = text(failed)
    assert "Something went wrong" in html
    assert "Traceback" not in html and "/etc/passwd" not in html
    assert CLIENT_COOKIE not in failed.cookies


# -- the example's staff pages -------------------------------------------------------------------

STAFF_PAGES = [
    "/staff/",
    "/staff/parties/new",
    "/staff/settings",
    "/staff/access-status.csv",
]


def staff_sign_in(client: Client) -> Any:
    page = text(client.get("/staff/sign-in"))
    return client.post(
        "/staff/sign-in",
        {
            "csrfmiddlewaretoken": csrf(page),
            "email": demo.STAFF_EMAIL,
            "password": demo.STAFF_PASSWORD,
        },
    )


def test_staff_pages_refuse_anonymous_users(client: Client, auth: Auth) -> None:
    jane = party(auth, "Jane Roe")
    for url in [*STAFF_PAGES, f"/staff/parties/{jane.id}", f"/staff/parties/{jane.id}/messages"]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/staff/sign-in?next=")
    refused = post_form(
        client, f"/staff/parties/{jane.id}/pin", {}, page=text(client.get("/password/forgot"))
    )
    assert refused.status_code == 302
    assert not auth.pins.status(jane).outstanding


def test_staff_pages_refuse_signed_in_clients(client: Client, auth: Auth) -> None:
    start(client, "password", {"email": "pat.lee@example.com", "password": demo.CLIENT_PASSWORD})
    assert client.get("/home").status_code == 200
    for url in STAFF_PAGES:
        assert client.get(url).status_code == 302, url
    # Nor does a client's session token work as a staff cookie: it is another portal's.
    client.cookies[demo.STAFF_COOKIE] = client.cookies[CLIENT_COOKIE].value
    for url in STAFF_PAGES:
        assert client.get(url).status_code == 302, url


def test_staff_session_does_not_open_client_pages(client: Client) -> None:
    assert staff_sign_in(client).status_code == 303
    assert client.get("/staff/").status_code == 200
    assert client.get("/home").status_code == 302


def test_staff_pages_work_for_staff(client: Client, auth: Auth) -> None:
    done = staff_sign_in(client)
    assert done.status_code == 303 and done["Location"] == "/staff/"
    morsel = done.cookies[demo.STAFF_COOKIE]
    assert morsel["httponly"] and morsel["samesite"] == "Lax"
    listing = text(client.get("/staff/"))
    assert "Jane Roe" in listing and "share_code" in listing
    jane = party(auth, "Jane Roe")
    page = text(client.get(f"/staff/parties/{jane.id}"))
    made = client.post(f"/staff/parties/{jane.id}/pin", {"csrfmiddlewaretoken": csrf(page)})
    assert made.status_code == 200 and "PIN (shown once" in text(made)
    assert auth.pins.status(jane).outstanding
    shared = client.post(
        f"/staff/parties/{jane.id}/share-code", {"csrfmiddlewaretoken": csrf(page), "send": "0"}
    )
    assert "Share code for case-42" in text(shared)
    revoked = client.post(
        f"/staff/parties/{jane.id}/revoke-share-code", {"csrfmiddlewaretoken": csrf(page)}
    )
    assert "Share code revoked." in text(revoked)
    invited = client.post(
        f"/staff/parties/{jane.id}/magic-link", {"csrfmiddlewaretoken": csrf(page)}
    )
    assert "Sign-in link e-mailed." in text(invited)
    feed = text(client.get(f"/staff/parties/{jane.id}/messages"))
    assert "/sign-in/link?token=" in feed
    added = client.post(
        "/staff/parties/new",
        {
            "csrfmiddlewaretoken": csrf(page),
            "name": "Ola Berg",
            "email": "ola@example.com",
            "phone": "",
            "tax_id_last4": "",
            "case": "case-1",
            "case_label": "Berg",
        },
    )
    assert added.status_code == 200 and "Ola Berg was added." in text(added)
    taken = client.post(
        "/staff/parties/new",
        {"csrfmiddlewaretoken": csrf(page), "name": "Other", "email": "OLA@example.com"},
    )
    assert taken.status_code == 400
    saved = client.post(
        "/staff/settings",
        {
            "csrfmiddlewaretoken": csrf(page),
            "methods": ["password", "staff_pin"],
            "signup_enabled": "1",
            "simulate": "1",
            "second_factor": "none",
        },
    )
    assert saved.status_code == 200 and "Settings saved." in text(saved)
    settings_now = auth.portals.get("acme", fresh=True)
    assert settings_now.methods == {"password", "staff_pin"} and settings_now.signup_enabled
    csv = client.get("/staff/access-status.csv")
    assert csv.status_code == 200 and csv["Content-Type"].startswith("text/csv")
    assert b"Ola Berg" in csv.content
    out = client.post("/staff/sign-out", {"csrfmiddlewaretoken": csrf(page)})
    assert out.status_code == 303
    assert client.get("/staff/").status_code == 302


# -- the example runs on its own ------------------------------------------------------------------


def test_the_example_seeds_and_prints_what_to_try(tmp_path: Path) -> None:
    env = {**os.environ, "DEMO_DATA_DIR": str(tmp_path), "DEMO_BASE_URL": "http://127.0.0.1:8123"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    manage = str(EXAMPLE / "manage.py")
    for command in (["check"], ["demo"], ["demo"]):  # the second run finds the seed
        result = subprocess.run(
            [sys.executable, manage, *command],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    assert "http://127.0.0.1:8123/staff/" in result.stdout
    assert "Jane Roe, Mia Chen, Pat Lee, Sam Poe" in result.stdout
    assert (tmp_path / "portal.db").exists() and (tmp_path / "keys.txt").exists()

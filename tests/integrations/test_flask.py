"""The Flask integration, through Flask's test client against the example portal.

Every test builds ``examples/flask_portal/app.py``'s ``create_app`` on a fresh SQLite file with a
frozen clock, and drives the pages as a browser would: it reads the hidden fields (CSRF token,
flow token) from each page, posts the forms, and reads codes and links from the simulated outbox
as a client reads their mail. Requirement numbers refer to ``../shared/SECURITY-REQUIREMENTS.md``.
"""

from __future__ import annotations

import html
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("flask")

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from conftest import SECRET_KEYS, EmailCodePlugin
from portalauth import Auth, Field, FrozenClock, Identity, InvalidInput, Throttled
from portalauth.integrations.flask import (
    CsrfFailed,
    PortalAuth,
    current_identity,
    error_status,
    input_attributes,
    login_required,
    safe_next,
)

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "flask_portal_app", ROOT / "examples" / "flask_portal" / "app.py"
)
assert _spec is not None and _spec.loader is not None
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)

FIRM = "acme"
STAFF_PORTAL = "acme-staff"
STAFF_EMAIL = "staff@acme.example"
STAFF_PASSWORD = "a staff password for the tests"
NEW_PASSWORD = "purple otters juggle quietly"

# R60 and §4: Django's bad_urls plus the extras. Each must fall back to the default page.
HOSTILE_NEXT = [
    "http://example.com",
    "http:///example.com",
    "https://example.com",
    "ftp://example.com",
    "\\\\example.com",
    "\\\\\\example.com",
    "/\\\\/example.com",
    "\\\\//example.com",
    "/\\/example.com",
    "\\/example.com",
    "/\\example.com",
    "http:/\\//example.com",
    "http:\\/example.com",
    "http:/\\example.com",
    'javascript:alert("XSS")',
    "\njavascript:alert(x)",
    "java\nscript:alert(x)",
    "\x08//example.com",
    "http://otherserver\\@example.com",
    "http:\\\\testserver\\@example.com",
    "http://testserver\\me:pass@example.com",
    "http:\\\\testserver\\confirm\\me@example.com",
    "http:999999999",
    "ftp:9999999999",
    "\n",
    "http://[2001:cdba:0000:0000:0000:0000:3257:9652/",
    "http://2001:cdba:0000:0000:0000:0000:3257:9652]/",
    "//evil.com",
    "////evil.com",
    "/%2F%2Fevil.com",
    "/%252F%252Fevil.com",
    "/%5Cevil.com",
    "https://allowed.com.evil.com",
    "https://allowed.com@evil.com",
    "https://evil.com#@allowed.com",
    "data:text/html,<script>alert(1)</script>",
    "/\t/evil.com",
    "%0d%0aLocation:%20http://evil.com",
    "/%0d%0aLocation:%20http://evil.com",
    "\\\\\\github.com",
    "",
    " /cases",
    "/cases\x00",
]
GOOD_NEXT = ["/", "/cases/42", "/cases/42?tab=docs&x=1", "/a/b/c#part", "/path%20with%20space"]


# -- helpers --------------------------------------------------------------------------------------


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def hidden(page: str) -> dict[str, str]:
    """The hidden inputs of a page (the CSRF token is the same in every form)."""
    found = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)
    return {name: html.unescape(value) for name, value in found}


def action(page: str) -> str:
    """Where the page's main (last) form posts; staff pages have a sign-out form first."""
    found = re.findall(r'<form[^>]* method="post" action="([^"]+)"', page)
    assert found, page
    return html.unescape(found[-1])


def submit(client: FlaskClient, page: str, **fields: Any) -> TestResponse:
    """Post the page's form with its hidden fields and ``fields``."""
    return client.post(action(page), data={**hidden(page), **fields})


def input_tag(page: str, name: str) -> str:
    found = re.search(rf'<input[^>]* name="{name}"[^>]*>', page)
    assert found, page
    return found.group(0)


def newest(auth: Auth, identity: str | None = None) -> str:
    message = auth.outbox.latest(FIRM, identity=identity)
    assert message is not None
    return message.text


def code_in(message: str) -> str:
    found = re.search(r"\b(\d{5,10})\b", message)
    assert found, message
    return found.group(1)


def link_in(message: str) -> tuple[str, str]:
    """(path, token) of the link in a message."""
    found = re.search(r"https?://\S+", message)
    assert found, message
    parts = urlsplit(found.group(0))
    return parts.path, parse_qs(parts.query)["token"][0]


def session_cookie(client: FlaskClient, name: str = "portalauth_session") -> str | None:
    cookie = client.get_cookie(name)
    return cookie.value if cookie else None


def set_cookies(response: TestResponse) -> list[str]:
    return response.headers.getlist("Set-Cookie")


def signed_in_as(client: FlaskClient) -> str:
    response = client.get("/")
    assert response.status_code == 200, response.headers.get("Location")
    return text(response)


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def app(tmp_path: Path, clock: FrozenClock) -> Iterator[Flask]:
    app = demo.create_app(
        tmp_path / "portal.db",
        base_url="http://localhost",
        secret_keys=SECRET_KEYS,
        clock=clock,
        testing=True,
        staff_password=STAFF_PASSWORD,
    )
    yield app
    app.extensions["portalauth"].auth.close()


@pytest.fixture
def auth(app: Flask) -> Auth:
    found: Auth = app.extensions["portalauth"].auth
    return found


@pytest.fixture
def seeded(app: Flask) -> dict[str, str]:
    found: dict[str, str] = app.config["PORTALAUTH_DEMO"]
    return found


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def party(auth: Auth, name: str) -> Identity:
    return next(p for p in auth.directory.list(FIRM) if p.name == name)


def sign_in_with_pin(client: FlaskClient, auth: Auth, email: str = "sam.poe@example.com") -> None:
    person = next(p for p in auth.directory.list(FIRM) if p.email == email)
    pin = auth.pins.issue(person).pin
    page = text(client.get("/auth/start/staff_pin"))
    response = submit(client, page, email=email, pin=pin)
    assert response.status_code == 303, text(response)


def sign_in_staff(client: FlaskClient) -> TestResponse:
    page = text(client.get("/staff/auth/start/password"))
    response = submit(client, page, email=STAFF_EMAIL, password=STAFF_PASSWORD)
    assert response.status_code == 303, text(response)
    return response


# -- every strategy through the pages -------------------------------------------------------------


def test_share_code_sign_in_lands_on_the_private_page_with_the_case_scope(
    client: FlaskClient, auth: Auth, seeded: dict[str, str]
) -> None:
    page = text(client.get("/auth/start/share_code?next=/"))
    assert 'name="share_code"' in page
    step = submit(client, page, share_code=seeded["share_code"].lower().replace("-", " "))
    assert step.status_code == 200
    step_page = text(step)
    assert "_flow" in hidden(step_page)
    tag = input_tag(step_page, "code")
    assert 'autocomplete="one-time-code"' in tag and 'inputmode="numeric"' in tag
    assert '<label for="field-code">Confirmation code</label>' in step_page

    done = submit(client, step_page, code=code_in(newest(auth, seeded["jane"])))
    assert done.status_code == 303
    assert done.headers["Location"] == "/"
    home = signed_in_as(client)
    assert "Welcome, Jane Roe" in home
    assert "Roe v. Doe (case-42)" in home


def test_contact_otp_sign_in_by_text_message(client: FlaskClient, auth: Auth) -> None:
    page = text(client.get("/auth/start/contact_otp"))
    assert 'autocomplete="username"' in input_tag(page, "contact")
    step = text(submit(client, page, contact="202.555.0143"))
    sam = party(auth, "Sam Poe")
    message = auth.outbox.latest(FIRM, identity=sam.id)
    assert message is not None and message.channel == "sms"
    done = submit(client, step, code=code_in(message.text))
    assert done.status_code == 303
    assert "Welcome, Sam Poe" in signed_in_as(client)


def test_magic_link_get_changes_nothing_and_post_redeems(
    client: FlaskClient, auth: Auth, seeded: dict[str, str]
) -> None:
    page = text(client.get("/auth/start/magic_link"))
    step = submit(client, page, email="ana.diaz@example.com")
    assert "e-mailed it a sign-in link" in text(step)
    path, token = link_in(newest(auth, seeded["ana"]))
    assert path == "/auth/sign-in/link"

    scanner = client.application.test_client()  # a mail scanner: no cookies of its own
    for _ in range(3):
        response = scanner.get(f"{path}?token={token}")
        assert response.status_code == 200
        assert not any(c.startswith("portalauth_session") for c in set_cookies(response))
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Cache-Control"] == "no-store"
        assert scanner.head(f"{path}?token={token}").status_code == 200
    assert auth.magic_links.inspect(FIRM, token).state == "valid"  # R35

    confirm = text(client.get(f"{path}?token={token}"))
    assert token not in action(confirm)  # the token goes in the form body, not the URL
    done = submit(client, confirm)
    assert done.status_code == 303
    assert done.headers["Location"] == "/"  # R36: a URL without the token
    assert "Welcome, Ana Diaz" in signed_in_as(client)
    assert auth.magic_links.inspect(FIRM, token).state == "used"
    again = submit(client, confirm)
    assert again.status_code == 401
    used = client.get(f"{path}?token={token}")
    assert used.status_code == 410 and "already used" in text(used)


def test_magic_link_code_typed_on_the_step_page(client: FlaskClient, auth: Auth) -> None:
    page = text(client.get("/auth/start/magic_link"))
    step = text(submit(client, page, email="ana.diaz@example.com"))
    message = newest(auth, party(auth, "Ana Diaz").id)
    code = re.search(r"^\s+([0-9]{6})$", message, re.MULTILINE)
    assert code
    assert submit(client, step, code=code.group(1)).status_code == 303
    assert "Welcome, Ana Diaz" in signed_in_as(client)


def test_superseded_magic_link_says_a_newer_link_was_sent(
    client: FlaskClient, auth: Auth, clock: FrozenClock
) -> None:
    ana = party(auth, "Ana Diaz")
    page = text(client.get("/auth/start/magic_link"))
    submit(client, page, email="ana.diaz@example.com")
    path, first = link_in(newest(auth, ana.id))
    clock.advance(120)  # past the resend cooldown
    submit(client, page, email="ana.diaz@example.com")
    response = client.get(f"{path}?token={first}")
    assert response.status_code == 410
    assert "A newer link was sent to you" in text(response)


def test_staff_pin_sign_in(client: FlaskClient, seeded: dict[str, str]) -> None:
    page = text(client.get("/auth/start/staff_pin"))
    tag = input_tag(page, "pin")
    assert 'autocomplete="one-time-code"' in tag and 'inputmode="numeric"' in tag
    done = submit(client, page, email="sam.poe@example.com", pin=seeded["pin"])
    assert done.status_code == 303
    assert "Welcome, Sam Poe" in signed_in_as(client)


def test_password_invitation_then_password_sign_in(
    client: FlaskClient, auth: Auth, seeded: dict[str, str]
) -> None:
    path, token = link_in(newest(auth, seeded["ana"]))
    assert path == "/auth/password/set"
    form = text(client.get(f"{path}?token={token}"))
    assert 'autocomplete="new-password"' in input_tag(form, "password")
    assert submit(client, form, password=NEW_PASSWORD).status_code == 303
    assert "Welcome, Ana Diaz" in signed_in_as(client)

    other = client.application.test_client()
    page = text(other.get("/auth/start/password"))
    wrong = submit(other, page, email="ana.diaz@example.com", password="not the password at all")
    assert wrong.status_code == 401
    assert "do not match" in text(wrong)
    assert 'value="ana.diaz@example.com"' in text(wrong)  # the address is kept
    assert 'value="not the password' not in text(wrong)  # the password never is
    done = submit(other, page, email="ana.diaz@example.com", password=NEW_PASSWORD)
    assert done.status_code == 303
    assert "Welcome, Ana Diaz" in signed_in_as(other)


def test_sign_up_with_confirmation(client: FlaskClient, auth: Auth) -> None:
    page = text(client.get("/auth/sign-up"))
    response = submit(client, page, name="Kim Lee", email="kim@example.com", password=NEW_PASSWORD)
    assert response.status_code == 200
    assert "Check your e-mail" in text(response)
    kim = party(auth, "Kim Lee")
    path, token = link_in(newest(auth, kim.id))
    assert path == "/auth/sign-up/confirm"
    confirm = text(client.get(f"{path}?token={token}"))
    assert auth.passwords.inspect(FIRM, token).valid  # looking used nothing
    assert submit(client, confirm).status_code == 303
    assert "Welcome, Kim Lee" in signed_in_as(client)


def test_sign_up_is_refused_when_the_portal_turns_it_off(client: FlaskClient, auth: Auth) -> None:
    auth.portals.update(FIRM, signup_enabled=False)
    assert "Create an account" not in text(client.get("/auth/"))
    response = client.get("/auth/sign-up")
    assert response.status_code == 403
    assert "Sign-up is not available here" in text(response)


def test_forgotten_password_reset_then_sign_in(
    client: FlaskClient, auth: Auth, seeded: dict[str, str]
) -> None:
    _, token = link_in(newest(auth, seeded["ana"]))
    submit(client, text(client.get(f"/auth/password/set?token={token}")), password=NEW_PASSWORD)
    browser = client.application.test_client()
    page = text(browser.get("/auth/password/forgot"))
    response = submit(browser, page, email="ana.diaz@example.com")
    assert "If that address has an account" in text(response)
    path, reset = link_in(newest(auth, seeded["ana"]))
    assert path == "/auth/password/reset"
    form = text(browser.get(f"{path}?token={reset}"))
    short = submit(browser, form, password="too short")
    assert short.status_code == 400
    assert "Use at least 15 characters" in text(short)
    assert 'aria-invalid="true"' in input_tag(text(short), "password")
    done = submit(browser, form, password="a brand new long password")
    assert done.status_code == 200
    assert "Please sign in with your new password" in text(done)
    assert browser.get_cookie("portalauth_session") is None  # R48: no sign-in after a reset
    page = text(browser.get("/auth/start/password"))
    signed = submit(
        browser, page, email="ana.diaz@example.com", password="a brand new long password"
    )
    assert signed.status_code == 303


def test_change_password_when_signed_in(
    client: FlaskClient, auth: Auth, seeded: dict[str, str]
) -> None:
    _, token = link_in(newest(auth, seeded["ana"]))
    submit(client, text(client.get(f"/auth/password/set?token={token}")), password=NEW_PASSWORD)
    form = text(client.get("/auth/password/change"))
    wrong = submit(client, form, current_password="nope", new_password="another long password!")
    assert wrong.status_code == 401
    assert "current password is not correct" in text(wrong)
    done = submit(
        client, form, current_password=NEW_PASSWORD, new_password="another long password!"
    )
    assert done.status_code == 200
    assert "Your password was changed" in text(done)
    assert "Welcome, Ana Diaz" in signed_in_as(client)  # the current session stays


def test_change_password_needs_a_session(client: FlaskClient) -> None:
    response = client.get("/auth/password/change")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/?next=")


def test_second_factor_step_is_rendered_generically(
    client: FlaskClient, auth: Auth, seeded: dict[str, str]
) -> None:
    auth.portals.update(FIRM, second_factor="email_code")
    page = text(client.get("/auth/start/staff_pin"))
    step = submit(client, page, email="sam.poe@example.com", pin=seeded["pin"])
    assert step.status_code == 200
    second = text(step)
    assert "One more step" in second
    assert 'autocomplete="one-time-code"' in input_tag(second, "code")
    assert client.get("/").status_code == 302  # a pending second factor is no session (R52)
    wrong = submit(client, second, code="000000")
    assert wrong.status_code == 401
    assert "One more step" in text(wrong)  # the same step again, with the message
    done = submit(client, text(wrong), code=code_in(newest(auth, seeded["sam"])))
    assert done.status_code == 303
    assert "Welcome, Sam Poe" in signed_in_as(client)


def test_a_third_party_strategy_needs_no_template(tmp_path: Path) -> None:
    auth = Auth(SECRET_KEYS, f"sqlite:///{tmp_path / 'x.db'}", plugins=[EmailCodePlugin()])
    auth.portals.create("calm", "Calm Therapy", methods={"email_code"}, simulate=True)
    kim = auth.directory.add("calm", "Kim Lee", email="kim@example.com")
    app = Flask(__name__)
    app.testing = True
    PortalAuth(app, auth=auth, portal="calm")

    @app.get("/")
    @login_required
    def home() -> str:
        person = current_identity()
        return f"hello {person.name if person else '?'}"

    client = app.test_client()
    chooser = client.get("/auth/")
    assert chooser.status_code == 302  # one method: straight to its form
    page = text(client.get(chooser.headers["Location"]))
    assert "E-mail me a code" in page
    step = text(submit(client, page, email="kim@example.com"))
    message = auth.outbox.latest("calm", identity=kim.id)
    assert message is not None
    assert submit(client, step, code=code_in(message.text)).status_code == 303
    assert text(client.get("/")) == "hello Kim Lee"
    auth.close()


# -- sessions, sign-out, private pages ------------------------------------------------------------


def test_private_page_refused_when_signed_out(client: FlaskClient, auth: Auth) -> None:
    response = client.get("/?tab=docs")
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/?next=/?tab%3Ddocs"
    chooser = text(client.get(response.headers["Location"]))
    assert 'href="/auth/start/staff_pin?next=/?tab%3Ddocs"' in chooser
    person = party(auth, "Sam Poe")
    page = text(client.get("/auth/start/staff_pin?next=/?tab%3Ddocs"))
    assert hidden(page)["_next"] == "/?tab=docs"
    done = submit(client, page, email=person.email, pin=auth.pins.issue(person).pin)
    assert done.headers["Location"] == "/?tab=docs"


def test_sign_out_is_post_only(client: FlaskClient, auth: Auth) -> None:
    sign_in_with_pin(client, auth)
    token = session_cookie(client)
    assert token is not None
    assert client.get("/auth/sign-out").status_code == 405
    assert "Welcome" in signed_in_as(client)
    home = text(client.get("/"))
    forged = client.post("/auth/sign-out", data={})
    assert forged.status_code == 403
    assert "Welcome" in signed_in_as(client)

    response = submit(client, home)  # the sign-out button on the home page
    assert response.status_code == 303
    assert response.headers["Location"] == "/auth/"
    assert any(c.startswith("portalauth_session=;") for c in set_cookies(response))
    assert client.get("/").status_code == 302
    with pytest.raises(Exception, match="Please sign in"):
        auth.sessions.validate(token)  # R53: the record is gone, not only the cookie


def test_a_new_sign_in_replaces_the_session_of_this_browser(
    client: FlaskClient, auth: Auth
) -> None:
    sign_in_with_pin(client, auth)
    first = session_cookie(client)
    sign_in_with_pin(client, auth, "jane.roe@example.com")
    second = session_cookie(client)
    assert first and second and first != second
    with pytest.raises(Exception, match="Please sign in"):
        auth.sessions.validate(first)
    assert "Welcome, Jane Roe" in signed_in_as(client)


def test_an_invalid_session_cookie_is_cleared(client: FlaskClient) -> None:
    client.set_cookie("portalauth_session", "forged.value", domain="localhost")
    response = client.get("/")
    assert response.status_code == 302
    assert any(c.startswith("portalauth_session=;") for c in set_cookies(response))


def test_session_cookie_flags_in_testing(client: FlaskClient, auth: Auth) -> None:
    person = party(auth, "Sam Poe")
    page = text(client.get("/auth/start/staff_pin"))
    response = submit(client, page, email=person.email, pin=auth.pins.issue(person).pin)
    cookie = next(c for c in set_cookies(response) if c.startswith("portalauth_session="))
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags
    assert "secure" not in flags  # the test app is in testing mode
    assert not any(f.startswith(("domain=", "expires=", "max-age=")) for f in flags)


def test_cookies_are_secure_and_host_prefixed_outside_debug_and_testing(tmp_path: Path) -> None:
    auth = Auth(SECRET_KEYS, f"sqlite:///{tmp_path / 'x.db'}")
    auth.portals.create("acme", "Acme", methods={"staff_pin"}, simulate=True)
    sam = auth.directory.add("acme", "Sam Poe", email="sam@example.com")
    app = Flask(__name__)  # neither debug nor testing
    PortalAuth(app, auth=auth, portal="acme")
    client = app.test_client()
    first = client.get("/auth/start/staff_pin", base_url="https://localhost")
    csrf = next(c for c in set_cookies(first) if "csrf" in c)
    assert csrf.startswith("__Host-portalauth_csrf=") and "Secure" in csrf
    page = text(first)
    response = client.post(
        "/auth/start/staff_pin",
        base_url="https://localhost",
        data={**hidden(page), "email": "sam@example.com", "pin": auth.pins.issue(sam).pin},
    )
    assert response.status_code == 303
    cookies = set_cookies(response)
    session = next(c for c in cookies if c.startswith("__Host-portalauth_session="))
    flags = [part.strip().lower() for part in session.split(";")]
    assert {"secure", "httponly", "samesite=lax", "path=/"} <= set(flags)
    assert not any(f.startswith("domain=") for f in flags)
    auth.close()


# -- CSRF -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong", "twice"])
def test_posts_without_this_browsers_csrf_token_are_refused(
    client: FlaskClient, auth: Auth, seeded: dict[str, str], token: str | None
) -> None:
    page = text(client.get("/auth/start/staff_pin"))
    data: dict[str, Any] = {"email": "sam.poe@example.com", "pin": seeded["pin"]}
    real = hidden(page)["_csrf_token"]
    if token == "wrong":
        data["_csrf_token"] = real[:-2] + ("AA" if not real.endswith("AA") else "BB")
    elif token == "twice":
        data["_csrf_token"] = [real, real]
    response = client.post("/auth/start/staff_pin", data=data)
    assert response.status_code == 403
    assert "did not come from this site" in text(response)
    assert client.get_cookie("portalauth_session") is None
    assert auth.pins.status(seeded["sam"]).outstanding  # nothing was tried with the PIN


def test_a_csrf_token_from_another_browser_is_refused(
    app: Flask, client: FlaskClient, seeded: dict[str, str]
) -> None:
    attacker = app.test_client()
    their_token = hidden(text(attacker.get("/auth/start/staff_pin")))["_csrf_token"]
    client.get("/auth/start/staff_pin")  # the victim has a token of their own
    response = client.post(
        "/auth/start/staff_pin",
        data={"_csrf_token": their_token, "email": "sam.poe@example.com", "pin": seeded["pin"]},
    )
    assert response.status_code == 403


def test_every_form_carries_the_csrf_token(client: FlaskClient, auth: Auth) -> None:
    for path in ("/auth/start/share_code", "/auth/sign-up", "/auth/password/forgot"):
        page = text(client.get(path))
        assert hidden(page)["_csrf_token"] == client.get_cookie("portalauth_csrf").value
    sign_in_with_pin(client, auth)
    assert "_csrf_token" in hidden(text(client.get("/")))  # the sign-out button too


# -- next -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_hostile_next_is_refused(client: FlaskClient, target: str) -> None:
    assert safe_next(target) is None
    page = text(client.get("/auth/start/staff_pin"))
    response = client.post(
        "/auth/sign-out", data={"_csrf_token": hidden(page)["_csrf_token"], "_next": target}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/auth/"  # falls back to the default page
    chooser = text(client.get("/auth/", query_string={"next": target}))
    assert "next=" not in chooser


@pytest.mark.parametrize("target", GOOD_NEXT)
def test_same_origin_paths_are_kept(target: str) -> None:
    assert safe_next(target) == target


def test_hostile_next_after_sign_in_goes_home(client: FlaskClient, auth: Auth) -> None:
    sam = party(auth, "Sam Poe")
    page = text(client.get("/auth/start/staff_pin"))
    response = submit(
        client, page, email=sam.email, pin=auth.pins.issue(sam).pin, _next="//evil.com"
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/"


# -- errors ---------------------------------------------------------------------------------------


def test_a_wrong_code_shows_the_safe_message_and_the_form_again(
    client: FlaskClient, seeded: dict[str, str]
) -> None:
    page = text(client.get("/auth/start/share_code"))
    step = text(submit(client, page, share_code=seeded["share_code"]))
    response = submit(client, step, code="00000")
    assert response.status_code == 401
    body = text(response)
    assert "That did not work" in body
    assert 'role="alert"' in body
    assert "Traceback" not in body
    assert 'name="code"' in body and "_flow" in hidden(body)


def test_throttled_shows_429_with_retry_after(client: FlaskClient) -> None:
    page = text(client.get("/auth/start/share_code"))
    statuses = [submit(client, page, share_code="AAA-333").status_code for _ in range(11)]
    assert statuses[:10] == [200] * 10
    response = submit(client, page, share_code="AAA-333")
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert "Too many attempts" in text(response)


def test_a_tampered_flow_token_says_start_again(
    client: FlaskClient, seeded: dict[str, str]
) -> None:
    page = text(client.get("/auth/start/share_code"))
    step = text(submit(client, page, share_code=seeded["share_code"]))
    response = submit(client, step, code="12345", _flow="x" + hidden(step)["_flow"])
    assert response.status_code == 400
    assert "Please start again" in text(response)
    tampered = submit(client, step, code="12345", _view=hidden(step)["_view"] + "x")
    assert tampered.status_code == 400


def test_a_disabled_method_is_refused(client: FlaskClient, auth: Auth) -> None:
    auth.portals.update(FIRM, methods={"share_code", "staff_pin"})
    assert "/auth/start/contact_otp" not in text(client.get("/auth/"))
    response = client.get("/auth/start/contact_otp")
    assert response.status_code == 403
    assert "not available here" in text(response)


def test_a_repeated_form_field_is_refused(client: FlaskClient, auth: Auth) -> None:
    before = len(auth.outbox.messages(FIRM))
    page = text(client.get("/auth/start/contact_otp"))
    data = {**hidden(page), "contact": ["202.555.0143", "attacker@example.com"]}
    response = client.post("/auth/start/contact_otp", data=data)
    assert response.status_code == 400
    assert "Please check what you entered" in text(response)
    assert len(auth.outbox.messages(FIRM)) == before  # nothing was sent anywhere


def test_error_statuses() -> None:
    assert error_status(Throttled(retry_after=5)) == 429
    assert error_status(InvalidInput()) == 400
    assert error_status(CsrfFailed()) == 403


def test_input_attributes_by_kind() -> None:
    code = input_attributes(Field("code", "code", "Code", max_length=6, numeric=True))
    assert code["autocomplete"] == "one-time-code" and code["inputmode"] == "numeric"
    assert code["maxlength"] == "6" and code["required"] == "required"
    assert input_attributes(Field("e", "email", "E-mail"))["type"] == "email"
    assert input_attributes(Field("p", "tel", "Phone"))["type"] == "tel"
    secret = input_attributes(Field("p", "password", "Password"), value="hunter2hunter2")
    assert secret["type"] == "password" and "value" not in secret
    assert "value" not in input_attributes(Field("c", "code", "Code"), value="123456")
    named = input_attributes(Field("n", "name", "Name", help="As on file"), value="Jane")
    assert named["value"] == "Jane" and named["aria-describedby"] == "field-n-help"


# -- staff pages ----------------------------------------------------------------------------------


def test_staff_pages_refuse_anonymous_users(client: FlaskClient) -> None:
    for path in ("/staff/", "/staff/settings", "/staff/export.csv"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/staff/auth/?next=")
    chooser = client.get("/staff/auth/?next=/staff/")
    assert chooser.headers["Location"] == "/staff/auth/start/password?next=/staff/"


def test_staff_pages_refuse_clients(client: FlaskClient, auth: Auth) -> None:
    sign_in_with_pin(client, auth)
    assert client.get("/staff/").status_code == 302
    token = session_cookie(client)
    assert token is not None
    client.set_cookie("portalauth_staff_session", token, domain="localhost")
    response = client.get("/staff/")  # a client session is no staff session
    assert response.status_code == 302
    assert any(c.startswith("portalauth_staff_session=;") for c in set_cookies(response))


def test_staff_sign_in_is_separate_from_the_client_session(client: FlaskClient) -> None:
    response = sign_in_staff(client)
    assert response.headers["Location"] == "/staff/"
    assert session_cookie(client, "portalauth_staff_session")
    assert session_cookie(client) is None
    page = text(client.get("/staff/"))
    assert "Jane Roe" in page and "Ana Diaz" in page
    assert client.get("/").status_code == 302  # staff are not signed in as a client


def test_staff_issue_a_pin_the_client_then_uses(app: Flask, client: FlaskClient) -> None:
    sign_in_staff(client)
    auth: Auth = app.extensions["portalauth"].auth
    sam = party(auth, "Sam Poe")
    page = text(client.get(f"/staff/parties/{sam.id}"))
    assert "Generate a PIN" in page
    pin_form = re.search(
        rf'<form class="inline" method="post" action="(/staff/parties/{sam.id}/pin)">', page
    )
    assert pin_form
    refused = client.post(pin_form.group(1))
    assert refused.status_code == 403  # CSRF on the staff pages too
    issued = client.post(pin_form.group(1), data={"_csrf_token": hidden(page)["_csrf_token"]})
    found = re.search(r'<span class="secret" id="secret">(\d{6})</span>', text(issued))
    assert found
    browser = app.test_client()
    login = text(browser.get("/auth/start/staff_pin"))
    assert submit(browser, login, email=sam.email, pin=found.group(1)).status_code == 303


def test_staff_share_codes_invitations_and_the_message_feed(
    client: FlaskClient, auth: Auth
) -> None:
    sign_in_staff(client)
    jane = party(auth, "Jane Roe")
    page = text(client.get(f"/staff/parties/{jane.id}"))
    csrf = {"_csrf_token": hidden(page)["_csrf_token"]}
    issued = text(client.post(f"/staff/parties/{jane.id}/share-code", data=csrf))
    code = re.search(r'id="secret">([A-Z0-9-]{7})<', issued)
    assert code and "and e-mailed it" in issued
    assert code.group(1) in issued  # also in the invitation in the feed below
    assert "Live until" in issued
    revoked = text(client.post(f"/staff/parties/{jane.id}/revoke-share-code", data=csrf))
    assert "Share code revoked." in revoked and "Live until" not in revoked
    invited = text(client.post(f"/staff/parties/{jane.id}/magic-link", data=csrf))
    assert "Sign-in link e-mailed." in invited
    assert "http://localhost/auth/sign-in/link?token=" in invited  # the feed shows it
    assert client.post(f"/staff/parties/{jane.id}/nothing", data=csrf).status_code == 404


def test_staff_add_and_edit_a_party(client: FlaskClient, auth: Auth) -> None:
    sign_in_staff(client)
    page = text(client.get("/staff/parties/new"))
    bad = submit(client, page, name="Lee Park", email="not an address")
    assert bad.status_code == 400
    created = submit(
        client,
        page,
        name="Lee Park",
        email="lee@example.com",
        phone="(202) 555-0161",
        case="case-77",
        case_label="Park v. Ray",
    )
    assert created.status_code == 303
    lee = party(auth, "Lee Park")
    assert lee.attributes["case"] == "case-77"
    edit = text(client.get(created.headers["Location"]))
    saved = client.post(
        f"/staff/parties/{lee.id}",
        data={**hidden(edit), "name": "Lee Park", "email": "lee.park@example.com", "case": ""},
    )
    assert "Saved." in text(saved)
    assert auth.directory.get(lee.id).email == "lee.park@example.com"
    assert "Lee Park" in text(client.get("/staff/"))
    other = party(auth, "Jane Roe")
    staff_person = auth.directory.list(STAFF_PORTAL)[0]
    assert client.get(f"/staff/parties/{staff_person.id}").status_code == 404
    assert client.get(f"/staff/parties/{other.id}").status_code == 200


def test_staff_portal_settings(client: FlaskClient, auth: Auth) -> None:
    sign_in_staff(client)
    page = text(client.get("/staff/settings"))
    response = client.post(
        "/staff/settings",
        data={
            **hidden(page),
            "methods": ["share_code", "password"],
            "second_factor": "tax_id_last4",
        },
    )
    assert "Saved." in text(response)
    settings = auth.portals.get(FIRM, fresh=True)
    assert settings.methods == {"share_code", "password"}
    assert settings.second_factor == "tax_id_last4"
    assert not settings.signup_enabled and not settings.simulate
    bad = client.post("/staff/settings", data={**hidden(page), "second_factor": "carrier-pigeon"})
    assert bad.status_code == 400
    assert "second_factor must be one of" in text(bad)


def test_access_status_csv_export(client: FlaskClient, auth: Auth) -> None:
    sign_in_with_pin(client, auth)  # Sam has signed in once
    staff = client.application.test_client()
    sign_in_staff(staff)
    response = staff.get("/staff/export.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="access-status.csv"'
    lines = text(response).splitlines()
    assert lines[0].startswith("name,email,phone,ready,missing")
    sam = next(line for line in lines if line.startswith("Sam Poe"))
    assert "'+12025550143" in sam and sam.endswith("staff_pin")
    assert any(line.startswith("Ana Diaz") and ",password," in line for line in lines)

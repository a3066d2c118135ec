"""Every client flow of the Flask demo portal, end to end in headless Chromium.

Each test serves ``examples/flask_portal/app.py`` on 127.0.0.1 (see ``conftest.py``), drives it
with Playwright as a client would (by the labels and button texts a person reads) and reads codes
and links from the simulated message feed, as staff do in the feed page; one test reads them from
a real SMTP server instead. Every form page visited is checked for the accessibility basics:
every input has a label, and code inputs have ``autocomplete="one-time-code"`` and
``inputmode="numeric"``. Each test leaves ``build/screenshots/<test>.png``.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("flask")
pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from playwright.sync_api import Page, expect

from portalauth import FrozenClock, SessionInvalid
from portalauth.delivery.smtp import SmtpSender

from .conftest import FIRM, STAFF_PASSWORD, LivePortal, SmtpServer

Shot = Callable[[str], Path]
NEW_PASSWORD = "purple otters juggle quietly"
LINK = re.compile(r"https?://\S+")

# -- reading messages, as a client reads their mail ---------------------------------------------


def code_in(text: str) -> str:
    """The code in a message (links are left out: a token may hold a run of digits)."""
    found = re.search(r"\b(\d{5,10})\b", LINK.sub(" ", text))
    assert found, text
    return found.group(1)


def link_in(text: str) -> str:
    found = LINK.search(text)
    assert found, text
    return found.group(0)


# -- the pages ---------------------------------------------------------------------------------

_FORM_CONTROLS = """() => Array.from(
    document.querySelectorAll('input:not([type=hidden]), select, textarea')
).map((el) => ({
    name: el.name,
    labels: Array.from(el.labels || []).map((label) => label.textContent.trim()),
    ariaLabel: el.getAttribute('aria-label') || '',
    autocomplete: el.getAttribute('autocomplete'),
    inputmode: el.getAttribute('inputmode'),
}))"""


def check_accessibility(page: Page) -> None:
    """Every input has a (non-empty) label; code inputs say one-time-code and numeric."""
    assert page.evaluate("document.documentElement.lang") == "en"
    expect(page.locator("h1")).to_have_count(1)
    controls = page.evaluate(_FORM_CONTROLS)
    for control in controls:
        named = any(control["labels"]) or control["ariaLabel"]
        assert named, f"input {control['name']!r} has no label on {page.url}"
        if control["name"] in ("code", "pin"):
            assert control["autocomplete"] == "one-time-code", control
            assert control["inputmode"] == "numeric", control


def fill(page: Page, button: str, **by_label: str) -> None:
    """Check the page, fill each field found by its label, and press the button."""
    check_accessibility(page)
    for label, value in by_label.items():
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name=button).click()


def choose(portal: LivePortal, page: Page, method: str) -> None:
    """Open the sign-in chooser and pick a method by its label."""
    page.goto(portal.at("/auth/"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    check_accessibility(page)
    page.get_by_role("link", name=method).click()


def expect_home(page: Page, portal: LivePortal, name: str) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Welcome, {name}")
    assert page.url == portal.at("/")  # the private page, with no token in the URL


def sign_in_with_pin(portal: LivePortal, page: Page) -> None:
    choose(portal, page, "Sign in with a PIN from the office")
    fill(
        page,
        "Continue",
        **{"E-mail address": "sam.poe@example.com", "PIN": portal.demo["pin"]},
    )
    expect_home(page, portal, "Sam Poe")


def session_token(page: Page) -> str:
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    return cookies["portalauth_session"]


# -- every strategy ------------------------------------------------------------------------------


def test_share_code_then_the_emailed_code(portal: LivePortal, page: Page, screenshot: Shot) -> None:
    choose(portal, page, "Sign in with a share code")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in with a share code")
    share = portal.demo["share_code"].lower().replace("-", " ")  # as a person might type it
    fill(page, "Continue", **{"Share code": share})
    expect(page.get_by_label("Confirmation code", exact=True)).to_be_visible()
    screenshot("code")
    code = code_in(portal.latest(portal.demo["jane"], "email").text)
    fill(page, "Continue", **{"Confirmation code": code})
    expect_home(page, portal, "Jane Roe")
    expect(page.get_by_text("Roe v. Doe (case-42)")).to_be_visible()


def test_contact_otp_by_text_message(portal: LivePortal, page: Page) -> None:
    choose(portal, page, "Get a code by text or e-mail")
    fill(page, "Continue", **{"Phone number or e-mail address": "(202) 555-0143"})
    sam = portal.party("Sam Poe")
    message = portal.latest(sam.id)
    assert message.channel == "sms" and message.to == sam.phone
    fill(page, "Continue", **{"Verification code": code_in(message.text)})
    expect_home(page, portal, "Sam Poe")


def test_magic_link_clicked_confirms_then_signs_in(
    portal: LivePortal, page: Page, screenshot: Shot
) -> None:
    choose(portal, page, "E-mail me a sign-in link")
    fill(page, "Continue", **{"E-mail address": "ana.diaz@example.com"})
    expect(page.get_by_role("status")).to_contain_text("e-mailed it a sign-in link")
    link = link_in(portal.latest(portal.demo["ana"], "email").text)
    assert urlsplit(link).path == "/auth/sign-in/link"

    page.goto(link)  # opening the link only shows a confirm page (a GET changes nothing)
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    check_accessibility(page)
    screenshot("confirm")
    token = parse_qs(urlsplit(link).query)["token"][0]
    assert portal.auth.magic_links.inspect(FIRM, token).state == "valid"
    page.get_by_role("button", name="Sign in to Acme Law LLP").click()
    expect_home(page, portal, "Ana Diaz")
    assert portal.auth.magic_links.inspect(FIRM, token).state == "used"


def test_magic_link_code_typed_instead(portal: LivePortal, page: Page) -> None:
    choose(portal, page, "E-mail me a sign-in link")
    fill(page, "Continue", **{"E-mail address": "ana.diaz@example.com"})
    code = code_in(portal.latest(portal.demo["ana"], "email").text)
    fill(page, "Continue", **{"Code from the e-mail": code})
    expect_home(page, portal, "Ana Diaz")


def test_staff_pin(portal: LivePortal, page: Page) -> None:
    sign_in_with_pin(portal, page)
    expect(page.get_by_text("none: this session is not limited to one case")).to_be_visible()


def test_password_invitation_then_password_sign_in(
    portal: LivePortal, page: Page, screenshot: Shot
) -> None:
    invitation = link_in(portal.latest(portal.demo["ana"], "email").text)  # seeded
    assert urlsplit(invitation).path == "/auth/password/set"
    page.goto(invitation)
    expect(page.get_by_role("heading", level=1)).to_have_text("Set your password")
    screenshot("set")
    fill(page, "Save password", **{"New password": NEW_PASSWORD})
    expect_home(page, portal, "Ana Diaz")
    page.get_by_role("button", name="Sign out").click()

    choose(portal, page, "Sign in with a password")
    fill(page, "Continue", **{"E-mail address": "ana.diaz@example.com", "Password": "wrong"})
    expect(page.get_by_role("alert")).to_contain_text("do not match")
    expect(page.get_by_label("E-mail address", exact=True)).to_have_value("ana.diaz@example.com")
    expect(page.get_by_label("Password", exact=True)).to_have_value("")  # never echoed back
    fill(page, "Continue", **{"Password": NEW_PASSWORD})
    expect_home(page, portal, "Ana Diaz")


# -- accounts ----------------------------------------------------------------------------------


def test_sign_up_with_confirmation(portal: LivePortal, page: Page, screenshot: Shot) -> None:
    page.goto(portal.at("/auth/"))
    page.get_by_role("link", name="Create an account").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Create an account")
    for label, value in {
        "Your name": "Kim Lee",
        "E-mail address": "kim.lee@example.com",
        "New password": NEW_PASSWORD,
    }.items():
        page.get_by_label(label, exact=True).fill(value)
    screenshot("form")
    fill(page, "Create account")
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your e-mail")
    kim = portal.party("Kim Lee")
    link = link_in(portal.latest(kim.id, "email").text)
    assert urlsplit(link).path == "/auth/sign-up/confirm"
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your e-mail address")
    fill(page, "Confirm my address")
    expect_home(page, portal, "Kim Lee")


def test_forgotten_password(portal: LivePortal, page: Page) -> None:
    ana = portal.demo["ana"]
    invitation = parse_qs(urlsplit(link_in(portal.latest(ana, "email").text)).query)
    portal.auth.passwords.accept_invite(FIRM, invitation["token"][0], NEW_PASSWORD)

    choose(portal, page, "Sign in with a password")
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Reset your password")
    fill(page, "Send me a reset link", **{"E-mail address": "ana.diaz@example.com"})
    expect(page.get_by_role("status")).to_contain_text("If that address has an account")
    link = link_in(portal.latest(ana, "email").text)
    assert urlsplit(link).path == "/auth/password/reset"
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose a new password")
    fill(page, "Save password", **{"New password": "too short"})
    expect(page.get_by_role("alert")).to_contain_text("Use at least 15 characters")
    expect(page.get_by_label("New password", exact=True)).to_have_attribute("aria-invalid", "true")
    fill(page, "Save password", **{"New password": "a brand new long password"})
    expect(page.get_by_role("heading", level=1)).to_have_text("Password changed")
    page.get_by_role("link", name="Sign in").click()
    page.get_by_role("link", name="Sign in with a password").click()
    fill(
        page,
        "Continue",
        **{"E-mail address": "ana.diaz@example.com", "Password": "a brand new long password"},
    )
    expect_home(page, portal, "Ana Diaz")


def test_second_factor_set_in_the_staff_settings(
    portal: LivePortal, page: Page, screenshot: Shot
) -> None:
    page.goto(portal.at("/staff/"))  # staff sign in on their own portal first
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in with a password")
    fill(
        page,
        "Continue",
        **{"E-mail address": portal.demo["staff_email"], "Password": STAFF_PASSWORD},
    )
    page.get_by_role("link", name="Portal settings").click()
    check_accessibility(page)
    page.get_by_label("Second factor after every sign-in").select_option(label="A code by e-mail")
    screenshot("settings")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status")).to_have_text("Saved.")
    assert portal.auth.portals.get(FIRM, fresh=True).second_factor == "email_code"

    choose(portal, page, "Sign in with a PIN from the office")
    fill(page, "Continue", **{"E-mail address": "sam.poe@example.com", "PIN": portal.demo["pin"]})
    expect(page.get_by_role("heading", level=1)).to_have_text("One more step")
    screenshot("step")
    fill(page, "Continue", **{"Code sent to your e-mail": "000000"})
    expect(page.get_by_role("alert")).to_contain_text("That did not work")
    code = code_in(portal.latest(portal.demo["sam"], "email").text)
    fill(page, "Continue", **{"Code sent to your e-mail": code})
    expect_home(page, portal, "Sam Poe")


# -- time, links, sessions ---------------------------------------------------------------------


def test_an_expired_code_and_an_expired_link(
    start_portal: Callable[..., LivePortal], page: Page
) -> None:
    clock = FrozenClock()
    portal = start_portal(clock=clock)
    sam = portal.party("Sam Poe")
    choose(portal, page, "Get a code by text or e-mail")
    fill(page, "Continue", **{"Phone number or e-mail address": "sam.poe@example.com"})
    code = code_in(portal.latest(sam.id, "email").text)
    portal.auth.magic_links.invite(portal.party("Ana Diaz"))  # a sign-in link, for later
    link = link_in(portal.latest(portal.demo["ana"], "email").text)

    clock.advance(11 * 60)  # the code lived 10 minutes
    fill(page, "Continue", **{"Verification code": code})
    expect(page.get_by_role("alert")).to_contain_text("That did not work")
    expect(page.get_by_label("Verification code", exact=True)).to_be_visible()
    assert page.context.cookies() and "portalauth_session" not in {
        c["name"] for c in page.context.cookies()
    }

    clock.advance(8 * 86400)  # the invitation link lived 7 days
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("This link cannot be used")
    expect(page.get_by_role("alert")).to_have_text(
        "This link has expired. Please request a new one."
    )


def test_a_superseded_link_says_a_newer_one_was_sent(
    start_portal: Callable[..., LivePortal], page: Page, screenshot: Shot
) -> None:
    clock = FrozenClock()
    portal = start_portal(clock=clock)
    ana = portal.demo["ana"]
    choose(portal, page, "E-mail me a sign-in link")
    fill(page, "Continue", **{"E-mail address": "ana.diaz@example.com"})
    first = link_in(portal.latest(ana, "email").text)
    clock.advance(120)  # past the resend cooldown: the next request sends a new link
    page.get_by_role("link", name="Start again").click()
    fill(page, "Continue", **{"E-mail address": "ana.diaz@example.com"})
    second = link_in(portal.latest(ana, "email").text)
    assert second != first

    page.goto(first)
    expect(page.get_by_role("heading", level=1)).to_have_text("This link cannot be used")
    expect(page.get_by_role("alert")).to_have_text(
        "A newer link was sent to you. Please use the link in the most recent e-mail."
    )
    screenshot("old-link")
    page.goto(second)
    fill(page, "Sign in to Acme Law LLP")
    expect_home(page, portal, "Ana Diaz")


def test_sign_out_ends_the_session(portal: LivePortal, page: Page) -> None:
    sign_in_with_pin(portal, page)
    token = session_token(page)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    assert page.url == portal.at("/auth/")
    assert "portalauth_session" not in {c["name"] for c in page.context.cookies()}
    with pytest.raises(SessionInvalid):
        portal.auth.sessions.validate(token)  # revoked on the server, not only forgotten
    page.goto(portal.at("/"))
    assert page.url == portal.at("/auth/?next=/")


def test_private_page_refused_when_signed_out(
    portal: LivePortal, page: Page, screenshot: Shot
) -> None:
    response = page.goto(portal.at("/?tab=docs"))
    assert response is not None and response.ok
    assert page.url == portal.at("/auth/?next=/?tab%3Ddocs")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    expect(page.get_by_text("Welcome")).to_have_count(0)
    check_accessibility(page)
    screenshot("chooser")
    page.get_by_role("link", name="Sign in with a PIN from the office").click()
    fill(page, "Continue", **{"E-mail address": "sam.poe@example.com", "PIN": portal.demo["pin"]})
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Sam Poe")
    assert page.url == portal.at("/?tab=docs")  # back where the client was going


# -- a real SMTP server ------------------------------------------------------------------------


def test_magic_link_from_a_real_smtp_server(
    start_portal: Callable[..., LivePortal], smtp_server: SmtpServer, page: Page
) -> None:
    sender = SmtpSender(
        host="127.0.0.1",
        port=smtp_server.port,
        security="none",
        from_address="noreply@acme.example",
    )
    portal = start_portal(email=sender)
    portal.auth.portals.update(FIRM, simulate=False)  # as staff do on the settings page
    feed = len(portal.messages())

    choose(portal, page, "E-mail me a sign-in link")
    fill(page, "Continue", **{"E-mail address": "ana.diaz@example.com"})
    (envelope,) = smtp_server.wait_for(1)
    assert envelope.rcpt_tos == ["ana.diaz@example.com"]
    raw = envelope.original_content or envelope.content
    assert isinstance(raw, bytes)
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(mail, email.message.EmailMessage)
    assert mail["From"].addresses[0].display_name == "Acme Law LLP"
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None
    link = link_in(body.get_content())
    assert len(portal.messages()) == feed  # sent for real: nothing went to the feed

    page.goto(link)
    fill(page, "Sign in to Acme Law LLP")
    expect_home(page, portal, "Ana Diaz")

"""Every client flow of the Django demo portal, end to end in headless Chromium.

Each test serves ``examples/django_portal`` in this process: the example's settings (apps,
middleware, URLs, ``PORTALAUTH``) are applied with ``override_settings`` (Django is configured from
the example's settings module if nothing configured it before), with ``PORTALAUTH["AUTH"]`` set to
an :class:`~portalauth.Auth` of the test's own on a SQLite file in ``tmp_path``, seeded like the
demo (``demo_site.portal.seed``). Django's ``ThreadedWSGIServer`` serves the example's WSGI handler
on 127.0.0.1 on a free port from a background thread. Playwright drives the pages as a client
would (by the labels and button texts a person reads); codes and links are read from the
simulated feed (``auth.outbox.messages``), as staff read them on the feed page. Tests that move
time use a :class:`~portalauth.FrozenClock`.

The browser comes from ``conftest.py`` (Debian's Chromium, headless); the ``page`` and
``screenshot`` fixtures here are the conftest's with a ``django-`` prefix, so each test leaves
``build/screenshots/django-<test>.png`` (and ``django-<test>--<step>.png`` for its steps).
"""

from __future__ import annotations

import importlib
import re
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("django", reason="django is not installed (pip install -e '.[django]')")
pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from playwright.sync_api import Page, expect

from portalauth import Auth, FrozenClock, Identity, Message, PasswordHasher, SessionInvalid

from .conftest import ROOT, SCREENSHOTS, TIMEOUT_MS, VIEWPORT

if TYPE_CHECKING:
    from playwright.sync_api import Browser

EXAMPLE = ROOT / "examples" / "django_portal"
FIRM = "acme"
SECRET_KEYS = ["django-browser-test-key-0123456789abcdef"]
CLIENT_COOKIE = "portalauth"  # the demo serves plain http: not Secure, so not __Host-
NEW_PASSWORD = "purple otters juggle quietly"
LINK = re.compile(r"https?://[^\s<>\"']+")

Shot = Callable[..., Path]


# -- serving the example --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def demo_settings() -> dict[str, Any]:
    """The example's settings (its module's upper-case names); Django is set up with them unless
    something configured Django before (tests/integrations/test_django.py does, at import)."""
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    import django
    from django.conf import settings

    module = importlib.import_module("demo_site.settings")
    values = {name: getattr(module, name) for name in dir(module) if name.isupper()}
    if not settings.configured:
        settings.configure(**values, LOGGING_CONFIG=None)  # leave the process's logging alone
        django.setup()
    return values


@pytest.fixture(scope="session")
def demo(demo_settings: dict[str, Any]) -> Any:
    """``demo_site.portal``: the seed, the demo accounts."""
    return importlib.import_module("demo_site.portal")


@dataclass
class LiveDjango:
    """The Django example served on 127.0.0.1, and its ``Auth`` (to read the simulated feed)."""

    url: str
    auth: Auth
    clock: FrozenClock | None
    share_code: str

    def at(self, path: str) -> str:
        return self.url + path

    def party(self, name: str) -> Identity:
        return next(p for p in self.auth.directory.list(FIRM) if p.name == name)

    def latest(self, identity: str, channel: str | None = None) -> Message:
        """The newest message to ``identity`` in the firm's simulated feed."""
        for message in self.auth.outbox.messages(FIRM, identity=identity):
            if channel is None or message.channel == channel:
                return message
        raise AssertionError(f"no {channel or ''} message in the feed for {identity}")


@pytest.fixture
def start_portal(
    tmp_path: Path, demo_settings: dict[str, Any], demo: Any
) -> Iterator[Callable[..., LiveDjango]]:
    """``start_portal(clock=None)``: the example on a free port, with a fresh seeded store."""
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.test.utils import override_settings

    class QuietHandler(WSGIRequestHandler):  # type: ignore[misc]  # Django is untyped here
        def log_message(self, format: str, *args: Any) -> None:
            pass

    running: list[tuple[Any, threading.Thread, Any, Auth]] = []

    def start(*, clock: FrozenClock | None = None) -> LiveDjango:
        assert not running, "one portal per test: the settings are process-wide"
        server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler, allow_reuse_address=False)
        url = f"http://127.0.0.1:{server.server_port}"
        try:
            auth = Auth(
                SECRET_KEYS,
                f"sqlite:///{tmp_path / 'portal.db'}",
                clock=clock,
                entry_points=False,
                # Cheap argon2id parameters: the same policy, faster seeding and sign-in.
                password_hasher=PasswordHasher(memory_cost=1024, rounds=1, parallelism=1),
            )
        except BaseException:
            server.server_close()
            raise
        try:
            seeded = demo.seed(auth, url)  # links in messages are built on the server's URL
        except BaseException:
            server.server_close()
            auth.close()
            raise
        overrides = {
            name: value
            for name, value in demo_settings.items()
            if name not in ("SECRET_KEY", "DATABASES", "BASE_DIR", "INSTALLED_APPS")
        }
        if list(settings.INSTALLED_APPS) != list(demo_settings["INSTALLED_APPS"]):
            overrides["INSTALLED_APPS"] = demo_settings["INSTALLED_APPS"]
        overrides["DEBUG"] = False
        overrides["PORTALAUTH"] = {**demo_settings["PORTALAUTH"], "AUTH": auth}
        override = override_settings(**overrides)
        override.enable()
        server.set_app(WSGIHandler())  # after the override: it loads the example's middleware
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        running.append((server, thread, override, auth))
        return LiveDjango(url, auth, clock, seeded["share_code"])

    yield start
    for server, thread, override, auth in running:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        override.disable()
        auth.close()


@pytest.fixture
def portal(start_portal: Callable[..., LiveDjango]) -> LiveDjango:
    """The example on the real clock, in simulate mode."""
    return start_portal()


# -- the browser page, with django- screenshots --------------------------------------------------


def _shot(node: pytest.Item, suffix: str = "") -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", node.name).strip("-")
    return SCREENSHOTS / f"django-{name}{'--' + suffix if suffix else ''}.png"


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a fresh context; its last state is saved as ``django-<test>.png``."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    try:
        yield opened
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        try:
            opened.screenshot(path=_shot(request.node))
        finally:
            context.close()


@pytest.fixture
def screenshot(page: Page, request: pytest.FixtureRequest) -> Shot:
    """``screenshot("step")``: save the page now as ``django-<test>--step.png``."""

    def take(suffix: str, *, full_page: bool = False) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = _shot(request.node, suffix)
        page.screenshot(path=path, full_page=full_page)
        return path

    return take


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
    """One h1; every input has a (non-empty) label; code inputs say one-time-code, numeric."""
    assert page.evaluate("document.documentElement.lang") == "en"
    expect(page.locator("h1")).to_have_count(1)
    for control in page.evaluate(_FORM_CONTROLS):
        named = any(control["labels"]) or control["ariaLabel"]
        assert named, f"input {control['name']!r} has no label on {page.url}"
        if control["name"] in ("code", "pin"):
            assert control["autocomplete"] == "one-time-code", control
            assert control["inputmode"] == "numeric", control


def heading(page: Page) -> Any:
    return expect(page.get_by_role("heading", level=1))


def fill(page: Page, button: str, **by_label: str) -> None:
    """Check the page, fill each field found by its label, and press the button."""
    check_accessibility(page)
    for label, value in by_label.items():
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name=button, exact=True).click()


def choose(portal: LiveDjango, page: Page, method: str) -> None:
    """Open the sign-in chooser and pick a method by its label."""
    page.goto(portal.at("/sign-in"))
    heading(page).to_have_text("Sign in to Acme Law LLP")
    check_accessibility(page)
    page.get_by_role("link", name=method, exact=True).click()
    heading(page).to_have_text(method)


def expect_home(page: Page, portal: LiveDjango, name: str, method: str) -> None:
    """The private page, with no token in its URL, says who is signed in and how."""
    heading(page).to_have_text(f"Welcome, {name}")
    assert page.url == portal.at("/home")
    expect(page.locator("dd").nth(1)).to_contain_text(method)


def cookie_names(page: Page) -> set[str]:
    return {cookie["name"] for cookie in page.context.cookies()}


def sign_in_with_password(
    portal: LiveDjango, page: Page, email: str, password: str, name: str
) -> None:
    choose(portal, page, "Sign in with a password")
    fill(page, "Continue", **{"E-mail address": email, "Password": password})
    expect_home(page, portal, name, "password")


def staff_sign_in(portal: LiveDjango, page: Page, demo: Any, target: str = "/staff/") -> None:
    """Staff sign in on their own portal (a separate cookie), landing on ``target``."""
    page.goto(portal.at(target))
    heading(page).to_have_text("Staff sign-in")
    fill(page, "Sign in", **{"E-mail address": demo.STAFF_EMAIL, "Password": demo.STAFF_PASSWORD})
    expect(page).to_have_url(portal.at(target))


# -- every strategy ------------------------------------------------------------------------------


def test_share_code_then_the_emailed_code(portal: LiveDjango, page: Page, screenshot: Shot) -> None:
    choose(portal, page, "Sign in with a share code")
    share = portal.share_code.lower().replace("-", " ")  # as a person might type it
    fill(page, "Continue", **{"Share code": share})
    expect(page.get_by_label("Confirmation code", exact=True)).to_be_visible()
    screenshot("code")
    jane = portal.party("Jane Roe")
    code = code_in(portal.latest(jane.id, "email").text)
    fill(page, "Continue", **{"Confirmation code": code})
    expect_home(page, portal, "Jane Roe", "share_code")
    expect(page.get_by_text("case-42: Roe v. Doe")).to_be_visible()  # the session's case scope


def test_contact_otp_by_text_message(portal: LiveDjango, page: Page) -> None:
    choose(portal, page, "Get a code by text or e-mail")
    fill(page, "Continue", **{"Phone number or e-mail address": "(202) 555-0143"})
    expect(page.get_by_label("Verification code", exact=True)).to_be_visible()
    sam = portal.party("Sam Poe")
    message = portal.latest(sam.id)
    assert message.channel == "sms" and message.to == sam.phone
    fill(page, "Continue", **{"Verification code": code_in(message.text)})
    expect_home(page, portal, "Sam Poe", "contact_otp")


def test_magic_link_opens_a_confirm_page_then_signs_in_on_post(
    portal: LiveDjango, page: Page, screenshot: Shot
) -> None:
    choose(portal, page, "E-mail me a sign-in link")
    fill(page, "Continue", **{"E-mail address": "sam.poe@example.com"})
    expect(page.get_by_text("Or open the link in the e-mail.")).to_be_visible()
    link = link_in(portal.latest(portal.party("Sam Poe").id, "email").text)
    assert link.startswith(portal.at("/sign-in/link?token="))
    token = parse_qs(urlsplit(link).query)["token"][0]

    for _ in range(2):  # opening the link (twice, as a mail scanner might) changes nothing
        page.goto(link)
        heading(page).to_have_text("Sign in with your link")
        assert portal.auth.magic_links.inspect(FIRM, token).state == "valid"
    assert CLIENT_COOKIE not in cookie_names(page)
    check_accessibility(page)
    screenshot("confirm")
    page.get_by_role("button", name="Sign in", exact=True).click()  # the POST redeems it
    expect_home(page, portal, "Sam Poe", "magic_link")
    assert "token" not in page.url
    assert portal.auth.magic_links.inspect(FIRM, token).state == "used"

    page.goto(link)
    expect(page.get_by_role("alert")).to_contain_text("This link was already used.")


def test_staff_pin_from_the_staff_pages(
    portal: LiveDjango, page: Page, demo: Any, screenshot: Shot
) -> None:
    staff_sign_in(portal, page, demo)
    heading(page).to_have_text("Parties")
    page.get_by_role("link", name="Sam Poe", exact=True).click()
    heading(page).to_have_text("Sam Poe")
    page.get_by_role("button", name="Generate a PIN", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("PIN (shown once")
    pin = page.locator(".secret").inner_text().strip()
    assert re.fullmatch(r"\d{6}", pin), pin
    screenshot("pin", full_page=True)

    choose(portal, page, "Sign in with a PIN from the office")
    fill(page, "Continue", **{"E-mail address": "sam.poe@example.com", "PIN": pin})
    expect_home(page, portal, "Sam Poe", "staff_pin")
    expect(page.get_by_text("all of your matters")).to_be_visible()  # not limited to a case


def test_password_sign_in(portal: LiveDjango, page: Page, demo: Any) -> None:
    choose(portal, page, "Sign in with a password")
    fill(page, "Continue", **{"E-mail address": "pat.lee@example.com", "Password": "wrong"})
    expect(page.get_by_role("alert")).to_be_visible()
    heading(page).to_have_text("Sign in with a password")
    expect(page.get_by_label("E-mail address", exact=True)).to_have_value("pat.lee@example.com")
    expect(page.get_by_label("Password", exact=True)).to_have_value("")  # never echoed back
    assert CLIENT_COOKIE not in cookie_names(page)
    fill(page, "Continue", **{"Password": demo.CLIENT_PASSWORD})
    expect_home(page, portal, "Pat Lee", "password")


# -- accounts ----------------------------------------------------------------------------------


def test_sign_up_with_confirmation(portal: LiveDjango, page: Page, screenshot: Shot) -> None:
    portal.auth.portals.update(FIRM, signup_enabled=True)  # off in the demo, as staff may set
    page.goto(portal.at("/sign-in"))
    page.get_by_role("link", name="Create an account", exact=True).click()
    heading(page).to_have_text("Create an account")
    for label, value in {
        "Your name": "Lee Park",
        "E-mail address": "lee.park@example.com",
        "Choose a password": NEW_PASSWORD,
    }.items():
        page.get_by_label(label, exact=True).fill(value)
    screenshot("form")
    fill(page, "Sign up")
    heading(page).to_have_text("Check your e-mail")
    expect(page.get_by_role("status")).to_contain_text("confirm your address")
    assert CLIENT_COOKIE not in cookie_names(page)  # not signed in before confirming

    lee = portal.auth.directory.find_by_email(FIRM, "lee.park@example.com")
    assert lee is not None
    link = link_in(portal.latest(lee.id, "email").text)
    assert link.startswith(portal.at("/sign-up/confirm?token="))
    page.goto(link)
    heading(page).to_have_text("Confirm your e-mail address")
    fill(page, "Confirm and sign in")
    expect_home(page, portal, "Lee Park", "password")


def test_forgotten_password(portal: LiveDjango, page: Page, demo: Any) -> None:
    page.goto(portal.at("/sign-in"))
    page.get_by_role("link", name="Forgotten your password?", exact=True).click()
    heading(page).to_have_text("Forgotten password")
    fill(page, "Send me a link", **{"E-mail address": "pat.lee@example.com"})
    heading(page).to_have_text("Check your e-mail")
    expect(page.get_by_role("status")).to_contain_text("we have e-mailed it a link")

    link = link_in(portal.latest(portal.party("Pat Lee").id, "email").text)
    assert link.startswith(portal.at("/password/reset?token="))
    page.goto(link)
    heading(page).to_have_text("Choose a new password")
    fill(
        page,
        "Change password",
        **{"New password": NEW_PASSWORD, "New password again": NEW_PASSWORD + " typo"},
    )
    expect(page.get_by_role("alert")).to_contain_text("The two passwords are not the same.")
    fill(
        page,
        "Change password",
        **{"New password": NEW_PASSWORD, "New password again": NEW_PASSWORD},
    )
    heading(page).to_have_text("Password changed")
    expect(page.get_by_role("status")).to_contain_text("Please sign in with your new password.")
    assert CLIENT_COOKIE not in cookie_names(page)  # a reset does not sign in (the demo's rule)

    choose(portal, page, "Sign in with a password")
    fill(
        page,
        "Continue",
        **{"E-mail address": "pat.lee@example.com", "Password": demo.CLIENT_PASSWORD},
    )
    expect(page.get_by_role("alert")).to_be_visible()  # the old password is gone
    fill(page, "Continue", **{"Password": NEW_PASSWORD})
    expect_home(page, portal, "Pat Lee", "password")


def test_second_factor_set_in_the_staff_settings(
    portal: LiveDjango, page: Page, demo: Any, screenshot: Shot
) -> None:
    staff_sign_in(portal, page, demo, "/staff/settings")
    heading(page).to_have_text("Portal settings")
    check_accessibility(page)
    page.get_by_label("Second factor", exact=True).select_option("email_code")
    screenshot("settings", full_page=True)
    page.get_by_role("button", name="Save settings", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Settings saved.")
    assert portal.auth.portals.get(FIRM, fresh=True).second_factor == "email_code"

    choose(portal, page, "Sign in with a password")
    fill(
        page,
        "Continue",
        **{"E-mail address": "pat.lee@example.com", "Password": demo.CLIENT_PASSWORD},
    )
    heading(page).to_have_text("One more step")
    assert CLIENT_COOKIE not in cookie_names(page)  # partly signed in is not signed in
    screenshot("step")
    fill(page, "Continue", **{"Code sent to your e-mail": "000000"})
    expect(page.get_by_role("alert")).to_contain_text("That did not work")
    heading(page).to_have_text("One more step")
    code = code_in(portal.latest(portal.party("Pat Lee").id, "email").text)
    fill(page, "Continue", **{"Code sent to your e-mail": code})
    expect_home(page, portal, "Pat Lee", "password")


# -- time, links, sessions ---------------------------------------------------------------------


def test_an_expired_code_and_an_expired_link(
    start_portal: Callable[..., LiveDjango], page: Page, screenshot: Shot
) -> None:
    clock = FrozenClock()
    portal = start_portal(clock=clock)
    invitation = link_in(portal.latest(portal.party("Mia Chen").id, "email").text)  # seeded
    choose(portal, page, "Get a code by text or e-mail")
    fill(page, "Continue", **{"Phone number or e-mail address": "sam.poe@example.com"})
    expect(page.get_by_label("Verification code", exact=True)).to_be_visible()
    code = code_in(portal.latest(portal.party("Sam Poe").id, "email").text)

    clock.advance(11 * 60)  # the code lived 10 minutes
    fill(page, "Continue", **{"Verification code": code})
    expect(page.get_by_role("alert")).to_contain_text("That did not work")
    expect(page.get_by_label("Verification code", exact=True)).to_be_visible()
    assert CLIENT_COOKIE not in cookie_names(page)
    screenshot("code")

    clock.advance(8 * 86400)  # the invitation link lived 7 days
    page.goto(invitation)
    heading(page).to_have_text("Sign in with your link")
    expect(page.get_by_role("alert")).to_have_text(
        "This link has expired. Please ask for a new one."
    )
    expect(page.get_by_role("button", name="Sign in", exact=True)).to_have_count(0)


def test_a_superseded_link_says_a_newer_one_was_sent(
    start_portal: Callable[..., LiveDjango], page: Page, screenshot: Shot
) -> None:
    clock = FrozenClock()
    portal = start_portal(clock=clock)
    sam = portal.party("Sam Poe")
    choose(portal, page, "E-mail me a sign-in link")
    fill(page, "Continue", **{"E-mail address": "sam.poe@example.com"})
    expect(page.get_by_text("Or open the link in the e-mail.")).to_be_visible()
    first = link_in(portal.latest(sam.id, "email").text)
    clock.advance(120)  # past the resend cooldown: asking again sends a new link
    page.get_by_role("link", name="Other ways to sign in", exact=True).click()
    page.get_by_role("link", name="E-mail me a sign-in link", exact=True).click()
    heading(page).to_have_text("E-mail me a sign-in link")
    fill(page, "Continue", **{"E-mail address": "sam.poe@example.com"})
    expect(page.get_by_text("Or open the link in the e-mail.")).to_be_visible()
    second = link_in(portal.latest(sam.id, "email").text)
    assert second != first

    page.goto(first)
    heading(page).to_have_text("Sign in with your link")
    expect(page.get_by_role("alert")).to_have_text(
        "A newer link was sent to you. Please use the link in the most recent e-mail."
    )
    expect(page.get_by_role("button", name="Sign in", exact=True)).to_have_count(0)
    screenshot("old-link")
    page.goto(second)
    fill(page, "Sign in")
    expect_home(page, portal, "Sam Poe", "magic_link")


def test_sign_out_ends_the_session(portal: LiveDjango, page: Page, demo: Any) -> None:
    sign_in_with_password(portal, page, "pat.lee@example.com", demo.CLIENT_PASSWORD, "Pat Lee")
    token = {c["name"]: c["value"] for c in page.context.cookies()}[CLIENT_COOKIE]
    page.get_by_role("main").get_by_role("button", name="Sign out", exact=True).click()
    heading(page).to_have_text("Sign in to Acme Law LLP")
    assert page.url == portal.at("/sign-in")
    assert CLIENT_COOKIE not in cookie_names(page)
    with pytest.raises(SessionInvalid):
        portal.auth.sessions.validate(token)  # revoked on the server, not only forgotten
    page.goto(portal.at("/home"))
    assert page.url == portal.at("/sign-in?next=%2Fhome")


def test_private_page_refused_when_signed_out(
    portal: LiveDjango, page: Page, demo: Any, screenshot: Shot
) -> None:
    response = page.goto(portal.at("/home"))
    assert response is not None and response.ok
    assert page.url == portal.at("/sign-in?next=%2Fhome")
    heading(page).to_have_text("Sign in to Acme Law LLP")
    expect(page.get_by_text("Welcome")).to_have_count(0)
    check_accessibility(page)
    screenshot("chooser")
    page.goto(portal.at("/staff/"))  # nor are the staff pages open to anyone
    assert page.url == portal.at("/staff/sign-in?next=%2Fstaff%2F")

    page.goto(portal.at("/home"))
    page.get_by_role("link", name="Sign in with a password", exact=True).click()
    heading(page).to_have_text("Sign in with a password")
    expect(page.locator("input[name=next]")).to_have_value("/home")  # carried by the form
    fill(
        page,
        "Continue",
        **{"E-mail address": "pat.lee@example.com", "Password": demo.CLIENT_PASSWORD},
    )
    expect_home(page, portal, "Pat Lee", "password")  # back where the client was going
    page.goto(portal.at("/staff/"))  # a client's session opens no staff page
    heading(page).to_have_text("Staff sign-in")

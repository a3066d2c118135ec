"""Browser tests: Debian's Chromium, driven by Playwright, against the Flask demo portal.

Fixtures:

- ``browser`` (session): one headless Chromium for the whole run, launched by Playwright's sync
  API from ``/usr/bin/chromium`` (Playwright's own browser download is never used) with the flags
  this machine needs (``CHROMIUM_FLAGS``). Playwright gives each launch a new, empty profile
  directory and removes it afterwards. Without ``/usr/bin/chromium`` or the ``playwright``
  package the browser tests are skipped with the reason; under ``CI=true`` a missing Chromium
  fails instead, since ``.ci/run`` installs it from ``.ci/apt-packages.txt``.
- ``page`` (function): a page in a new browser context (fresh cookies) for each test. When the
  test ends, a screenshot of whatever the page shows goes to ``build/screenshots/<test>.png``.
- ``screenshot`` (function): ``screenshot("step")`` saves ``build/screenshots/<test>--step.png``
  of the page now (``docs/img/`` holds copies of some, for ``docs/integrations/screenshots.md``).
- ``start_portal`` (function): ``start_portal(clock=None, email=None)`` builds
  ``examples/flask_portal/app.py``'s app on a SQLite file in ``tmp_path`` and serves it on
  127.0.0.1 on a free port (Werkzeug's ``make_server`` in a background thread); it returns a
  :class:`LivePortal`. The real clock unless a test passes a ``FrozenClock`` to move time.
  ``portal`` is the default one.
- ``smtp_server`` (function): a real aiosmtpd server on 127.0.0.1 that keeps what it receives.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from portalauth import Auth, Clock, Identity, Message, Sender

if TYPE_CHECKING:
    from aiosmtpd.smtp import Envelope
    from flask import Flask
    from playwright.sync_api import Browser, Page, ViewportSize

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
#: Headless, no sandbox (CI runs as root), and nothing that reaches out to the network.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Screenshots are of the whole page, at least this tall (short pages leave little blank).
VIEWPORT: ViewportSize = {"width": 800, "height": 400}
#: Playwright waits at most this long (ms) for a page or an element: a failure fails fast.
TIMEOUT_MS = 10_000

FIRM = "acme"
SECRET_KEYS = ["browser-test-key-0123456789abcdef"]
STAFF_PASSWORD = "a staff password for the browser tests"


def _load_demo() -> Any:
    spec = importlib.util.spec_from_file_location(
        "flask_portal_app_browser", ROOT / "examples" / "flask_portal" / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the browser --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found (apt-get install chromium)"
        if os.environ.get("CI") == "true":  # .ci/run installs it: a skip would hide a gap
            pytest.fail(f"{reason}; CI must run the browser tests")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        yield launched
        launched.close()


def _shot_name(node: pytest.Item, suffix: str = "") -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", node.name).strip("-")
    return SCREENSHOTS / f"{name}{'--' + suffix if suffix else ''}.png"


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a fresh context; its last state is saved as ``build/screenshots/<test>.png``."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    try:
        yield opened
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        try:
            opened.screenshot(path=_shot_name(request.node), full_page=True)
        finally:
            context.close()


@pytest.fixture
def screenshot(page: Page, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """``screenshot("step")``: save the page now as ``build/screenshots/<test>--step.png``."""

    def take(suffix: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = _shot_name(request.node, suffix)
        page.screenshot(path=path, full_page=True)
        return path

    return take


# -- the portal ---------------------------------------------------------------------------------


class _LateApp:
    """A WSGI app set after the server is bound: the app must know its URL (links in messages
    are built on it), and the URL needs the port the server got."""

    app: Flask | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None
        return self.app(environ, start_response)


@dataclass
class LivePortal:
    """The demo app served on 127.0.0.1, and its ``Auth`` (to read the simulated feed)."""

    url: str
    app: Flask
    auth: Auth
    clock: Clock | None
    demo: dict[str, str] = field(default_factory=dict)

    def at(self, path: str) -> str:
        return self.url + path

    def party(self, name: str) -> Identity:
        return next(p for p in self.auth.directory.list(FIRM) if p.name == name)

    def messages(self, identity: str | None = None) -> list[Message]:
        """The firm's simulated feed, newest first (one client's with ``identity``)."""
        return self.auth.outbox.messages(FIRM, identity=identity)

    def latest(self, identity: str, channel: str | None = None) -> Message:
        for message in self.messages(identity):
            if channel is None or message.channel == channel:
                return message
        raise AssertionError(f"no {channel or ''} message in the feed for {identity}")


@pytest.fixture(scope="session")
def demo_module() -> Any:
    pytest.importorskip("flask")
    return _load_demo()


@pytest.fixture
def start_portal(tmp_path: Path, demo_module: Any) -> Iterator[Callable[..., LivePortal]]:
    from werkzeug.serving import make_server

    running: list[tuple[Any, threading.Thread, Auth]] = []

    def start(*, clock: Clock | None = None, email: Sender | None = None) -> LivePortal:
        late = _LateApp()
        server = make_server("127.0.0.1", 0, late, threaded=True)
        url = f"http://127.0.0.1:{server.server_port}"
        app = demo_module.create_app(
            tmp_path / f"portal{len(running)}.db",
            base_url=url,
            secret_keys=SECRET_KEYS,
            clock=clock,
            staff_password=STAFF_PASSWORD,
            email=email,
        )
        late.app = app
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        auth: Auth = app.extensions["portalauth"].auth
        running.append((server, thread, auth))
        return LivePortal(url, app, auth, clock, dict(app.config["PORTALAUTH_DEMO"]))

    yield start
    for server, thread, auth in running:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        auth.close()


@pytest.fixture
def portal(start_portal: Callable[..., LivePortal]) -> LivePortal:
    """The demo portal on the real clock, in simulate mode."""
    return start_portal()


# -- a real SMTP server -------------------------------------------------------------------------


class SmtpServer:
    """An aiosmtpd server on 127.0.0.1 and the envelopes it accepted."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted"

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[Envelope]:
        deadline = time.monotonic() + timeout
        while len(self.envelopes) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.envelopes) >= count, f"{len(self.envelopes)} of {count} mails arrived"
        return self.envelopes


def _free_port() -> int:
    # aiosmtpd's Controller probes its port after starting, so it needs a real one, not 0.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    controller_mod = pytest.importorskip("aiosmtpd.controller")
    handler = SmtpServer()
    handler.port = _free_port()
    controller = controller_mod.Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()

"""Real SMTP servers for the sender tests: aiosmtpd on 127.0.0.1, with real TLS from trustme."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

USER = "mailer"
PASSWORD = "s3cret-p@ss:w/rd%"


class Collector:
    """An aiosmtpd handler that keeps every envelope it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted"


class Authenticator:
    """Accepts exactly USER / PASSWORD and records every attempt (mechanism only)."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        self.attempts.append(mechanism)
        ok = isinstance(data, LoginPassword) and (
            data.login == USER.encode() and data.password == PASSWORD.encode()
        )
        # handled=False: aiosmtpd itself answers a failure with "535 ... credentials invalid".
        return AuthResult(success=ok, handled=False)


class Server:
    """A running aiosmtpd server and what it received."""

    def __init__(self, controller: Controller, collector: Collector, auth: Authenticator) -> None:
        self.controller = controller
        self.collector = collector
        self.auth = auth

    @property
    def port(self) -> int:
        return int(self.controller.port)

    @property
    def envelopes(self) -> list[Envelope]:
        return self.collector.envelopes


def free_port() -> int:
    # Controller probes its port right after starting, so port=0 cannot be used: ask the OS for
    # a free port, release it, and hand it to the controller.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@pytest.fixture
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    """A verifying client context (the sender's default, plus the test CA)."""
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def start_server() -> Iterator[Callable[..., Server]]:
    """``start_server(**smtp_kwargs)`` starts an aiosmtpd server; all stop after the test."""
    running: list[Controller] = []

    def start(**kwargs: Any) -> Server:
        collector = Collector()
        auth = Authenticator()
        if kwargs.pop("with_auth", False):
            kwargs["authenticator"] = auth
        controller = Controller(collector, hostname="127.0.0.1", port=free_port(), **kwargs)
        controller.start()
        running.append(controller)
        return Server(controller, collector, auth)

    yield start
    for controller in running:
        controller.stop()

"""TwilioSmsSender against a real local HTTP server (stdlib ``ThreadingHTTPServer``)."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote

import httpx
import pytest

from conftest import SECRET_KEYS
from portalauth import Auth
from portalauth.config import PortalSettings
from portalauth.delivery import sms
from portalauth.delivery.base import Sender
from portalauth.delivery.sms import BODY_MAX, SmsDeliveryFailed, TwilioSmsSender
from portalauth.errors import ConfigError, DeliveryFailed
from portalauth.records import Message

from .conftest import free_port

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "tok-S3cr3t/with:odd@chars%"
FROM = "+15005550006"
SERVICE = "MG" + "fedcba9876543210" * 2
TO = "+12025550123"
MESSAGE_SID = "SM" + "a1b2c3d4" * 4
PORTAL = PortalSettings(slug="acme", name="Acme Law LLP", support_phone="+1 202 555 0100")
PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"


# -- the fake provider


class Recorded:
    """One request as the server saw it."""

    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes, peer: Any):
        self.method = method
        self.path = path
        self.headers = headers  # names lowercased
        self.body = body
        self.peer = peer

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)


class Provider:
    """What the server answers (settable per test) and every request it received."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.requests: list[Recorded] = []
        self.status = 201
        self.reply: object = {"sid": MESSAGE_SID, "status": "queued"}
        self.raw: bytes | None = None  # sent instead of the JSON reply when set
        self.headers: dict[str, str] = {}
        self.delay = 0.0
        self.release = threading.Event()  # wakes a delayed handler at teardown
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse can be observed
    server: Any

    def _handle(self) -> None:
        provider: Provider = self.server.provider
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        with provider.lock:
            provider.requests.append(
                Recorded(self.command, self.path, headers, body, self.client_address)
            )
        if provider.delay:
            provider.release.wait(provider.delay)
        payload = provider.raw if provider.raw is not None else json.dumps(provider.reply).encode()
        try:
            self.send_response(provider.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in provider.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass  # the client gave up (timeout test)

    do_POST = _handle
    do_GET = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def provider() -> Iterator[Provider]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake = Provider(server)
    server.provider = fake  # type: ignore[attr-defined]
    # A short poll interval: shutdown() waits for the next poll.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    yield fake
    fake.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def make_sender(provider: Provider) -> Iterator[Callable[..., TwilioSmsSender]]:
    """``make_sender(**kwargs)``: a sender for the local provider, closed after the test."""
    built: list[TwilioSmsSender] = []

    def make(**kwargs: Any) -> TwilioSmsSender:
        settings: dict[str, Any] = {
            "account_sid": SID,
            "auth_token": TOKEN,
            "base_url": provider.base_url,
            "timeout": 5.0,
        }
        if "messaging_service_sid" not in kwargs:
            settings["from_number"] = FROM
        settings.update(kwargs)
        sender = TwilioSmsSender(**settings)
        built.append(sender)
        return sender

    yield make
    for sender in built:
        sender.close()


MakeSender = Callable[..., TwilioSmsSender]


def make_message(**changes: object) -> Message:
    fields: dict[str, object] = {
        "id": "msg-1",
        "portal": "acme",
        "identity_id": "id-1",
        "channel": "sms",
        "to": TO,
        "subject": "",
        "text": "Acme Law LLP: 123456 is your code to sign in.",
        "purpose": "login",
        "simulated": False,
    }
    fields.update(changes)
    return Message(**fields)  # type: ignore[arg-type]


def failure(sender: TwilioSmsSender, message: Message | None = None) -> SmsDeliveryFailed:
    with pytest.raises(DeliveryFailed) as info:
        sender.send(message or make_message(), portal=PORTAL)
    exc = info.value
    assert isinstance(exc, SmsDeliveryFailed)
    assert exc.code == "delivery_failed"
    # Nothing secret or personal in what may be shown or logged, and no chained exception.
    for shown in (str(exc), repr(exc), exc.message):
        assert TOKEN not in shown
        assert "123456" not in shown
        assert TO not in shown
    assert exc.__cause__ is None
    return exc


# -- the request


def test_request_has_the_twilio_shape(provider: Provider, make_sender: MakeSender) -> None:
    sender = make_sender()
    assert isinstance(sender, Sender)
    assert sender.channel == "sms"

    sender.send(make_message(), portal=PORTAL)  # returns None: Sender.send has no result

    (request,) = provider.requests
    assert request.method == "POST"
    assert request.path == PATH
    expected = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.form == {
        "To": [TO],
        "From": [FROM],
        "Body": ["Acme Law LLP: 123456 is your code to sign in."],
    }


def test_messaging_service_replaces_from(provider: Provider, make_sender: MakeSender) -> None:
    sender = make_sender(messaging_service_sid=SERVICE)
    sender.send(make_message(), portal=PORTAL)
    (request,) = provider.requests
    assert request.form["MessagingServiceSid"] == [SERVICE]
    assert "From" not in request.form


def test_body_arrives_intact(provider: Provider, make_sender: MakeSender) -> None:
    text = "Müller & Söhne: 123456 = your code?\n\n@portal.example #123456 +%&="
    make_sender().send(make_message(text=text), portal=PORTAL)
    assert provider.requests[0].form["Body"] == [text]


def test_body_of_exactly_the_limit_is_sent(provider: Provider, make_sender: MakeSender) -> None:
    make_sender().send(make_message(text="x" * BODY_MAX), portal=PORTAL)
    assert provider.requests[0].form["Body"] == ["x" * BODY_MAX]


def test_base_url_path_prefix(provider: Provider, make_sender: MakeSender) -> None:
    sender = make_sender(base_url=provider.base_url + "/api/laml/")
    sender.send(make_message(), portal=PORTAL)
    assert provider.requests[0].path == "/api/laml" + PATH


# -- connections


def test_one_long_lived_client_reuses_its_connection(
    provider: Provider, make_sender: MakeSender
) -> None:
    sender = make_sender()
    sender.send(make_message(), portal=PORTAL)
    sender.send(make_message(), portal=PORTAL)
    first, second = provider.requests
    assert first.peer == second.peer  # the same (keep-alive) connection

    sender.close()  # releases the connection; the sender stays usable
    sender.send(make_message(), portal=PORTAL)
    assert len(provider.requests) == 3
    assert provider.requests[2].peer != first.peer


def test_a_shared_client_is_used_and_left_open(provider: Provider, make_sender: MakeSender) -> None:
    # A client with permissive defaults: the sender's own per-request settings still apply.
    with httpx.Client(follow_redirects=True, timeout=60) as client:
        sender = make_sender(client=client)
        sender.send(make_message(), portal=PORTAL)
        sender.close()
        assert not client.is_closed
        sender.send(make_message(), portal=PORTAL)

        provider.status = 302
        provider.headers = {"Location": "/elsewhere"}
        assert failure(sender).reason == "bad_response"
    assert [r.path for r in provider.requests] == [PATH, PATH, PATH]


def test_concurrent_sends(provider: Provider, make_sender: MakeSender) -> None:
    sender = make_sender()
    errors: list[BaseException] = []

    def send(i: int) -> None:
        try:
            sender.send(make_message(id=f"msg-{i}", text=f"code {i}"), portal=PORTAL)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert sorted(r.form["Body"][0] for r in provider.requests) == [f"code {i}" for i in range(8)]


# -- the provider's answers


def test_2xx_with_a_sid_succeeds(provider: Provider, make_sender: MakeSender) -> None:
    provider.status = 200
    make_sender().send(make_message(), portal=PORTAL)
    assert len(provider.requests) == 1


def test_invalid_recipient_code(provider: Provider, make_sender: MakeSender) -> None:
    provider.status = 400
    provider.reply = {
        "code": 21211,
        "message": f"The 'To' number {TO} is not a valid phone number.",
        "more_info": "https://www.twilio.com/docs/errors/21211",
        "status": 400,
    }
    exc = failure(make_sender())
    assert exc.reason == "invalid_recipient"
    assert exc.status_code == 400
    assert exc.provider_code == 21211


def test_other_400_is_rejected(provider: Provider, make_sender: MakeSender) -> None:
    provider.status = 400
    provider.reply = {"code": 21602, "message": "Message body is required.", "status": 400}
    exc = failure(make_sender())
    assert (exc.reason, exc.status_code, exc.provider_code) == ("rejected", 400, 21602)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (401, "auth"),
        (403, "auth"),
        (404, "rejected"),
        (429, "rate_limited"),
        (500, "server_error"),
        (503, "server_error"),
    ],
)
def test_status_reasons(
    provider: Provider, make_sender: MakeSender, status: int, reason: str
) -> None:
    provider.status = status
    provider.reply = {"code": 20003, "message": "Authenticate", "status": status}
    exc = failure(make_sender())
    assert (exc.reason, exc.status_code, exc.provider_code) == (reason, status, 20003)
    # Not retried here: the caller decides.
    assert len(provider.requests) == 1


def test_error_without_json_has_no_provider_code(
    provider: Provider, make_sender: MakeSender
) -> None:
    provider.status = 502
    provider.raw = b"<html>Bad Gateway</html>"
    exc = failure(make_sender())
    assert (exc.reason, exc.status_code, exc.provider_code) == ("server_error", 502, None)


def test_redirect_is_not_followed(provider: Provider, make_sender: MakeSender) -> None:
    provider.status = 302
    provider.headers = {"Location": f"{provider.base_url}/elsewhere"}
    exc = failure(make_sender())
    assert (exc.reason, exc.status_code) == ("bad_response", 302)
    assert [r.path for r in provider.requests] == [PATH]


@pytest.mark.parametrize(
    "raw",
    [
        b"<html>OK</html>",
        b"",
        b'{"status": "queued"}',
        b'{"sid": ""}',
        b'{"sid": 42}',
        b'["SM123"]',
        b"[" * 60_000,  # nested too deep to parse (within the size cap)
        json.dumps({"sid": MESSAGE_SID, "padding": "x" * 70_000}).encode(),
    ],
)
def test_2xx_without_a_sid_is_a_bad_response(
    provider: Provider, make_sender: MakeSender, raw: bytes
) -> None:
    provider.raw = raw
    exc = failure(make_sender())
    assert (exc.reason, exc.status_code) == ("bad_response", 201)


def test_timeout(provider: Provider, make_sender: MakeSender) -> None:
    provider.delay = 2.0
    exc = failure(make_sender(timeout=0.2))
    assert exc.reason == "timeout"
    assert exc.error_type == "ReadTimeout"
    assert len(provider.requests) == 1


def test_nothing_listening() -> None:
    sender = TwilioSmsSender(
        account_sid=SID,
        auth_token=TOKEN,
        from_number=FROM,
        base_url=f"http://127.0.0.1:{free_port()}",
        timeout=5,
    )
    with sender:
        exc = failure(sender)
    assert exc.reason == "unreachable"
    assert exc.error_type == "ConnectError"
    assert exc.status_code is None


def test_https_to_a_plain_http_server_fails(provider: Provider) -> None:
    # https is allowed for loopback too; a server that does not speak TLS is unreachable.
    with TwilioSmsSender(
        account_sid=SID,
        auth_token=TOKEN,
        from_number=FROM,
        base_url=f"https://127.0.0.1:{provider.port}",
    ) as sender:
        assert failure(sender).reason in ("unreachable", "bad_response")
    assert provider.requests == []


def test_logs_hold_no_secret(
    provider: Provider, make_sender: MakeSender, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="portalauth")
    sender = make_sender()
    sender.send(make_message(), portal=PORTAL)
    provider.status = 400
    provider.reply = {"code": 21211, "message": f"Bad number {TO}"}
    failure(sender)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("portalauth"))
    assert "msg-1" in logged
    assert MESSAGE_SID in logged
    assert "invalid_recipient" in logged
    for secret in (TOKEN, "123456", TO):
        assert secret not in logged


def test_provider_sid_cannot_forge_log_lines(
    provider: Provider, make_sender: MakeSender, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="portalauth")
    provider.reply = {"sid": "SM1\nERROR forged line"}
    make_sender().send(make_message(), portal=PORTAL)
    assert all("\n" not in r.getMessage() for r in caplog.records)


# -- refused before any request


@pytest.mark.parametrize(
    "to",
    [
        "+1555\nBcc",
        "+12025550123\n",
        "+12025550123\r\nTo=+12025550124",
        "12345",
        "12025550123",
        "+1 202 555 0123",
        "+1-202-555-0123",
        "+12025550123,+12025550124",
        "+12025550123&To=+12025550124",
        "+02025550123",
        "+123456",
        "+1234567890123456",
        "+１２０２５５５０１２３",
        "+12025550123\u2028",
        "",
        ["+12025550123"],
        None,
        12025550123,
    ],
)
def test_unsafe_recipient_is_refused(
    provider: Provider, make_sender: MakeSender, to: object
) -> None:
    exc = failure(make_sender(), make_message(to=to))
    assert exc.reason == "invalid_recipient"
    assert exc.status_code is None
    assert provider.requests == []


@pytest.mark.parametrize("text", ["x" * (BODY_MAX + 1), "", "   \n", "bad \ud800 surrogate", None])
def test_unsafe_body_is_refused(provider: Provider, make_sender: MakeSender, text: object) -> None:
    exc = failure(make_sender(), make_message(text=text))
    assert exc.reason == "invalid_message"
    assert provider.requests == []


def test_email_message_is_refused(provider: Provider, make_sender: MakeSender) -> None:
    exc = failure(make_sender(), make_message(channel="email", to="jane@example.com"))
    assert exc.reason == "invalid_message"
    assert provider.requests == []


# -- configuration


def test_repr_hides_the_token() -> None:
    sender = TwilioSmsSender(account_sid=SID, auth_token=TOKEN, from_number=FROM)
    assert TOKEN not in repr(sender)
    assert SID in repr(sender)
    assert sender.base_url == "https://api.twilio.com"
    assert sender.timeout == 10.0


@pytest.mark.parametrize(
    "base_url",
    [
        "https://api.twilio.com",
        "https://api.twilio.com/",
        "https://sms.provider.example:8443/api/laml",
        "http://127.0.0.1:8080",
        "http://localhost:1",
        "http://[::1]:8080",
        "https://127.0.0.1:8443",
    ],
)
def test_good_base_urls(base_url: str) -> None:
    sender = TwilioSmsSender(account_sid=SID, auth_token=TOKEN, from_number=FROM, base_url=base_url)
    assert sender.base_url == base_url.rstrip("/")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_url": "http://api.twilio.com"},
        {"base_url": "http://127.0.0.2:8080"},
        {"base_url": "http://localhost.evil.example"},
        {"base_url": "http://127.0.0.1.nip.io"},
        {"base_url": "ftp://api.twilio.com"},
        {"base_url": "api.twilio.com"},
        {"base_url": "https://"},
        {"base_url": "https://user:pw@api.twilio.com"},
        {"base_url": "https://api.twilio.com?x=1"},
        {"base_url": "https://api.twilio.com#x"},
        {"base_url": "https://api.twilio.com:99999"},
        {"base_url": "https://api.twilio.com/a b"},
        {"base_url": "https://api.twilio.com/%2e%2e"},
        {"base_url": "https://api.twilio.com\r\nX: 1"},
        {"account_sid": "AC/../../evil"},
        {"account_sid": "AC 1"},
        {"account_sid": "AC?x=1"},
        {"account_sid": "A"},
        {"account_sid": ""},
        {"auth_token": ""},
        {"auth_token": "tok\r\nen"},
        {"auth_token": "tökén"},
        {"auth_token": None},
        {"from_number": None},
        {"messaging_service_sid": SERVICE},
        {"from_number": "+1 202 555 0123"},
        {"from_number": "12025550123"},
        {"from_number": "+19995550123"},
        {"from_number": "+15005550006\n"},
        {"from_number": "Acme"},
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": 601},
        {"timeout": True},
        {"timeout": "10"},
        {"client": "yes"},
    ],
)
def test_bad_settings_raise_config_error(kwargs: dict[str, object]) -> None:
    settings: dict[str, object] = {"account_sid": SID, "auth_token": TOKEN, "from_number": FROM}
    settings.update(kwargs)
    with pytest.raises(ConfigError) as info:
        TwilioSmsSender(**settings)  # type: ignore[arg-type]
    assert TOKEN not in str(info.value)


def test_messaging_service_alone() -> None:
    sender = TwilioSmsSender(account_sid=SID, auth_token=TOKEN, messaging_service_sid=SERVICE)
    assert (sender.from_number, sender.messaging_service_sid) == (None, SERVICE)


def test_missing_httpx_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sms, "_HAVE_HTTPX", False)
    with pytest.raises(ConfigError, match=r"pip install portalauth\[sms\]"):
        TwilioSmsSender(account_sid=SID, auth_token=TOKEN, from_number=FROM)


def test_from_uri() -> None:
    sender = TwilioSmsSender.from_uri(
        f"twilio://{SID}:tok%40en%3A1@api.twilio.com?from=%2B15005550006"
    )
    assert sender.account_sid == SID
    assert sender.from_number == FROM
    assert sender.messaging_service_sid is None
    assert sender.base_url == "https://api.twilio.com"
    assert sender.timeout == 10.0
    assert "tok@en" not in repr(sender)

    # A literal "+" is kept (parse_qsl would have turned it into a space).
    assert (
        TwilioSmsSender.from_uri(f"twilio://{SID}:t@api.twilio.com/?from=+15005550006").from_number
        == FROM
    )
    service = TwilioSmsSender.from_uri(
        f"twilio://{SID}:t@sms.example:8443?messaging_service={SERVICE}&timeout=2.5"
    )
    assert service.messaging_service_sid == SERVICE
    assert service.from_number is None
    assert service.base_url == "https://sms.example:8443"
    assert service.timeout == 2.5
    local = TwilioSmsSender.from_uri(f"twilio+http://{SID}:t@127.0.0.1:8080?from=%2B15005550006")
    assert local.base_url == "http://127.0.0.1:8080"
    assert TwilioSmsSender.from_uri(f"TWILIO+HTTP://{SID}:t@[::1]:8080?from={FROM}").base_url == (
        "http://[::1]:8080"
    )
    assert TwilioSmsSender.from_uri(f"twilio://{SID}:t@localhost:8443?from={FROM}").base_url == (
        "https://localhost:8443"
    )


def test_from_uri_percent_encoded_token_authenticates(provider: Provider) -> None:
    uri = (
        f"twilio+http://{SID}:{quote(TOKEN, safe='')}@127.0.0.1:{provider.port}?from=%2B15005550006"
    )
    with TwilioSmsSender.from_uri(uri) as sender:
        sender.send(make_message(), portal=PORTAL)
    expected = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert provider.requests[0].headers["authorization"] == f"Basic {expected}"
    assert provider.requests[0].form["From"] == [FROM]


@pytest.mark.parametrize(
    "uri",
    [
        f"twilio+http://{SID}:topsecret@api.twilio.com?from=%2B15005550006",
        f"twilio+http://{SID}:topsecret@127.0.0.2:8080?from=%2B15005550006",
        f"http://{SID}:topsecret@127.0.0.1?from=%2B15005550006",
        f"https://{SID}:topsecret@api.twilio.com?from=%2B15005550006",
        f"smtp://{SID}:topsecret@api.twilio.com?from=%2B15005550006",
        f"twilio://{SID}:topsecret@?from=%2B15005550006",
        f"twilio://{SID}:topsecret@api.twilio.com:notaport?from=%2B15005550006",
        f"twilio://{SID}:topsecret@api.twilio.com:99999?from=%2B15005550006",
        f"twilio://{SID}:topsecret@api.twilio.com/path?from=%2B15005550006",
        f"twilio://{SID}:topsecret@api.twilio.com?from=%2B15005550006#frag",
        f"twilio://{SID}:topsecret@api.twilio.com",
        f"twilio://{SID}:topsecret@api.twilio.com?from=%2B15005550006&messaging_service={SERVICE}",
        f"twilio://{SID}:topsecret@api.twilio.com?from=%2B15005550006&from=%2B15005550006",
        f"twilio://{SID}:topsecret@api.twilio.com?from=%2B15005550006&bogus=1",
        f"twilio://{SID}:topsecret@api.twilio.com?from=%2B15005550006&timeout=soon",
        f"twilio://{SID}:topsecret@api.twilio.com?from=%2B15005550006&timeout=0",
        f"twilio://{SID}:topsecret@api.twilio.com?from",
        f"twilio://{SID}:topsecret@api.twilio.com?from=15005550006",
        f"twilio://{SID}:topsecret@api.twilio.com?from=%2B1%20500%20555%200006",
        f"twilio://{SID}:topsecret@api.twilio.com?from=%2B15005550006%0A",
        f"twilio://{SID}:topsecret@api.twilio.com?from=&",
        f"twilio://{SID}@api.twilio.com?from=%2B15005550006",
        f"twilio://{SID}:@api.twilio.com?from=%2B15005550006",
        "twilio://:topsecret@api.twilio.com?from=%2B15005550006",
        "twilio://AC%2F..:topsecret@api.twilio.com?from=%2B15005550006",
        f"twilio://{SID}:top%0Asecret@api.twilio.com?from=%2B15005550006",
    ],
)
def test_bad_uris_raise_config_error_without_the_token(uri: str) -> None:
    with pytest.raises(ConfigError) as info:
        TwilioSmsSender.from_uri(uri)
    assert "topsecret" not in str(info.value)
    assert "topsecret" not in repr(info.value)


def test_from_uri_refuses_non_text() -> None:
    with pytest.raises(ConfigError):
        TwilioSmsSender.from_uri(None)  # type: ignore[arg-type]


# -- end to end through Auth


@pytest.fixture
def sms_auth(make_sender: MakeSender) -> Iterator[Auth]:
    auth = Auth(SECRET_KEYS, "memory://", sms=make_sender(), entry_points=False)
    yield auth
    auth.close()


def send_code(auth: Auth, *, simulate: bool) -> None:
    portal = auth.portals.create("acme", "Acme Law LLP", simulate=simulate)
    identity = auth.directory.add("acme", "Jane Roe", phone="(202) 555-0123")
    auth.dispatcher.send(
        identity,
        portal,
        channel="sms",
        template="code",
        context={"code": "123456", "minutes": 10, "purpose_label": "sign in"},
        purpose="login",
    )


def test_auth_delivers_sms_through_the_provider(provider: Provider, sms_auth: Auth) -> None:
    send_code(sms_auth, simulate=False)
    assert sms_auth.dispatcher.queue.deferred  # a real sender: off the request path (R32)
    assert sms_auth.dispatcher.queue.join(10)

    (request,) = provider.requests
    assert request.path == PATH
    assert request.form["To"] == [TO]
    assert request.form["From"] == [FROM]
    (body,) = request.form["Body"]
    assert "123456" in body
    assert "Acme Law LLP" in body
    assert len(body) <= BODY_MAX
    assert sms_auth.outbox.messages("acme") == []


def test_auth_simulate_records_instead_of_sending(provider: Provider, sms_auth: Auth) -> None:
    send_code(sms_auth, simulate=True)
    assert sms_auth.dispatcher.queue.join(10)

    assert provider.requests == []
    (message,) = sms_auth.outbox.messages("acme")
    assert message.channel == "sms"
    assert message.to == TO
    assert message.simulated
    assert "123456" in message.text


def test_auth_reports_provider_failure(provider: Provider, make_sender: MakeSender) -> None:
    provider.status = 500
    auth = Auth(SECRET_KEYS, "memory://", sms=make_sender(), entry_points=False, delivery="inline")
    try:
        with pytest.raises(DeliveryFailed) as info:
            send_code(auth, simulate=False)
    finally:
        auth.close()
    assert isinstance(info.value, SmsDeliveryFailed)
    assert info.value.reason == "server_error"


def test_auth_builds_the_sender_from_a_uri(provider: Provider) -> None:
    uri = f"twilio+http://{SID}:{quote(TOKEN, safe='')}@127.0.0.1:{provider.port}?from={FROM}"
    # Auth does not close its senders, so no connection may outlive the test.
    provider.headers = {"Connection": "close"}
    auth = Auth(SECRET_KEYS, "memory://", sms=uri, entry_points=False)
    try:
        assert {"twilio", "twilio+http"} <= auth.plugins.sender_schemes
        send_code(auth, simulate=False)
    finally:
        auth.close()
    (request,) = provider.requests
    assert request.form["To"] == [TO]
    assert "123456" in request.form["Body"][0]

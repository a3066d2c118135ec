"""SmtpSender against a real SMTP server (aiosmtpd) with real TLS (trustme certificates)."""

from __future__ import annotations

import email
import email.policy
import ssl
from collections.abc import Callable
from email.message import EmailMessage

import pytest

from portalauth.config import PortalSettings
from portalauth.delivery.base import Sender
from portalauth.delivery.smtp import SmtpDeliveryFailed, SmtpSender
from portalauth.errors import ConfigError, DeliveryFailed
from portalauth.records import Message

from .conftest import PASSWORD, USER, Server, free_port

FROM = "noreply@acme.example"
PORTAL = PortalSettings(slug="acme", name="Acme Law LLP", support_phone="+1 202 555 0100")

StartServer = Callable[..., Server]


def make_message(**changes: object) -> Message:
    fields: dict[str, object] = {
        "id": "msg-1",
        "portal": "acme",
        "identity_id": "id-1",
        "channel": "email",
        "to": "jane.roe@example.com",
        "subject": "Your code to sign in at Acme Law LLP",
        "text": "Your code is 123456.\n",
        "html": "<p>Your code is <b>123456</b>.</p>\n",
        "purpose": "sign_in",
        "simulated": False,
    }
    fields.update(changes)
    return Message(**fields)  # type: ignore[arg-type]


def received(server: Server, index: int = 0) -> EmailMessage:
    raw = server.envelopes[index].original_content or server.envelopes[index].content
    assert isinstance(raw, bytes)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


# -- plain delivery


def test_plain_delivery_builds_a_complete_message(start_server: StartServer) -> None:
    server = start_server()
    sender = SmtpSender(host="127.0.0.1", port=server.port, security="none", from_address=FROM)
    assert isinstance(sender, Sender)
    assert sender.channel == "email"

    sender.send(make_message(), portal=PORTAL)

    assert len(server.envelopes) == 1
    envelope = server.envelopes[0]
    assert envelope.mail_from == FROM
    assert envelope.rcpt_tos == ["jane.roe@example.com"]
    msg = received(server)
    (sender_addr,) = msg["From"].addresses
    assert sender_addr.display_name == "Acme Law LLP"
    assert sender_addr.addr_spec == FROM
    (to_addr,) = msg["To"].addresses
    assert to_addr.addr_spec == "jane.roe@example.com"
    assert to_addr.display_name == ""
    assert msg["Subject"] == "Your code to sign in at Acme Law LLP"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Date"] is not None
    assert msg["Message-ID"].endswith("@acme.example>")
    assert msg["Reply-To"] is None
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    # On the wire every line ends in CRLF.
    assert text.get_content() == "Your code is 123456.\r\n"
    assert html.get_content() == "<p>Your code is <b>123456</b>.</p>\r\n"


def test_text_only_message_and_reply_to(start_server: StartServer) -> None:
    server = start_server()
    sender = SmtpSender(
        host="127.0.0.1",
        port=server.port,
        security="none",
        from_address=FROM,
        reply_to="office@acme.example",
        local_hostname="app.acme.example",
    )
    sender.send(make_message(html=None, text="Grüße, 123456\n"), portal=PORTAL)

    msg = received(server)
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content() == "Grüße, 123456\r\n"
    assert msg["Reply-To"].addresses[0].addr_spec == "office@acme.example"


def test_message_ids_are_unique(start_server: StartServer) -> None:
    server = start_server()
    sender = SmtpSender(host="127.0.0.1", port=server.port, security="none", from_address=FROM)
    for _ in range(3):
        sender.send(make_message(), portal=PORTAL)
    ids = {received(server, i)["Message-ID"] for i in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize(
    "name", ["Müller & Söhne Rechtsanwälte", "Smith, Jones & Co.", 'The "Best" Firm; <Ltd>']
)
def test_portal_name_arrives_intact_as_one_display_name(
    start_server: StartServer, name: str
) -> None:
    server = start_server()
    sender = SmtpSender(host="127.0.0.1", port=server.port, security="none", from_address=FROM)
    sender.send(make_message(), portal=PORTAL.evolve(name=name))

    msg = received(server)
    (sender_addr,) = msg["From"].addresses
    assert sender_addr.display_name == name
    assert sender_addr.addr_spec == FROM
    assert server.envelopes[0].rcpt_tos == ["jane.roe@example.com"]


# -- TLS and authentication


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_starttls_then_auth(
    start_server: StartServer,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    mechanism: str,
) -> None:
    other = "LOGIN" if mechanism == "PLAIN" else "PLAIN"
    server = start_server(
        tls_context=server_tls,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        auth_exclude_mechanism=[other],
        with_auth=True,
    )
    sender = SmtpSender(
        host="127.0.0.1",
        port=server.port,
        security="starttls",
        username=USER,
        password=PASSWORD,
        from_address=FROM,
        ssl_context=client_tls,
    )
    sender.send(make_message(), portal=PORTAL)

    assert server.auth.attempts == [mechanism]
    assert len(server.envelopes) == 1
    assert received(server)["Subject"] == "Your code to sign in at Acme Law LLP"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_implicit_tls(
    start_server: StartServer, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    # aiosmtpd counts only STARTTLS as TLS for auth_require_tls; this connection is TLS anyway.
    server = start_server(
        ssl_context=server_tls, auth_required=True, auth_require_tls=False, with_auth=True
    )
    sender = SmtpSender(
        host="127.0.0.1",
        port=server.port,
        security="ssl",
        username=USER,
        password=PASSWORD,
        from_address=FROM,
        ssl_context=client_tls,
    )
    sender.send(make_message(), portal=PORTAL)

    assert server.auth.attempts == ["PLAIN"]
    assert len(server.envelopes) == 1


def test_no_starttls_offered_means_nothing_sent(start_server: StartServer) -> None:
    # The server would even accept AUTH in the clear: the sender must still not fall back.
    server = start_server(auth_require_tls=False, with_auth=True)
    sender = SmtpSender(
        host="127.0.0.1",
        port=server.port,
        username=USER,
        password=PASSWORD,
        from_address=FROM,
    )
    with pytest.raises(DeliveryFailed) as info:
        sender.send(make_message(), portal=PORTAL)

    assert isinstance(info.value, SmtpDeliveryFailed)
    assert info.value.reason == "starttls_unavailable"
    assert server.auth.attempts == []
    assert server.envelopes == []


def test_untrusted_certificate_means_nothing_sent(
    start_server: StartServer, server_tls: ssl.SSLContext
) -> None:
    server = start_server(tls_context=server_tls, auth_required=True, with_auth=True)
    # The default context does not trust the test CA.
    sender = SmtpSender(
        host="127.0.0.1", port=server.port, username=USER, password=PASSWORD, from_address=FROM
    )
    with pytest.raises(SmtpDeliveryFailed) as info:
        sender.send(make_message(), portal=PORTAL)

    assert info.value.reason == "tls_failed"
    assert server.auth.attempts == []
    assert server.envelopes == []


def test_certificate_for_another_host_is_refused(
    start_server: StartServer, ca: object, client_tls: ssl.SSLContext
) -> None:
    import trustme

    assert isinstance(ca, trustme.CA)
    wrong = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mail.other.example").configure_cert(wrong)
    server = start_server(ssl_context=wrong)
    sender = SmtpSender(
        host="127.0.0.1",
        port=server.port,
        security="ssl",
        from_address=FROM,
        ssl_context=client_tls,
    )
    with pytest.raises(SmtpDeliveryFailed) as info:
        sender.send(make_message(), portal=PORTAL)

    assert info.value.reason == "tls_failed"
    assert server.envelopes == []


def test_wrong_password_fails_without_leaking_it(
    start_server: StartServer, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    server = start_server(tls_context=server_tls, auth_required=True, with_auth=True)
    wrong = "Wr0ng-Pa55word!"
    sender = SmtpSender(
        host="127.0.0.1",
        port=server.port,
        username=USER,
        password=wrong,
        from_address=FROM,
        ssl_context=client_tls,
    )
    with pytest.raises(DeliveryFailed) as info:
        sender.send(make_message(), portal=PORTAL)

    exc = info.value
    assert isinstance(exc, SmtpDeliveryFailed)
    assert exc.reason == "auth_failed"
    assert exc.error_type == "SMTPAuthenticationError"
    assert exc.smtp_code == 535
    assert exc.code == "delivery_failed"
    for shown in (str(exc), repr(exc), exc.message):
        assert wrong not in shown
        assert "123456" not in shown
    assert exc.__cause__ is None
    assert exc.__suppress_context__
    assert server.envelopes == []


def test_nothing_listening() -> None:
    sender = SmtpSender(
        host="127.0.0.1", port=free_port(), security="none", from_address=FROM, timeout=5
    )
    with pytest.raises(SmtpDeliveryFailed) as info:
        sender.send(make_message(), portal=PORTAL)
    assert info.value.reason == "connect_failed"
    assert info.value.error_type == "ConnectionRefusedError"


def test_recipient_refused(start_server: StartServer) -> None:
    server = start_server()

    class Refuse:
        async def handle_RCPT(
            self,
            server: object,
            session: object,
            envelope: object,
            address: str,
            rcpt_options: list[str],
        ) -> str:
            return "550 5.1.1 No such user here"

    server.controller.handler = Refuse()  # used by connections made from now on
    sender = SmtpSender(host="127.0.0.1", port=server.port, security="none", from_address=FROM)
    with pytest.raises(SmtpDeliveryFailed) as info:
        sender.send(make_message(), portal=PORTAL)
    assert info.value.reason == "recipient_refused"
    assert info.value.smtp_code == 550


# -- international addresses


def test_utf8_recipient_uses_smtputf8(start_server: StartServer) -> None:
    server = start_server(enable_SMTPUTF8=True)
    sender = SmtpSender(host="127.0.0.1", port=server.port, security="none", from_address=FROM)
    sender.send(make_message(to="josé@example.com"), portal=PORTAL)

    assert server.envelopes[0].rcpt_tos == ["josé@example.com"]
    assert "SMTPUTF8" in server.envelopes[0].mail_options
    raw = server.envelopes[0].original_content
    assert isinstance(raw, bytes)
    # An SMTPUTF8 message carries raw UTF-8 headers.
    msg = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)
    assert msg["To"].addresses[0].addr_spec == "josé@example.com"


def test_utf8_recipient_without_smtputf8_fails(start_server: StartServer) -> None:
    server = start_server(enable_SMTPUTF8=False)  # the Controller enables it by default
    sender = SmtpSender(host="127.0.0.1", port=server.port, security="none", from_address=FROM)
    with pytest.raises(SmtpDeliveryFailed):
        sender.send(make_message(to="josé@example.com"), portal=PORTAL)
    assert server.envelopes == []


# -- header injection: refused before any connection is made


@pytest.mark.parametrize(
    "to",
    [
        "victim@example.com\r\nBcc: evil@example.com",
        "victim@example.com\nBcc: evil@example.com",
        "victim@example.com\rBcc: evil@example.com",
        "a@example.com, b@example.com",
        "a@example.com;b@example.com",
        "Victim <victim@example.com>",
        "<victim@example.com>",
        "victim@example.com (comment)",
        '"a@b"@example.com',
        "victim@example.com\x00",
        "victim@example.com\u2028Bcc: evil@example.com",
        "victim@example.com\u00a0",
        "victim@exa\u200bmple.com",
        "a@b@example.com",
        "victim@[127.0.0.1]",
        "no-at-sign",
        "",
    ],
)
def test_unsafe_recipient_is_refused(start_server: StartServer, to: str) -> None:
    server = start_server()
    sender = SmtpSender(host="127.0.0.1", port=server.port, security="none", from_address=FROM)
    with pytest.raises(SmtpDeliveryFailed) as info:
        sender.send(make_message(to=to), portal=PORTAL)
    assert info.value.reason == "invalid_message"
    assert server.envelopes == []


@pytest.mark.parametrize(
    "subject",
    [
        "Hello\r\nBcc: evil@example.com",
        "Hello\nX-Injected: 1",
        "=?utf-8?q?Hello=0D=0ABcc=3A_evil=40example=2Ecom?=",
        "   ",
    ],
)
def test_unsafe_subject_is_refused(start_server: StartServer, subject: str) -> None:
    server = start_server()
    sender = SmtpSender(host="127.0.0.1", port=server.port, security="none", from_address=FROM)
    with pytest.raises(SmtpDeliveryFailed) as info:
        sender.send(make_message(subject=subject), portal=PORTAL)
    assert info.value.reason == "invalid_message"
    assert server.envelopes == []


def test_sms_message_is_refused() -> None:
    sender = SmtpSender(host="127.0.0.1", port=free_port(), security="none", from_address=FROM)
    with pytest.raises(SmtpDeliveryFailed) as info:
        sender.send(make_message(channel="sms", to="+12025550123"), portal=PORTAL)
    assert info.value.reason == "invalid_message"


# -- configuration


def test_default_ports_follow_security() -> None:
    assert SmtpSender(host="mx", security="none", from_address=FROM).port == 25
    assert SmtpSender(host="mx", from_address=FROM).port == 587
    assert SmtpSender(host="mx", security="ssl", from_address=FROM).port == 465


def test_repr_hides_password() -> None:
    sender = SmtpSender(host="mx", username="u", password="hunter2-secret", from_address=FROM)
    assert "hunter2-secret" not in repr(sender)
    assert "mx" in repr(sender)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"from_address": "Acme <noreply@acme.example>"},
        {"from_address": "noreply@acme.example\r\nBcc: x@y.example"},
        {"from_address": "not an address"},
        {"from_address": "nö@acme.example"},
        {"reply_to": "a@example.com, b@example.com"},
        {"security": "tls"},
        {"port": 0},
        {"port": 70000},
        {"port": True},
        {"host": ""},
        {"host": "mx\r\n"},
        {"timeout": 0},
        {"username": "u"},
        {"password": "p"},
        {"username": "u", "password": "p", "security": "none"},
        {"username": "u", "password": ""},
        {"username": "u", "password": "pässword"},
        {"ssl_context": "yes"},
    ],
)
def test_bad_settings_raise_config_error(kwargs: dict[str, object]) -> None:
    settings: dict[str, object] = {"host": "mx.example", "from_address": FROM}
    settings.update(kwargs)
    with pytest.raises(ConfigError):
        SmtpSender(**settings)  # type: ignore[arg-type]


def test_from_uri() -> None:
    sender = SmtpSender.from_uri(
        "smtp://mailer:p%40ss%3Aw%2Frd@Mail.Acme.example:2525"
        "?from=noreply@acme.example&reply_to=office@acme.example&timeout=3"
    )
    assert sender.host == "mail.acme.example"
    assert sender.port == 2525
    assert sender.security == "starttls"
    assert sender.username == "mailer"
    assert sender.from_address == "noreply@acme.example"
    assert sender.reply_to == "office@acme.example"
    assert sender.timeout == 3.0
    assert "p@ss" not in repr(sender)

    assert SmtpSender.from_uri("smtp://mx.example?from=a@acme.example").port == 587
    plain = SmtpSender.from_uri("smtp://mx.example?from=a@acme.example&security=none")
    assert (plain.security, plain.port, plain.username) == ("none", 25, None)
    implicit = SmtpSender.from_uri("smtps://u:p@mx.example?from=a@acme.example")
    assert (implicit.security, implicit.port) == ("ssl", 465)


def test_from_uri_percent_encoded_password_authenticates(
    start_server: StartServer, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    server = start_server(tls_context=server_tls, auth_required=True, with_auth=True)
    # PASSWORD is "s3cret-p@ss:w/rd%": "@", ":", "/" and "%" all need percent-encoding.
    uri = f"smtp://{USER}:s3cret-p%40ss%3Aw%2Frd%25@127.0.0.1:{server.port}?from={FROM}"
    SmtpSender.from_uri(uri, ssl_context=client_tls).send(make_message(), portal=PORTAL)

    assert server.auth.attempts == ["PLAIN"]
    assert len(server.envelopes) == 1


@pytest.mark.parametrize(
    "uri",
    [
        "http://u:topsecret@mx.example?from=a@acme.example",
        "smtp://u:topsecret@mx.example",
        "smtp://u:topsecret@?from=a@acme.example",
        "smtp://u:topsecret@mx.example:notaport?from=a@acme.example",
        "smtp://u:topsecret@mx.example:99999?from=a@acme.example",
        "smtp://u:topsecret@mx.example/path?from=a@acme.example",
        "smtp://u:topsecret@mx.example?from=a@acme.example#frag",
        "smtp://u:topsecret@mx.example?from=a@acme.example&bogus=1",
        "smtp://u:topsecret@mx.example?from=a@acme.example&from=b@acme.example",
        "smtp://u:topsecret@mx.example?from=a@acme.example&security=tls",
        "smtp://u:topsecret@mx.example?from=a@acme.example&security=none",
        "smtps://u:topsecret@mx.example?from=a@acme.example&security=starttls",
        "smtp://u:topsecret@mx.example?from=a@acme.example&timeout=soon",
        "smtp://u@mx.example?from=a@acme.example",
        "smtp://:topsecret@mx.example?from=a@acme.example",
        "smtp://u:topsecret@mx.example?from=Acme%20%3Ca@acme.example%3E",
        "smtp://u:topsecret@mx.example?from",
    ],
)
def test_bad_uris_raise_config_error_without_the_password(uri: str) -> None:
    with pytest.raises(ConfigError) as info:
        SmtpSender.from_uri(uri)
    assert "topsecret" not in str(info.value)

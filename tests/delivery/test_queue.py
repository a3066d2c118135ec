"""Delivery queues: client-facing deliveries leave the request path (R32)."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from portalauth import Auth, ConfigError, DeliveryFailed, FrozenClock, Step
from portalauth.delivery.queue import BackgroundQueue, InlineQueue
from portalauth.events import Event
from portalauth.hooks import hookimpl
from portalauth.records import Message

PORTAL = "acme"
EMAIL = "jane.roe@example.com"


class Transport:
    """A sender that records the thread it ran in, and fails when told to."""

    channel = "email"

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.threads: list[str] = []
        self.messages: list[Message] = []

    def send(self, message: Message, *, portal: object) -> None:
        self.threads.append(threading.current_thread().name)
        if self.fail:
            raise DeliveryFailed()
        self.messages.append(message)


class Events:
    def __init__(self) -> None:
        self.kinds: list[str] = []

    @hookimpl
    def portalauth_event(self, event: Event) -> None:
        self.kinds.append(event.kind)


def _portal(auth: Auth) -> None:
    auth.portals.create(PORTAL, "Acme Law LLP", methods={"contact_otp"}, simulate=False)
    auth.directory.add(PORTAL, "Jane Roe", email=EMAIL)


def test_the_background_queue_runs_jobs_in_order_off_the_callers_thread() -> None:  # R32
    queue = BackgroundQueue(name="test-delivery")
    seen: list[tuple[int, str]] = []
    for i in range(20):
        queue.put(lambda i=i: seen.append((i, threading.current_thread().name)))
    assert queue.join(10)
    assert [i for i, _ in seen] == list(range(20))
    assert {name for _, name in seen} == {"test-delivery"}
    assert queue.queued == 20
    queue.close()
    with pytest.raises(RuntimeError):
        queue.put(lambda: None)


def test_closing_runs_what_is_queued_first() -> None:  # R32
    queue = BackgroundQueue()
    gate, ran = threading.Event(), list[int]()

    def slow() -> None:
        gate.wait(10)
        ran.append(1)

    queue.put(slow)
    queue.put(lambda: ran.append(2))
    gate.set()
    queue.close()
    assert ran == [1, 2]


def test_a_job_that_raises_is_logged_and_the_worker_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = BackgroundQueue()
    ran: list[int] = []

    def broken() -> None:
        raise ValueError("a bug")

    with caplog.at_level(logging.ERROR, logger="portalauth.delivery"):
        queue.put(broken)
        queue.put(lambda: ran.append(1))
        assert queue.join(10)
    queue.close()
    assert ran == [1]
    assert any(r.name == "portalauth.delivery" for r in caplog.records)


def test_the_inline_queue_runs_at_once_and_counts() -> None:
    queue = InlineQueue()
    ran: list[str] = []
    queue.put(lambda: ran.append(threading.current_thread().name))
    assert ran == [threading.current_thread().name] and queue.queued == 1
    assert not queue.deferred and queue.join(0)


@pytest.mark.parametrize(
    ("senders", "expected"),
    [({}, InlineQueue), ({"email": Transport()}, BackgroundQueue)],
)
def test_auto_is_background_with_a_real_sender_and_inline_without(
    make_auth: Callable[..., Auth], senders: dict[str, Transport], expected: type
) -> None:
    auth = make_auth("memory", delivery="auto", **senders)
    assert type(auth.dispatcher.queue) is expected


def test_an_unknown_delivery_mode_is_a_config_error(make_auth: Callable[..., Auth]) -> None:
    with pytest.raises(ConfigError):
        make_auth("memory", delivery="later")


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
def test_a_code_is_delivered_by_the_worker_and_the_request_does_not_wait(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:  # R32
    transport = Transport()
    auth = make_auth(store_kind, email=transport, delivery="background")
    _portal(auth)
    step = auth.start(PORTAL, "contact_otp", {"contact": EMAIL})
    assert isinstance(step, Step)
    assert auth.dispatcher.queue.join(10)
    assert transport.threads == ["portalauth-delivery"]
    assert len(transport.messages) == 1 and transport.messages[0].to == EMAIL


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
def test_a_failed_background_delivery_withdraws_the_code_and_says_so(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock
) -> None:  # R32 R29
    events = Events()
    transport = Transport(fail=True)
    auth = make_auth(store_kind, email=transport, delivery="background", plugins=[events])
    _portal(auth)
    step = auth.start(PORTAL, "contact_otp", {"contact": EMAIL})
    assert isinstance(step, Step)  # the request could not know, and must not tell
    assert auth.dispatcher.queue.join(10)
    assert "message.failed" in events.kinds and "message.sent" not in events.kinds
    identity = auth.directory.find_by_email(PORTAL, EMAIL)
    assert identity is not None
    assert auth.challenges.latest(PORTAL, identity.id, "contact_login") is None  # withdrawn


def test_inline_delivery_failures_reach_the_caller_and_withdraw_the_code(
    make_auth: Callable[..., Auth],
) -> None:  # R29
    auth = make_auth("memory", email=Transport(fail=True), delivery="inline")
    _portal(auth)
    with pytest.raises(DeliveryFailed):
        auth.start(PORTAL, "contact_otp", {"contact": EMAIL})
    identity = auth.directory.find_by_email(PORTAL, EMAIL)
    assert identity is not None
    assert auth.challenges.latest(PORTAL, identity.id, "contact_login") is None


def test_a_staff_invitation_waits_for_the_transport_even_in_background_mode(
    make_auth: Callable[..., Auth],
) -> None:
    transport = Transport(fail=True)
    auth = make_auth("memory", email=transport, delivery="background")
    auth.portals.create(
        PORTAL,
        "Acme Law LLP",
        methods={"magic_link"},
        simulate=False,
        base_url="https://portal.acme.example",
    )
    jane = auth.directory.add(PORTAL, "Jane Roe", email=EMAIL)
    with pytest.raises(DeliveryFailed):  # staff learn at once that it did not go out
        auth.magic_links.invite(jane)
    assert transport.threads == [threading.current_thread().name]


class CommittedCheck(Transport):
    """A sender that looks, from a connection of its own, for the challenge its message carries
    a code for: it must already be committed when the message goes out."""

    def __init__(self, db_path: str, **kwargs: bool) -> None:
        super().__init__(**kwargs)
        self.db_path = db_path
        self.live_challenges: list[int] = []

    def send(self, message: Message, *, portal: object) -> None:
        self.live_challenges.append(self.live_challenges_now())
        super().send(message, portal=portal)

    def live_challenges_now(self) -> int:
        with contextlib.closing(sqlite3.connect(self.db_path)) as other:
            (count,) = other.execute(
                "SELECT count(*) FROM portalauth_challenges WHERE state = 'live'"
            ).fetchone()
        return int(count)


@pytest.mark.parametrize("fail", [False, True])
def test_a_steps_delivery_goes_out_after_its_writes_are_committed(
    make_auth: Callable[..., Auth], tmp_path: Path, fail: bool
) -> None:  # R32 R29
    transport = CommittedCheck(str(tmp_path / "portalauth.db"), fail=fail)
    auth = make_auth("sqlite", email=transport, delivery="inline")
    _portal(auth)
    if fail:
        # The inline failure still reaches the caller, and the code it carried is withdrawn.
        with pytest.raises(DeliveryFailed):
            auth.start(PORTAL, "contact_otp", {"contact": EMAIL})
    else:
        assert isinstance(auth.start(PORTAL, "contact_otp", {"contact": EMAIL}), Step)
    assert transport.live_challenges == [1]  # another connection saw the code's challenge
    assert transport.live_challenges_now() == (0 if fail else 1)

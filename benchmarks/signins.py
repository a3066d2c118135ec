"""The library under test: whole sign-ins, starts and session validations, per strategy.

Everything goes through the public API (``from portalauth import ...``) and a store URI. A
bench (:func:`bench`) is a context manager yielding a worker factory (see ``measure.py``); in a
worker process it opens its own ``Auth`` on the same server and uses its own share of the
clients that the parent prepared (:func:`prepare`).

The library runs on a :class:`~portalauth.FrozenClock` moved one second before every sign-in or
start, and nothing trips: ``Auth(limits=...)`` raises the core throttles to 10⁹ a minute, and each
strategy's settings raise its own limits as far as they go and turn resend cooldowns off.
"""

from __future__ import annotations

import contextlib
import queue
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from measure import Op, WorkerFactory

from portalauth import Auth, ClientInfo, FrozenClock, SignedIn, Step

T = TypeVar("T")

SECRET_KEYS = ["bench-key-newest-0123456789abcdef", "bench-key-older-0123456789abcdef"]
CLIENT = ClientInfo(ip="192.0.2.10", user_agent="bench")
UNLIMITED = "1000000000/minute"
LIMITS = {"start_per_ip": UNLIMITED, "advance_per_ip": UNLIMITED, "per_portal": UNLIMITED}
IDENTITIES = 256  # clients signed in round-robin (split between worker processes)
SESSIONS = 256  # live sessions validated round-robin (per worker)
PASSWORD = "correct horse battery staple"
BASE_URL = "https://bench.example"

#: Per-strategy settings: limits at their ceiling, cooldowns off. ``codes_per_hour`` and
#: ``links_per_hour`` cap at 100 per client: with 256 clients (64 per worker process) and one
#: clock second per sign-in, a client signs in at most 56 times an hour.
METHOD_SETTINGS: dict[str, dict[str, Any]] = {
    "contact_otp": {
        "channels": ["email"],
        "resend_cooldown": 0,
        "codes_per_destination": UNLIMITED,
    },
    "share_code": {
        "resend_cooldown": 0,
        "codes_per_hour": 100,
        "guesses_per_ip": UNLIMITED,
        "guesses_per_portal": UNLIMITED,
        "auto_invite_default": False,
    },
    "magic_link": {
        "resend_cooldown": 0,
        "links_per_hour": 100,
        "requests_per_address": UNLIMITED,
    },
    "staff_pin": {"attempts_per_address": UNLIMITED},
    "password": {},
}
METHODS = tuple(METHOD_SETTINGS)

#: The flows measured per strategy: (flow key, label). "whole" is start + advance (or the
#: strategy's second step) + a validation of the new session.
FLOWS: dict[str, tuple[tuple[str, str], ...]] = {
    "contact_otp": (("whole", "whole sign-in"), ("start", "start")),
    "share_code": (("whole", "whole sign-in"), ("start", "start")),
    "magic_link": (("whole", "whole sign-in (link)"), ("start", "start")),
    "staff_pin": (("whole", "whole sign-in (issue+PIN)"), ("issue", "issue (staff)")),
    "password": (("whole", "whole sign-in"),),
}

_CODE = re.compile(r"^\s+([0-9]{5,10})\s*$", re.MULTILINE)
_TOKEN = re.compile(r"[?&]token=([A-Za-z0-9_\-]+)")


@dataclass(frozen=True)
class Client:
    email: str
    identity_id: str
    share_code: str = ""


@dataclass(frozen=True)
class Setup:
    """What :func:`prepare` made, picklable for the worker processes."""

    store: str
    portal: str
    method: str
    clients: tuple[Client, ...]
    now: float


def open_auth(store: str, clock: FrozenClock) -> Auth:
    return Auth(SECRET_KEYS, store, clock=clock, entry_points=False, limits=LIMITS)


def prepare(auth: Auth, store: str, method: str, count: int = IDENTITIES) -> Setup:
    """A new simulate-mode portal with only ``method`` enabled and ``count`` clients (with what
    the method needs: a share code each, or a password)."""
    portal = f"b{secrets.token_hex(4)}"
    auth.portals.create(
        portal,
        "Benchmark Court",
        base_url=BASE_URL,
        methods={method},
        simulate=True,
        method_settings={method: METHOD_SETTINGS[method]},
    )
    password_hash = auth.hasher.hash(PASSWORD) if method == "password" else None
    clients = []
    for i in range(count):
        email = f"client{i}@example.com"
        identity = auth.directory.add(portal, f"Client {i}", email=email)
        code = ""
        if method == "share_code":
            code = auth.share_codes.issue(identity, scope=f"case-{i}", send=False).code
        elif password_hash is not None:
            auth.directory.replace_password_hash(identity, password_hash, expected=None)
        clients.append(Client(email, identity.id, code))
    return Setup(store, portal, method, tuple(clients), auth.clock.now())


class Checkout(Generic[T]):
    """Items lent to one operation at a time, in turn (first in, first out): two threads never
    sign the same client in at once, however long one of them is descheduled."""

    def __init__(self, items: Iterable[T]) -> None:
        self._free: queue.SimpleQueue[T] = queue.SimpleQueue()
        for item in items:
            self._free.put(item)

    @contextlib.contextmanager
    def take(self) -> Iterator[T]:
        item = self._free.get()
        try:
            yield item
        finally:
            self._free.put(item)


def round_robin(items: list[T] | tuple[T, ...]) -> Callable[[], T]:
    lock = threading.Lock()
    state = [0]

    def take() -> T:
        with lock:
            state[0] += 1
            return items[state[0] % len(items)]

    return take


def message_text(auth: Auth, setup: Setup, client: Client) -> str:
    message = auth.outbox.latest(setup.portal, identity=client.identity_id)
    if message is None:
        raise RuntimeError("nothing in the outbox")
    return message.text


def code_in(text: str) -> str:
    found = _CODE.search(text)
    if found is None:
        raise RuntimeError("no code in the message")
    return found.group(1)


def started_flow(result: object) -> str:
    if not isinstance(result, Step) or result.flow is None:
        raise RuntimeError(f"start did not ask for a code: {result!r}")
    return result.flow


def _signed_in(result: object) -> SignedIn:
    if not isinstance(result, SignedIn):
        raise RuntimeError(f"not signed in: {result!r}")
    return result


def sign_in(auth: Auth, clock: FrozenClock, setup: Setup, client: Client) -> SignedIn:
    """One whole sign-in with ``setup.method`` (the session is not validated here)."""
    clock.advance(1.0)  # one round: nothing the previous sign-in counted can trip this one
    method, portal = setup.method, setup.portal
    if method == "contact_otp":
        flow = started_flow(auth.start(portal, method, {"contact": client.email}, client=CLIENT))
        code = code_in(message_text(auth, setup, client))
        return _signed_in(auth.advance(flow, {"code": code}, client=CLIENT))
    if method == "share_code":
        form = {"share_code": client.share_code}
        flow = started_flow(auth.start(portal, method, form, client=CLIENT))
        code = code_in(message_text(auth, setup, client))
        return _signed_in(auth.advance(flow, {"code": code}, client=CLIENT))
    if method == "magic_link":
        started_flow(auth.start(portal, method, {"email": client.email}, client=CLIENT))
        found = _TOKEN.search(message_text(auth, setup, client))
        if found is None:
            raise RuntimeError("no link in the message")
        return _signed_in(auth.magic_links.redeem(portal, found.group(1), client=CLIENT))
    if method == "staff_pin":
        pin = auth.pins.issue(client.identity_id).pin
        form = {"email": client.email, "pin": pin}
        return _signed_in(auth.start(portal, method, form, client=CLIENT))
    if method == "password":
        form = {"email": client.email, "password": PASSWORD}
        return _signed_in(auth.start(portal, method, form, client=CLIENT))
    raise ValueError(method)


def _start_only(auth: Auth, clock: FrozenClock, setup: Setup, client: Client) -> object:
    clock.advance(1.0)
    method, portal = setup.method, setup.portal
    if method == "contact_otp":
        return auth.start(portal, method, {"contact": client.email}, client=CLIENT)
    if method == "share_code":
        return auth.start(portal, method, {"share_code": client.share_code}, client=CLIENT)
    if method == "magic_link":
        return auth.start(portal, method, {"email": client.email}, client=CLIENT)
    raise ValueError(method)


def operation(
    auth: Auth, clock: FrozenClock, setup: Setup, flow: str, sessions: int = SESSIONS
) -> WorkerFactory:
    """The worker factory of ``flow`` ("whole", "start", "issue" or "validate": of one of
    ``sessions`` sessions, made first by as many sign-ins)."""
    clients = Checkout(setup.clients)
    if flow == "whole":

        def whole() -> object:
            with clients.take() as client:
                done = sign_in(auth, clock, setup, client)
                return auth.sessions.validate(done.token)

        return lambda: whole
    if flow == "start":

        def start() -> object:
            with clients.take() as client:
                return _start_only(auth, clock, setup, client)

        return lambda: start
    if flow == "issue":

        def issue() -> object:
            with clients.take() as client:
                return auth.pins.issue(client.identity_id)

        return lambda: issue
    if flow == "validate":
        take = round_robin(setup.clients)
        tokens = [sign_in(auth, clock, setup, take()).token for _ in range(sessions)]
        take_token = round_robin(tokens)

        # The clock stands still here: a validation, not a sliding-expiry write.
        def validate() -> Op:
            return lambda: auth.sessions.validate(take_token())

        return validate
    raise ValueError(flow)


@contextlib.contextmanager
def bench(
    store: str,
    method: str,
    flow: str,
    setup: Setup | None = None,
    parts: int = 1,
    sessions: int = SESSIONS,
    *,
    part: int = 0,
) -> Iterator[WorkerFactory]:
    """A fresh ``Auth`` on ``store``. Without ``setup`` it prepares its own portal and clients;
    with one (made by the parent for worker processes) it takes clients ``part::parts``."""
    clock = FrozenClock()
    auth = open_auth(store, clock)
    try:
        if setup is None:
            setup = prepare(auth, store, method)
        else:
            clock.set(setup.now + 1.0)
            clients = setup.clients[part::parts]
            setup = Setup(setup.store, setup.portal, setup.method, clients, setup.now)
        yield operation(auth, clock, setup, flow, sessions)
    finally:
        auth.close()


def prepare_shared(store: str, method: str) -> Setup:
    """A portal and clients on a server store, for worker processes to share."""
    auth = open_auth(store, FrozenClock())
    try:
        return prepare(auth, store, method)
    finally:
        auth.close()

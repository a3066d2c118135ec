"""Shared fixtures: a frozen clock, stores of every kind, and an ``Auth`` with a test strategy.

The ``email_code`` strategy below is a small plugin defined by the tests and registered through
the same ``portalauth_add_strategies`` hook as the built-in strategies: it proves the generic flow
API (start -> Step -> advance -> SignedIn) and gives the core tests a real flow to drive.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from attrs import frozen

# Show compared values when a contract test in portalauth.testing fails (before it is imported).
pytest.register_assert_rewrite("portalauth.testing")

from portalauth import (  # noqa: E402
    Auth,
    Authenticated,
    ClientInfo,
    ConfigError,
    Context,
    Continue,
    Field,
    FlowState,
    FrozenClock,
    PasswordHasher,
    Store,
    hookimpl,
    read_code,
)
from portalauth.errors import DeliveryFailed  # noqa: E402
from portalauth.stores.memory import MemoryStore  # noqa: E402
from security.leaks import check_after_call, secret_leaks  # noqa: E402, F401 (R66 leak scan)

SECRET_KEYS = ["test-key-newest-0123456789abcdef", "test-key-older-0123456789abcdef"]


# -- the test strategy ------------------------------------------------------------------------
@frozen
class EmailCodeSettings:
    digits: int = 6
    ttl: int = 600
    max_attempts: int = 5


class EmailCode:
    """E-mail me a code: enter your e-mail, then the code sent to it."""

    name = "email_code"
    label = "E-mail me a code"

    def configure(self, raw: Mapping[str, Any]) -> EmailCodeSettings:
        try:
            settings = EmailCodeSettings(**raw)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None
        if not 4 <= settings.digits <= 10:
            raise ConfigError("digits must be 4 to 10")
        return settings

    def fields(self, step: str, config: EmailCodeSettings) -> tuple[Field, ...]:
        if step == "start":
            return (Field("email", "email", "E-mail address"),)
        return (
            Field(
                "code",
                "code",
                "Code",
                max_length=config.digits,
                numeric=True,
                autocomplete="one-time-code",
            ),
        )

    def start(self, ctx: Context) -> Continue:
        config: EmailCodeSettings = ctx.config
        # Unknown (or unreachable) addresses get a decoy challenge and the same answer.
        identity, subject = ctx.lookup_email(ctx.form["email"])
        code = ctx.challenges.new_code(config.digits)
        challenge = ctx.challenges.issue(
            portal=ctx.portal.slug,
            subject=subject,
            purpose="login",
            secret=code,
            ttl=config.ttl,
            max_attempts=config.max_attempts,
            method=self.name,
            decoy=identity is None,
        )
        if identity is not None:
            try:
                ctx.dispatcher.send(
                    identity,
                    ctx.portal,
                    channel="email",
                    template="code",
                    context={"code": code, "minutes": config.ttl // 60, "purpose_label": "sign in"},
                    purpose="login",
                    method=self.name,
                )
            except DeliveryFailed:
                ctx.challenges.revoke(ctx.portal.slug, subject, purposes=["login"])
                raise
        return Continue(
            step="code",
            challenge=challenge,
            notice="If that address is registered, we have sent it a code.",
        )

    def advance(self, ctx: Context, state: FlowState) -> Authenticated:
        config: EmailCodeSettings = ctx.config
        record = ctx.challenges.verify(
            state.challenge_id,
            read_code(ctx.form["code"], config.digits),
            settings=ctx.portal,
            purpose="login",
            method=self.name,
        )
        identity = ctx.directory.get(record.subject)
        return Authenticated(identity=identity)


class EmailCodePlugin:
    @hookimpl
    def portalauth_add_strategies(self) -> list[object]:
        return [EmailCode()]


# -- stores -----------------------------------------------------------------------------------
#: Every store kind the library provides. Every fixture that varies by store is parametrised over
#: this one tuple; tests/stores/test_contract.py checks that each built-in store scheme is here.
STORE_KINDS = ("memory", "sqlite")


def open_store(kind: str, tmp_path: Path) -> Store:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        from portalauth.stores.sql import SQLStore

        return SQLStore(f"sqlite:///{tmp_path / 'portalauth.db'}")
    raise AssertionError(kind)


@pytest.fixture
def store(store_kind: str, tmp_path: Path) -> Iterator[Store]:
    """A fresh, empty store of each kind, closed after the test."""
    opened = open_store(store_kind, tmp_path)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def store_kinds() -> tuple[str, ...]:
    return STORE_KINDS


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fast_hasher() -> PasswordHasher:
    # Cheap argon2id parameters: the policy is the same, the tests are faster.
    return PasswordHasher(memory_cost=1024, rounds=1, parallelism=1)


@pytest.fixture
def make_auth(
    tmp_path: Path, clock: FrozenClock, fast_hasher: PasswordHasher
) -> Iterator[Callable[..., Auth]]:
    """Build an ``Auth`` on a given store kind (several may share one SQLite file)."""
    built: list[Auth] = []

    def make(kind: str = "memory", **kwargs: Any) -> Auth:
        kwargs.setdefault("store", open_store(kind, tmp_path))
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("plugins", [EmailCodePlugin()])
        kwargs.setdefault("entry_points", False)
        kwargs.setdefault("password_hasher", fast_hasher)
        # Deliveries run in the request, so a test sees a sender's outcome at once; the
        # background queue (the default with real senders) has tests of its own.
        kwargs.setdefault("delivery", "inline")
        auth = Auth(SECRET_KEYS, **kwargs)
        built.append(auth)
        return auth

    yield make
    for auth in built:
        auth.close()


@pytest.fixture
def auth(make_auth: Callable[..., Auth], store_kind: str) -> Auth:
    """An ``Auth`` on every store kind, with portal ``acme`` enabling the test strategy."""
    auth = make_auth(store_kind)
    auth.portals.create(
        "acme",
        "Acme Law LLP",
        methods={"email_code"},
        simulate=True,
        support_phone="+1 202 555 0100",
    )
    return auth


CLIENT = ClientInfo(ip="192.0.2.10", user_agent="pytest")

_CODE = re.compile(r"\b(\d{4,10})\b")


def code_from(auth: Auth, portal: str = "acme", identity: str | None = None) -> str:
    """The code in the newest outbox message (tests read codes as a client would)."""
    message = auth.outbox.latest(portal, identity=identity)
    assert message is not None, "no message was recorded"
    found = _CODE.search(message.text)
    assert found, "no code in the message"
    return found.group(1)


# -- the secret-leak scan (R66) ----------------------------------------------------------------
#: Besides tests/security (whose conftest turns it on), every test in these directories fails if
#: a secret issued during it leaks into a log, event, exception, repr or store row
#: (tests/security/leaks.py).
LEAK_SCANNED = tuple(Path(__file__).parent / name for name in ("strategies", "integrations"))


@pytest.fixture(autouse=True)
def _scan_for_leaked_secrets(request: pytest.FixtureRequest) -> None:
    if any(folder in request.path.parents for folder in LEAK_SCANNED):
        request.getfixturevalue("secret_leaks")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A leak found when the test body returns fails the test itself (not only its teardown)."""
    result = yield
    check_after_call(item)
    return result

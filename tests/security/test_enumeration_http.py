"""Enumeration (issue 7, item 3, the integration half): known and unknown identifiers look the
same through the Flask and the Django pages.

The harness builds two fresh ``Auth`` objects with identical setups (one store each, SQLite file
or memory, one frozen clock set to the same instant), puts each behind an integration and drives
the *same request sequence* through a browser for a known identifier and for an unknown one: GET
the form page, POST it with the page's CSRF token (and flow token on step pages). The sequences
run into the cooldowns, attempt caps, failure budgets and per-identifier throttles, so the
throttled (429) state is compared too (R14). For every request it compares:

- the response (:class:`~http_helpers.Observed`): status, every header but ``Set-Cookie`` (with
  HTTP-dates by presence), the ``Location`` and the body after the normaliser of
  ``http_helpers`` (CSRF and flow tokens become ``{csrf:N}`` / ``{flow:N}``, the identifier the
  client typed ``{typed}``: known and unknown identifiers have the same length and shape, so
  ``Content-Length`` is compared raw), and each ``Set-Cookie`` by name and attributes (Secure,
  HttpOnly, SameSite, Path, Domain, Max-Age, Expires present) with only its value's length;
- the side effects, per request sequence step: password-hashing work (``PasswordHasher``'s
  methods, patched), challenges written to the store (decoys count like real ones), sessions
  created (never one) and messages queued in the outbox, leaving out the documented owner-only
  messages below (R31, R32).

Documented exceptions, as in the core half (``test_enumeration.py``): messages to the *account
owner's stored* contact (the code, link or reset link a known identifier's owner gets; the
"account already exists" e-mail), which the person typing does not receive; the notices to the
typed address of an unknown identifier (``no_account``, ``signup_confirm``); and sign-up with the
toggle on creating the new account's confirmation link (one challenge) where an existing address
creates none. The *number* of queued deliveries is the same either way: an unknown identifier
queues a no-op job where a known one's message goes (R32).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from conftest import open_store
from portalauth import Auth, FrozenClock
from portalauth.records import Identity
from portalauth.strategies.share_code import display, new_share_code

from .helpers import (
    EMAIL,
    PHONE,
    SCOPE,
    UNKNOWN_PHONE,
    Recorder,
    add_victim,
    code_in,
    messages,
    open_portal,
    spying_issues,
)
from .http_helpers import (
    TYPED,
    Browser,
    HasherSpy,
    Observed,
    Page,
    Routes,
    browsing,
    cookie_shape,
    hidden_fields,
    integration_available,
    normalise_body,
)

T0 = 1_800_000_000.0
#: An unknown address of the same length and shape as ``EMAIL`` (``jane.roe@example.com``), so an
#: echoed address leaves ``Content-Length`` equal (``UNKNOWN_PHONE`` already matches ``PHONE``).
UNKNOWN_EMAIL = "jake.poe@example.com"
assert len(UNKNOWN_EMAIL) == len(EMAIL) and len(UNKNOWN_PHONE) == len(PHONE)
SIGN_UP_PASSWORD = "plum orchard lighthouse 7"  # a test password
WRONG_PASSWORD = "not the password at all"  # a test password
INTEGRATIONS = ("flask", "django")


# -- the harness ------------------------------------------------------------------------------
@attrs.frozen
class Call:
    """One step of a request sequence: the responses and the side effects."""

    action: str
    pages: tuple[Observed, ...]
    hashes: tuple[str, ...]
    issued: int
    sessions: int
    #: messages not documented for this case: (purpose, channel, recipient)
    messages: tuple[tuple[str, str, str], ...]
    #: documented messages: (purpose, channel)
    documented: tuple[tuple[str, str], ...]
    deliveries: int


@attrs.frozen
class Case:
    """One pre-authentication entry point and the request sequence run against it."""

    name: str
    #: the form page (GET), and where a page without a form is posted
    page: Callable[[Routes], str]
    #: the form fields for an identifier
    fields: Callable[[str], dict[str, str]]
    known: Callable[[dict[str, Any]], str] = lambda s: EMAIL
    unknown: Callable[[dict[str, Any]], str] = lambda s: UNKNOWN_EMAIL
    portal: dict[str, Any] = attrs.field(factory=dict)
    victim: dict[str, Any] = attrs.field(factory=dict)
    prepare: Callable[[Auth, Identity, dict[str, Any]], None] = lambda a, v, s: None
    limits: dict[str, str] | None = None
    #: "start" (GET the form, POST it), "wrong" (a wrong code on the step page), "resend" (past
    #: the cooldown, start again), "old" (a wrong code on the superseded step page)
    script: tuple[str, ...] = ("start",) * 7
    #: seconds between steps
    gap: float = 61
    #: messages the account owner gets for a known identifier (to the stored contact)
    owner: frozenset[str] = frozenset()
    #: messages the typed address gets for an unknown identifier
    typed: frozenset[str] = frozenset()
    #: steps whose issued-challenge count may differ (documented above)
    issued_differs: frozenset[int] = frozenset()
    #: whether the sequence reaches a throttled (429) answer
    throttles: bool = True
    #: code step: the purpose of the code message and its digits
    purpose: str = ""
    digits: int = 6


@attrs.frozen
class Setup:
    make_auth: Callable[..., Auth]
    clock: FrozenClock
    tmp_path: Path
    store_kind: str
    integration: str
    spy: HasherSpy


def _guess(auth: Auth, case: Case, victim: Identity) -> str:
    """A wrong code (never the one sent to the known identifier's owner by accident)."""
    guess = "0" * case.digits
    sent = [m for m in messages(auth) if m.purpose == case.purpose and m.identity_id == victim.id]
    if sent and code_in(sent[-1]) == guess:
        guess = "1" * case.digits
    return guess


def _has_flow(page: Page) -> bool:
    return any(name in hidden_fields(page.html) for name in ("_flow", "flow"))


def _act(
    browser: Browser, auth: Auth, case: Case, identifier: str, state: dict[str, Any], action: str
) -> None:
    if action == "resend":
        state["clock"].advance(61)  # past the resend cooldown: a new code, superseding the last
        state["old"] = state["step"]
        action = "start"
    if action == "start":
        path = case.page(browser.routes)
        form = browser.get(path)
        answer = browser.submit(form, case.fields(identifier), path=path)
    else:
        page = state["old"] if action == "old" else state["step"]
        answer = browser.submit(page, {"code": _guess(auth, case, state["victim"])})
    if _has_flow(answer):
        state["step"] = answer


def run(setup: Setup, case: Case, which: str) -> list[Call]:
    """Drive ``case``'s request sequence for the known or the unknown identifier."""
    setup.clock.set(T0)
    recorder = Recorder()
    folder = setup.tmp_path / which
    folder.mkdir()
    extra: dict[str, Any] = {"limits": case.limits} if case.limits else {}
    auth = setup.make_auth(
        setup.store_kind,
        store=open_store(setup.store_kind, folder),
        plugins=[recorder],
        **extra,
    )
    open_portal(auth, **case.portal)
    victim = add_victim(auth, **case.victim)
    state: dict[str, Any] = {"clock": setup.clock, "victim": victim}
    case.prepare(auth, victim, state)
    identifier = (case.known if which == "known" else case.unknown)(state)
    documented = case.owner if which == "known" else case.typed
    calls = []
    with browsing(setup.integration, auth) as browser, spying_issues(auth) as issued:
        browser.typed = (identifier,)
        for action in case.script:
            setup.clock.advance(case.gap)
            pages, hashes, writes = len(browser.pages), len(setup.spy.calls), len(issued)
            events, outbox = len(recorder.events), len(messages(auth))
            queued = auth.dispatcher.queue.queued
            _act(browser, auth, case, identifier, state, action)
            new = messages(auth)[outbox:]
            for message in new:
                if message.purpose not in documented:
                    continue
                if which == "known":  # to the owner's stored contact, never to what was typed
                    assert message.to == (
                        victim.phone if message.channel == "sms" else victim.email
                    )
                else:  # a notice about an unknown address goes to exactly that address
                    assert message.to == identifier
            calls.append(
                Call(
                    action=action,
                    pages=tuple(p.observed for p in browser.pages[pages:]),
                    hashes=setup.spy.since(hashes),
                    issued=len(issued) - writes,
                    sessions=sum(e.kind == "session.created" for e in recorder.events[events:]),
                    messages=tuple(
                        (m.purpose, m.channel, m.to) for m in new if m.purpose not in documented
                    ),
                    documented=tuple(
                        (m.purpose, m.channel) for m in new if m.purpose in documented
                    ),
                    # Jobs on the delivery queue: a message, or the no-op job an unknown
                    # identifier queues in its place (R32).
                    deliveries=auth.dispatcher.queue.queued - queued,
                )
            )
    return calls


def assert_same_response(known: Observed, unknown: Observed, where: str) -> None:
    assert known.request == unknown.request, where
    assert known.status == unknown.status, where
    assert known.location == unknown.location, where
    assert known.cookies == unknown.cookies, where
    assert known.headers == unknown.headers, where
    assert known.body == unknown.body, where


def assert_indistinguishable(setup: Setup, case: Case) -> tuple[list[Call], list[Call]]:
    known = run(setup, case, "known")
    unknown = run(setup, case, "unknown")
    for i, (k, u) in enumerate(zip(known, unknown, strict=True)):
        where = f"{setup.integration}/{setup.store_kind}: {case.name}, step {i} ({k.action})"
        assert len(k.pages) == len(u.pages), where
        for kp, up in zip(k.pages, u.pages, strict=True):
            assert_same_response(kp, up, f"{where}, {kp.request}")
        assert len(k.hashes) == len(u.hashes), (where, k.hashes, u.hashes)  # R32
        assert k.sessions == u.sessions == 0, where
        assert k.messages == u.messages == (), where
        if i not in case.issued_differs:
            assert k.issued == u.issued, where
    return known, unknown


# -- the entry points -------------------------------------------------------------------------
def _start(method: str) -> Callable[[Routes], str]:
    return lambda routes: routes.start_of(method)


def _issue_pin(auth: Auth, victim: Identity, state: dict[str, Any]) -> None:
    state["pin"] = auth.pins.issue(victim).pin


def _issue_share(auth: Auth, victim: Identity, state: dict[str, Any]) -> None:
    state["share"] = auth.share_codes.issue(victim, scope=SCOPE, send=False).code
    other = state["share"]
    while other == state["share"]:
        other = display(new_share_code())
    state["other"] = other


def _unreachable_share(auth: Auth, victim: Identity, state: dict[str, Any]) -> None:
    _issue_share(auth, victim, state)
    auth.directory.update(victim.id, email_status="opted_out")


def _pin_fields(email: str) -> dict[str, str]:
    return {"email": email, "pin": "000000"}


def _sign_up_fields(email: str) -> dict[str, str]:
    return {"name": "Someone", "email": email, "password": SIGN_UP_PASSWORD}


#: Start, then wrong codes through the attempt cap, a restart within the cooldown, a resend, the
#: superseded flow, and on into the failure budget (R14 R31).
CODE_SCRIPT = ("start", "wrong", "wrong", "wrong", "start", "wrong", "wrong", "wrong", "wrong",
               "resend", "old", "wrong", "wrong", "wrong", "wrong", "wrong")  # fmt: skip

CONTACT: dict[str, Any] = {"page": _start("contact_otp"), "fields": lambda c: {"contact": c}}
MAGIC: dict[str, Any] = {"page": _start("magic_link"), "fields": lambda e: {"email": e}}
SHARE: dict[str, Any] = {
    "page": _start("share_code"),
    "fields": lambda s: {"share_code": s},
    "known": lambda s: s["share"],
    "unknown": lambda s: s["other"],
    "prepare": _issue_share,
}
PASSWORD: dict[str, Any] = {
    "page": _start("password"),
    "fields": lambda e: {"email": e, "password": WRONG_PASSWORD},
    "gap": 1,
}

CASES = [
    Case("contact_otp e-mail", **CONTACT, owner=frozenset({"contact_login"})),
    Case(
        "contact_otp phone (unknown phone)",
        **CONTACT,
        known=lambda s: PHONE,
        unknown=lambda s: UNKNOWN_PHONE,
        owner=frozenset({"contact_login"}),
    ),
    Case(
        "contact_otp e-mail, capitals and spaces",
        **CONTACT,
        known=lambda s: " JANE.ROE@EXAMPLE.COM ",
        unknown=lambda s: " JAKE.POE@EXAMPLE.COM ",
        owner=frozenset({"contact_login"}),
    ),
    Case("contact_otp for a disabled identity", **CONTACT, victim={"disabled": True}),
    Case(
        "contact_otp phone opted out of SMS",
        **CONTACT,
        known=lambda s: PHONE,
        unknown=lambda s: UNKNOWN_PHONE,
        victim={"phone_status": "opted_out"},
    ),
    Case(
        "contact_otp code step",
        **CONTACT,
        script=CODE_SCRIPT,
        gap=1,
        owner=frozenset({"contact_login"}),
        purpose="contact_login",
    ),
    Case("magic_link", **MAGIC, owner=frozenset({"magic_link"})),
    Case(
        "magic_link code step",
        **MAGIC,
        script=CODE_SCRIPT,
        gap=1,
        owner=frozenset({"magic_link"}),
        purpose="magic_link",
    ),
    Case(
        "magic_link with notify_unknown",
        **MAGIC,
        portal={"method_settings": {"magic_link": {"notify_unknown": True}}},
        owner=frozenset({"magic_link"}),
        typed=frozenset({"no_account"}),
    ),
    Case(
        "magic_link for a disabled identity",
        **MAGIC,
        victim={"disabled": True},
        owner=frozenset({"magic_link"}),
    ),
    Case(
        "share_code (valid vs unknown share code)",
        **SHARE,
        owner=frozenset({"share_code_login"}),
    ),
    Case(
        "share_code typed in lower case with spaces",
        **{
            **SHARE,
            "known": lambda s: f" {s['share'].lower().replace('-', ' ')} ",
            "unknown": lambda s: f" {s['other'].lower().replace('-', ' ')} ",
        },
        owner=frozenset({"share_code_login"}),
    ),
    Case(
        "share_code per-IP guesses",
        **SHARE,
        script=("start",) * 12,
        gap=1,
        owner=frozenset({"share_code_login"}),
    ),
    Case(
        "share_code code step",
        **SHARE,
        script=CODE_SCRIPT,
        gap=1,
        owner=frozenset({"share_code_login"}),
        purpose="share_code_login",
        digits=5,
    ),
    Case("share_code of an unreachable party", **{**SHARE, "prepare": _unreachable_share}),
    Case(
        "staff_pin with a PIN outstanding",
        _start("staff_pin"),
        _pin_fields,
        prepare=_issue_pin,
        script=("start",) * 12,
        gap=1,
    ),
    Case(
        "staff_pin without a PIN", _start("staff_pin"), _pin_fields, script=("start",) * 12, gap=1
    ),
    Case("password sign-in", **PASSWORD, script=("start",) * 12),
    Case(
        "password sign-in, no password yet",
        **PASSWORD,
        victim={"password": None},
        script=("start",) * 4,
        throttles=False,
    ),
    Case(
        "password sign-in, unconfirmed address",
        **PASSWORD,
        victim={"email_confirmed": False},
        script=("start",) * 4,
        throttles=False,
    ),
    Case(
        "password sign-in, disabled identity",
        **PASSWORD,
        victim={"disabled": True},
        script=("start",) * 4,
        throttles=False,
    ),
    Case(
        "sign-up, toggle off",
        lambda routes: routes.sign_up,
        _sign_up_fields,
        script=("start",) * 3,
        gap=60,
        throttles=False,
    ),
    Case(
        "sign-up, toggle on",
        lambda routes: routes.sign_up,
        _sign_up_fields,
        portal={"signup_enabled": True},
        script=("start",) * 12,
        gap=60,
        owner=frozenset({"account_exists"}),
        typed=frozenset({"signup_confirm", "account_exists"}),
        issued_differs=frozenset({0}),
    ),
    Case(
        "password reset request",
        lambda routes: routes.forgot,
        lambda e: {"email": e},
        script=("start",) * 5,
        gap=60,
        owner=frozenset({"password_reset"}),
    ),
    Case(
        "password reset for a disabled identity",
        lambda routes: routes.forgot,
        lambda e: {"email": e},
        victim={"disabled": True},
        script=("start",) * 5,
        gap=60,
    ),
]
BY_NAME = {case.name: case for case in CASES}


@pytest.fixture(params=INTEGRATIONS)
def integration(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    integration_available(name)
    return name


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> HasherSpy:
    return HasherSpy().install(monkeypatch)


@pytest.fixture
def setup(
    make_auth: Callable[..., Auth],
    clock: FrozenClock,
    tmp_path: Path,
    store_kind: str,
    integration: str,
    spy: HasherSpy,
) -> Setup:
    return Setup(make_auth, clock, tmp_path, store_kind, integration, spy)


@pytest.fixture
def sqlite_setup(
    make_auth: Callable[..., Auth],
    clock: FrozenClock,
    tmp_path: Path,
    integration: str,
    spy: HasherSpy,
) -> Setup:
    return Setup(make_auth, clock, tmp_path, "sqlite", integration, spy)


def _statuses(calls: list[Call]) -> list[int]:
    return [page.status for call in calls for page in call.pages]


# -- the tests --------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_known_and_unknown_identifiers_get_the_same_pages(setup: Setup, case: Case) -> None:
    # R14 R31 R32 R33 R49
    known, unknown = assert_indistinguishable(setup, case)
    # The documented exceptions are exactly what they say, and nothing else.
    assert {p for s in known for p, _ in s.documented} <= case.owner
    assert {p for s in unknown for p, _ in s.documented} <= case.typed
    # R14: the sequence reached the throttled state, and it was compared like the rest.
    throttled = [p for s in known for p in s.pages if p.status == 429]
    assert bool(throttled) == case.throttles, _statuses(known)
    for page in throttled:
        assert page.retry_after is not None and int(page.retry_after) >= 1
    # Something was compared: every sequence posts at least one form.
    assert any(p.request.startswith("POST") for s in known for p in s.pages)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_no_page_before_sign_in_says_locked_disabled_or_unknown(
    sqlite_setup: Setup, case: Case
) -> None:  # R34
    checked = 0
    for which in ("known", "unknown"):
        for call in run(sqlite_setup, case, which):
            for page in call.pages:
                text = page.body.lower()
                for word in (
                    "locked",
                    "disabled",
                    "not verified",
                    "no such",
                    "not exist",
                    "unknown",
                ):
                    assert word not in text, (which, page.request, word)
                checked += 1
    assert checked >= 2 * len(case.script)


#: Entry points behind the per-IP start throttle (``start_per_ip``, lowered to 2 a minute).
PER_IP = [
    "contact_otp e-mail",
    "contact_otp phone (unknown phone)",
    "magic_link",
    "share_code (valid vs unknown share code)",
    "staff_pin with a PIN outstanding",
    "password sign-in",
    "sign-up, toggle on",
    "password reset request",
]


@pytest.mark.parametrize("name", PER_IP)
def test_the_per_ip_throttle_answers_known_and_unknown_identifiers_alike(
    sqlite_setup: Setup, name: str
) -> None:  # R9 R14
    case = attrs.evolve(
        BY_NAME[name], limits={"start_per_ip": "2/minute"}, script=("start",) * 4, gap=1
    )
    known, unknown = assert_indistinguishable(sqlite_setup, case)
    posts = [p for s in known for p in s.pages if p.request.startswith("POST")]
    assert [p.status for p in posts][2:] == [429, 429], [p.status for p in posts]
    retry = [p.retry_after for s in unknown for p in s.pages if p.status == 429]
    assert retry == [p.retry_after for p in posts[2:]] and all(r and int(r) >= 1 for r in retry)


DELIVERY_CASES = [
    "contact_otp e-mail",
    "contact_otp phone (unknown phone)",
    "magic_link",
    "share_code (valid vs unknown share code)",
    "password reset request",
    "magic_link with notify_unknown",
    "staff_pin with a PIN outstanding",
    "password sign-in",
    "sign-up, toggle on",
]


@pytest.mark.parametrize("name", DELIVERY_CASES)
def test_the_same_number_of_deliveries_is_queued(sqlite_setup: Setup, name: str) -> None:
    # R32
    case = attrs.evolve(BY_NAME[name], script=("start",) * 2)
    known = run(sqlite_setup, case, "known")
    unknown = run(sqlite_setup, case, "unknown")
    assert [c.deliveries for c in known] == [c.deliveries for c in unknown]
    if name not in ("staff_pin with a PIN outstanding", "password sign-in"):
        assert sum(c.deliveries for c in known) >= 1  # the harness counts something


# -- the harness is not blind -----------------------------------------------------------------
def test_the_harness_sees_a_portal_that_opts_into_helpful_errors(setup: Setup) -> None:
    # R31: with helpful_errors on, portalauth says an identifier is unknown; the same harness
    # must see that, so the equal pages elsewhere are not an artefact of the normaliser.
    case = attrs.evolve(
        BY_NAME["contact_otp e-mail"], portal={"helpful_errors": True}, script=("start",)
    )
    known = run(setup, case, "known")[0].pages[-1]
    unknown = run(setup, case, "unknown")[0].pages[-1]
    assert known.request == unknown.request
    assert (known.status, known.body) != (unknown.status, unknown.body)


def test_the_normaliser_keeps_what_an_outsider_could_tell_apart() -> None:
    # R31: it replaces tokens and the exact typed string, and nothing else.
    form = (
        '<input type="hidden" name="_csrf_token" value="{}">'
        '<input type="hidden" name="_flow" value="{}">'
        '<input id="field-email" name="email" value="{}">'
    )
    a = normalise_body(form.format("a" * 86, "f" * 120, EMAIL), [EMAIL])
    b = normalise_body(form.format("b" * 86, "g" * 120, UNKNOWN_EMAIL), [UNKNOWN_EMAIL])
    assert a == b and TYPED in a and "{csrf:86}" in a and "{flow:120}" in a
    # A token of another length, the stored spelling or a masked address still differ.
    assert normalise_body(form.format("a" * 86, "f" * 121, EMAIL), [EMAIL]) != a
    assert normalise_body(form.format("a" * 86, "f" * 120, "Jane.Roe@example.com"), [EMAIL]) != a
    masked = "<p>Sent to j***@example.com</p>"
    assert normalise_body(masked, [EMAIL]) != normalise_body("<p>Sent to j***</p>", [EMAIL])
    assert normalise_body(masked, [EMAIL]) == masked
    # The typed value is replaced where it stands: one more echo is one more placeholder.
    assert normalise_body(f"{EMAIL} {EMAIL}", [EMAIL]) != normalise_body(
        UNKNOWN_EMAIL, [UNKNOWN_EMAIL]
    )
    # Cookies: the value by its length only, every attribute kept.
    secure = cookie_shape("__Host-x=abc; Secure; HttpOnly; Path=/; SameSite=Lax")
    assert secure == cookie_shape("__Host-x=xyz; HttpOnly; SameSite=Lax; Path=/; Secure")
    assert secure != cookie_shape("__Host-x=abc; HttpOnly; Path=/; SameSite=Lax")
    assert cookie_shape("x=; Max-Age=0; expires=Thu, 01 Jan 1970 00:00:00 GMT") == (
        "name=x",
        "value-length=0",
        "expires",
        "max-age=0",
    )


@pytest.fixture
def pages_of_a_sign_in(setup: Setup) -> list[Observed]:
    case = attrs.evolve(BY_NAME["password sign-in"], script=("start",))
    return [p for call in run(setup, case, "known") for p in call.pages]


def test_the_compared_pages_carry_tokens_and_cookies(pages_of_a_sign_in: list[Observed]) -> None:
    # R31 R58: what the normaliser replaced was there, and the cookies were compared with their
    # attributes (the CSRF cookie on the first page).
    form, answer = pages_of_a_sign_in
    assert "{csrf:" in form.body and "{csrf:" in answer.body
    assert answer.status in (400, 401) and TYPED in answer.body
    names = [c[0] for c in form.cookies]
    assert names, "the first page sets the CSRF cookie"
    assert not any("session" in n or n.endswith("portalauth") for n in names)

"""The built-in ``magic_link`` strategy (SimplePractice "Instant Sign In"), end to end.

Every test runs against the memory and the SQLite store, through the generic flow API
(``auth.start`` / ``auth.advance``) and the link/staff API (``auth.magic_links.invite`` /
``inspect`` / ``redeem``). Links and codes are read from the simulated outbox feed as a client
would read their mail, and the frozen clock is moved for every expiry. Requirement numbers refer
to ``../shared/SECURITY-REQUIREMENTS.md``.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CLIENT, SECRET_KEYS, EmailCodePlugin
from portalauth import (
    Auth,
    ClientInfo,
    ConfigError,
    FrozenClock,
    Identity,
    Message,
    MethodDisabled,
    NotReady,
    PortalAuthError,
    SignedIn,
    Step,
    Throttled,
    UnknownContact,
    VerificationFailed,
    hookimpl,
)
from portalauth.events import Event
from portalauth.strategies.magic_link import MagicLinkSettings

PORTAL = "calm"
METHOD = "magic_link"
SIGN_IN = "magic_link"
INVITE = "magic_link_invite"
BASE_URL = "https://calm.example"
JANE = "Jane.Roe@Example.com"
JANE_STORED = "Jane.Roe@example.com"
KIM = "kim@example.com"
NOBODY = "nobody@example.com"
LINK_TTL = 15 * 60
INVITE_TTL = 7 * 86400

_URL = re.compile(r"https?://\S+")
_CODE = re.compile(r"^\s+([0-9]{6})$", re.MULTILINE)
_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


# -- helpers ------------------------------------------------------------------------------------
class Recorder:
    """Keeps every audit event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    @hookimpl
    def portalauth_event(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]


def open_calm(auth: Auth, slug: str = PORTAL, **settings: Any) -> None:
    settings.setdefault("methods", {"magic_link", "staff_pin"})
    settings.setdefault("simulate", True)
    settings.setdefault("base_url", BASE_URL)
    auth.portals.create(slug, "Calm Therapy", **settings)


def add_jane(auth: Auth, **contacts: Any) -> Identity:
    contacts.setdefault("email", JANE)
    return auth.directory.add(PORTAL, "Jane Roe", **contacts)


def feed(auth: Auth, identity: Identity | None = None, portal: str = PORTAL) -> list[Message]:
    """The simulated-message feed, newest first (the portal's, or one client's)."""
    return auth.outbox.messages(portal, identity=identity.id if identity else None)


def latest(auth: Auth, identity: Identity, portal: str = PORTAL) -> Message:
    messages = feed(auth, identity, portal)
    assert messages, "nothing was recorded for this client"
    return messages[0]


def link_of(message: Message) -> str:
    found = _URL.search(message.text)
    assert found, "no link in the message"
    return found.group(0)


def token_of(message: Message) -> str:
    [token] = parse_qs(urlsplit(link_of(message)).query)["token"]
    return token


def code_of(message: Message) -> str:
    found = _CODE.search(message.text)
    assert found, "no code in the message"
    return found.group(1)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def request(auth: Auth, email: str, client: ClientInfo = CLIENT, portal: str = PORTAL) -> Step:
    step = auth.start(portal, METHOD, {"email": email}, client=client)
    assert isinstance(step, Step)
    assert step.flow is not None and step.next == "code"
    return step


def submit(auth: Auth, step: Step, code: object) -> object:
    assert step.flow is not None
    return auth.advance(step.flow, {"code": code}, client=CLIENT)


def redeem(auth: Auth, token: object, portal: str = PORTAL) -> Step | SignedIn:
    return auth.magic_links.redeem(portal, token, client=CLIENT)


def shape(step: Step) -> tuple[object, ...]:
    """Everything a client (or an enumerating attacker) can see of a step."""
    assert step.flow is not None
    return (step.method, step.next, step.fields, step.notice, step.sent_to, len(step.flow))


def non_canonical(token: str) -> str:
    """The same 32 bytes spelt differently: flip an unused low bit of the last character."""
    spelt = token[:-1] + _B64URL[_B64URL.index(token[-1]) ^ 1]
    assert base64.urlsafe_b64decode(spelt + "=") == base64.urlsafe_b64decode(token + "=")
    return spelt


def event_text(event: Event) -> str:
    """Every text in an event (numbers left out: a timestamp may contain any run of digits)."""
    parts: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if isinstance(value, Mapping):
            for key, item in value.items():
                parts.append(str(key))
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        else:
            parts.append(repr(value))

    walk(attrs.asdict(event))
    return "\n".join(parts)


@pytest.fixture
def auth(make_auth: Callable[..., Auth], store_kind: str) -> Auth:
    """An ``Auth`` on every store kind with portal ``calm`` (magic_link + staff_pin)."""
    auth = make_auth(store_kind)
    open_calm(auth)
    return auth


@pytest.fixture
def jane(auth: Auth) -> Identity:
    return add_jane(auth)


# -- staff invitation ---------------------------------------------------------------------------
def test_invite_emails_a_unique_first_sign_in_link_and_records_the_invitation(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:  # R3 R50
    kim = auth.directory.add(PORTAL, "Kim Lee", email=KIM)
    expires_at = auth.magic_links.invite(jane, actor="staff:7")
    assert expires_at == clock.now() + INVITE_TTL
    message = latest(auth, jane)
    assert message.to == JANE_STORED
    assert message.purpose == INVITE
    assert "Calm Therapy" in message.subject
    token = token_of(message)
    assert len(base64.urlsafe_b64decode(token + "=")) == 32  # 256 bits
    status = auth.magic_links.inspect(PORTAL, token)
    assert (status.state, status.purpose, status.expires_at) == ("valid", INVITE, expires_at)

    # The invitation date is recorded on the identity, for staff.
    invited = auth.directory.get(jane.id)
    assert (invited.invited_method, invited.invited_at) == (METHOD, clock.now())
    assert auth.directory.get(kim.id).invited_at is None

    # Unique: another person's invitation has another link.
    auth.magic_links.invite(kim.id)
    assert token_of(latest(auth, kim)) != token
    # Opening it signs the client in for the first time.
    done = redeem(auth, token)
    assert isinstance(done, SignedIn)
    assert (done.identity.id, done.method) == (jane.id, METHOD)
    assert auth.magic_links.inspect(PORTAL, token).state == "used"


def test_an_invitation_is_valid_until_the_last_second_of_seven_days(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:  # R27
    auth.magic_links.invite(jane)
    token = token_of(latest(auth, jane))
    clock.advance(INVITE_TTL - 1)
    assert auth.magic_links.inspect(PORTAL, token).state == "valid"
    assert isinstance(redeem(auth, token), SignedIn)


def test_an_invitation_expires_at_seven_days(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:  # R27
    auth.magic_links.invite(jane)
    token = token_of(latest(auth, jane))
    clock.advance(INVITE_TTL)
    assert auth.magic_links.inspect(PORTAL, token).state == "expired"
    with pytest.raises(VerificationFailed) as failed:
        redeem(auth, token)
    assert failed.value.reason != "superseded"
    assert auth.sessions.list(jane.id) == []


def test_a_new_invitation_replaces_the_previous_one(auth: Auth, jane: Identity) -> None:  # R25
    auth.magic_links.invite(jane)
    first = token_of(latest(auth, jane))
    auth.magic_links.invite(jane)
    second = token_of(latest(auth, jane))
    assert first != second
    assert auth.magic_links.inspect(PORTAL, first).state == "superseded"
    with pytest.raises(VerificationFailed) as failed:
        redeem(auth, first)
    assert failed.value.reason == "superseded"
    assert isinstance(redeem(auth, second), SignedIn)


def test_invite_is_refused_while_required_fields_are_missing(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:
    auth = make_auth(store_kind)
    open_calm(auth, required_fields={"email", "mobile"})
    jane = add_jane(auth)
    nameless = auth.directory.add(PORTAL, "No Contact")
    with pytest.raises(NotReady) as not_ready:
        auth.magic_links.invite(jane)
    assert not_ready.value.missing == ("mobile",)
    with pytest.raises(NotReady) as not_ready:
        auth.magic_links.invite(nameless)
    assert not_ready.value.missing == ("email", "mobile")
    assert feed(auth) == []
    assert auth.directory.get(jane.id).invited_at is None
    assert auth.store.latest_challenge(PORTAL, jane.id, INVITE) is None

    auth.directory.update(jane.id, phone="(202) 555-0143")
    auth.magic_links.invite(jane)
    assert auth.directory.get(jane.id).invited_method == METHOD
    assert latest(auth, jane).purpose == INVITE


# -- client request -----------------------------------------------------------------------------
@pytest.mark.parametrize("typed", [JANE, " jane.roe@EXAMPLE.com ", "JANE.ROE@example.COM\t"])
def test_a_matching_address_in_any_case_gets_a_link_and_a_code_in_one_mail(
    auth: Auth, jane: Identity, clock: FrozenClock, typed: str
) -> None:  # R63
    step = request(auth, typed)
    assert step.method == METHOD
    assert [f.name for f in step.fields] == ["code"]
    assert step.fields[0].autocomplete == "one-time-code"
    assert step.expires_at == clock.now() + LINK_TTL
    [message] = feed(auth)
    assert message.identity_id == jane.id
    assert message.to == JANE_STORED  # the stored address, never the text typed (R62)
    assert message.purpose == SIGN_IN
    token, code = token_of(message), code_of(message)
    assert re.fullmatch(r"[0-9]{6}", code)
    assert code not in token
    status = auth.magic_links.inspect(PORTAL, token)
    assert (status.state, status.purpose) == ("valid", SIGN_IN)
    assert status.expires_at == clock.now() + LINK_TTL


def test_the_link_is_built_on_the_configured_base_url_only(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:  # R37
    # There is no request-host input at all: a client carries an address, an agent and an id.
    given = {f.name for f in attrs.fields(ClientInfo) if f.init}
    assert given == {"ip", "user_agent", "request_id"}
    auth = make_auth(store_kind)
    open_calm(auth, base_url="https://calm.example/portal/")
    open_calm(
        auth,
        slug="mind",
        base_url="https://mind.example",
        method_settings={METHOD: {"link_path": "/enter"}},
    )
    jane = add_jane(auth)
    ada = auth.directory.add("mind", "Ada", email="ada@example.com")
    evil = ClientInfo(ip="192.0.2.66", user_agent="Host: evil.example", request_id="evil.example")
    request(auth, JANE, client=evil)
    auth.magic_links.invite(jane)
    request(auth, "ada@example.com", client=evil, portal="mind")
    for message in [*feed(auth, jane), latest(auth, ada, portal="mind")]:
        url = urlsplit(link_of(message))
        assert url.scheme == "https"
        assert "evil" not in link_of(message)
        assert url.fragment == ""
        assert set(parse_qs(url.query)) == {"token"}
    jane_url = urlsplit(link_of(latest(auth, jane)))
    assert (jane_url.netloc, jane_url.path) == ("calm.example", "/portal/sign-in/link")
    ada_url = urlsplit(link_of(latest(auth, ada, portal="mind")))
    assert (ada_url.netloc, ada_url.path) == ("mind.example", "/enter")


def test_a_sign_in_link_is_valid_until_the_last_second_of_fifteen_minutes(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:  # R27
    request(auth, JANE)
    token = token_of(latest(auth, jane))
    clock.advance(LINK_TTL - 1)
    assert auth.magic_links.inspect(PORTAL, token).state == "valid"
    assert isinstance(redeem(auth, token), SignedIn)


def test_a_sign_in_link_and_its_code_expire_at_fifteen_minutes(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:  # R27
    step = request(auth, JANE)
    message = latest(auth, jane)
    clock.advance(LINK_TTL)
    assert auth.magic_links.inspect(PORTAL, token_of(message)).state == "expired"
    with pytest.raises(VerificationFailed) as failed:
        redeem(auth, token_of(message))
    assert failed.value.reason == "invalid"  # "expired" is not "superseded"
    with pytest.raises(VerificationFailed):
        submit(auth, step, code_of(message))
    assert auth.sessions.list(jane.id) == []


def test_only_the_newest_link_works_and_an_older_one_says_superseded(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:  # R25, peers (b) 2
    first = request(auth, JANE)
    old = latest(auth, jane)
    clock.advance(60)
    request(auth, JANE)
    new = latest(auth, jane)
    assert token_of(new) != token_of(old)
    assert auth.magic_links.inspect(PORTAL, token_of(old)).state == "superseded"
    with pytest.raises(VerificationFailed) as failed:
        redeem(auth, token_of(old))
    assert failed.value.reason == "superseded"
    assert "newer" in failed.value.message
    # The old code, typed in the old flow, says so too.
    with pytest.raises(VerificationFailed) as failed:
        submit(auth, first, code_of(old))
    assert failed.value.reason == "superseded"

    assert isinstance(redeem(auth, token_of(new)), SignedIn)
    assert auth.magic_links.inspect(PORTAL, token_of(old)).state == "superseded"
    assert auth.magic_links.inspect(PORTAL, token_of(new)).state == "used"


def test_superseded_expired_and_used_links_are_told_apart(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:
    request(auth, JANE)
    superseded = token_of(latest(auth, jane))
    clock.advance(60)
    request(auth, JANE)
    used = token_of(latest(auth, jane))
    assert isinstance(redeem(auth, used), SignedIn)
    clock.advance(60)
    request(auth, JANE)
    expired = token_of(latest(auth, jane))
    clock.advance(LINK_TTL)

    states = {
        token: auth.magic_links.inspect(PORTAL, token).state
        for token in (superseded, used, expired)
    }
    assert states == {superseded: "superseded", used: "used", expired: "expired"}
    reasons = {}
    for token in (superseded, used, expired):
        with pytest.raises(VerificationFailed) as failed:
            redeem(auth, token)
        reasons[token] = failed.value.reason
    assert reasons == {superseded: "superseded", used: "invalid", expired: "invalid"}


def test_a_link_works_once(auth: Auth, jane: Identity) -> None:  # R24
    request(auth, JANE)
    token = token_of(latest(auth, jane))
    assert isinstance(redeem(auth, token), SignedIn)
    with pytest.raises(VerificationFailed):
        redeem(auth, token)
    assert len(auth.sessions.list(jane.id)) == 1


def test_ten_threads_redeeming_one_link_sign_in_exactly_once(
    auth: Auth, jane: Identity
) -> None:  # R24
    request(auth, JANE)
    token = token_of(latest(auth, jane))
    barrier = threading.Barrier(10)
    results: list[object] = [None] * 10

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = auth.magic_links.redeem(PORTAL, token, client=CLIENT)
        except PortalAuthError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(isinstance(r, SignedIn) for r in results) == 1, results
    assert all(isinstance(r, (SignedIn, VerificationFailed)) for r in results), results
    assert len(auth.sessions.list(jane.id)) == 1


def test_inspect_has_no_side_effect(auth: Auth, jane: Identity) -> None:  # R35
    request(auth, JANE)
    auth.magic_links.invite(jane)
    sign_in = token_of(feed(auth, jane)[1])
    invite = token_of(latest(auth, jane))
    before = [auth.store.latest_challenge(PORTAL, jane.id, p) for p in (SIGN_IN, INVITE)]
    for _ in range(5):  # a mail scanner's GETs (and HEADs)
        assert auth.magic_links.inspect(PORTAL, sign_in).state == "valid"
        assert auth.magic_links.inspect(PORTAL, invite).state == "valid"
    after = [auth.store.latest_challenge(PORTAL, jane.id, p) for p in (SIGN_IN, INVITE)]
    assert after == before
    assert auth.sessions.list(jane.id) == []
    assert auth.directory.get(jane.id).last_sign_in_at is None
    assert isinstance(redeem(auth, sign_in), SignedIn)
    assert isinstance(redeem(auth, invite), SignedIn)


def test_the_code_in_the_mail_signs_in_and_uses_the_link(auth: Auth, jane: Identity) -> None:
    step = request(auth, JANE)
    message = latest(auth, jane)
    done = submit(auth, step, code_of(message))
    assert isinstance(done, SignedIn)
    assert (done.identity.id, done.method) == (jane.id, METHOD)
    assert auth.magic_links.inspect(PORTAL, token_of(message)).state == "used"
    with pytest.raises(VerificationFailed):
        redeem(auth, token_of(message))
    assert len(auth.sessions.list(jane.id)) == 1


def test_a_redeemed_link_uses_up_its_code(auth: Auth, jane: Identity) -> None:  # R24
    step = request(auth, JANE)
    message = latest(auth, jane)
    assert isinstance(redeem(auth, token_of(message)), SignedIn)
    with pytest.raises(VerificationFailed):
        submit(auth, step, code_of(message))
    assert len(auth.sessions.list(jane.id)) == 1


def test_the_code_has_five_attempts(auth: Auth, jane: Identity) -> None:  # R6
    step = request(auth, JANE)
    message = latest(auth, jane)
    for _ in range(5):
        with pytest.raises(VerificationFailed):
            submit(auth, step, wrong(code_of(message)))
    with pytest.raises(VerificationFailed):
        submit(auth, step, code_of(message))
    assert auth.sessions.list(jane.id) == []
    # The 256-bit link in the same mail is not guessable and stays usable: burning the
    # 6-digit code (which anyone holding the flow can do) must not cost the client the link.
    assert auth.magic_links.inspect(PORTAL, token_of(message)).state == "valid"
    assert isinstance(redeem(auth, token_of(message)), SignedIn)


# -- newest-wins without a lever: cooldown and caps ---------------------------------------------
def test_a_second_request_within_the_cooldown_sends_nothing(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:  # R15
    first = request(auth, JANE)
    token = token_of(latest(auth, jane))
    clock.advance(59)
    again = request(auth, JANE)
    assert len(feed(auth, jane)) == 1
    assert again.expires_at == first.expires_at  # the link already sent is still the one
    assert auth.magic_links.inspect(PORTAL, token).state == "valid"
    clock.advance(1)
    request(auth, JANE)
    assert len(feed(auth, jane)) == 2
    assert auth.magic_links.inspect(PORTAL, token).state == "superseded"


@pytest.mark.parametrize("who", ["known", "unknown"])
def test_at_most_five_links_per_identity_per_hour(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock, who: str
) -> None:  # R15, peers (b) 2
    auth = make_auth(store_kind)
    # A generous per-address limit, so only the supersession cap is measured.
    open_calm(auth, method_settings={METHOD: {"requests_per_address": "100/hour"}})
    jane = add_jane(auth)
    address = JANE if who == "known" else NOBODY
    for _ in range(5):
        request(auth, address)
        clock.advance(61)
    with pytest.raises(Throttled) as throttled:
        request(auth, address)
    assert 1 <= throttled.value.retry_after <= 3600
    assert len(feed(auth, jane)) == (5 if who == "known" else 0)
    clock.advance(3600)
    request(auth, address)
    assert len(feed(auth, jane)) == (6 if who == "known" else 0)


@pytest.mark.parametrize("who", ["known", "unknown"])
def test_with_the_defaults_the_sixth_request_in_an_hour_is_throttled(
    auth: Auth, jane: Identity, clock: FrozenClock, who: str
) -> None:  # R14 R15
    address = JANE if who == "known" else NOBODY
    outcomes: list[object] = []
    for _ in range(6):
        try:
            outcomes.append(request(auth, address).next)
        except Throttled as exc:
            outcomes.append(("throttled", exc.message))
        clock.advance(61)
    assert outcomes[:5] == ["code"] * 5
    assert outcomes[5] == ("throttled", Throttled().message)
    if who == "known":
        # The refused request superseded nothing: the newest link sent still works.
        assert isinstance(redeem(auth, token_of(latest(auth, jane))), SignedIn)


def test_the_per_address_throttle_shares_one_bucket_across_tags_and_case(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:  # R10 R15
    auth = make_auth(store_kind)
    open_calm(
        auth,
        method_settings={METHOD: {"requests_per_address": "3/hour", "links_per_hour": 100}},
    )
    add_jane(auth, email="jane@example.com")
    for typed in ["jane+a@example.com", "JANE+b@Example.com", "Jane@EXAMPLE.com"]:
        request(auth, typed)
    with pytest.raises(Throttled):
        request(auth, "jane+c@example.COM")
    with pytest.raises(Throttled):
        request(auth, "jane@example.com")
    request(auth, KIM)  # another inbox, another bucket


def test_an_unknown_address_gets_the_same_step_and_nothing_is_sent(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:  # R31
    auth.directory.add(PORTAL, "Opted Out", email="out@example.com", email_status="opted_out")
    known = request(auth, JANE)
    sent = len(feed(auth))
    unknown = request(auth, NOBODY)
    assert shape(known) == shape(unknown)
    assert unknown.expires_at == known.expires_at
    assert shape(request(auth, "out@example.com")) == shape(known)  # unreachable: alike
    assert len(feed(auth)) == sent
    assert all(message.to != NOBODY for message in feed(auth))
    with pytest.raises(VerificationFailed):
        submit(auth, unknown, "123456")
    # Within the cooldown the unknown address behaves as the known one does: nothing new.
    clock.advance(30)
    assert shape(request(auth, NOBODY)) == shape(request(auth, JANE))
    assert len(feed(auth)) == sent


def test_helpful_errors_say_the_address_is_unknown(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:
    auth = make_auth(store_kind)
    open_calm(auth, helpful_errors=True)
    add_jane(auth)
    request(auth, JANE)
    with pytest.raises(UnknownContact):
        auth.start(PORTAL, METHOD, {"email": NOBODY}, client=CLIENT)
    assert len(feed(auth)) == 1


def test_notify_unknown_mails_a_no_account_notice_and_no_link(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:
    auth = make_auth(store_kind)
    open_calm(auth, method_settings={METHOD: {"notify_unknown": True}})
    jane = add_jane(auth)
    unknown = request(auth, " Nobody@Example.com ")
    [notice] = feed(auth)
    assert notice.identity_id is None
    assert notice.to == "Nobody@example.com"  # the typed address, checked and normalised
    assert notice.purpose == "no_account"
    assert "no account" in notice.text
    assert "token=" not in notice.text and _CODE.search(notice.text) is None
    assert _URL.search(notice.text) is None
    request(auth, "nobody@example.com")  # within the cooldown: no second notice
    assert len(feed(auth)) == 1
    # A known address still gets its link, and no notice.
    known = request(auth, JANE)
    assert shape(known) == shape(unknown)
    assert latest(auth, jane).purpose == SIGN_IN
    assert [m.purpose for m in feed(auth)] == [SIGN_IN, "no_account"]


def test_a_portal_without_base_url_cannot_send_links(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:  # R37
    auth = make_auth(store_kind)
    try:
        open_calm(auth, base_url=None)
    except ConfigError:
        return  # refused when staff save the portal: the best place
    jane = add_jane(auth)
    with pytest.raises(ConfigError):
        auth.magic_links.invite(jane)
    with pytest.raises(ConfigError):
        auth.start(PORTAL, METHOD, {"email": JANE}, client=CLIENT)
    assert feed(auth) == []


def test_without_base_url_known_and_unknown_addresses_fail_alike(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:  # R31
    auth = make_auth(store_kind)
    # A portal cannot enable sign-in links without a base_url, so no request ever reaches a
    # point where known and unknown addresses could differ.
    with pytest.raises(ConfigError, match="base_url"):
        open_calm(auth, base_url=None)


def test_a_failed_re_invite_leaves_the_earlier_invitation_valid(auth: Auth, jane: Identity) -> None:
    auth.magic_links.invite(jane)
    token = token_of(latest(auth, jane))
    with pytest.raises(ConfigError, match="base_url"):
        auth.portals.update(PORTAL, base_url=None)
    auth.magic_links.invite(jane)  # the portal kept its base_url: a re-invite works
    assert auth.magic_links.inspect(PORTAL, token).state == "superseded"


# -- tokens: malformed, foreign, withdrawn ------------------------------------------------------
_MANGLE: dict[str, Callable[[str], object]] = {
    "flipped": lambda t: t[:10] + ("A" if t[10] != "A" else "B") + t[11:],
    "truncated": lambda t: t[:-1],
    "short": lambda t: t[:16],
    "extended": lambda t: t + "A",
    "long": lambda t: t * 2,
    "huge": lambda t: "A" * 5000,
    "padded": lambda t: t + "=",
    "standard-alphabet": lambda t: t.replace("-", "+").replace("_", "/") + "+/",
    "non-canonical": non_canonical,
    "spaced": lambda t: f" {t} ",
    "newline": lambda t: t + "\n",
    "percent-encoded": lambda t: t[:5] + "%41" + t[5:],
    "fullwidth": lambda t: "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in t),
    "two-parts": lambda t: f"{t}.{t}",
    "empty": lambda t: "",
    "none": lambda t: None,
    "int": lambda t: 123456,
    "bytes": lambda t: t.encode(),
    "list": lambda t: [t],
    "dict": lambda t: {"token": t},
}


@pytest.mark.parametrize("mangle", sorted(_MANGLE))
def test_a_malformed_token_is_invalid_and_never_raises_anything_else(
    auth: Auth, jane: Identity, mangle: str
) -> None:  # R20 R22 R23
    request(auth, JANE)
    token = token_of(latest(auth, jane))
    bad = _MANGLE[mangle](token)
    assert bad != token
    assert auth.magic_links.inspect(PORTAL, bad).state == "invalid"
    with pytest.raises(VerificationFailed) as failed:
        redeem(auth, bad)
    assert type(failed.value) is VerificationFailed
    assert failed.value.reason == "invalid"
    assert auth.sessions.list(jane.id) == []
    assert auth.magic_links.inspect(PORTAL, token).state == "valid"


def test_redeeming_is_throttled_per_client_address(
    auth: Auth, jane: Identity, clock: FrozenClock
) -> None:  # R9
    request(auth, JANE)
    token = token_of(latest(auth, jane))
    guesser = ClientInfo(ip="2001:db8:1:2::10")
    for i in range(60):
        with pytest.raises(VerificationFailed):
            auth.magic_links.redeem(PORTAL, f"{i:0>43}", client=guesser)
    with pytest.raises(Throttled):
        auth.magic_links.redeem(PORTAL, token, client=ClientInfo(ip="2001:db8:1:2::99"))  # same /64
    assert auth.magic_links.inspect(PORTAL, token).state == "valid"
    assert isinstance(auth.magic_links.redeem(PORTAL, token, client=CLIENT), SignedIn)


def test_a_link_from_one_portal_does_not_work_in_another(auth: Auth, jane: Identity) -> None:  # R26
    open_calm(auth, slug="mind", base_url="https://mind.example")
    auth.directory.add("mind", "Jane Roe", email=JANE)
    request(auth, JANE)
    auth.magic_links.invite(jane)
    for token in (token_of(feed(auth, jane)[1]), token_of(latest(auth, jane))):
        assert auth.magic_links.inspect("mind", token).state == "invalid"
        with pytest.raises(VerificationFailed):
            redeem(auth, token, portal="mind")
        assert auth.magic_links.inspect(PORTAL, token).state == "valid"
    assert isinstance(redeem(auth, token_of(latest(auth, jane))), SignedIn)


@pytest.mark.parametrize("change", ["email", "disable", "delete"])
def test_changing_or_disabling_the_identity_kills_outstanding_links(
    auth: Auth, jane: Identity, clock: FrozenClock, change: str
) -> None:  # R29
    auth.magic_links.invite(jane)
    step = request(auth, JANE)
    invite, sign_in = feed(auth, jane)[1], feed(auth, jane)[0]
    if change == "email":
        auth.directory.update(jane.id, email="jane.new@example.com")
    elif change == "disable":
        auth.directory.update(jane.id, disabled=True)
    else:
        auth.directory.delete(jane.id)
    for message in (invite, sign_in):
        assert auth.magic_links.inspect(PORTAL, token_of(message)).state == "invalid"
        with pytest.raises(VerificationFailed):
            redeem(auth, token_of(message))
    with pytest.raises(VerificationFailed):
        submit(auth, step, code_of(sign_in))
    clock.advance(60)
    sent = len(feed(auth))
    request(auth, JANE)  # the old address reaches nobody now
    assert len(feed(auth)) == sent
    if change == "email":
        request(auth, "jane.new@example.com")
        assert isinstance(redeem(auth, token_of(latest(auth, jane))), SignedIn)
    else:
        assert auth.sessions.list(jane.id) == []


def test_a_portal_second_factor_comes_before_signed_in(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:
    auth = make_auth(store_kind)
    open_calm(auth, second_factor="email_code")
    jane = add_jane(auth)
    for signed_in, use in enumerate(("link", "code")):
        step = request(auth, JANE)
        message = latest(auth, jane)
        second: object
        if use == "link":
            second = redeem(auth, token_of(message))
        else:
            second = submit(auth, step, code_of(message))
        assert isinstance(second, Step), use
        assert second.next == "second_factor"
        assert second.method == METHOD and second.flow
        assert [f.name for f in second.fields] == ["code"]
        assert len(auth.sessions.list(jane.id)) == signed_in  # no session before the factor
        confirm = latest(auth, jane)
        assert confirm.purpose == "second_factor"
        done = auth.advance(second.flow, {"code": code_of(confirm)}, client=CLIENT)
        assert isinstance(done, SignedIn)
        assert (done.identity.id, done.method) == (jane.id, METHOD)
    assert len(auth.sessions.list(jane.id)) == 2


def test_a_portal_without_magic_link_refuses_every_entry_point(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:
    auth = make_auth(store_kind)
    open_calm(auth, methods={"staff_pin"})
    jane = add_jane(auth)
    with pytest.raises(MethodDisabled):
        auth.magic_links.invite(jane)
    with pytest.raises(MethodDisabled):
        auth.start(PORTAL, METHOD, {"email": JANE}, client=CLIENT)
    with pytest.raises(MethodDisabled):
        redeem(auth, "A" * 43)
    assert feed(auth) == []


def test_the_defaults(auth: Auth) -> None:
    config = auth.strategy_config(PORTAL, METHOD)
    assert config == MagicLinkSettings()
    assert (config.link_minutes, config.invite_days, config.max_attempts) == (15, 7, 5)
    assert (config.resend_cooldown, config.links_per_hour) == (60, 5)
    assert (config.requests_per_address, config.notify_unknown) == ("5/hour", False)
    assert config.link_path == "/sign-in/link"


@pytest.mark.parametrize(
    "bad",
    [
        {"link_minutes": 0},
        {"link_minutes": 61},
        {"invite_days": 31},
        {"max_attempts": 11},
        {"links_per_hour": 0},
        {"requests_per_address": "often"},
        {"no_such_setting": 1},
    ],
)
def test_bad_settings_are_refused_when_staff_save_them(auth: Auth, bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        auth.portals.update(PORTAL, method_settings={METHOD: bad})


# -- events -------------------------------------------------------------------------------------
def test_events_record_the_invitation_and_sign_in_without_any_secret(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock
) -> None:
    recorder = Recorder()
    auth = make_auth(store_kind, plugins=[EmailCodePlugin(), recorder])
    open_calm(auth)
    jane = add_jane(auth)
    auth.magic_links.invite(jane, actor="staff:7")
    invite = latest(auth, jane)
    step = request(auth, JANE)
    sign_in = latest(auth, jane)
    with pytest.raises(VerificationFailed):
        submit(auth, step, wrong(code_of(sign_in)))
    assert isinstance(redeem(auth, token_of(invite)), SignedIn)

    by_kind = {event.kind: event for event in recorder.events}
    invited = by_kind["invitation.sent"]
    assert (invited.portal, invited.identity_id, invited.method, invited.actor) == (
        PORTAL,
        jane.id,
        METHOD,
        "staff:7",
    )
    assert invited.detail["expires_at"] == clock.now() + INVITE_TTL
    for kind in ("message.sent", "challenge.issued", "verification.failed", "signed_in"):
        assert by_kind[kind].identity_id == jane.id, kind
    assert by_kind["signed_in"].method == METHOD
    secrets = [token_of(invite), token_of(sign_in), code_of(sign_in), wrong(code_of(sign_in))]
    for event in recorder.events:
        text = event_text(event)
        for secret in secrets:
            assert secret not in text, event.kind
        assert "jane.roe" not in text.lower(), event.kind


# -- property: no sequence of wrong inputs signs anyone in ---------------------------------------
_HOSTILE = (
    "0123456789٠١٢٣٤٥٦٧٨٩０１２３４５６７８９²³¹ \t\n\r\x00\u00a0\u2028\u200b"
    "_+-.,@=%/?&#<>'\"\\ａＡ"
)
_TEXTS = st.one_of(
    st.text(alphabet=_HOSTILE, max_size=12),
    st.text(max_size=20),
    st.from_regex(r"[0-9]{6}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_\-]{43}", fullmatch=True),
)
_VALUES = st.one_of(
    _TEXTS,
    st.integers(),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True),
    st.binary(max_size=8),
    st.lists(st.from_regex(r"[0-9]{6}", fullmatch=True), max_size=2),
    st.dictionaries(st.text(max_size=3), st.text(max_size=6), max_size=2),
)
_EMAILS = st.one_of(
    st.sampled_from([JANE, " jane.roe@EXAMPLE.com", "jane.roe+x@example.com", KIM, NOBODY]),
    _VALUES,
)
_ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("request"), _EMAILS),
        st.tuples(st.just("code"), _VALUES),
        st.tuples(st.just("form"), _VALUES),  # the whole form is garbage
        st.tuples(st.just("link"), _VALUES),
        st.tuples(st.just("mutate"), st.integers(0, 42), st.sampled_from(_B64URL + "=+/ ")),
        st.tuples(st.just("wait"), st.integers(min_value=0, max_value=4000)),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=_ACTIONS)
def test_no_sequence_of_wrong_inputs_signs_anyone_in(actions: list[tuple[Any, ...]]) -> None:
    # R6 R7 R20 R21 R23
    clock = FrozenClock()
    auth = Auth(SECRET_KEYS, "memory://", clock=clock, entry_points=False)
    try:
        open_calm(auth)
        people = [add_jane(auth), auth.directory.add(PORTAL, "Kim Lee", email=KIM)]
        auth.magic_links.invite(people[0])
        codes: set[str] = set()
        tokens: list[str] = []

        def remember() -> None:
            for message in feed(auth):
                if message.purpose in (SIGN_IN, INVITE):
                    tokens.append(token_of(message))
                if message.purpose == SIGN_IN:
                    codes.add(code_of(message))

        def call(run: Callable[[], object]) -> object:
            try:
                result = run()
            except PortalAuthError as exc:
                return exc
            assert isinstance(result, Step), f"signed in: {result!r}"
            remember()
            return result

        remember()
        flow: str | None = None
        for action in actions:
            kind, value = action[0], action[1]
            if kind == "wait":
                clock.advance(value)
            elif kind == "request":
                result = call(lambda v=value: auth.start(PORTAL, METHOD, {"email": v}))
                if isinstance(result, Step):
                    flow = result.flow
            elif kind in ("code", "form") and flow is not None:
                if isinstance(value, str) and value in codes:
                    continue  # a right code is not a wrong guess
                data = {"code": value} if kind == "code" else value
                call(lambda f=flow, d=data: auth.advance(f, d, client=CLIENT))
            elif kind in ("link", "mutate"):
                if kind == "mutate":
                    if not tokens:
                        continue
                    token = tokens[-1]
                    value = token[: action[1]] + action[2] + token[action[1] + 1 :]
                if value in tokens:
                    continue  # a real link is not a wrong guess
                assert auth.magic_links.inspect(PORTAL, value).state == "invalid"
                call(lambda v=value: auth.magic_links.redeem(PORTAL, v, client=CLIENT))
        for person in people:
            assert auth.sessions.list(person.id) == []
    finally:
        auth.close()

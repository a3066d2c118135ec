"""Races (issue 7, item 2), on every store kind: memory and SQLite (the shared ``store_kind``
fixture's kinds) and PostgreSQL and Redis (``server_stores.py``: a fresh database or key prefix
per test on servers started once per session).

Threads are released together by a ``threading.Barrier``. Each test checks an invariant that must
hold whatever the interleaving: one correct secret signs in exactly once (R24); wrong guesses in
parallel never get more comparisons than the attempt budget, and every counted failure is
counted once (R8); parallel issues leave exactly one live secret (R25); a resend racing a verify
never leaves two usable secrets (R25); a password change racing a hash upgrade is never
overwritten (R44).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import bcrypt
import pytest

from portalauth import (
    Auth,
    FrozenClock,
    PortalAuthError,
    SignedIn,
    Step,
    Throttled,
    VerificationFailed,
)
from portalauth.records import Identity

from .helpers import (
    CLIENT,
    EMAIL,
    HOUR,
    NEW_PASSWORD,
    PASSWORD,
    PORTAL,
    SCOPE,
    ComparatorSpy,
    ContactOtpDriver,
    Driver,
    Issued,
    MagicLinkDriver,
    Recorder,
    SecondFactorDriver,
    ShareCodeDriver,
    StaffPinDriver,
    add_victim,
    attacker,
    failures,
    newest,
    open_portal,
    race,
    spying_issues,
    token_in,
)
from .server_stores import (  # noqa: F401 (fixtures, by name: every kind, servers included)
    make_auth_on_servers_fixture,
    postgres_server_fixture,
    postgres_uri_fixture,
    redis_server_fixture,
    redis_uri_fixture,
    store_kind_on_servers_fixture,
)

THREADS = 50

CODE_KINDS = [
    pytest.param(ShareCodeDriver, id="share_code"),
    pytest.param(ContactOtpDriver, id="contact_otp"),
    pytest.param(MagicLinkDriver, id="magic_link"),
    pytest.param(StaffPinDriver, id="staff_pin"),
    pytest.param(lambda: SecondFactorDriver("email_code"), id="second_factor"),
]


def _only_errors(results: list[object], *allowed: type[PortalAuthError]) -> None:
    """Every exception among ``results`` is one of ``allowed`` (typed, never anything else)."""
    for result in results:
        if isinstance(result, BaseException):
            assert isinstance(result, allowed), repr(result)


# -- R24: 50 threads, one correct secret ---------------------------------------------------------
@pytest.mark.parametrize("make_driver", CODE_KINDS)
def test_fifty_threads_with_the_same_correct_code_sign_in_exactly_once(
    make_auth: Callable[..., Auth], store_kind: str, make_driver: Callable[[], Driver]
) -> None:  # R24 R69
    auth = make_auth(store_kind)
    driver = make_driver()
    victim = driver.setup(auth)
    issued = driver.issue(auth, CLIENT)

    results = race(THREADS, lambda i: driver.submit(auth, issued, issued.code, attacker(i)))

    assert sum(isinstance(r, SignedIn) for r in results) == 1, results
    _only_errors(results, VerificationFailed, Throttled)
    assert len(auth.sessions.list(victim.id)) == 1


def _link_kinds() -> list[Any]:
    def magic_link(auth: Auth, victim: Identity) -> Callable[[int], object]:
        step = auth.start(PORTAL, "magic_link", {"email": EMAIL}, client=CLIENT)
        assert isinstance(step, Step)
        token = token_in(newest(auth, victim, "magic_link"))
        return lambda i: auth.magic_links.redeem(PORTAL, token, client=attacker(i))

    def invitation(auth: Auth, victim: Identity) -> Callable[[int], object]:
        auth.passwords.invite(victim)
        token = token_in(newest(auth, victim, "password_invite"))
        return lambda i: auth.passwords.accept_invite(
            PORTAL, token, NEW_PASSWORD, client=attacker(i)
        )

    return [
        pytest.param(magic_link, id="magic_link-link"),
        pytest.param(invitation, id="password-invitation"),
    ]


@pytest.mark.parametrize("prepare", _link_kinds())
def test_fifty_threads_with_the_same_link_sign_in_exactly_once(
    make_auth: Callable[..., Auth],
    store_kind: str,
    prepare: Callable[[Auth, Identity], Callable[[int], object]],
) -> None:  # R24 R69
    recorder = Recorder()
    auth = make_auth(store_kind, plugins=[recorder])
    open_portal(auth)
    victim = add_victim(auth)
    submit = prepare(auth, victim)

    results = race(THREADS, submit)

    assert sum(isinstance(r, SignedIn) for r in results) == 1, results
    _only_errors(results, VerificationFailed, Throttled)
    assert len(auth.sessions.list(victim.id)) == 1
    assert len(recorder.kinds("password.set")) <= 1


def test_fifty_threads_with_the_same_reset_link_set_one_password(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:  # R24 R30
    recorder = Recorder()
    auth = make_auth(store_kind, plugins=[recorder])
    open_portal(auth)
    victim = add_victim(auth)
    auth.passwords.request_reset(PORTAL, {"email": EMAIL}, client=CLIENT)
    token = token_in(newest(auth, victim, "password_reset"))
    candidates = [f"{NEW_PASSWORD} number {i:02d}" for i in range(THREADS)]

    results = race(
        THREADS,
        lambda i: auth.passwords.reset(PORTAL, token, candidates[i], client=attacker(i)),
    )

    done = [i for i, r in enumerate(results) if isinstance(r, Step) and r.done]
    assert len(done) == 1, results
    _only_errors(results, VerificationFailed, Throttled)
    assert len(recorder.kinds("password.set")) == 1
    winner = candidates[done[0]]
    ok = auth.start(PORTAL, "password", {"email": EMAIL, "password": winner}, client=CLIENT)
    assert isinstance(ok, SignedIn)


# -- R8: 50 distinct wrong codes ---------------------------------------------------------------
@pytest.mark.parametrize("make_driver", CODE_KINDS)
def test_fifty_distinct_wrong_codes_get_no_more_comparisons_than_the_budget(
    make_auth: Callable[..., Auth],
    store_kind: str,
    monkeypatch: pytest.MonkeyPatch,
    make_driver: Callable[[], Driver],
) -> None:  # R8 R69
    auth = make_auth(store_kind)
    driver = make_driver()
    driver.setup(auth)
    issued = driver.issue(auth, CLIENT)
    spy = ComparatorSpy().install(monkeypatch)

    results = race(
        THREADS, lambda i: driver.submit(auth, issued, driver.wrong(issued, i), attacker(i))
    )

    assert not any(isinstance(r, SignedIn) for r in results)
    _only_errors(results, VerificationFailed, Throttled)
    checks = spy.challenge_checks(driver.purpose, driver.victim.id)
    assert sum(checks.values()) <= driver.max_attempts, checks
    # Every failure that was let through was counted exactly once: no lost updates.
    assert failures(auth, driver) == sum(isinstance(r, VerificationFailed) for r in results)


@pytest.mark.parametrize("make_driver", CODE_KINDS)
@pytest.mark.parametrize("position", [0, 49])
def test_the_correct_code_among_fifty_wins_only_if_it_was_evaluated(
    make_auth: Callable[..., Auth],
    store_kind: str,
    monkeypatch: pytest.MonkeyPatch,
    make_driver: Callable[[], Driver],
    position: int,
) -> None:  # R8 R24
    auth = make_auth(store_kind)
    driver = make_driver()
    driver.setup(auth)
    issued = driver.issue(auth, CLIENT)
    guesses = [driver.wrong(issued, i) for i in range(THREADS)]
    guesses[position] = issued.code
    spy = ComparatorSpy().install(monkeypatch)

    results = race(THREADS, lambda i: driver.submit(auth, issued, guesses[i], attacker(i)))

    compared = [
        parts[4]
        for label, parts in spy.calls
        if label == "challenge" and parts[0] == driver.purpose
    ]
    assert len(compared) <= driver.max_attempts
    winners = [i for i, r in enumerate(results) if isinstance(r, SignedIn)]
    assert winners == ([position] if issued.code in compared else []), (winners, compared)
    _only_errors(results, VerificationFailed, Throttled)


# -- R25: 10 parallel issues, one live secret -----------------------------------------------------
def _issue_kinds() -> list[Any]:
    def kind(call: Callable[[Auth, Any, int], object], purpose: str, scope: str = "") -> Any:
        """(how to issue one, the purpose of what it issues, its scope)"""
        return (call, purpose, scope)

    return [
        pytest.param(kind(lambda a, v, i: a.pins.issue(v), "staff_pin"), id="staff_pin"),
        pytest.param(
            kind(lambda a, v, i: a.magic_links.invite(v), "magic_link_invite"),
            id="magic_link-invitation",
        ),
        pytest.param(
            kind(lambda a, v, i: a.passwords.invite(v), "password_invite"),
            id="password-invitation",
        ),
        pytest.param(
            kind(
                lambda a, v, i: a.passwords.request_reset(
                    PORTAL, {"email": EMAIL}, client=attacker(i)
                ),
                "password_reset",
            ),
            id="password-reset",
        ),
        pytest.param(
            kind(
                lambda a, v, i: a.share_codes.issue(v, scope=SCOPE, send=False),
                "share_code",
                SCOPE,
            ),
            id="share_code-share_code",
        ),
        pytest.param(
            kind(
                lambda a, v, i: a.start(
                    PORTAL, "contact_otp", {"contact": EMAIL}, client=attacker(i)
                ),
                "contact_login",
            ),
            id="contact_otp",
        ),
        pytest.param(
            kind(
                lambda a, v, i: a.start(PORTAL, "magic_link", {"email": EMAIL}, client=attacker(i)),
                "magic_link",
            ),
            id="magic_link",
        ),
        pytest.param(
            kind(
                lambda a, v, i: a.start(
                    PORTAL, "password", {"email": EMAIL, "password": PASSWORD}, client=attacker(i)
                ),
                "second_factor",
            ),
            id="second_factor",
        ),
    ]


@pytest.mark.parametrize("kind", _issue_kinds())
def test_ten_parallel_issues_leave_exactly_one_live_secret(
    make_auth: Callable[..., Auth], store_kind: str, kind: tuple[Any, str, str]
) -> None:  # R25 R69
    call, purpose, scope = kind
    auth = make_auth(store_kind)
    open_portal(auth, second_factor="email_code" if purpose == "second_factor" else "none")
    victim = add_victim(auth)

    with spying_issues(auth) as issued:
        results = race(10, lambda i: call(auth, victim, i))

    _only_errors(results, Throttled)
    mine = [r for r in issued if r.purpose == purpose and r.subject == victim.id]
    assert mine, results
    live = [r.id for r in mine if auth.store.get_challenge(r.id).state == "live"]
    assert len(live) == 1, (len(mine), live)
    latest = auth.store.latest_challenge(PORTAL, victim.id, purpose, scope)
    assert latest is not None and [latest.id] == live


def test_ten_parallel_share_code_entries_leave_one_live_confirmation_code(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:  # R25 R69
    auth = make_auth(store_kind)
    driver = ShareCodeDriver()
    victim = driver.setup(auth)
    with spying_issues(auth) as issued:
        results = race(
            10,
            lambda i: auth.start(
                PORTAL, "share_code", {"share_code": driver.share}, client=attacker(i)
            ),
        )
    _only_errors(results, Throttled)
    mine = [r for r in issued if r.purpose == driver.purpose]
    live = [r for r in mine if auth.store.get_challenge(r.id).state == "live"]
    assert mine and len(live) == 1
    assert all(r.subject == victim.id for r in mine)


# -- R25: a resend racing a verify ---------------------------------------------------------------
@pytest.mark.parametrize("make_driver", CODE_KINDS)
def test_a_resend_racing_a_verify_never_leaves_two_usable_secrets(
    make_auth: Callable[..., Auth],
    store_kind: str,
    clock: FrozenClock,
    make_driver: Callable[[], Driver],
) -> None:  # R25 R24
    auth = make_auth(store_kind)
    driver = make_driver()
    victim = driver.setup(auth)
    for _ in range(6):
        clock.advance(HOUR)  # fresh hourly caps (and idle sessions gone) every round
        before = len(auth.sessions.list(victim.id))
        old = driver.issue(auth, CLIENT)
        clock.advance(driver.cooldown + 1)  # so that asking again really sends a new secret
        calls: list[Callable[[], object]] = [
            lambda old=old: driver.submit(auth, old, old.code, attacker(1)),
            lambda: driver.issue(auth, attacker(2)),
        ]
        verified, new = race(2, lambda i, calls=calls: calls[i]())
        assert isinstance(new, Issued), new
        assert new.key != old.key
        assert isinstance(verified, SignedIn | VerificationFailed), verified
        # The old secret is dead now, whoever won; the new one works exactly once.
        with pytest.raises(VerificationFailed):
            driver.submit(auth, old, old.code, attacker(3))
        assert isinstance(driver.submit(auth, new, new.code, attacker(4)), SignedIn)
        with pytest.raises(VerificationFailed):
            driver.submit(auth, new, new.code, attacker(5))
        created = len(auth.sessions.list(victim.id)) - before
        assert created == 1 + isinstance(verified, SignedIn)


# -- R44: a password change racing a hash upgrade -------------------------------------------------
def _legacy(auth: Auth, victim: Identity) -> str:
    """Give the victim a bcrypt hash from an earlier system again; return a fresh session."""
    current = auth.directory.get(victim.id)
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    assert auth.directory.replace_password_hash(current, legacy, expected=current.password_hash)
    return auth.sign_in(auth.directory.get(victim.id), method="password").token


def _ordered(auth: Auth, first: str, then: str) -> None:
    """Order the two password writes (``upgrade``, ``change``): both read the old hash first,
    then the ``first`` kind's compare-and-swap runs, then the ``then`` kind's."""
    original = auth.directory.replace_password_hash
    arrived = {"upgrade": threading.Event(), "change": threading.Event()}
    written = {"upgrade": threading.Event(), "change": threading.Event()}

    def replace_password_hash(
        identity: Any, new_hash: str, *, expected: str | None, changed: bool = False
    ) -> bool:
        kind = "change" if changed else "upgrade"
        arrived[kind].set()
        assert (arrived[then] if kind == first else written[first]).wait(10)
        try:
            return original(identity, new_hash, expected=expected, changed=changed)
        finally:
            written[kind].set()

    auth.directory.replace_password_hash = replace_password_hash  # type: ignore[method-assign]


def _verifies(auth: Auth, password: str) -> bool:
    identity = auth.directory.find_by_email(PORTAL, EMAIL)
    assert identity is not None
    return auth.hasher.verify(password, identity.password_hash)[0]


def _sign_in(auth: Auth) -> object:
    return auth.start(PORTAL, "password", {"email": EMAIL, "password": PASSWORD})


def test_a_change_written_while_an_upgrade_is_pending_is_kept(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:  # R44
    recorder = Recorder()
    auth = make_auth(store_kind, plugins=[recorder])
    open_portal(auth)
    session = _legacy(auth, add_victim(auth, password=None))
    _ordered(auth, first="change", then="upgrade")

    calls: list[Callable[[], object]] = [
        lambda: _sign_in(auth),
        lambda: auth.passwords.change(session, PASSWORD, NEW_PASSWORD),
    ]
    signed, changed = race(2, lambda i: calls[i]())

    assert changed is None, changed
    # It was the password when it was checked, but the change ends every other session, and
    # so the sign-in in flight (R57): it fails rather than leave a session behind.
    assert isinstance(signed, VerificationFailed), signed
    victim = auth.directory.find_by_email(PORTAL, EMAIL)
    assert victim is not None and len(auth.sessions.list(victim.id)) == 1
    assert _verifies(auth, NEW_PASSWORD) and not _verifies(auth, PASSWORD)
    assert not recorder.kinds("password.upgraded")  # the stale upgrade lost its CAS


def test_a_change_racing_a_finished_upgrade_is_refused_not_lost(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:  # R44
    auth = make_auth(store_kind)
    open_portal(auth)
    session = _legacy(auth, add_victim(auth, password=None))
    _ordered(auth, first="upgrade", then="change")

    calls: list[Callable[[], object]] = [
        lambda: _sign_in(auth),
        lambda: auth.passwords.change(session, PASSWORD, NEW_PASSWORD),
    ]
    signed, changed = race(2, lambda i: calls[i]())

    assert isinstance(signed, SignedIn), signed
    # The change read the legacy hash before the upgrade replaced it: its CAS fails and it
    # says so, rather than overwrite the upgrade or report a change that did not happen.
    assert isinstance(changed, VerificationFailed), changed
    assert _verifies(auth, PASSWORD) and not _verifies(auth, NEW_PASSWORD)
    identity = auth.directory.find_by_email(PORTAL, EMAIL)
    assert identity is not None and str(identity.password_hash).startswith("$argon2id$")
    auth.passwords.change(session, PASSWORD, NEW_PASSWORD)  # trying again works
    assert _verifies(auth, NEW_PASSWORD)


def test_a_change_and_a_sign_in_released_together_never_lose_the_change(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:  # R44
    auth = make_auth(store_kind)
    open_portal(auth)
    victim = add_victim(auth, password=None)
    for _ in range(8):
        session = _legacy(auth, victim)
        calls: list[Callable[[], object]] = [
            lambda s=session: auth.passwords.change(s, PASSWORD, NEW_PASSWORD),
            lambda: _sign_in(auth),
        ]
        changed, signed = race(2, lambda i, calls=calls: calls[i]())
        assert isinstance(signed, SignedIn | VerificationFailed), signed
        if changed is None:  # the change reported success: it is the password now
            assert _verifies(auth, NEW_PASSWORD) and not _verifies(auth, PASSWORD)
        else:  # or it said it lost, and nothing changed
            assert isinstance(changed, VerificationFailed), changed
            assert _verifies(auth, PASSWORD) and not _verifies(auth, NEW_PASSWORD)


def test_a_sign_in_with_the_old_password_in_flight_does_not_outlive_a_change(
    make_auth: Callable[..., Auth], store_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # R57
    auth = make_auth(store_kind)
    open_portal(auth)
    victim = add_victim(auth)
    session = auth.sign_in(victim, method="password").token
    checked, changed = threading.Event(), threading.Event()
    original_verify = auth.hasher.verify

    def verify(password: object, stored: str | None) -> tuple[bool, str | None]:
        result = original_verify(password, stored)
        if threading.current_thread().name == "attacker":
            checked.set()  # the old password was right when it was checked...
            assert changed.wait(10)  # ...and the victim changes it right now
        return result

    monkeypatch.setattr(auth.hasher, "verify", verify)
    outcome: list[object] = []

    def attacker_sign_in() -> None:
        try:
            outcome.append(_sign_in(auth))
        except PortalAuthError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=attacker_sign_in, name="attacker")
    thread.start()
    assert checked.wait(10)
    auth.passwords.change(session, PASSWORD, NEW_PASSWORD)
    changed.set()
    thread.join(10)
    assert len(outcome) == 1
    # Only the session that made the change may survive it.
    survivors = auth.sessions.list(victim.id)
    assert len(survivors) == 1, (outcome, survivors)

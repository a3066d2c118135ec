"""The challenges service: issue, verify, supersede, consume; the lifecycle as a state machine."""

from __future__ import annotations

import string
import tempfile
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from conftest import open_store
from portalauth import FrozenClock, PortalSettings, Throttled, VerificationFailed, read_code
from portalauth.challenges import Challenges, hard_limit
from portalauth.events import Emitter
from portalauth.keys import Keyring
from portalauth.stores.base import Store

KEYS = Keyring(["challenge-test-key-0123456789"])
PORTAL = PortalSettings(slug="acme", name="Acme", failure_budget=100, failure_hard_limit=100)


def service(store: Store, clock: FrozenClock, **kwargs: object) -> Challenges:
    return Challenges(store, clock, KEYS, Emitter(lambda e: None, clock), **kwargs)  # type: ignore[arg-type]


def test_codes_are_uniform_and_keep_leading_zeros() -> None:  # R2
    challenges = service(open_store("memory", Path()), FrozenClock())
    codes = [challenges.new_code(5) for _ in range(20_000)]
    assert all(len(c) == 5 and read_code(c, 5) == c for c in codes)
    leading = Counter(c[0] for c in codes)
    # Each leading digit about 10 %: 2000 expected; 4.5 sigma bounds.
    assert set(leading) == set(string.digits)
    assert all(1800 < n < 2200 for n in leading.values()), leading


def test_an_all_zero_code_is_issued_and_accepted(store: Store, clock: FrozenClock) -> None:  # R2
    challenges = service(store, clock, randbelow=lambda n: 0)
    code = challenges.new_code(5)
    assert code == "00000"
    record = challenges.issue(portal="acme", subject="s1", purpose="login", secret=code, ttl=60)
    assert (
        challenges.verify(record.id, code, settings=PORTAL, purpose="login", method="m").id
        == record.id
    )


def test_digest_is_keyed_and_bound(store: Store, clock: FrozenClock) -> None:  # R18 R26
    import hashlib

    challenges = service(store, clock)
    record = challenges.issue(portal="acme", subject="s1", purpose="login", secret="12345", ttl=60)
    stored = store.get_challenge(record.id)
    assert stored is not None
    assert stored.digest != hashlib.sha256(b"12345").digest()
    assert b"12345" not in stored.digest
    # Bound to purpose: the same id and secret under another purpose fails.
    with pytest.raises(VerificationFailed):
        challenges.verify(record.id, "12345", settings=PORTAL, purpose="reset", method="m")
    other = PortalSettings(slug="other", name="Other")
    with pytest.raises(VerificationFailed):
        challenges.verify(record.id, "12345", settings=other, purpose="login", method="m")
    assert challenges.verify(record.id, "12345", settings=PORTAL, purpose="login", method="m")


def test_rotated_key_still_verifies_and_removed_key_does_not(
    store: Store, clock: FrozenClock
) -> None:  # R19
    old = Challenges(
        store, clock, Keyring(["old-key-0123456789abcdef"]), Emitter(lambda e: None, clock)
    )
    rotated = Challenges(
        store,
        clock,
        Keyring(["new-key-0123456789abcdef", "old-key-0123456789abcdef"]),
        Emitter(lambda e: None, clock),
    )
    dropped = Challenges(
        store, clock, Keyring(["new-key-0123456789abcdef"]), Emitter(lambda e: None, clock)
    )
    a = old.issue(
        portal="acme", subject="s1", purpose="login", secret="11111", ttl=60, supersede=False
    )
    b = old.issue(
        portal="acme", subject="s2", purpose="login", secret="22222", ttl=60, supersede=False
    )
    assert rotated.verify(a.id, "11111", settings=PORTAL, purpose="login", method="m")
    with pytest.raises(VerificationFailed):
        dropped.verify(b.id, "22222", settings=PORTAL, purpose="login", method="m")
    # New issues use the newest key: the old-key-only service cannot verify them.
    c = rotated.issue(portal="acme", subject="s3", purpose="login", secret="33333", ttl=60)
    with pytest.raises(VerificationFailed):
        old.verify(c.id, "33333", settings=PORTAL, purpose="login", method="m")


def test_findable_secrets_are_found_by_value_only_while_live(
    store: Store, clock: FrozenClock
) -> None:
    challenges = service(store, clock)
    record = challenges.issue(
        portal="acme", subject="s1", purpose="share", secret="K7M4P9", ttl=60, findable=True
    )
    found = challenges.find("acme", "share", "K7M4P9")
    assert found is not None and found.id == record.id
    assert challenges.find("acme", "share", "K7M4P8") is None
    assert challenges.find("other", "share", "K7M4P9") is None
    assert challenges.find("acme", "login", "K7M4P9") is None
    clock.advance(60)
    assert challenges.find("acme", "share", "K7M4P9") is None


def test_hard_limit_locks_the_method_until_a_success_elsewhere(
    store: Store, clock: FrozenClock
) -> None:  # R7 R12
    strict = PortalSettings(slug="acme", name="Acme", failure_budget=3, failure_hard_limit=4)
    challenges = service(store, clock)
    failures = 0
    while failures < 4:
        record = challenges.issue(
            portal="acme", subject="s1", purpose="login", secret="12345", ttl=10_000
        )
        try:
            challenges.verify(record.id, "54321", settings=strict, purpose="login", method="otp")
        except VerificationFailed:
            failures += 1
        except Throttled:
            clock.advance(3600)
    record = challenges.issue(
        portal="acme", subject="s1", purpose="login", secret="12345", ttl=10**6
    )
    clock.advance(10 * 3600)
    with pytest.raises(Throttled):
        challenges.verify(record.id, "12345", settings=strict, purpose="login", method="otp")
    # Another method (a staff PIN) is not locked, and its success clears the lock when the
    # caller (Auth.sign_in) clears the other methods' counts.
    pin = challenges.issue(portal="acme", subject="s1", purpose="pin", secret="999999", ttl=60)
    assert challenges.verify(pin.id, "999999", settings=strict, purpose="pin", method="staff_pin")
    challenges.clear_failures("acme", "otp", "s1")
    assert challenges.verify(record.id, "12345", settings=strict, purpose="login", method="otp")


@given(digits=st.integers(5, 10), limit=st.integers(1, 100), budget=st.integers(1, 100))
def test_the_hard_limit_keeps_a_guesser_within_one_in_ten_thousand(
    digits: int, limit: int, budget: int
) -> None:  # R5 R7
    settings = PortalSettings(
        slug="acme", name="Acme", failure_budget=min(budget, limit), failure_hard_limit=limit
    )
    locked_at = hard_limit(settings, digits)
    assert 1 <= locked_at <= limit <= 100
    assert Fraction(locked_at, 10**digits) <= Fraction(1, 10_000)
    # Only as low as the code space needs: 6 digits and more keep the portal's limit.
    assert locked_at == (limit if digits >= 6 else min(limit, 10))
    assert hard_limit(settings) == limit  # passwords and long tokens: the portal's limit


def test_a_narrower_counter_is_counted_and_cleared_on_its_own(
    store: Store, clock: FrozenClock
) -> None:  # R7 R12
    settings = PortalSettings(slug="acme", name="Acme", failure_budget=2, failure_hard_limit=2)
    challenges = service(store, clock)
    for secret_holder in ("share-1", "share-2"):
        record = challenges.issue(
            portal="acme", subject="s1", purpose="login", secret="123456", ttl=600
        )
        for _ in range(2):
            with pytest.raises(VerificationFailed):
                challenges.verify(
                    record.id,
                    "654321",
                    settings=settings,
                    purpose="login",
                    method="otp",
                    counter=secret_holder,
                )
        with pytest.raises(Throttled):  # that counter is locked...
            challenges.verify(
                record.id,
                "123456",
                settings=settings,
                purpose="login",
                method="otp",
                counter=secret_holder,
            )
    assert challenges.failures("acme", "otp", "s1", "share-1") == 2
    assert challenges.failures("acme", "otp", "s1") == 0  # ...the method's own is not
    record = challenges.issue(portal="acme", subject="s1", purpose="login", secret="123456", ttl=9)
    assert challenges.verify(record.id, "123456", settings=settings, purpose="login", method="otp")
    assert challenges.failures("acme", "otp", "s1", "share-2") == 2
    challenges.clear_failures("acme", "otp", "s1", "share-2")
    assert challenges.failures("acme", "otp", "s1", "share-2") == 0
    assert challenges.failures("acme", "otp", "s1", "share-1") == 2


def test_delays_without_the_lock_never_lock(store: Store, clock: FrozenClock) -> None:  # R12
    settings = PortalSettings(slug="acme", name="Acme", failure_budget=1, failure_hard_limit=2)
    challenges = service(store, clock)
    for _ in range(50):
        challenges.record_failure("acme", "staff_pin", "s1", "typed")
    with pytest.raises(Throttled) as waited:
        challenges.check_failures(settings, "staff_pin", "s1", "typed", lock=False)
    assert waited.value.retry_after == 3600
    clock.advance(3600)
    challenges.check_failures(settings, "staff_pin", "s1", "typed", lock=False)  # a delay only
    with pytest.raises(Throttled):
        challenges.check_failures(settings, "staff_pin", "s1", "typed")


class ChallengeLifecycle(RuleBasedStateMachine):
    """Issue, guess wrong and right, move the clock, supersede: against a simple model.

    Invariants: at most one success per challenge; no success after expiry, after the attempt
    budget is spent, or after a newer challenge superseded it; at most one live challenge.
    """

    kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.clock = FrozenClock()
        self._dir = tempfile.TemporaryDirectory()
        self.store = open_store(self.kind, Path(self._dir.name))
        self.challenges = service(self.store, self.clock)
        # model: id -> dict(code, expires_at, attempts, state)
        self.model: dict[str, dict[str, object]] = {}
        self.order: list[str] = []
        self.successes: Counter[str] = Counter()

    @rule(ttl=st.integers(min_value=1, max_value=900), code=st.from_regex(r"\A[0-9]{5}\Z"))
    def issue(self, ttl: int, code: str) -> None:
        record = self.challenges.issue(
            portal="acme", subject="s1", purpose="login", secret=code, ttl=ttl, max_attempts=5
        )
        for entry in self.model.values():
            if entry["state"] == "live":
                entry["state"] = "superseded"
        self.model[record.id] = {
            "code": code,
            "expires_at": self.clock.now() + ttl,
            "attempts": 0,
            "state": "live",
        }
        self.order.append(record.id)

    @precondition(lambda self: bool(self.order))
    @rule(pick=st.integers(min_value=0), correct=st.booleans(), typo=st.from_regex(r"\A[0-9]{5}\Z"))
    def guess(self, pick: int, correct: bool, typo: str) -> None:
        cid = self.order[pick % len(self.order)]
        entry = self.model[cid]
        secret = str(entry["code"]) if correct else typo
        matches = secret == entry["code"]
        usable = (
            entry["state"] == "live"
            and self.clock.now() < float(entry["expires_at"])  # type: ignore[arg-type]
            and int(entry["attempts"]) < 5  # type: ignore[call-overload]
        )
        try:
            self.challenges.verify(cid, secret, settings=PORTAL, purpose="login", method="m")
            ok = True
        except VerificationFailed:
            ok = False
        assert ok == (usable and matches)
        if usable:
            entry["attempts"] = int(entry["attempts"]) + 1  # type: ignore[call-overload]
        if ok:
            entry["state"] = "consumed"
            self.successes[cid] += 1

    @rule(seconds=st.integers(min_value=1, max_value=600))
    def wait(self, seconds: int) -> None:
        self.clock.advance(seconds)

    def teardown(self) -> None:
        self.store.close()
        self._dir.cleanup()

    @invariant()
    def at_most_one_success_each(self) -> None:
        assert all(n <= 1 for n in self.successes.values())

    @invariant()
    def at_most_one_live(self) -> None:
        live = [
            cid
            for cid in self.order
            if (record := self.store.get_challenge(cid)) is not None and record.state == "live"
        ]
        assert len(live) <= 1


class ChallengeLifecycleOnSQLite(ChallengeLifecycle):
    kind = "sqlite"


_LIFECYCLE = hsettings(max_examples=60, stateful_step_count=30, deadline=None)
ChallengeLifecycle.TestCase.settings = _LIFECYCLE
ChallengeLifecycleOnSQLite.TestCase.settings = _LIFECYCLE
TestChallengeLifecycle = ChallengeLifecycle.TestCase
TestChallengeLifecycleOnSQLite = ChallengeLifecycleOnSQLite.TestCase

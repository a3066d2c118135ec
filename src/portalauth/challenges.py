"""Challenges: the one-time secrets every strategy issues and verifies.

A challenge is a code, PIN, share code or link token issued to one subject for one purpose. This
module is the only place that turns secrets into digests and back, so every strategy gets the
same guarantees:

- secrets come from :mod:`secrets` (codes uniformly over the full space, leading zeros included);
- only a keyed digest is stored: HMAC-SHA256 under the newest server key over the purpose,
  portal, subject, challenge id and secret (a digest cannot verify for another purpose, portal,
  subject or flow); verification accepts any key in the :class:`~portalauth.keys.Keyring`;
- digests are compared in constant time, and only after the store has atomically counted the
  attempt against the challenge's budget, so no more comparisons run than the budget allows;
- a success consumes the challenge atomically: of any number of concurrent correct submissions
  exactly one wins;
- issuing supersedes the live challenges of the same portal, subject, purpose and scope in the
  same atomic step (newest wins);
- every subject and method has a consecutive-failure count that issuing or resending does not
  reset: past the portal's ``failure_budget`` each further attempt must wait an escalating delay
  (30 s doubling to 1 h), and at the hard limit (:func:`hard_limit`: the portal's
  ``failure_hard_limit``, lowered for short codes so that no guesser gets more than 1 in 10,000
  of the code space) the method is locked for that subject until it succeeds through another
  path (a staff PIN, a password reset), which clears it, or the count expires 30 days after the
  last failure. A count may be narrowed to a *counter* within the method (a share code's own
  count, the second factor after one primary method) so that a lock held by one credential's
  guesser does not close another credential's path.

Unknown identifiers get *decoy* challenges (:meth:`Challenges.decoy_subject`): stored, counted,
superseded and expired exactly like real ones, but never sent, so a client cannot tell them apart.
"""

from __future__ import annotations

import base64
import math
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from .clock import Clock
from .config import PortalSettings
from .errors import Throttled, VerificationFailed
from .events import Emitter
from .keys import Keyring
from .records import ChallengeRecord
from .stores.base import Store

__all__ = ["FAILURE_WINDOW", "GUESS_ODDS", "Challenges", "hard_limit", "read_code"]

#: How long a consecutive-failure count is remembered after the last failure (30 days).
FAILURE_WINDOW = 30 * 86400
#: The most a targeted guesser may get against one counter: evaluated guesses / code space.
GUESS_ODDS = 10_000
_FIRST_DELAY = 30
_MAX_DELAY = 3600

_CODE_PATTERNS: dict[int, re.Pattern[str]] = {}


def read_code(value: object, digits: int) -> str | None:
    """``value`` if it is exactly ``digits`` ASCII digits, else ``None``.

    Strict on purpose (R21): no stripping, no ``int()``, no ``str.isdigit()`` (which accept
    ``" 1_2345 "``, fullwidth and Arabic-Indic digits, superscripts and a trailing newline).
    """
    pattern = _CODE_PATTERNS.get(digits)
    if pattern is None:
        pattern = _CODE_PATTERNS[digits] = re.compile(f"[0-9]{{{digits}}}", re.ASCII)
    if isinstance(value, str) and pattern.fullmatch(value):
        return value
    return None


def hard_limit(settings: PortalSettings, digits: int | None = None) -> int:
    """The consecutive failures at which a method locks for a subject.

    The portal's ``failure_hard_limit`` (at most 100), lowered for ``digits``-digit codes so that
    the evaluated guesses stay within 1 in :data:`GUESS_ODDS` of the code space: 10 for 5-digit
    codes, 100 for 6 digits or more (R5, R7). ``None`` is for secrets that are not short codes
    (passwords, 256-bit tokens): the portal's limit as it is.
    """
    if digits is None:
        return settings.failure_hard_limit
    return max(1, min(settings.failure_hard_limit, int(10**digits) // GUESS_ODDS))


def _failure_key(portal: str, method: str, subject: str, counter: str = "") -> str:
    # The counter is the last field, so that ``fail:{portal}:{method}:{subject}`` stays the
    # identity's whole count for the method.
    key = f"fail:{portal}:{method}:{subject}"
    return f"{key}:{counter}" if counter else key


def _delay(failures: int, budget: int) -> int:
    return int(min(_FIRST_DELAY * 2 ** max(0, failures - budget), _MAX_DELAY))


class Challenges:
    """Issue, verify, supersede and consume one-time secrets."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        keyring: Keyring,
        emitter: Emitter,
        *,
        randbelow: Callable[[int], int] = secrets.randbelow,
    ) -> None:
        self._store = store
        self._clock = clock
        self._keyring = keyring
        self._emitter = emitter
        # Injectable only so a test can prove "00000" is issued and accepted (R2).
        self._randbelow = randbelow

    # -- secrets ----------------------------------------------------------------------------
    def new_code(self, digits: int) -> str:
        """A numeric code drawn uniformly from all ``10**digits`` values, zero-padded."""
        return f"{self._randbelow(10**digits):0{digits}d}"

    @staticmethod
    def new_token(nbytes: int = 32) -> str:
        """A URL-safe token of ``nbytes`` random bytes (default 256 bits)."""
        return secrets.token_urlsafe(nbytes)

    def decoy_subject(self, portal: str, identifier: str) -> str:
        """The stand-in subject for an unknown identifier: stable, keyed, and shaped like an
        identity id, so records for unknown and known identifiers look alike. Pass the
        canonical identifier (an e-mail key, an E.164 number) so spelling variants of one
        unknown address share one subject, and so one failure count."""
        raw = self._keyring.digest("decoy", portal, identifier)[:12]
        return base64.urlsafe_b64encode(raw).decode("ascii")

    # -- issuing ----------------------------------------------------------------------------
    def issue(
        self,
        *,
        portal: str,
        subject: str,
        purpose: str,
        secret: str,
        ttl: float,
        scope: str = "",
        max_attempts: int = 5,
        supersede: bool = True,
        findable: bool = False,
        data: Mapping[str, Any] | None = None,
        method: str | None = None,
        decoy: bool = False,
        lookup_secret: str | None = None,
    ) -> ChallengeRecord:
        """Store a new challenge for ``secret`` (which the caller delivers, never stores).

        ``findable`` challenges (share codes, link tokens) can later be found by their secret
        alone with :meth:`find`; the others are verified by id (the id travels in the flow).
        ``lookup_secret`` makes the challenge findable by a *second* secret (a link token) while
        ``secret`` stays the one :meth:`verify` checks (the short code in the same e-mail).
        ``decoy`` challenges (for unknown identifiers) store the digest of a fresh 256-bit
        secret instead, so no guess can ever verify one, while they are stored, superseded,
        counted and expired exactly like real ones.
        """
        now = self._clock.now()
        challenge_id = secrets.token_urlsafe(12)
        if decoy:
            secret = secrets.token_urlsafe(32)
            if lookup_secret is not None:
                lookup_secret = secrets.token_urlsafe(32)
        if lookup_secret is not None:
            findable = True
        record = ChallengeRecord(
            id=challenge_id,
            portal=portal,
            subject=subject,
            purpose=purpose,
            scope=scope,
            digest=self._keyring.digest(
                "challenge", purpose, portal, subject, challenge_id, secret
            ),
            lookup=(
                self._keyring.digest("lookup", purpose, portal, lookup_secret or secret)
                if findable
                else None
            ),
            created_at=now,
            expires_at=now + ttl,
            max_attempts=max_attempts,
            data=data,
        )
        self._store.issue_challenge(record, supersede=supersede)
        self._emitter.emit(
            "challenge.issued",
            portal=portal,
            identity_id=subject,
            method=method,
            detail={"purpose": purpose, "expires_at": record.expires_at},
        )
        return record

    def find(self, portal: str, purpose: str, secret: str) -> ChallengeRecord | None:
        """The challenge issued with ``findable=True`` for this secret, if it is still usable
        (live and unexpired); the digest is re-checked in constant time."""
        record = self._store.find_challenge(
            portal, purpose, self._keyring.digests("lookup", purpose, portal, secret)
        )
        now = self._clock.now()
        if record is None or record.state != "live" or now >= record.expires_at:
            return None
        if not self._matches(record, secret):
            return None
        return record

    def lookup(self, portal: str, purpose: str, secret: str) -> ChallengeRecord | None:
        """The challenge findable by ``secret``, in whatever state (for telling "superseded"
        from "expired" or "used"); ``None`` if there is none."""
        return self._store.find_challenge(
            portal, purpose, self._keyring.digests("lookup", purpose, portal, secret)
        )

    def pending_second_factors(self, portal: str, subject: str) -> list[ChallengeRecord]:
        """The subject's live second-factor step, if any (as a list, for revocation checks)."""
        record = self.latest(portal, subject, "second_factor")
        return [record] if record is not None else []

    def get_live(self, challenge_id: str) -> ChallengeRecord | None:
        """The challenge if it is live and unexpired (attempts are not considered)."""
        record = self._store.get_challenge(challenge_id) if challenge_id else None
        if record is None or record.state != "live" or self._clock.now() >= record.expires_at:
            return None
        return record

    def latest(
        self, portal: str, subject: str, purpose: str, scope: str = ""
    ) -> ChallengeRecord | None:
        """The subject's newest challenge of this purpose if it is still live and unexpired
        (for staff views: "a PIN is outstanding until ...")."""
        record = self._store.latest_challenge(portal, subject, purpose, scope)
        if record is None or record.state != "live" or self._clock.now() >= record.expires_at:
            return None
        return record

    def revoke(
        self,
        portal: str,
        subject: str,
        *,
        purposes: list[str] | None = None,
        scope: str | None = None,
    ) -> int:
        """Withdraw the subject's live challenges (all, or only those purposes / scope)."""
        count = self._store.revoke_challenges(portal, subject, purposes=purposes, scope=scope)
        if count:
            self._emitter.emit(
                "challenge.revoked",
                portal=portal,
                identity_id=subject,
                detail={"purposes": sorted(purposes) if purposes else None, "count": count},
            )
        return count

    # -- verifying --------------------------------------------------------------------------
    def verify(
        self,
        challenge_id: str | None,
        secret: str | None,
        *,
        settings: PortalSettings,
        purpose: str,
        method: str,
        consume: bool = True,
        check: Callable[[ChallengeRecord], bool] | None = None,
        digits: int | None = None,
        counter: str | Callable[[ChallengeRecord], str] = "",
        read: ChallengeRecord | None = None,
    ) -> ChallengeRecord:
        """Check ``secret`` against the challenge and (by default) consume it.

        ``secret`` is ``None`` when the caller found the input malformed: it still counts as an
        attempt and a failure, so malformed input is no cheaper to send than a wrong guess.
        ``digits`` is the code length (it sets the hard limit, see :func:`hard_limit`) and
        ``counter`` narrows the subject's failure count for ``method`` (see the module notes); a
        callable reads it from the challenge (a share code's id in the challenge's data).
        ``read`` is the challenge as the caller just read it (by :meth:`latest`), so it is not
        read again; the attempt and the consume are decided by the store either way.
        Returns the challenge on success. Raises :class:`VerificationFailed` (``reason`` is
        ``"superseded"`` only when a newer challenge replaced this one, else ``"invalid"``) or
        :class:`Throttled` when the subject's failure budget asks it to wait.
        """
        now = self._clock.now()
        if read is not None and read.id == challenge_id:
            record: ChallengeRecord | None = read
        else:
            record = self._store.get_challenge(challenge_id) if challenge_id else None
        if record is None or record.portal != settings.slug or record.purpose != purpose:
            raise VerificationFailed()
        narrow = counter(record) if callable(counter) else counter
        fail_key = _failure_key(settings.slug, method, record.subject, narrow)
        failures = self._check_budget(fail_key, settings, now, hard_limit(settings, digits))

        spent, current = self._store.spend_attempt(record.id, now)
        if not spent:
            self._fail(fail_key, record, method, "unusable")
            # Only while it would otherwise still be live: an expired record says "invalid", as
            # it will once the purge has deleted it (R70: a purge changes no answer).
            superseded = (
                current is not None and current.state == "superseded" and now < current.expires_at
            )
            reason = "superseded" if superseded else "invalid"
            raise VerificationFailed(reason=reason)
        if check is not None:
            # The proof is checked elsewhere (a Tax ID digest); the budget and single use still
            # come from this challenge.
            ok = check(record)
        else:
            ok = secret is not None and self._matches(record, secret)
        if not ok:
            self._fail(fail_key, record, method, "mismatch")
            raise VerificationFailed()
        if consume and not self._store.consume_challenge(record.id, now):
            # Another request with the same secret won the race (or it expired just now).
            raise VerificationFailed()
        if failures:  # read just before: no second read in the common case of none (issue 8)
            self._store.clear_counter(fail_key)
        detail = {"purpose": purpose}
        if record.data and "channel" in record.data:
            detail["channel"] = str(record.data["channel"])  # an SMS code's conversion (R17)
        self._emitter.emit(
            "verification.succeeded",
            portal=settings.slug,
            identity_id=record.subject,
            method=method,
            detail=detail,
        )
        return record

    def consume(self, record: ChallengeRecord) -> bool:
        """Consume a challenge verified with ``consume=False``; True for exactly one caller."""
        return self._store.consume_challenge(record.id, self._clock.now())

    def _matches(self, record: ChallengeRecord, secret: str) -> bool:
        return self._keyring.matches(
            record.digest,
            "challenge",
            record.purpose,
            record.portal,
            record.subject,
            record.id,
            secret,
        )

    # -- consecutive failures ---------------------------------------------------------------
    def _check_budget(
        self, key: str, settings: PortalSettings, now: float, limit: int | None
    ) -> int:
        """Raise :class:`Throttled` if an attempt must wait; else return the current count."""
        failures, expires_at = self._store.get_counter(key, now)
        if limit is not None and failures >= limit:
            # Locked for this method until a success elsewhere clears it (R12: recovery paths
            # such as a staff PIN or a reset are other methods, with their own counts).
            raise Throttled(retry_after=_MAX_DELAY)
        if failures < settings.failure_budget:
            return failures
        last_failure = expires_at - FAILURE_WINDOW
        wait = last_failure + _delay(failures, settings.failure_budget) - now
        if wait > 0:
            raise Throttled(retry_after=math.ceil(wait))
        return failures

    def _fail(self, key: str, record: ChallengeRecord, method: str, why: str) -> None:
        now = self._clock.now()
        count, _ = self._store.incr_counter(key, 1, now + FAILURE_WINDOW, now, extend=True)
        self._emitter.emit(
            "verification.failed",
            portal=record.portal,
            identity_id=record.subject,
            method=method,
            detail={"purpose": record.purpose, "why": why, "consecutive": count},
        )

    def record_failure(self, portal: str, method: str, subject: str, counter: str = "") -> int:
        """Count a failed attempt that did not go through :meth:`verify` (a wrong password)."""
        now = self._clock.now()
        count, _ = self._store.incr_counter(
            _failure_key(portal, method, subject, counter),
            1,
            now + FAILURE_WINDOW,
            now,
            extend=True,
        )
        return count

    def check_failures(
        self,
        settings: PortalSettings,
        method: str,
        subject: str,
        counter: str = "",
        *,
        digits: int | None = None,
        lock: bool = True,
    ) -> int:
        """Raise :class:`Throttled` if the subject must wait before another attempt; else return
        the count it read (for :meth:`clear_failures` after a success).

        ``lock=False`` applies the escalating delays only, never the hard lock: for a count of
        attempts that cannot succeed (see ``staff_pin``), which must not close a path."""
        limit = hard_limit(settings, digits) if lock else None
        key = _failure_key(settings.slug, method, subject, counter)
        return self._check_budget(key, settings, self._clock.now(), limit)

    def failures(self, portal: str, method: str, subject: str, counter: str = "") -> int:
        key = _failure_key(portal, method, subject, counter)
        return self._store.get_counter(key, self._clock.now())[0]

    def clear_failures(
        self,
        portal: str,
        method: str,
        subject: str,
        counter: str = "",
        *,
        read: int | None = None,
    ) -> None:
        """Forget a subject's consecutive failures for one method (after a success).

        ``read`` is the count :meth:`check_failures` returned earlier in the same step: then
        the count is not read again (a failure counted in between stays counted, as it came
        after the check this success answers)."""
        key = _failure_key(portal, method, subject, counter)
        # Skip the write in the common case of no failures: one round trip fewer.
        if read is None:
            read = self._store.get_counter(key, self._clock.now())[0]
        if read:
            self._store.clear_counter(key)

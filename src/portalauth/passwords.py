"""The password hashing policy, on passlib's ``CryptContext`` (the maintained ``libpass`` fork).

New hashes are argon2id with the OWASP parameters (19 MiB memory, 2 iterations, 1 lane). bcrypt
and PBKDF2-SHA256 hashes from an earlier system still verify and are replaced by argon2id on the
next successful sign-in (a compare-and-swap, so a concurrent password change always wins).

Passwords are put in Unicode NFKC before hashing (NIST SP 800-63B-4 §3.1.1.2), so the same
password typed on another keyboard still matches. Length is checked before any hashing: more than
4096 UTF-8 bytes is refused, never truncated (R22). A bcrypt hash never verifies a password longer
than 72 bytes or containing NUL, because bcrypt would silently ignore what follows (R42).
For unknown accounts :meth:`PasswordHasher.dummy_verify` spends the same time as a real verify,
so response time does not tell whether an account exists.
"""

from __future__ import annotations

import secrets
import unicodedata

from passlib.context import CryptContext

from .errors import InvalidInput

__all__ = ["PASSWORD_MAX_BYTES", "PasswordHasher"]

PASSWORD_MAX_BYTES = 4096

#: OWASP Password Storage Cheat Sheet: argon2id, m=19456 KiB, t=2, p=1.
OWASP_ARGON2 = {"memory_cost": 19456, "rounds": 2, "parallelism": 1}


def _context(memory_cost: int, rounds: int, parallelism: int) -> CryptContext:
    return CryptContext(
        schemes=["argon2", "bcrypt", "pbkdf2_sha256"],
        default="argon2",
        deprecated=["bcrypt", "pbkdf2_sha256"],
        argon2__type="ID",
        argon2__memory_cost=memory_cost,
        argon2__rounds=rounds,
        argon2__parallelism=parallelism,
    )


def prepare(password: object) -> str:
    """Check and normalise a password; raise :class:`InvalidInput` (never truncates)."""
    if not isinstance(password, str):
        raise InvalidInput(field="password")
    try:
        raw = password.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        raise InvalidInput(field="password") from None
    if len(raw) > PASSWORD_MAX_BYTES:
        raise InvalidInput("That password is too long.", field="password")
    return unicodedata.normalize("NFKC", password)


class PasswordHasher:
    """Hashes and verifies passwords under one policy.

    ``memory_cost``, ``rounds`` and ``parallelism`` default to OWASP's argon2id parameters;
    raising them upgrades existing hashes on their next successful verify.
    """

    def __init__(
        self,
        *,
        memory_cost: int = OWASP_ARGON2["memory_cost"],
        rounds: int = OWASP_ARGON2["rounds"],
        parallelism: int = OWASP_ARGON2["parallelism"],
    ) -> None:
        self._context = _context(memory_cost, rounds, parallelism)
        #: How many hashes were computed (hash, verify or dummy): the enumeration harness
        #: compares it between known and unknown identifiers.
        self.calls = 0
        # A real hash under the current policy: verifying against it costs what a real verify
        # costs (passlib's own dummy_verify may use other parameters).
        self._dummy = str(self._context.hash(secrets.token_urlsafe(16)))

    def hash(self, password: str) -> str:
        """A new argon2id hash of ``password`` (checked by :func:`prepare`)."""
        prepared = prepare(password)
        self.calls += 1
        return str(self._context.hash(prepared))

    def verify(self, password: object, stored: str | None) -> tuple[bool, str | None]:
        """``(matches, replacement_hash_or_None)``. Malformed input or an unknown hash format
        verifies as False (after the same work as a real verify)."""
        try:
            prepared = prepare(password)
        except InvalidInput:
            self.dummy_verify()
            return False, None
        if not isinstance(stored, str) or not stored:
            self.dummy_verify()
            return False, None
        scheme = self._context.identify(stored, required=False)
        if scheme is None:
            self.dummy_verify()
            return False, None
        if scheme == "bcrypt" and (len(prepared.encode("utf-8")) > 72 or "\x00" in prepared):
            self.dummy_verify()
            return False, None
        self.calls += 1
        try:
            ok, new_hash = self._context.verify_and_update(prepared, stored)
        except (ValueError, TypeError):
            return False, None
        return bool(ok), (str(new_hash) if ok and new_hash else None)

    def dummy_verify(self) -> None:
        """Spend the time of one verify against nothing (for unknown accounts)."""
        self.calls += 1
        self._context.verify("not the password", self._dummy)

"""Server keys and keyed digests.

A :class:`Keyring` holds the server's secret keys, newest first. New digests and signatures use
the newest key; verification accepts any listed key, so keys rotate by adding a new one in front
and, once old secrets have expired, removing the old one (which invalidates what it signed).

Secrets are stored only as HMAC-SHA256 digests under these keys. A digest is bound to a
``purpose`` and to context parts (portal, subject, challenge id), so a digest made for one purpose
can never verify for another, and short codes cannot be brute-forced offline from a database dump
without the key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

from .errors import ConfigError

__all__ = ["Keyring"]

_MIN_KEY_BYTES = 16


def _encode(parts: Iterable[str | bytes]) -> bytes:
    # Length-prefix every part so ("ab", "c") and ("a", "bc") never collide.
    out = bytearray()
    for part in parts:
        raw = part if isinstance(part, bytes) else part.encode("utf-8", "surrogatepass")
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out)


class Keyring:
    """The server's secret keys, newest first.

    >>> ring = Keyring(["a-new-key-of-32-characters-or-so", "the-old-key-still-verifying"])
    """

    __slots__ = ("_keys",)

    def __init__(self, keys: Sequence[str | bytes] | str | bytes) -> None:
        if isinstance(keys, (str, bytes)):
            keys = [keys]
        raw = [k.encode("utf-8") if isinstance(k, str) else bytes(k) for k in keys]
        if not raw:
            raise ConfigError("secret_keys needs at least one key.")
        for key in raw:
            if len(key) < _MIN_KEY_BYTES:
                raise ConfigError(f"Every secret key needs at least {_MIN_KEY_BYTES} bytes.")
        self._keys: tuple[bytes, ...] = tuple(raw)

    @property
    def newest(self) -> bytes:
        return self._keys[0]

    @property
    def all(self) -> tuple[bytes, ...]:
        """Every key, newest first."""
        return self._keys

    @property
    def oldest_first(self) -> list[bytes]:
        """The order itsdangerous expects (it signs with the last)."""
        return list(reversed(self._keys))

    def digest(self, purpose: str, *parts: str | bytes) -> bytes:
        """The keyed digest of ``parts`` for ``purpose`` under the newest key."""
        return hmac.new(self._keys[0], _encode((purpose, *parts)), hashlib.sha256).digest()

    def digests(self, purpose: str, *parts: str | bytes) -> list[bytes]:
        """The digests under every key, newest first: for lookups during a key rotation."""
        msg = _encode((purpose, *parts))
        return [hmac.new(k, msg, hashlib.sha256).digest() for k in self._keys]

    def matches(self, stored: bytes, purpose: str, *parts: str | bytes) -> bool:
        """Whether ``stored`` is the digest of ``parts`` under any key, in constant time per key."""
        ok = False
        for candidate in self.digests(purpose, *parts):
            # No early exit: the work does not depend on which key matched.
            ok |= hmac.compare_digest(stored, candidate)
        return ok

    def __repr__(self) -> str:
        return f"Keyring(<{len(self._keys)} keys>)"

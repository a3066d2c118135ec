"""Token signatures: itsdangerous's HMAC-SHA256 scheme, with keys derived once.

Session and flow tokens are what ``itsdangerous.Signer(keys, salt=..., digest_method=sha256)``
writes: ``value.signature``, the signature being the unpadded base64url HMAC-SHA256 of the
value under a key derived from the server key and the salt. itsdangerous derives that key on
every call; a :class:`TokenSigner` derives it once per server key, which is most of the cost of
checking a session on every request.

A signature is compared as the exact string this server would write, in constant time and
against every listed key, so a re-padded or bit-flipped spelling of a valid signature never
passes and the time taken does not tell which key matched.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import itsdangerous

from .keys import Keyring

__all__ = ["TokenSigner", "b64"]


def b64(data: bytes) -> bytes:
    """Unpadded URL-safe base64, as in every token."""
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class TokenSigner:
    """Signs with the newest server key; verifies against every listed key."""

    __slots__ = ("_keys",)

    def __init__(self, keyring: Keyring, salt: str) -> None:
        signer = itsdangerous.Signer(keyring.oldest_first, salt=salt, digest_method=hashlib.sha256)
        self._keys = tuple(signer.derive_key(key) for key in keyring.all)

    @staticmethod
    def _signature(value: bytes, key: bytes) -> bytes:
        return b64(hmac.digest(key, value, "sha256"))

    def sign(self, value: bytes) -> bytes:
        """The signature of ``value`` (43 base64url characters)."""
        return self._signature(value, self._keys[0])

    def verify(self, value: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is exactly what a listed key writes for ``value``."""
        matched = False
        for key in self._keys:
            # No early exit: the work does not depend on which key matched.
            matched |= hmac.compare_digest(self._signature(value, key), signature)
        return matched

    def __repr__(self) -> str:
        return f"TokenSigner(<{len(self._keys)} keys>)"

"""Strict reading of signed tokens.

itsdangerous decodes base64 leniently: it re-adds padding, so ``token + "="`` verifies, and a last
character that differs only in unused bits decodes to the same bytes. Those strings were never
issued; accepting them lets one token have many spellings (a cache key, a log search or a
revocation list keyed on the string would miss them). portalauth accepts a token only in the exact
form it issued: ASCII, within its maximum length, every dot-separated part canonical unpadded
URL-safe base64.
"""

from __future__ import annotations

import binascii
import re
from typing import TypeGuard

from itsdangerous.encoding import base64_decode, base64_encode
from itsdangerous.exc import BadData

__all__ = ["is_canonical"]

_PART = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)


def is_canonical(token: object, *, max_length: int, parts: int) -> TypeGuard[str]:
    """Whether ``token`` is ``parts`` dot-separated canonical base64url parts within length."""
    if not isinstance(token, str) or not 0 < len(token) <= max_length or not token.isascii():
        return False
    pieces = token.split(".")
    if len(pieces) != parts:
        return False
    for piece in pieces:
        if not _PART.fullmatch(piece):
            return False
        try:
            if base64_encode(base64_decode(piece)) != piece.encode("ascii"):
                return False
        except (BadData, binascii.Error, ValueError):
            return False
    return True

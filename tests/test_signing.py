"""TokenSigner: itsdangerous's signatures, keys derived once, exact spellings only."""

from __future__ import annotations

import hashlib

import itsdangerous
from hypothesis import given
from hypothesis import strategies as st

from portalauth.keys import Keyring
from portalauth.signing import TokenSigner

NEW, OLD = "a-newer-server-key-0123456789abcdef", "an-older-server-key-0123456789abcdef"
SALT = "portalauth.test"


@given(st.binary(max_size=200))
def test_signatures_are_the_ones_itsdangerous_writes(value: bytes) -> None:
    ours = TokenSigner(Keyring([NEW, OLD]), SALT)
    theirs = itsdangerous.Signer([OLD, NEW], salt=SALT, digest_method=hashlib.sha256)
    signature = ours.sign(value)
    assert theirs.sign(value) == value + b"." + signature
    assert ours.verify(value, signature)


@given(st.binary(min_size=1, max_size=64))
def test_another_value_or_spelling_never_verifies(value: bytes) -> None:  # R19 R22
    signer = TokenSigner(Keyring([NEW]), SALT)
    signature = signer.sign(value)
    assert not signer.verify(value + b"x", signature)
    assert not signer.verify(value, signature + b"=")  # re-padded
    last = signature[-1:]
    flipped = signature[:-1] + (b"B" if last != b"B" else b"C")
    assert not signer.verify(value, flipped)


def test_keys_rotate_by_the_keyring() -> None:  # R19
    old = TokenSigner(Keyring([OLD]), SALT).sign(b"session")
    assert TokenSigner(Keyring([NEW, OLD]), SALT).verify(b"session", old)
    assert not TokenSigner(Keyring([NEW]), SALT).verify(b"session", old)
    assert not TokenSigner(Keyring([OLD]), "another.salt").verify(b"session", old)


def test_the_repr_shows_no_key() -> None:  # R66
    signer = TokenSigner(Keyring([NEW, OLD]), SALT)
    assert NEW not in repr(signer) and "2 keys" in repr(signer)

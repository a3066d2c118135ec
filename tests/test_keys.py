"""The keyring: key requirements, purpose- and part-separated digests, rotation, constant-time
matching and key hiding."""

from __future__ import annotations

import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portalauth import ConfigError, Keyring

NEW = "the-newest-key-0123456789abcdef"
OLD = "the-oldest-key-0123456789abcdef"


# -- construction (R19) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "keys",
    [
        [],
        (),
        "",
        b"",
        "a" * 15,
        b"a" * 15,
        ["a" * 15],
        [NEW, "short"],
        ["short", NEW],
        [NEW, ""],
    ],
    ids=repr,
)
def test_keys_must_be_present_and_at_least_16_bytes(keys: object) -> None:
    with pytest.raises(ConfigError) as refused:
        Keyring(keys)  # type: ignore[arg-type]
    assert "short" not in str(refused.value)  # the key itself is not echoed
    assert "a" * 15 not in str(refused.value)


@pytest.mark.parametrize("keys", ["a" * 16, b"a" * 16, ["a" * 16], [NEW, OLD], "é" * 8], ids=repr)
def test_sixteen_bytes_is_enough(keys: object) -> None:
    Keyring(keys)  # type: ignore[arg-type]


def test_a_single_key_string_is_one_key_not_a_list_of_characters() -> None:
    ring = Keyring(NEW)
    assert ring.all == (NEW.encode(),)


def test_order_newest_first_and_oldest_first() -> None:  # R19
    ring = Keyring([NEW, OLD])
    assert ring.newest == NEW.encode()
    assert ring.all == (NEW.encode(), OLD.encode())
    # itsdangerous signs with the last key of its list, so it must be the newest.
    assert ring.oldest_first == [OLD.encode(), NEW.encode()]


def test_repr_and_str_hide_the_keys() -> None:  # R66
    ring = Keyring([NEW, OLD])
    for text in (repr(ring), str(ring), f"{ring!r}", format(ring)):
        assert NEW not in text
        assert OLD not in text
        assert NEW[:16] not in text
    assert "2" in repr(ring)


# -- digests (R18, R19, R26) ----------------------------------------------------------------------


def test_digest_is_part_separated() -> None:
    ring = Keyring([NEW])
    assert ring.digest("p", "ab", "c") != ring.digest("p", "a", "bc")
    assert ring.digest("p", "abc") != ring.digest("p", "ab", "c")
    assert ring.digest("p", "a", "") != ring.digest("p", "a")
    assert ring.digest("p", "", "a") != ring.digest("p", "a", "")
    assert ring.digest("p", "a\x00b") != ring.digest("p", "a", "b")


def test_digest_is_purpose_separated() -> None:  # R26
    ring = Keyring([NEW])
    assert ring.digest("login", "x") != ring.digest("reset", "x")
    # The purpose is a separate part too, not a prefix of the first part.
    assert ring.digest("login", "x") != ring.digest("logi", "nx")
    assert ring.digest("login", "x") != ring.digest("", "login", "x")
    digest = ring.digest("login", "acme", "subject", "123456")
    assert not ring.matches(digest, "reset", "acme", "subject", "123456")
    assert not ring.matches(digest, "login", "other", "subject", "123456")
    assert not ring.matches(digest, "login", "acme", "someone", "123456")


def test_digest_is_keyed_and_uses_the_newest_key() -> None:  # R18 R19
    import hashlib

    assert Keyring([NEW]).digest("p", "x") != Keyring([OLD]).digest("p", "x")
    assert Keyring([NEW, OLD]).digest("p", "x") == Keyring([NEW]).digest("p", "x")
    digest = Keyring([NEW]).digest("p", "123456")
    assert len(digest) == 32
    assert digest != hashlib.sha256(b"123456").digest()
    assert digest != hashlib.sha256(b"p123456").digest()


def test_digests_lists_every_key_newest_first() -> None:  # R19
    ring = Keyring([NEW, OLD])
    assert ring.digests("p", "x") == [
        Keyring([NEW]).digest("p", "x"),
        Keyring([OLD]).digest("p", "x"),
    ]


def test_matches_accepts_a_digest_under_any_key() -> None:  # R19
    old_digest = Keyring([OLD]).digest("p", "x")
    new_digest = Keyring([NEW]).digest("p", "x")
    rotated = Keyring([NEW, OLD])
    assert rotated.matches(old_digest, "p", "x")
    assert rotated.matches(new_digest, "p", "x")
    # Once the old key is removed, what it made no longer matches.
    assert not Keyring([NEW]).matches(old_digest, "p", "x")
    assert not Keyring(["a-third-unrelated-key-0123456789"]).matches(new_digest, "p", "x")


def test_matches_rejects_truncated_and_extended_digests() -> None:  # R20
    ring = Keyring([NEW, OLD])
    digest = ring.digest("p", "x")
    for bad in (digest[:-1], digest[:16], digest[:1], b"", digest + b"\x00", digest * 2):
        assert not ring.matches(bad, "p", "x")


def test_matches_compares_in_constant_time_under_every_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # R20
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        assert isinstance(a, bytes) and isinstance(b, bytes)
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    ring = Keyring([NEW, OLD, "a-third-key-0123456789abcdef"])
    digest = ring.digest("p", "x")  # matches the first key
    assert ring.matches(digest, "p", "x")
    # No early exit: every key is compared, whichever matched.
    assert len(calls) == 3


# -- properties ---------------------------------------------------------------------------------

parts_strategy = st.lists(
    st.one_of(st.text(max_size=20), st.binary(max_size=20)), min_size=0, max_size=6
)


@given(purpose=st.text(max_size=20), parts=parts_strategy, data=st.data())
def test_digest_matches_itself_and_no_one_byte_flip(
    purpose: str, parts: list[str | bytes], data: st.DataObject
) -> None:
    ring = Keyring([NEW, OLD])
    digest = ring.digest(purpose, *parts)
    assert ring.matches(digest, purpose, *parts)
    index = data.draw(st.integers(0, len(digest) - 1))
    bit = data.draw(st.integers(0, 7))
    flipped = bytearray(digest)
    flipped[index] ^= 1 << bit
    assert not ring.matches(bytes(flipped), purpose, *parts)


@given(
    first=st.lists(st.text(max_size=8), min_size=1, max_size=4),
    second=st.lists(st.text(max_size=8), min_size=1, max_size=4),
)
def test_different_part_lists_give_different_digests(first: list[str], second: list[str]) -> None:
    ring = Keyring([NEW])
    if first != second:
        assert ring.digest("p", *first) != ring.digest("p", *second)
    else:
        assert ring.digest("p", *first) == ring.digest("p", *second)

"""The password hashing policy: argon2id with OWASP parameters, NFKC, length caps before any
work, legacy bcrypt/PBKDF2 verification with upgrade, and equal work for every failure."""

from __future__ import annotations

import base64
import unicodedata

import bcrypt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from passlib.context import CryptContext
from passlib.hash import pbkdf2_sha256

from portalauth import InvalidInput, PasswordHasher
from portalauth.passwords import PASSWORD_MAX_BYTES

PASSWORD = "correct horse battery staple"


def argon2_params(hashed: str) -> str:
    """``m=...,t=...,p=...`` of an argon2 hash string."""
    return hashed.split("$")[3]


def legacy_bcrypt(password: bytes, rounds: int = 4) -> str:
    return bcrypt.hashpw(password, bcrypt.gensalt(rounds)).decode("ascii")


# -- the policy (R43) ---------------------------------------------------------------------------


def test_default_policy_is_owasp_argon2id() -> None:  # R43
    hashed = PasswordHasher().hash(PASSWORD)
    assert hashed.startswith("$argon2id$")
    assert argon2_params(hashed) == "m=19456,t=2,p=1"
    salt = hashed.split("$")[4]
    assert len(base64.b64decode(salt + "=" * (-len(salt) % 4))) >= 16


def test_hash_and_verify_round_trip(fast_hasher: PasswordHasher) -> None:
    hashed = fast_hasher.hash(PASSWORD)
    assert hashed.startswith("$argon2id$")
    assert PASSWORD not in hashed
    assert fast_hasher.verify(PASSWORD, hashed) == (True, None)
    assert fast_hasher.verify(PASSWORD + "!", hashed) == (False, None)
    assert fast_hasher.verify("", hashed) == (False, None)


def test_every_hash_is_salted(fast_hasher: PasswordHasher) -> None:  # R43
    assert fast_hasher.hash(PASSWORD) != fast_hasher.hash(PASSWORD)


@pytest.mark.parametrize(
    ("stored_as", "typed_as"),
    [
        ("\u212b", "\u00c5"),  # ANGSTROM SIGN vs LATIN CAPITAL A WITH RING
        ("\u00c5", "\u212b"),
        ("e\u0301", "\u00e9"),  # decomposed vs composed é
        ("\u00e9", "e\u0301"),
        ("ﬁnn-pass-phrase", "finn-pass-phrase"),  # ligature (NFKC)
        ("ｐａｓｓｗｏｒｄ", "password"),  # fullwidth (NFKC)
    ],
)
def test_nfkc_equivalent_passwords_verify(
    fast_hasher: PasswordHasher, stored_as: str, typed_as: str
) -> None:  # R42
    assert stored_as != typed_as
    assert fast_hasher.verify(typed_as, fast_hasher.hash(stored_as))[0] is True


@pytest.mark.parametrize(
    ("stored_as", "typed_as"),
    [
        ("Password-Phrase", "password-phrase"),  # no case folding
        ("password-phrase", " password-phrase"),  # no trimming
        ("password-phrase", "password-phrase "),
        ("password-phrase", "password-phras"),  # whole password
        ("\u00c5", "A"),
        ("straße", "strasse"),
    ],
)
def test_different_passwords_do_not_verify(
    fast_hasher: PasswordHasher, stored_as: str, typed_as: str
) -> None:  # R42
    assert fast_hasher.verify(typed_as, fast_hasher.hash(stored_as)) == (False, None)


# -- length caps before any work (R22) ----------------------------------------------------------


@pytest.mark.parametrize(
    "oversized",
    [
        "a" * (PASSWORD_MAX_BYTES + 1),
        "é" * (PASSWORD_MAX_BYTES // 2 + 1),  # 2049 code points, 4098 bytes
        "😀" * (PASSWORD_MAX_BYTES // 4 + 1),
        "a" * 1_000_000,
    ],
    ids=["ascii-4097", "e-acute-4098-bytes", "emoji", "1MB"],
)
def test_oversized_passwords_are_refused_never_truncated(
    fast_hasher: PasswordHasher, oversized: str
) -> None:  # R22
    before = fast_hasher.calls
    with pytest.raises(InvalidInput) as refused:
        fast_hasher.hash(oversized)
    assert refused.value.field == "password"
    assert fast_hasher.calls == before  # refused before any hashing
    # A stored hash of the first 4096 bytes does not accept the longer password.
    prefix = oversized.encode("utf-8")[:PASSWORD_MAX_BYTES].decode("utf-8", "ignore")
    stored = fast_hasher.hash(prefix)
    assert fast_hasher.verify(oversized, stored) == (False, None)


def test_the_byte_cap_itself_is_accepted(fast_hasher: PasswordHasher) -> None:  # R22 R39
    exact = "a" * PASSWORD_MAX_BYTES
    assert fast_hasher.verify(exact, fast_hasher.hash(exact)) == (True, None)
    multibyte = "é" * (PASSWORD_MAX_BYTES // 2)
    assert fast_hasher.verify(multibyte, fast_hasher.hash(multibyte)) == (True, None)


def test_every_failed_verify_costs_one_hash(fast_hasher: PasswordHasher) -> None:  # R32
    # Timing parity through equal work: a wrong password, an oversized one, a malformed one and
    # an unknown account (dummy verify) each cost exactly one argon2 computation.
    stored = fast_hasher.hash(PASSWORD)
    cases: list[object] = [
        "wrong password entirely",
        "a" * (PASSWORD_MAX_BYTES + 1),
        "\udcff",
        None,
        123,
        b"bytes",
        ["list"],
    ]
    for typed in cases:
        before = fast_hasher.calls
        assert fast_hasher.verify(typed, stored) == (False, None)
        assert fast_hasher.calls == before + 1, typed
    before = fast_hasher.calls
    assert fast_hasher.verify(PASSWORD, stored) == (True, None)
    assert fast_hasher.calls == before + 1


def test_dummy_verify_costs_one_hash(fast_hasher: PasswordHasher) -> None:  # R32
    before = fast_hasher.calls
    fast_hasher.dummy_verify()
    assert fast_hasher.calls == before + 1
    fast_hasher.dummy_verify()
    assert fast_hasher.calls == before + 2


def test_dummy_verify_does_real_argon2_work(
    fast_hasher: PasswordHasher, monkeypatch: pytest.MonkeyPatch
) -> None:  # R32
    # The dummy verify goes through the same argon2 verification as a real one, with the
    # current parameters (not a no-op that only bumps the counter).
    from passlib.handlers import argon2 as argon2_handler

    seen: list[str] = []
    real = argon2_handler.argon2.verify.__func__  # type: ignore[attr-defined]

    def spy(cls: type, secret: str, hashed: str, **kwargs: object) -> bool:
        seen.append(hashed)
        return bool(real(cls, secret, hashed, **kwargs))

    monkeypatch.setattr(argon2_handler.argon2, "verify", classmethod(spy))
    stored = fast_hasher.hash(PASSWORD)
    fast_hasher.verify("wrong", stored)
    fast_hasher.dummy_verify()
    fast_hasher.verify("a" * (PASSWORD_MAX_BYTES + 1), stored)
    assert len(seen) == 3
    assert {argon2_params(h) for h in seen} == {argon2_params(stored)}


@pytest.mark.parametrize("typed", ["\udcff", "pass\udcffword", "x\ud800", "\udfff" * 10])
def test_lone_surrogates_are_invalid_input_never_a_crash(
    fast_hasher: PasswordHasher, typed: str
) -> None:  # R23, §4 surrogate escape
    with pytest.raises(InvalidInput):
        fast_hasher.hash(typed)
    stored = fast_hasher.hash(PASSWORD)
    assert fast_hasher.verify(typed, stored) == (False, None)
    assert fast_hasher.verify(typed, legacy_bcrypt(b"x")) == (False, None)


@pytest.mark.parametrize("typed", [None, 1, 1.5, True, b"pw", ["pw"], {"pw": "pw"}])
def test_non_strings_are_invalid_input(fast_hasher: PasswordHasher, typed: object) -> None:  # R23
    with pytest.raises(InvalidInput):
        fast_hasher.hash(typed)  # type: ignore[arg-type]


# -- legacy hashes and upgrades (R44, R45) -------------------------------------------------------


def test_bcrypt_hash_verifies_and_is_upgraded(fast_hasher: PasswordHasher) -> None:  # R44
    stored = legacy_bcrypt(PASSWORD.encode())
    ok, replacement = fast_hasher.verify(PASSWORD, stored)
    assert ok is True
    assert replacement is not None
    assert replacement.startswith("$argon2id$")
    assert argon2_params(replacement) == "m=1024,t=1,p=1"
    assert fast_hasher.verify(PASSWORD, replacement) == (True, None)
    assert fast_hasher.verify("wrong", stored) == (False, None)


def test_bcrypt_2a_and_2y_hashes_verify(fast_hasher: PasswordHasher) -> None:  # R44
    stored = legacy_bcrypt(PASSWORD.encode())
    for prefix in ("$2a$", "$2y$"):
        ok, replacement = fast_hasher.verify(PASSWORD, prefix + stored[4:])
        assert ok is True
        assert replacement is not None and replacement.startswith("$argon2id$")


def test_pbkdf2_sha256_hash_verifies_and_is_upgraded(fast_hasher: PasswordHasher) -> None:  # R44
    stored = pbkdf2_sha256.using(rounds=1000).hash(PASSWORD)
    ok, replacement = fast_hasher.verify(PASSWORD, stored)
    assert ok is True
    assert replacement is not None
    assert replacement.startswith("$argon2id$")
    assert fast_hasher.verify(PASSWORD, replacement) == (True, None)
    assert fast_hasher.verify("wrong", stored) == (False, None)


def test_weaker_argon2_parameters_are_upgraded(fast_hasher: PasswordHasher) -> None:  # R44
    stored = fast_hasher.hash(PASSWORD)
    assert argon2_params(stored) == "m=1024,t=1,p=1"
    raised = PasswordHasher(memory_cost=2048, rounds=2, parallelism=1)
    ok, replacement = raised.verify(PASSWORD, stored)
    assert ok is True
    assert replacement is not None
    assert replacement.startswith("$argon2id$")
    assert argon2_params(replacement) == "m=2048,t=2,p=1"
    assert raised.verify(PASSWORD, replacement) == (True, None)
    # A failed verify never proposes a replacement.
    assert raised.verify("wrong", stored) == (False, None)


def test_argon2i_hash_is_upgraded_to_argon2id(fast_hasher: PasswordHasher) -> None:  # R43 R44
    from passlib.hash import argon2

    stored = argon2.using(type="I", memory_cost=1024, rounds=1, parallelism=1).hash(PASSWORD)
    assert stored.startswith("$argon2i$")
    ok, replacement = fast_hasher.verify(PASSWORD, stored)
    assert ok is True
    assert replacement is not None and replacement.startswith("$argon2id$")


def test_bcrypt_never_verifies_beyond_72_bytes(fast_hasher: PasswordHasher) -> None:  # R42 R45
    first72 = "a" * 72
    stored = legacy_bcrypt(first72.encode())
    assert fast_hasher.verify(first72, stored)[0] is True
    before = fast_hasher.calls
    assert fast_hasher.verify(first72 + "b", stored) == (False, None)
    assert fast_hasher.calls == before + 1  # refused after the same work
    multibyte = "é" * 36  # 72 bytes
    stored = legacy_bcrypt(multibyte.encode())
    assert fast_hasher.verify(multibyte + "x", stored) == (False, None)


def test_bcrypt_truncation_is_refused_even_with_a_truncating_backend(
    fast_hasher: PasswordHasher, monkeypatch: pytest.MonkeyPatch
) -> None:  # R42 R45
    # bcrypt < 5 (allowed by the dependency range) silently truncated at 72 bytes; the policy
    # must not rely on the installed bcrypt raising.
    real = bcrypt.hashpw

    def truncating(password: bytes, salt: bytes) -> bytes:
        return real(password[:72], salt)

    monkeypatch.setattr(bcrypt, "hashpw", truncating)
    first72 = "p" * 72
    stored = legacy_bcrypt(first72.encode())
    # The simulated backend really does truncate: plain passlib accepts the longer password.
    assert CryptContext(schemes=["bcrypt"]).verify(first72 + "-anything", stored) is True
    assert fast_hasher.verify(first72, stored)[0] is True
    assert fast_hasher.verify(first72 + "-anything", stored) == (False, None)


def test_bcrypt_never_verifies_a_password_with_nul(fast_hasher: PasswordHasher) -> None:  # R42
    stored = legacy_bcrypt(b"pass")
    assert fast_hasher.verify("pass", stored)[0] is True
    for typed in ("pass\x00word", "pass\x00", "\x00"):
        before = fast_hasher.calls
        assert fast_hasher.verify(typed, stored) == (False, None)
        assert fast_hasher.calls == before + 1


def test_nul_is_an_ordinary_character_for_argon2(fast_hasher: PasswordHasher) -> None:  # R40 R42
    stored = fast_hasher.hash("pass\x00word")
    assert fast_hasher.verify("pass\x00word", stored) == (True, None)
    assert fast_hasher.verify("pass", stored) == (False, None)


# -- garbage stored hashes -----------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:encountered a bcrypt salt")
@pytest.mark.parametrize(
    "stored",
    [
        "",
        "garbage",
        "$2b$04$short",
        "$2b$04$" + "a" * 53,
        "$argon2id$v=19$m=1024,t=1,p=1$garbage",
        "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$!!!!",
        "$argon2id$v=19$m=99999999999,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
        "$pbkdf2-sha256$29000$xx$yy",
        "$pbkdf2-sha256$0$xx$yy",
        "$1$md5crypt$hash",
        "5f4dcc3b5aa765d61d8327deb882cf99",  # plain MD5
        PASSWORD,  # a plaintext "hash"
        "\udcff",
        "\x00",
    ],
)
def test_garbage_stored_hash_is_false_without_exception(
    fast_hasher: PasswordHasher, stored: str
) -> None:
    before = fast_hasher.calls
    assert fast_hasher.verify(PASSWORD, stored) == (False, None)
    assert fast_hasher.calls == before + 1


@pytest.mark.parametrize("stored", [None, 5])
def test_non_string_stored_hash_is_false_without_exception(
    fast_hasher: PasswordHasher, stored: object
) -> None:
    before = fast_hasher.calls
    assert fast_hasher.verify(PASSWORD, stored) == (False, None)  # type: ignore[arg-type]
    assert fast_hasher.calls == before + 1


# -- properties ----------------------------------------------------------------------------------


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(password=st.text(min_size=1, max_size=40))
def test_any_password_round_trips_and_its_nfkc_form_too(
    fast_hasher: PasswordHasher, password: str
) -> None:  # R42
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(InvalidInput):
            fast_hasher.hash(password)
        return
    stored = fast_hasher.hash(password)
    assert fast_hasher.verify(password, stored) == (True, None)
    assert fast_hasher.verify(unicodedata.normalize("NFKC", password), stored)[0] is True
    assert fast_hasher.verify(password + "x", stored) == (False, None)

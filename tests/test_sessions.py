"""Sessions: signed tokens, hashed ids at rest, fixation, idle/absolute expiry, revocation,
portal binding, key rotation and clock moves. Every test runs on the memory and SQLite stores."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

import itsdangerous
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SECRET_KEYS, EmailCodePlugin
from portalauth import Auth, Identity, PasswordHasher, SessionInvalid, SignedIn
from portalauth.clock import FrozenClock
from portalauth.keys import Keyring
from portalauth.sessions import TOKEN_MAX, Sessions
from portalauth.signing import TokenSigner

SALT = "portalauth.session"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

# A portal with short lifetimes so the boundaries are easy to reach.
IDLE = 600
ABSOLUTE = 1800


@pytest.fixture
def party(auth: Auth) -> Identity:
    return auth.directory.add("acme", "Jane Roe", email="jane@example.com")


@pytest.fixture
def short(auth: Auth) -> Auth:
    auth.portals.update("acme", session_idle=IDLE, session_absolute=ABSOLUTE)
    return auth


def sign_in(auth: Auth, identity: Identity) -> str:
    done = auth.sign_in(identity, method="email_code")
    assert isinstance(done, SignedIn)
    return done.token


def session_id(token: str, keys: Sequence[str] = tuple(SECRET_KEYS)) -> str:
    """The raw session id inside a token (what only the server and the client hold)."""
    signer = itsdangerous.Signer(
        Keyring(list(keys)).oldest_first, salt=SALT, digest_method=hashlib.sha256
    )
    return signer.unsign(token).decode("ascii")


def other_char(ch: str, *, data_bits: bool = True) -> str:
    """A base64url character that differs from ``ch`` in its high 4 bits, so the decoded bytes of
    a final (partial) base64 group change too."""
    value = B64URL.index(ch)
    return B64URL[value ^ 0b100000] if data_bits else B64URL[value ^ 0b1]


# -- the token is signed (R54, R22) -------------------------------------------------------------


def test_a_valid_token_validates(auth: Auth, party: Identity) -> None:
    token = sign_in(auth, party)
    record = auth.sessions.validate(token)
    assert record.identity_id == party.id
    assert record.portal == "acme"
    assert len(token) <= TOKEN_MAX


def test_tampered_and_truncated_tokens_are_refused(auth: Auth, party: Identity) -> None:  # R54
    token = sign_in(auth, party)
    sid, sig = token.split(".")
    forged = [
        token[:-1] + other_char(token[-1]),  # last character of the signature
        sid + "." + sig[:-2],
        token[:-1],  # truncated by one
        token[:-5],
        sid,  # id without signature
        sid + ".",
        "." + sig,
        sid[:-1] + other_char(sid[-1], data_bits=False) + "." + sig,  # id changed, sig kept
        sid + "." + other_char(sig[0]) + sig[1:],
        sid + "." + sig + "." + sig,
        token.upper(),
        token.replace(".", ":"),
    ]
    for bad in forged:
        assert bad != token
        with pytest.raises(SessionInvalid):
            auth.sessions.validate(bad)
    # The real token is untouched by all that.
    assert auth.sessions.validate(token).identity_id == party.id


def test_a_token_signed_with_another_key_is_refused(auth: Auth, party: Identity) -> None:  # R54
    sid = session_id(sign_in(auth, party))
    resigned = itsdangerous.Signer(
        "an-attacker-key-0123456789abcdef", salt=SALT, digest_method=hashlib.sha256
    ).sign(sid)
    with pytest.raises(SessionInvalid):
        auth.sessions.validate(resigned.decode("ascii"))


def test_a_token_signed_with_another_salt_is_refused(auth: Auth, party: Identity) -> None:  # R54
    sid = session_id(sign_in(auth, party))
    for salt in ("other", "portalauth.flow", "itsdangerous.Signer"):
        for key in SECRET_KEYS:
            resigned = (
                itsdangerous.Signer(key, salt=salt, digest_method=hashlib.sha256)
                .sign(sid)
                .decode("ascii")
            )
            with pytest.raises(SessionInvalid):
                auth.sessions.validate(resigned)


def test_a_correctly_signed_but_never_issued_id_is_refused(auth: Auth, party: Identity) -> None:
    # R52 strict mode / R53: the signature alone is not enough, the record is the authority.
    sign_in(auth, party)
    signer = itsdangerous.Signer(
        Keyring(SECRET_KEYS).oldest_first, salt=SALT, digest_method=hashlib.sha256
    )
    unknown = signer.sign(secrets.token_urlsafe(32)).decode("ascii")
    with pytest.raises(SessionInvalid):
        auth.sessions.validate(unknown)
    # A signed value that is not shaped like a session id is refused as well.
    for value in ("", "x", "a" * 42, "a" * 44, "../../etc/passwd"):
        with pytest.raises(SessionInvalid):
            auth.sessions.validate(signer.sign(value).decode("ascii"))


@pytest.mark.parametrize(
    "bad",
    [
        None,
        0,
        123,
        1.5,
        True,
        b"bytes",
        bytearray(b"x"),
        ["token"],
        ("a", "b"),
        {"token": "x"},
        object(),
        "",
        " ",
        "a" * (TOKEN_MAX + 1),
        "a" * 100_000,
        "é",
        "\udcff",
        "\x00",
        "token\x00",
        "１２３",
    ],
    ids=lambda value: f"{type(value).__name__}:{value!r:.12}",
)
def test_malformed_tokens_raise_session_invalid_only(auth: Auth, bad: object) -> None:  # R22 R23
    with pytest.raises(SessionInvalid):
        auth.sessions.validate(bad)
    assert auth.sessions.revoke(bad) is False


def test_oversized_non_ascii_and_non_string_tokens_are_refused_before_any_signature_work(
    auth: Auth, monkeypatch: pytest.MonkeyPatch
) -> None:  # R22: length caps before any expensive work
    checked: list[object] = []
    real = TokenSigner._signature

    def spy(value: bytes, key: bytes) -> bytes:
        checked.append(value.decode())
        return real(value, key)

    monkeypatch.setattr(TokenSigner, "_signature", staticmethod(spy))
    for bad in ("a" * (TOKEN_MAX + 1), "a" * 100_000, "é" * 10, "x.y\udcff", None, b"x.y", ""):
        with pytest.raises(SessionInvalid):
            auth.sessions.validate(bad)
    assert checked == []
    well_formed = "A" * 43 + "." + "A" * 43  # canonical base64url id.signature
    with pytest.raises(SessionInvalid):
        auth.sessions.validate(well_formed)
    # The spy is live: a well-formed string is checked, against every listed key.
    assert checked == ["A" * 43] * len(auth.keyring.oldest_first)


def test_oversized_and_non_ascii_variants_of_a_real_token_are_refused(
    auth: Auth, party: Identity
) -> None:  # R22
    token = sign_in(auth, party)
    for bad in (
        token + "a" * (TOKEN_MAX + 1 - len(token)),
        token + "é",
        "é" + token,
        token[:-1] + "ｏ",  # fullwidth letter
        token.replace(".", "\u2024"),  # one-dot leader
        token + "\udcff",
    ):
        with pytest.raises(SessionInvalid):
            auth.sessions.validate(bad)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(bad=st.one_of(st.text(max_size=600), st.binary(max_size=80), st.integers(), st.none()))
def test_arbitrary_input_only_ever_raises_session_invalid(auth: Auth, bad: object) -> None:
    with pytest.raises(SessionInvalid):
        auth.sessions.validate(bad)


def test_only_the_exact_issued_token_string_is_accepted(auth: Auth, party: Identity) -> None:
    # R52 strict mode; §4 "tokens with = padding added or removed".
    token = sign_in(auth, party)
    variants = [
        token + "=",
        token + "==",
        token[:-3] + "!!!!" + token[-3:],
        token[:-1] + other_char(token[-1], data_bits=False),
    ]
    accepted = []
    for variant in variants:
        try:
            auth.sessions.validate(variant)
            accepted.append(variant)
        except SessionInvalid:
            pass
    assert accepted == []


# -- the id: ≥256 random bits, stored only as its SHA-256 (R4, R18, R59) ----------------------


def test_the_session_id_has_256_bits(auth: Auth, party: Identity) -> None:  # R4
    sid = session_id(sign_in(auth, party))
    raw = base64.urlsafe_b64decode(sid + "=" * (-len(sid) % 4))
    assert len(raw) == 32
    assert len(set(raw)) > 8  # not a constant


def test_ten_thousand_sessions_never_collide(auth: Auth, party: Identity) -> None:  # R4
    settings_ = auth.portals.get("acme")
    tokens = set()
    keys = set()
    for _ in range(10_000):
        token, record = auth.sessions.create(party, settings_, method="email_code")
        tokens.add(token)
        keys.add(record.key)
    assert len(tokens) == 10_000
    assert len(keys) == 10_000
    # Every one of the 32 bytes is random, not just enough of them to look unique: over 10^4
    # ids each position takes (nearly) all 256 values.
    raws = [base64.urlsafe_b64decode(session_id(t) + "=") for t in tokens]
    for position in range(32):
        assert len({raw[position] for raw in raws}) > 240


def test_the_store_keeps_sha256_of_the_id_never_the_id(
    auth: Auth, party: Identity, store_kind: str, tmp_path: Path
) -> None:  # R18 R59 R20
    token = sign_in(auth, party)
    sid = session_id(token)
    digest = hashlib.sha256(sid.encode("ascii")).digest()
    record = auth.store.get_session(digest)
    assert record is not None
    assert record.identity_id == party.id
    assert record.key == digest
    # Neither the id, the token nor the id's raw bytes are a key of the store.
    assert auth.store.get_session(sid.encode("ascii")) is None
    assert auth.store.get_session(token.encode("ascii")) is None
    raw = base64.urlsafe_b64decode(sid + "=")
    assert auth.store.get_session(raw) is None
    # The record's repr carries no key material.
    assert sid not in repr(record)
    assert digest.hex() not in repr(record)
    if store_kind == "sqlite":
        dumped = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
        for needle in (sid.encode(), token.encode(), raw, base64.b64encode(raw)):
            assert needle not in dumped
        assert digest in dumped


# -- no fixation: every sign-in gets a new id (R52) ----------------------------------------------


def test_every_sign_in_mints_a_new_session(auth: Auth, party: Identity) -> None:  # R52
    first = sign_in(auth, party)
    second = sign_in(auth, party)
    assert first != second
    assert session_id(first) != session_id(second)
    assert auth.sessions.validate(first).key != auth.sessions.validate(second).key
    assert len(auth.sessions.list(party.id)) == 2


def test_a_deleted_record_is_not_revived_by_its_token(auth: Auth, party: Identity) -> None:  # R53
    token = sign_in(auth, party)
    digest = hashlib.sha256(session_id(token).encode()).digest()
    assert auth.store.delete_session(digest)
    with pytest.raises(SessionInvalid):
        auth.sessions.validate(token)


# -- idle and absolute expiry (R56, R27, R28) ----------------------------------------------------


def test_idle_expiry_boundary(short: Auth, party: Identity, clock: FrozenClock) -> None:  # R56
    early = sign_in(short, party)
    late = sign_in(short, party)
    clock.advance(IDLE - 1)
    short.sessions.validate(early)
    clock.advance(1)  # exactly IDLE after the last activity of ``late``
    with pytest.raises(SessionInvalid):
        short.sessions.validate(late)
    # ``early`` was active at IDLE - 1, so it lives until then + IDLE.
    clock.advance(IDLE - 2)
    short.sessions.validate(early)
    clock.advance(IDLE)
    with pytest.raises(SessionInvalid):
        short.sessions.validate(early)


def test_activity_slides_the_idle_expiry(short: Auth, party: Identity, clock: FrozenClock) -> None:
    # R56: each validation at least a minute after the last one moves the idle expiry.
    token = sign_in(short, party)
    start = clock.now()
    for _ in range(2):
        clock.advance(IDLE - 100)
        record = short.sessions.validate(token)
        assert record.last_seen_at == clock.now()
        assert record.idle_expires_at == clock.now() + IDLE
    assert clock.now() - start > IDLE  # outlived one idle period thanks to activity
    digest = hashlib.sha256(session_id(token).encode()).digest()
    stored = short.store.get_session(digest)
    assert stored is not None
    assert stored.last_seen_at == clock.now()
    assert stored.idle_expires_at == clock.now() + IDLE


def test_activity_within_a_minute_does_not_touch(
    short: Auth, party: Identity, clock: FrozenClock
) -> None:
    token = sign_in(short, party)
    created = clock.now()
    digest = hashlib.sha256(session_id(token).encode()).digest()
    clock.advance(59)
    record = short.sessions.validate(token)
    stored = short.store.get_session(digest)
    assert stored is not None
    assert (stored.last_seen_at, stored.idle_expires_at) == (created, created + IDLE)
    assert record.idle_expires_at == created + IDLE
    # So the session still ends IDLE after the last recorded activity.
    clock.set(created + IDLE)
    with pytest.raises(SessionInvalid):
        short.sessions.validate(token)


def test_activity_after_a_minute_touches(short: Auth, party: Identity, clock: FrozenClock) -> None:
    token = sign_in(short, party)
    created = clock.now()
    digest = hashlib.sha256(session_id(token).encode()).digest()
    clock.advance(60)
    short.sessions.validate(token)
    stored = short.store.get_session(digest)
    assert stored is not None
    assert stored.last_seen_at == created + 60
    assert stored.idle_expires_at == created + 60 + IDLE
    clock.set(created + IDLE)
    short.sessions.validate(token)


def test_sliding_never_passes_the_absolute_expiry(
    short: Auth, party: Identity, clock: FrozenClock
) -> None:  # R56
    token = sign_in(short, party)
    created = clock.now()
    for at in (500, 1000, ABSOLUTE - 300):  # active often enough to stay within IDLE
        clock.set(created + at)
        record = short.sessions.validate(token)
    # At ABSOLUTE - 300 the sliding expiry would be ABSOLUTE - 300 + IDLE: capped.
    assert record.idle_expires_at == created + ABSOLUTE
    assert record.absolute_expires_at == created + ABSOLUTE
    digest = hashlib.sha256(session_id(token).encode()).digest()
    stored = short.store.get_session(digest)
    assert stored is not None
    assert stored.idle_expires_at <= stored.absolute_expires_at == created + ABSOLUTE


def test_absolute_expiry_ends_an_active_session(
    short: Auth, party: Identity, clock: FrozenClock
) -> None:  # R56
    token = sign_in(short, party)
    created = clock.now()
    while clock.now() < created + ABSOLUTE - 120:
        clock.advance(120)
        short.sessions.validate(token)
    clock.set(created + ABSOLUTE - 1)
    short.sessions.validate(token)
    clock.set(created + ABSOLUTE)
    with pytest.raises(SessionInvalid):
        short.sessions.validate(token)
    assert short.sessions.list(party.id) == []


def test_expired_sessions_are_not_listed(short: Auth, party: Identity, clock: FrozenClock) -> None:
    sign_in(short, party)
    assert len(short.sessions.list(party.id)) == 1
    clock.advance(IDLE)
    assert short.sessions.list(party.id) == []


def test_moving_the_clock_back_does_not_revive_an_expired_session(
    short: Auth, party: Identity, clock: FrozenClock
) -> None:  # R28
    token = sign_in(short, party)
    clock.advance(IDLE)
    with pytest.raises(SessionInvalid):
        short.sessions.validate(token)
    clock.advance(-IDLE)
    with pytest.raises(SessionInvalid):
        short.sessions.validate(token)
    clock.advance(-86400)
    with pytest.raises(SessionInvalid):
        short.sessions.validate(token)


def test_a_clock_moved_back_does_not_extend_a_live_session(
    short: Auth, party: Identity, clock: FrozenClock
) -> None:  # R28
    token = sign_in(short, party)
    created = clock.now()
    clock.advance(-3600)
    record = short.sessions.validate(token)
    assert record.idle_expires_at == created + IDLE
    assert record.absolute_expires_at == created + ABSOLUTE
    clock.set(created + IDLE)
    with pytest.raises(SessionInvalid):
        short.sessions.validate(token)


# -- revocation (R53, R57) -------------------------------------------------------------------


def test_revoke_one_session(auth: Auth, party: Identity) -> None:  # R53 R57
    first = sign_in(auth, party)
    second = sign_in(auth, party)
    assert auth.sessions.revoke(first) is True
    with pytest.raises(SessionInvalid):
        auth.sessions.validate(first)
    assert auth.sessions.revoke(first) is False
    auth.sessions.validate(second)
    assert [s.key for s in auth.sessions.list(party.id)] == [auth.sessions.validate(second).key]


def test_revoke_all_keeps_the_named_session_only(auth: Auth, party: Identity) -> None:  # R57
    other = auth.directory.add("acme", "John Doe", email="john@example.com")
    tokens = [sign_in(auth, party) for _ in range(3)]
    bystander = sign_in(auth, other)
    assert auth.sessions.revoke_all(party.id, keep=tokens[1]) == 2
    for gone in (tokens[0], tokens[2]):
        with pytest.raises(SessionInvalid):
            auth.sessions.validate(gone)
    auth.sessions.validate(tokens[1])
    auth.sessions.validate(bystander)
    assert auth.sessions.revoke_all(party.id) == 1
    with pytest.raises(SessionInvalid):
        auth.sessions.validate(tokens[1])
    auth.sessions.validate(bystander)
    assert auth.sessions.revoke_all(party.id) == 0


def test_revoke_all_with_a_forged_keep_keeps_nothing(auth: Auth, party: Identity) -> None:  # R57
    tokens = [sign_in(auth, party) for _ in range(2)]
    forged = tokens[0][:-1] + other_char(tokens[0][-1])
    assert auth.sessions.revoke_all(party.id, keep=forged) == 2
    for token in tokens:
        with pytest.raises(SessionInvalid):
            auth.sessions.validate(token)


def test_disabling_the_identity_ends_its_sessions(auth: Auth, party: Identity) -> None:  # R57
    token = sign_in(auth, party)
    auth.directory.update(party.id, disabled=True)
    with pytest.raises(SessionInvalid):
        auth.sessions.validate(token)


# -- portal binding ------------------------------------------------------------------------------


def test_a_session_is_bound_to_its_portal(auth: Auth, party: Identity) -> None:
    auth.portals.create("other", "Other LLP", methods={"email_code"}, simulate=True)
    token = sign_in(auth, party)
    with pytest.raises(SessionInvalid):
        auth.sessions.validate(token, portal="other")
    with pytest.raises(SessionInvalid):
        auth.sessions.validate(token, portal="nonexistent")
    # Refusing it for another portal does not end it for its own.
    assert auth.sessions.validate(token, portal="acme").portal == "acme"


# -- key rotation (R19, R55) ------------------------------------------------------------------

K1 = "rotation-key-one-0123456789abcdef"
K2 = "rotation-key-two-0123456789abcdef"


def test_key_rotation(
    auth: Auth, party: Identity, clock: FrozenClock, fast_hasher: PasswordHasher
) -> None:  # R19 R55
    def with_keys(keys: list[str]) -> Auth:
        # Every Auth shares the one store of ``auth`` (closed by the fixture, so not here).
        return Auth(
            keys,
            auth.store,
            clock=clock,
            plugins=[EmailCodePlugin()],
            entry_points=False,
            password_hasher=fast_hasher,
        )

    old = with_keys([K1])
    token = sign_in(old, party)
    assert old.sessions.validate(token).identity_id == party.id

    rotated = with_keys([K2, K1])
    assert rotated.sessions.validate(token).identity_id == party.id
    # New tokens are signed with the newest key only.
    fresh = sign_in(rotated, party)
    sid = session_id(fresh, [K2])
    with pytest.raises(itsdangerous.BadSignature):
        session_id(fresh, [K1])
    assert rotated.sessions.validate(fresh).key == hashlib.sha256(sid.encode()).digest()
    with pytest.raises(SessionInvalid):
        old.sessions.validate(fresh)

    retired = with_keys([K2])
    with pytest.raises(SessionInvalid):
        retired.sessions.validate(token)
    retired.sessions.validate(fresh)
    # The refused token's record is still there: a key removal is what ended it.
    assert rotated.sessions.validate(token).identity_id == party.id


def test_sessions_service_alone_honours_rotation(auth: Auth, party: Identity) -> None:  # R19
    settings_ = auth.portals.get("acme")
    emitter = auth.emitter

    def sessions(keys: list[str]) -> Sessions:
        return Sessions(auth.store, auth.clock, Keyring(keys), emitter, auth.portals.find)

    token, _ = sessions([K1]).create(party, settings_, method="email_code")
    sessions([K2, K1]).validate(token)
    with pytest.raises(SessionInvalid):
        sessions([K2]).validate(token)


def test_many_auths_share_sessions_through_the_store(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:
    # Two app servers on one SQLite file see each other's sessions (memory: one store object).
    first = make_auth(store_kind)
    first.portals.create("acme", "Acme", methods={"email_code"}, simulate=True)
    party = first.directory.add("acme", "Jane Roe", email="jane@example.com")
    token = sign_in(first, party)
    second = make_auth(store_kind) if store_kind == "sqlite" else make_auth(store=first.store)
    assert second.sessions.validate(token).identity_id == party.id
    assert second.sessions.revoke(token)
    with pytest.raises(SessionInvalid):
        first.sessions.validate(token)

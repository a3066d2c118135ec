"""FlowCodec: the signed, expiring, opaque token that carries a flow between requests."""

from __future__ import annotations

import hashlib
import json
import secrets

import itsdangerous
import pytest
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous.encoding import base64_decode, base64_encode

from conftest import SECRET_KEYS
from portalauth import Auth, FlowInvalid, FlowState
from portalauth.clock import FrozenClock
from portalauth.flows import FlowCodec
from portalauth.keys import Keyring
from portalauth.signing import TokenSigner

MAX_AGE = 3600
STATE = FlowState(portal="acme", method="email_code", step="code", challenge_id="chal-123")


@pytest.fixture
def codec(clock: FrozenClock) -> FlowCodec:
    return FlowCodec(Keyring(SECRET_KEYS), clock, max_age=MAX_AGE)


def split(token: str) -> tuple[str, str, str]:
    payload, timestamp, signature = token.rsplit(".", 2)
    return payload, timestamp, signature


def test_round_trip(codec: FlowCodec) -> None:
    assert codec.load(codec.dump(STATE)) == STATE
    no_challenge = FlowState(portal="acme", method="password", step="start", challenge_id=None)
    assert codec.load(codec.dump(no_challenge)) == no_challenge


@given(
    portal=st.text(max_size=64),
    method=st.text(max_size=32),
    step=st.text(max_size=32),
    challenge_id=st.none() | st.text(min_size=1, max_size=43),
)
def test_round_trip_property(portal: str, method: str, step: str, challenge_id: str | None) -> None:
    codec = FlowCodec(Keyring(SECRET_KEYS), FrozenClock())
    state = FlowState(portal=portal, method=method, step=step, challenge_id=challenge_id)
    token = codec.dump(state)
    if len(token) <= 1024:
        assert codec.load(token) == state


def test_the_payload_holds_no_identity(codec: FlowCodec) -> None:  # R54
    token = codec.dump(STATE)
    payload = json.loads(base64_decode(split(token)[0]))
    assert payload[:4] == ["acme", "email_code", "code", "chal-123"]
    assert len(payload) == 5  # plus a random nonce, nothing else


# -- time (R28) ---------------------------------------------------------------------------------


def test_a_future_dated_token_is_refused(codec: FlowCodec, clock: FrozenClock) -> None:  # R28
    future = FlowCodec(Keyring(SECRET_KEYS), FrozenClock(clock.now() + 3600), max_age=MAX_AGE)
    token = future.dump(STATE)
    with pytest.raises(FlowInvalid):
        codec.load(token)
    # The same token is fine once that time has come.
    clock.advance(3600)
    assert codec.load(token) == STATE


def test_expiry_after_max_age(codec: FlowCodec, clock: FrozenClock) -> None:
    token = codec.dump(STATE)
    clock.advance(MAX_AGE - 1)
    assert codec.load(token) == STATE
    clock.advance(2)
    with pytest.raises(FlowInvalid):
        codec.load(token)
    # Moving the clock back does not make an expired token usable for longer than it was issued.
    clock.advance(-MAX_AGE * 10)
    with pytest.raises(FlowInvalid):
        codec.load(token)


def test_max_age_is_configurable(clock: FrozenClock) -> None:
    short = FlowCodec(Keyring(SECRET_KEYS), clock, max_age=60)
    token = short.dump(STATE)
    clock.advance(61)
    with pytest.raises(FlowInvalid):
        short.load(token)


def test_the_injected_clock_is_used_not_the_wall_clock(clock: FrozenClock) -> None:  # R28
    # A FrozenClock decades away from the wall clock still gives fresh tokens.
    for when in (1_000_000_000.0, 4_000_000_000.0):
        clock.set(when)
        codec = FlowCodec(Keyring(SECRET_KEYS), clock)
        assert codec.load(codec.dump(STATE)) == STATE


# -- keys and salts (R19, R54) ----------------------------------------------------------------


def test_wrong_key_is_refused(codec: FlowCodec, clock: FrozenClock) -> None:
    other = FlowCodec(Keyring(["another-server-key-0123456789abcdef"]), clock)
    with pytest.raises(FlowInvalid):
        codec.load(other.dump(STATE))
    with pytest.raises(FlowInvalid):
        other.load(codec.dump(STATE))


def test_wrong_salt_is_refused(codec: FlowCodec, clock: FrozenClock) -> None:  # R54
    for salt in ("portalauth.session", "other", "itsdangerous"):

        class OtherSalt(FlowCodec):
            SALT = salt

        other = OtherSalt(Keyring(SECRET_KEYS), clock)
        token = other.dump(STATE)
        assert other.load(token) == STATE  # a well-formed token, just for another purpose
        with pytest.raises(FlowInvalid):
            codec.load(token)


def test_a_session_token_is_not_a_flow(codec: FlowCodec) -> None:  # R54
    signer = itsdangerous.Signer(
        Keyring(SECRET_KEYS).oldest_first, salt="portalauth.session", digest_method=hashlib.sha256
    )
    session_token = signer.sign(secrets.token_urlsafe(32)).decode()
    with pytest.raises(FlowInvalid):
        codec.load(session_token)


def test_key_rotation(clock: FrozenClock) -> None:  # R19
    k1, k2 = "flow-key-one-0123456789abcdef", "flow-key-two-0123456789abcdef"
    token = FlowCodec(Keyring([k1]), clock).dump(STATE)
    assert FlowCodec(Keyring([k2, k1]), clock).load(token) == STATE
    with pytest.raises(FlowInvalid):
        FlowCodec(Keyring([k2]), clock).load(token)
    fresh = FlowCodec(Keyring([k2, k1]), clock).dump(STATE)
    assert FlowCodec(Keyring([k2]), clock).load(fresh) == STATE  # signed with the newest
    with pytest.raises(FlowInvalid):
        FlowCodec(Keyring([k1]), clock).load(fresh)


# -- tampering ----------------------------------------------------------------------------------


def test_payload_tampering_is_refused(codec: FlowCodec) -> None:  # R26
    token = codec.dump(STATE)
    payload, timestamp, signature = split(token)
    data = json.loads(base64_decode(payload))
    for index, value in ((0, "other"), (1, "password"), (2, "start"), (3, "chal-999"), (4, "n")):
        changed = list(data)
        changed[index] = value
        forged_payload = base64_encode(json.dumps(changed, separators=(",", ":"))).decode()
        with pytest.raises(FlowInvalid):
            codec.load(f"{forged_payload}.{timestamp}.{signature}")


def test_timestamp_tampering_is_refused(codec: FlowCodec, clock: FrozenClock) -> None:
    token = codec.dump(STATE)
    payload, _, signature = split(token)
    later = base64_encode(int(clock.now() + 10_000).to_bytes(4, "big")).decode()
    with pytest.raises(FlowInvalid):
        codec.load(f"{payload}.{later}.{signature}")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1],
        lambda t: t[:-5],
        lambda t: t + "x",
        lambda t: t.rsplit(".", 1)[0],
        lambda t: "." + t,
        lambda t: t.replace(".", "", 1),
        lambda t: t.upper(),
        lambda t: t + "a" * 1024,
        lambda t: "é" + t,
    ],
)
def test_mangled_tokens_are_refused(codec: FlowCodec, mangle: object) -> None:
    token = codec.dump(STATE)
    bad = mangle(token)  # type: ignore[operator]
    assert bad != token
    with pytest.raises(FlowInvalid):
        codec.load(bad)


def test_a_signed_payload_of_the_wrong_shape_is_refused(clock: FrozenClock) -> None:
    # Correctly signed (same key, salt and clock) but not a flow: still FlowInvalid, no crash.
    codec = FlowCodec(Keyring(SECRET_KEYS), clock)
    serializer = _itsdangerous_twin(clock)
    for payload in (
        ["acme", "email_code", "code", "c"],  # four items
        ["acme", "email_code", "code", "c", "n", "extra"],
        ["acme", "email_code", "code", 1, "n"],
        ["acme", "email_code", None, "c", "n"],
        {"portal": "acme"},
        "acme",
        None,
        42,
    ):
        with pytest.raises(FlowInvalid):
            codec.load(serializer.dumps(payload))


def _itsdangerous_twin(clock: FrozenClock) -> itsdangerous.URLSafeTimedSerializer:
    """The itsdangerous serializer whose tokens FlowCodec's are (on the same clock)."""

    class Signer(itsdangerous.TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock.now())

    return itsdangerous.URLSafeTimedSerializer(
        Keyring(SECRET_KEYS).oldest_first,
        salt=FlowCodec.SALT,
        signer=Signer,
        signer_kwargs={"digest_method": hashlib.sha256},
    )


def test_tokens_are_those_itsdangerous_writes_and_reads(clock: FrozenClock) -> None:
    codec = FlowCodec(Keyring(SECRET_KEYS), clock, max_age=MAX_AGE)
    twin = _itsdangerous_twin(clock)
    token = codec.dump(STATE)
    payload = twin.loads(token, max_age=MAX_AGE)
    assert payload[:4] == [STATE.portal, STATE.method, STATE.step, STATE.challenge_id]
    short = ["acme", "m", "s", "c", "n"]  # too short for itsdangerous to compress
    written = twin.dumps(short)
    assert not written.startswith(".")
    assert codec.load(written) == FlowState(portal="acme", method="m", step="s", challenge_id="c")
    # A compressed payload is never issued here, so it is refused.
    compressed = twin.dumps([*payload[:4], "x" * 200])
    assert compressed.startswith(".")
    with pytest.raises(FlowInvalid):
        codec.load(compressed)


@pytest.mark.parametrize(
    "bad", [None, 0, b"token", ["t"], {"t": 1}, "", " ", "a" * 1025, "not.a.token", "...", "\x00"]
)
def test_malformed_tokens_are_refused(codec: FlowCodec, bad: object) -> None:  # R22 R23
    with pytest.raises(FlowInvalid):
        codec.load(bad)


def test_oversized_tokens_are_refused_before_any_signature_work(
    codec: FlowCodec, monkeypatch: pytest.MonkeyPatch
) -> None:  # R22
    checked: list[object] = []
    real = TokenSigner._signature

    def spy(signed: bytes, key: bytes) -> bytes:
        checked.append(signed)
        return real(signed, key)

    monkeypatch.setattr(TokenSigner, "_signature", staticmethod(spy))
    token = codec.dump(STATE)
    checked.clear()
    for bad in (token + "a" * (1025 - len(token)), "a" * 100_000, None, b"x"):
        with pytest.raises(FlowInvalid):
            codec.load(bad)
    assert checked == []
    assert codec.load(token) == STATE
    assert len(checked) == len(SECRET_KEYS)  # the spy is live: every listed key is tried


@pytest.mark.parametrize("bad", ["\udcff", "a.b.\udcff", "x" * 10 + "\ud800"])
def test_lone_surrogates_are_flow_invalid_never_a_crash(codec: FlowCodec, bad: str) -> None:
    # R21 R68: malformed input is the generic error, never an unexpected exception (a 500).
    with pytest.raises(FlowInvalid):
        codec.load(bad)


def test_advance_with_a_surrogate_flow_raises_flow_invalid(auth: Auth) -> None:  # R68
    with pytest.raises(FlowInvalid):
        auth.advance("\udcff", {"code": "123456"})


def test_only_the_exact_issued_token_string_loads(codec: FlowCodec) -> None:
    # §4 "tokens with = padding added or removed"; the variants carry the same signature bytes.
    token = codec.dump(STATE)
    variants = [token + "=", token + "==", token + "é", token[:-3] + "!!!!" + token[-3:]]
    loaded = []
    for variant in variants:
        try:
            codec.load(variant)
            loaded.append(variant)
        except FlowInvalid:
            pass
    assert loaded == []


@given(bad=st.text(max_size=200))
def test_arbitrary_text_is_flow_invalid_only(bad: str) -> None:
    codec = FlowCodec(Keyring(SECRET_KEYS), FrozenClock())
    with pytest.raises(FlowInvalid):
        codec.load(bad)


# -- opacity: length and uniqueness (R31) ------------------------------------------------------


def test_token_length_does_not_depend_on_the_challenge_content(codec: FlowCodec) -> None:  # R31
    # Compression would shrink a repetitive payload: known and unknown flows must not differ.
    ids = [
        "a" * 43,
        "0" * 43,
        secrets.token_urlsafe(32),
        secrets.token_urlsafe(32),
        "ab" * 21 + "c",
    ]
    lengths = set()
    for challenge_id in ids:
        assert len(challenge_id) == 43
        state = FlowState(
            portal="acme", method="email_code", step="code", challenge_id=challenge_id
        )
        for _ in range(5):
            lengths.add(len(codec.dump(state)))
    assert len(lengths) == 1


def test_tokens_are_not_compressed(codec: FlowCodec) -> None:
    state = FlowState(portal="acme", method="email_code", step="code", challenge_id="a" * 200)
    token = codec.dump(state)
    assert not token.startswith(".")  # itsdangerous marks a compressed payload with a dot
    assert "a" * 200 in base64_decode(split(token)[0]).decode()


def test_every_token_is_unique(codec: FlowCodec) -> None:
    tokens = {codec.dump(STATE) for _ in range(1000)}
    assert len(tokens) == 1000
    assert {codec.load(t) for t in tokens} == {STATE}

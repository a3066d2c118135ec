"""The generic flow API, proven with the test strategy plugin registered through the hook."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conftest import CLIENT, SECRET_KEYS, EmailCodePlugin, code_from
from portalauth import (
    Auth,
    ClientInfo,
    ConfigError,
    FlowInvalid,
    InvalidInput,
    MethodDisabled,
    NotFound,
    PluginError,
    PortalAuthError,
    SessionInvalid,
    SignedIn,
    Step,
    Throttled,
    VerificationFailed,
    hookimpl,
)
from portalauth.clock import FrozenClock


def test_a_party_signs_in_with_the_plugin_strategy(auth: Auth) -> None:
    party = auth.directory.add("acme", "Jane Roe", email="Jane.Roe@Example.com")
    step = auth.start("acme", "email_code", {"email": " jane.roe@example.COM "}, client=CLIENT)
    assert isinstance(step, Step)
    assert step.next == "code"
    assert step.flow and party.id not in step.flow
    assert [f.name for f in step.fields] == ["code"]
    assert step.fields[0].autocomplete == "one-time-code"
    code = code_from(auth, identity=party.id)
    done = auth.advance(step.flow, {"code": code}, client=CLIENT)
    assert isinstance(done, SignedIn)
    assert done.identity.id == party.id
    assert done.method == "email_code"
    session = auth.sessions.validate(done.token)
    assert session.identity_id == party.id
    assert auth.directory.get(party.id).last_sign_in_method == "email_code"


def test_the_code_works_once(auth: Auth) -> None:  # R24
    party = auth.directory.add("acme", "Jane Roe", email="jane@example.com")
    step = auth.start("acme", "email_code", {"email": "jane@example.com"}, client=CLIENT)
    assert isinstance(step, Step) and step.flow
    code = code_from(auth, identity=party.id)
    assert isinstance(auth.advance(step.flow, {"code": code}, client=CLIENT), SignedIn)
    with pytest.raises(VerificationFailed):
        auth.advance(step.flow, {"code": code}, client=CLIENT)


def test_unknown_address_gets_the_same_answer_and_nothing_is_sent(auth: Auth) -> None:  # R31
    auth.directory.add("acme", "Jane Roe", email="jane@example.com")
    known = auth.start("acme", "email_code", {"email": "jane@example.com"}, client=CLIENT)
    sent = len(auth.outbox.messages("acme"))
    unknown = auth.start("acme", "email_code", {"email": "nobody@example.com"}, client=CLIENT)
    assert isinstance(known, Step) and isinstance(unknown, Step)
    assert len(auth.outbox.messages("acme")) == sent
    assert (known.next, known.notice, known.fields, known.sent_to) == (
        unknown.next,
        unknown.notice,
        unknown.fields,
        unknown.sent_to,
    )
    assert unknown.expires_at == known.expires_at
    assert unknown.flow is not None and known.flow is not None
    assert len(unknown.flow) == len(known.flow)
    with pytest.raises(VerificationFailed):
        auth.advance(unknown.flow, {"code": "123456"}, client=CLIENT)


def test_a_newer_code_supersedes_the_older_one(auth: Auth) -> None:  # R25
    party = auth.directory.add("acme", "Jane Roe", email="jane@example.com")
    first = auth.start("acme", "email_code", {"email": "jane@example.com"}, client=CLIENT)
    first_code = code_from(auth, identity=party.id)
    second = auth.start("acme", "email_code", {"email": "jane@example.com"}, client=CLIENT)
    assert isinstance(first, Step) and isinstance(second, Step)
    assert first.flow and second.flow
    with pytest.raises(VerificationFailed) as failed:
        auth.advance(first.flow, {"code": first_code}, client=CLIENT)
    assert failed.value.reason == "superseded"
    assert isinstance(
        auth.advance(second.flow, {"code": code_from(auth, identity=party.id)}, client=CLIENT),
        SignedIn,
    )


def test_expired_code_fails(auth: Auth, clock: FrozenClock) -> None:  # R27
    party = auth.directory.add("acme", "Jane Roe", email="jane@example.com")
    step = auth.start("acme", "email_code", {"email": "jane@example.com"}, client=CLIENT)
    assert isinstance(step, Step) and step.flow
    code = code_from(auth, identity=party.id)
    clock.advance(600)
    with pytest.raises(VerificationFailed):
        auth.advance(step.flow, {"code": code}, client=CLIENT)


def test_attempt_budget_kills_the_code(auth: Auth) -> None:  # R6
    party = auth.directory.add("acme", "Jane Roe", email="jane@example.com")
    step = auth.start("acme", "email_code", {"email": "jane@example.com"}, client=CLIENT)
    assert isinstance(step, Step) and step.flow
    code = code_from(auth, identity=party.id)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        with pytest.raises(VerificationFailed):
            auth.advance(step.flow, {"code": wrong}, client=CLIENT)
    with pytest.raises(VerificationFailed):
        auth.advance(step.flow, {"code": code}, client=CLIENT)


def test_consecutive_failures_survive_a_resend_and_delay_the_next_try(
    auth: Auth, clock: FrozenClock
) -> None:  # R7
    party = auth.directory.add("acme", "Jane Roe", email="jane@example.com")
    for _ in range(2):
        step = auth.start("acme", "email_code", {"email": "jane@example.com"}, client=CLIENT)
        assert isinstance(step, Step) and step.flow
        code = code_from(auth, identity=party.id)
        wrong = "000000" if code != "000000" else "111111"
        for _ in range(5):
            with pytest.raises(VerificationFailed):
                auth.advance(step.flow, {"code": wrong}, client=CLIENT)
    step = auth.start("acme", "email_code", {"email": "jane@example.com"}, client=CLIENT)
    assert isinstance(step, Step) and step.flow
    code = code_from(auth, identity=party.id)
    with pytest.raises(Throttled) as throttled:
        auth.advance(step.flow, {"code": code}, client=CLIENT)
    assert 1 <= throttled.value.retry_after <= 30
    clock.advance(30)
    assert isinstance(auth.advance(step.flow, {"code": code}, client=CLIENT), SignedIn)
    assert auth.challenges.failures("acme", "email_code", party.id) == 0


@pytest.mark.parametrize(
    "bad",
    [["123456"], 123456, None, {"a": "b"}, "1" * 7, "", "１２３４５６", "12345\n", " 123456"],
)
def test_malformed_codes_are_refused_without_a_crash(auth: Auth, bad: object) -> None:  # R21 R23
    party = auth.directory.add("acme", "Jane Roe", email="jane@example.com")
    step = auth.start("acme", "email_code", {"email": "jane@example.com"}, client=CLIENT)
    assert isinstance(step, Step) and step.flow
    with pytest.raises((InvalidInput, VerificationFailed)):
        auth.advance(step.flow, {"code": bad}, client=CLIENT)
    assert auth.sessions.list(party.id) == []


def test_tampered_and_foreign_flow_tokens_are_refused(auth: Auth) -> None:  # R26
    auth.directory.add("acme", "Jane Roe", email="jane@example.com")
    step = auth.start("acme", "email_code", {"email": "jane@example.com"}, client=CLIENT)
    assert isinstance(step, Step) and step.flow
    for token in [step.flow[:-2], step.flow + "x", "", "a" * 2000, "not.a.token"]:
        with pytest.raises(FlowInvalid):
            auth.advance(token, {"code": "123456"}, client=CLIENT)
    other = Auth(["another-server-key-0123456789"], "memory://", entry_points=False)
    with pytest.raises(FlowInvalid):
        other.advance(step.flow, {"code": "123456"})


def test_flow_tokens_expire(auth: Auth, clock: FrozenClock) -> None:
    auth.directory.add("acme", "Jane Roe", email="jane@example.com")
    step = auth.start("acme", "email_code", {"email": "jane@example.com"}, client=CLIENT)
    assert isinstance(step, Step) and step.flow
    clock.advance(3601)
    with pytest.raises(FlowInvalid):
        auth.advance(step.flow, {"code": "123456"}, client=CLIENT)


def test_unknown_portal_and_disabled_method(auth: Auth) -> None:
    with pytest.raises(NotFound):
        auth.start("nope", "email_code", {"email": "a@example.com"})
    with pytest.raises(MethodDisabled):
        auth.start("acme", "password", {"email": "a@example.com"})
    auth.portals.update("acme", methods=set())
    with pytest.raises(MethodDisabled):
        auth.start("acme", "email_code", {"email": "a@example.com"})


def test_unknown_method_cannot_be_enabled(auth: Auth) -> None:
    with pytest.raises(ConfigError):
        auth.portals.update("acme", methods={"email_code", "nonexistent"})
    with pytest.raises(ConfigError):
        auth.portals.update("acme", method_settings={"email_code": {"digits": 3}})
    saved = auth.portals.update("acme", method_settings={"email_code": {"digits": 8}})
    assert auth.strategy_config("acme", "email_code").digits == 8
    assert saved.settings_for("email_code")["digits"] == 8


def test_per_ip_throttle_on_starts(auth: Auth) -> None:  # R9
    for i in range(30):
        auth.start("acme", "email_code", {"email": f"x{i}@example.com"}, client=CLIENT)
    with pytest.raises(Throttled):
        auth.start("acme", "email_code", {"email": "y@example.com"}, client=CLIENT)
    # Another address is another bucket; IPv4-mapped IPv6 is the same bucket.
    auth.start("acme", "email_code", {"email": "y@example.com"}, client=ClientInfo(ip="192.0.2.11"))
    with pytest.raises(Throttled):
        auth.start(
            "acme",
            "email_code",
            {"email": "y@example.com"},
            client=ClientInfo(ip="::ffff:192.0.2.10"),
        )


def test_check_attempt_plugin_can_veto(make_auth: Callable[..., Auth]) -> None:
    class Geo:
        @hookimpl
        def portalauth_check_attempt(self, attempt: object) -> str | None:
            return "blocked-country"

    auth = make_auth(plugins=[EmailCodePlugin(), Geo()])
    auth.portals.create("acme", "Acme", methods={"email_code"}, simulate=True)
    with pytest.raises(Throttled):
        auth.start("acme", "email_code", {"email": "a@example.com"})
    assert auth.outbox.messages("acme") == []


def test_session_claims_and_events_reach_plugins(make_auth: Callable[..., Auth]) -> None:
    seen: list[str] = []

    class Audit:
        @hookimpl
        def portalauth_event(self, event: object) -> None:
            seen.append(event.kind)  # type: ignore[attr-defined]

        @hookimpl
        def portalauth_session_claims(
            self, identity: object, portal: object, method: str
        ) -> dict[str, str]:
            return {"via": method}

    auth = make_auth(plugins=[EmailCodePlugin(), Audit()])
    auth.portals.create("acme", "Acme", methods={"email_code"}, simulate=True)
    party = auth.directory.add("acme", "Jane", email="jane@example.com")
    step = auth.start("acme", "email_code", {"email": "jane@example.com"})
    assert isinstance(step, Step) and step.flow
    done = auth.advance(step.flow, {"code": code_from(auth, identity=party.id)})
    assert isinstance(done, SignedIn)
    assert auth.sessions.validate(done.token).claims["via"] == "email_code"
    for kind in ("portal.saved", "identity.added", "challenge.issued", "message.sent", "signed_in"):
        assert kind in seen


def test_a_broken_strategy_fails_closed(make_auth: Callable[..., Auth]) -> None:
    class Broken(EmailCodePlugin):
        pass

    from conftest import EmailCode

    class Exploding(EmailCode):
        name = "exploding"

        def start(self, ctx):  # type: ignore[no-untyped-def]
            raise RuntimeError("secret 123456 leaked?")

    class Plugin:
        @hookimpl
        def portalauth_add_strategies(self) -> list[object]:
            return [Exploding()]

    auth = make_auth(plugins=[EmailCodePlugin(), Plugin()])
    auth.portals.create("acme", "Acme", methods={"exploding"}, simulate=True)
    with pytest.raises(PortalAuthError) as failed:
        auth.start("acme", "exploding", {"email": "a@example.com"})
    assert type(failed.value) is PortalAuthError
    assert "123456" not in str(failed.value)


def test_two_strategies_with_one_name_is_a_plugin_error() -> None:
    with pytest.raises(PluginError):
        Auth(
            SECRET_KEYS,
            "memory://",
            plugins=[EmailCodePlugin(), EmailCodePlugin()],
            entry_points=False,
        )


def test_misspelt_hook_fails_loudly() -> None:
    class Typo:
        @hookimpl
        def portalauth_add_stratgies(self) -> list[object]:
            return []

    with pytest.raises(PluginError):
        Auth(SECRET_KEYS, "memory://", plugins=[Typo()], entry_points=False)


def test_sign_out_and_revoke_all(auth: Auth) -> None:
    party = auth.directory.add("acme", "Jane Roe", email="jane@example.com")
    tokens = []
    for _ in range(2):
        step = auth.start("acme", "email_code", {"email": "jane@example.com"}, client=CLIENT)
        assert isinstance(step, Step) and step.flow
        done = auth.advance(step.flow, {"code": code_from(auth, identity=party.id)}, client=CLIENT)
        assert isinstance(done, SignedIn)
        tokens.append(done.token)
    assert tokens[0] != tokens[1]
    assert auth.sessions.revoke(tokens[0])
    with pytest.raises(SessionInvalid):
        auth.sessions.validate(tokens[0])
    auth.sessions.validate(tokens[1])
    assert auth.sessions.revoke_all(party.id) == 1
    with pytest.raises(SessionInvalid):
        auth.sessions.validate(tokens[1])


def test_a_decoy_challenge_never_verifies(auth: Auth) -> None:  # R31
    step = auth.start("acme", "email_code", {"email": "nobody@example.com"}, client=CLIENT)
    assert isinstance(step, Step) and step.flow
    state = auth._flows.load(step.flow)
    record = auth.store.get_challenge(state.challenge_id or "")
    assert record is not None
    # Whatever code is tried (here: all that fit in the budget), a decoy cannot verify.
    for guess in ("000000", "123456", "999999", "111111", "654321"):
        with pytest.raises(VerificationFailed):
            auth.advance(step.flow, {"code": guess}, client=CLIENT)
    assert auth.store.get_identity(record.subject) is None
    assert len(record.subject) == 16


def test_spelling_variants_of_an_unknown_address_share_one_decoy_subject(auth: Auth) -> None:  # R10
    subjects = set()
    for spelling in ("nobody@example.com", "NOBODY@Example.COM", " nobody@example.com "):
        step = auth.start("acme", "email_code", {"email": spelling}, client=CLIENT)
        assert isinstance(step, Step) and step.flow
        record = auth.store.get_challenge(auth._flows.load(step.flow).challenge_id or "")
        assert record is not None
        subjects.add(record.subject)
    assert len(subjects) == 1


def test_five_digit_codes_with_a_large_failure_budget_warn(auth: Auth) -> None:  # R5
    from portalauth.errors import WeakCodeWarning

    with pytest.warns(WeakCodeWarning, match="5-digit"):
        auth.portals.create("firm", "Firm", methods={"share_code"}, failure_budget=20)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auth.portals.create("firm2", "Firm", methods={"share_code"}, failure_budget=10)
        auth.portals.create(
            "firm3",
            "Firm",
            methods={"share_code"},
            failure_budget=20,
            method_settings={"share_code": {"code_digits": 6}},
        )

"""The directory: identities, their canonical contacts, readiness, the tax-id check, and the
withdrawal of outstanding codes and sessions when an identity changes. Every test runs on each
store kind (the ``auth`` fixture)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import attrs
import pytest

from conftest import CLIENT, EmailCodePlugin, code_from
from portalauth import (
    Auth,
    ContactTaken,
    InvalidContact,
    InvalidInput,
    NotFound,
    SessionInvalid,
    SignedIn,
    Step,
    VerificationFailed,
    hookimpl,
)
from portalauth.events import Event
from portalauth.records import Identity


def _second_portal(auth: Auth) -> None:
    auth.portals.create("beta", "Beta & Co", methods={"email_code"}, simulate=True)


def _issue_code(auth: Auth, identity: Identity, email: str) -> tuple[str, str]:
    """Start a sign-in and read the code sent: an outstanding code and its flow."""
    step = auth.start("acme", "email_code", {"email": email}, client=CLIENT)
    assert isinstance(step, Step) and step.flow
    return step.flow, code_from(auth, identity=identity.id)


def _sign_in(auth: Auth, identity: Identity, email: str) -> str:
    """A session token for ``identity``."""
    flow, code = _issue_code(auth, identity, email)
    done = auth.advance(flow, {"code": code}, client=CLIENT)
    assert isinstance(done, SignedIn)
    assert done.identity.id == identity.id
    auth.sessions.validate(done.token)
    return done.token


# -- adding and canonical storage -------------------------------------------------------------
def test_add_stores_the_address_its_key_and_the_e164_phone(auth: Auth) -> None:  # R63 R64
    added = auth.directory.add(
        "acme", "  Jane Roe ", email=" Jane.Roe@Example.COM ", phone="(415) 555-0123"
    )
    assert added.portal == "acme"
    assert added.name == "Jane Roe"
    assert added.email == "Jane.Roe@example.com"
    assert added.email_key == "jane.roe@example.com"
    assert added.phone == "+14155550123"
    assert added.email_status == added.phone_status == "valid"
    assert added.tax_id_digest is None
    stored = auth.directory.get(added.id)
    assert (stored.email, stored.email_key, stored.phone) == (
        "Jane.Roe@example.com",
        "jane.roe@example.com",
        "+14155550123",
    )
    assert [i.id for i in auth.directory.list("acme")] == [added.id]


def test_add_encodes_a_unicode_domain(auth: Auth) -> None:  # R63
    added = auth.directory.add("acme", "Mike", email="Mike@Bücher.example")
    assert added.email == "Mike@xn--bcher-kva.example"
    assert added.email_key == "mike@xn--bcher-kva.example"


def test_add_reads_phones_in_the_portals_region(auth: Auth) -> None:  # R64
    auth.portals.create("london", "London LLP", methods={"email_code"}, default_region="GB")
    added = auth.directory.add("london", "Ann", phone="020 7946 0018")
    assert added.phone == "+442079460018"
    with pytest.raises(InvalidContact):
        auth.directory.add("acme", "Ann", phone="020 7946 0018")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "victim@x.com, attacker@y.com"),
        ("email", "victim@x.com\r\nBcc: attacker@y.com"),
        ("email", "ａ@ｂ.com"),
        ("email", ["victim@x.com", "attacker@y.com"]),
        ("phone", "1-800-FLOWERS"),
        ("phone", "+14155550123;ext=1"),
        ("phone", "٤١٥٥٥٥٠١٢٣"),
        ("phone", ["+14155550123"]),
    ],
)
def test_add_refuses_invalid_contacts_and_stores_nothing(
    auth: Auth, field: str, value: object
) -> None:  # R62 R64 R23
    with pytest.raises(InvalidContact) as raised:
        auth.directory.add("acme", "Jane", **{field: value})  # type: ignore[arg-type]
    assert raised.value.field == field
    assert auth.directory.list("acme") == []


# -- uniqueness -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spelling", ["jane@example.com", "JANE@Example.COM", "  Jane@example.com\t", "jane@EXAMPLE.com"]
)
def test_a_taken_email_is_refused_in_any_spelling(auth: Auth, spelling: str) -> None:  # R63 R10
    auth.directory.add("acme", "Jane", email="jane@example.com")
    with pytest.raises(ContactTaken) as taken:
        auth.directory.add("acme", "Impostor", email=spelling)
    assert taken.value.field == "email"
    assert len(auth.directory.list("acme")) == 1


def test_a_taken_unicode_domain_is_refused_as_punycode(auth: Auth) -> None:  # R63
    auth.directory.add("acme", "Mike", email="mike@bücher.example")
    with pytest.raises(ContactTaken) as taken:
        auth.directory.add("acme", "Impostor", email="MIKE@xn--bcher-kva.example")
    assert taken.value.field == "email"


def test_look_alike_addresses_are_different_people(auth: Auth) -> None:  # R62 R63
    mike = auth.directory.add("acme", "Mike", email="mike@example.org")
    dotless = auth.directory.add("acme", "Mıke", email="mıke@example.org")
    strasse = auth.directory.add("acme", "Strasse", email="strasse@example.de")
    strasze = auth.directory.add("acme", "Straße", email="straße@example.de")
    tagged = auth.directory.add("acme", "Tagged", email="mike+news@example.org")
    assert len({mike.id, dotless.id, strasse.id, strasze.id, tagged.id}) == 5
    found = auth.directory.find_by_email("acme", "mıke@example.org")
    assert found is not None and found.id == dotless.id
    assert found.email == "mıke@example.org"  # mail goes to the stored address, exactly


@pytest.mark.parametrize(
    "spelling", ["(415) 555 0123", "415.555.0123", "+1 415-555-0123", "４１５５５５０１２３"]
)
def test_a_taken_phone_is_refused_in_any_format(auth: Auth, spelling: str) -> None:  # R64 R10
    auth.directory.add("acme", "Jane", phone="+14155550123")
    with pytest.raises(ContactTaken) as taken:
        auth.directory.add("acme", "Impostor", phone=spelling)
    assert taken.value.field == "phone"
    assert len(auth.directory.list("acme")) == 1


def test_the_same_contacts_are_allowed_in_another_portal(auth: Auth) -> None:  # R63 R64
    _second_portal(auth)
    jane = auth.directory.add("acme", "Jane", email="jane@example.com", phone="+14155550123")
    other = auth.directory.add("beta", "Jane", email="JANE@example.com", phone="(415) 555 0123")
    assert other.id != jane.id
    assert other.email_key == jane.email_key
    assert other.phone == jane.phone
    found = auth.directory.find_by_email("beta", "jane@example.com")
    assert found is not None and found.id == other.id
    found = auth.directory.find_by_email("acme", "jane@example.com")
    assert found is not None and found.id == jane.id


def test_update_to_a_taken_contact_is_refused_and_changes_nothing(auth: Auth) -> None:  # R63 R64
    jane = auth.directory.add("acme", "Jane", email="jane@example.com", phone="+14155550123")
    bob = auth.directory.add("acme", "Bob", email="bob@example.com", phone="+14155550124")
    with pytest.raises(ContactTaken) as taken:
        auth.directory.update(bob.id, email="Jane@Example.com")
    assert taken.value.field == "email"
    with pytest.raises(ContactTaken) as taken:
        auth.directory.update(bob.id, phone="415.555.0123")
    assert taken.value.field == "phone"
    stored = auth.directory.get(bob.id)
    assert (stored.email_key, stored.phone) == ("bob@example.com", "+14155550124")
    # An identity may be re-saved with its own contacts in another spelling.
    again = auth.directory.update(jane.id, email=" JANE@example.com", phone="(415) 555-0123")
    assert (again.email, again.email_key, again.phone) == (
        "JANE@example.com",
        "jane@example.com",
        "+14155550123",
    )


def test_a_freed_contact_can_be_used_again(auth: Auth) -> None:  # R63
    jane = auth.directory.add("acme", "Jane", email="jane@example.com", phone="+14155550123")
    auth.directory.update(jane.id, email="jane@elsewhere.example", phone=None)
    bob = auth.directory.add("acme", "Bob", email="Jane@example.com", phone="4155550123")
    assert bob.email_key == "jane@example.com"
    assert auth.directory.delete(bob.id)
    assert auth.directory.add("acme", "Carol", email="jane@example.com").id != bob.id


def _email_spellings() -> list[str]:
    locals_ = ["jane.roe", "Jane.Roe", "JANE.ROE", " jAnE.rOe"]
    domains = ["bücher.example", "BÜCHER.example", "bu\u0308cher.example", "xn--bcher-kva.example"]
    domains.append("XN--BCHER-KVA.EXAMPLE ")
    return [f"{local}@{domain}" for local in locals_ for domain in domains]


def test_concurrent_adds_of_one_email_make_exactly_one_identity(auth: Auth) -> None:  # R63
    spellings = _email_spellings()
    assert len(set(spellings)) == 20
    barrier = threading.Barrier(len(spellings))
    results: list[object] = []
    lock = threading.Lock()

    def add(i: int, spelling: str) -> None:
        barrier.wait()
        try:
            outcome: object = auth.directory.add("acme", f"Person {i}", email=spelling)
        except Exception as exc:  # collected and checked below
            outcome = exc
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=add, args=pair) for pair in enumerate(spellings)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    created = [r for r in results if isinstance(r, Identity)]
    refused = [r for r in results if isinstance(r, ContactTaken)]
    assert len(created) == 1, results
    assert len(refused) == len(spellings) - 1, results
    assert all(r.field == "email" for r in refused)
    listed = auth.directory.list("acme")
    assert [i.id for i in listed] == [created[0].id]
    assert listed[0].email_key == "jane.roe@xn--bcher-kva.example"


def test_concurrent_adds_of_one_phone_make_exactly_one_identity(auth: Auth) -> None:  # R64
    formats = [
        "+1 415-555-0123",
        "(415) 555 0123",
        "415.555.0123",
        "４１５５５５０１２３",
        "1 415 555 0123",
    ]
    spellings = [formats[i % len(formats)] for i in range(20)]
    barrier = threading.Barrier(len(spellings))
    results: list[object] = []
    lock = threading.Lock()

    def add(i: int, spelling: str) -> None:
        barrier.wait()
        try:
            outcome: object = auth.directory.add("acme", f"Person {i}", phone=spelling)
        except Exception as exc:  # collected and checked below
            outcome = exc
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=add, args=pair) for pair in enumerate(spellings)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert sum(isinstance(r, Identity) for r in results) == 1, results
    assert sum(isinstance(r, ContactTaken) and r.field == "phone" for r in results) == 19, results
    assert len(auth.directory.list("acme")) == 1


# -- names and statuses -----------------------------------------------------------------------
_BAD_NAMES: list[object] = [
    "",
    "   ",
    "a" * 201,
    "Jane\x00Roe",
    "Jane\nRoe",
    "Jane\r\nBcc: x@y.com",
    "Jane\x1bRoe",
    "Jane\u202eRoe",
    "Jane\u200bRoe",
    "Jane\u2028Roe",
    "Jane\u2029Roe",
    None,
    42,
    ["Jane"],
]


@pytest.mark.parametrize("name", _BAD_NAMES)
def test_invalid_names_are_refused(auth: Auth, name: object) -> None:  # R23 R61
    with pytest.raises(InvalidInput) as raised:
        auth.directory.add("acme", name, email="jane@example.com")  # type: ignore[arg-type]
    assert raised.value.field == "name"
    assert auth.directory.list("acme") == []
    jane = auth.directory.add("acme", "Jane", email="jane@example.com")
    with pytest.raises(InvalidInput) as raised:
        auth.directory.update(jane.id, name=name)  # type: ignore[arg-type]
    assert raised.value.field == "name"
    assert auth.directory.get(jane.id).name == "Jane"


def test_name_limits(auth: Auth) -> None:  # R23
    longest = "é" * 200
    assert auth.directory.add("acme", longest).name == longest
    assert auth.directory.add("acme", "Zoë O'Brien-Šimić").name == "Zoë O'Brien-Šimić"
    assert auth.directory.add("acme", "Zoe\u0308").name == "Zoë"  # stored in NFC


@pytest.mark.parametrize("status", ["", "VALID", "bounced", "opted-out", None, 1, ["valid"]])
@pytest.mark.parametrize("field", ["email_status", "phone_status"])
def test_contact_statuses_are_validated(auth: Auth, field: str, status: object) -> None:  # R23
    with pytest.raises(InvalidInput) as raised:
        auth.directory.add("acme", "Jane", email="jane@example.com", **{field: status})  # type: ignore[arg-type]
    assert raised.value.field == field
    assert auth.directory.list("acme") == []
    jane = auth.directory.add("acme", "Jane", email="jane@example.com")
    with pytest.raises(InvalidInput) as raised:
        auth.directory.update(jane.id, **{field: status})  # type: ignore[arg-type]
    assert raised.value.field == field


@pytest.mark.parametrize("status", ["valid", "opted_out", "invalid"])
def test_known_statuses_are_stored(auth: Auth, status: str) -> None:  # R23
    jane = auth.directory.add(
        "acme", "Jane", email="jane@example.com", email_status=status, phone_status=status
    )
    stored = auth.directory.get(jane.id)
    assert stored.email_status == stored.phone_status == status


# -- finding ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spelling",
    [
        "Jane.Roe@Example.com",
        "jane.roe@example.com",
        "  JANE.ROE@EXAMPLE.COM\n",
        "jane.roe@exAmple.COM",
    ],
)
def test_find_by_email_matches_every_spelling(auth: Auth, spelling: str) -> None:  # R63 R10
    jane = auth.directory.add("acme", "Jane", email="Jane.Roe@Example.com")
    found = auth.directory.find_by_email("acme", spelling)
    assert found is not None and found.id == jane.id
    assert found.email == "Jane.Roe@example.com"


def test_find_by_email_does_not_merge_other_mailboxes(auth: Auth) -> None:  # R63 R62
    _second_portal(auth)
    auth.directory.add("acme", "Jane", email="jane.roe@example.com")
    for other in ["jane.roe+x@example.com", "janeroe@example.com", "jаne.roe@example.com"]:
        assert auth.directory.find_by_email("acme", other) is None
    assert auth.directory.find_by_email("beta", "jane.roe@example.com") is None
    with pytest.raises(InvalidContact):
        auth.directory.find_by_email("acme", "jane.roe@example.com, bob@example.com")
    with pytest.raises(InvalidContact):
        auth.directory.find_by_email("acme", ["jane.roe@example.com"])  # type: ignore[arg-type]


def test_find_by_phone_matches_every_format(auth: Auth) -> None:  # R64 R10
    jane = auth.directory.add("acme", "Jane", phone="+1 415 555 0123")
    for spelling in ["(415) 555 0123", "415.555.0123", "+14155550123", "４１５５５５０１２３"]:
        found = auth.directory.find_by_phone("acme", spelling)
        assert found is not None and found.id == jane.id
    assert auth.directory.find_by_phone("acme", "415.555.0124") is None


# -- readiness --------------------------------------------------------------------------------
def test_readiness_follows_the_portals_required_fields(auth: Auth) -> None:  # design: readiness
    jane = auth.directory.add("acme", "Jane")
    assert auth.directory.readiness(jane).ready  # nothing required yet
    auth.portals.update("acme", required_fields={"email", "mobile", "tax_id_last4"})
    readiness = auth.directory.readiness(jane.id)
    assert not readiness.ready
    assert readiness.missing == ("email", "mobile", "tax_id_last4")
    auth.directory.update(jane.id, email="jane@example.com")
    assert auth.directory.readiness(jane.id).missing == ("mobile", "tax_id_last4")
    auth.directory.update(jane.id, phone="415 555 0123")
    assert auth.directory.readiness(jane.id).missing == ("tax_id_last4",)
    auth.directory.update(jane.id, tax_id_last4="1234")
    readiness = auth.directory.readiness(jane.id)
    assert readiness.ready
    assert readiness.missing == ()
    auth.portals.update("acme", required_fields={"tax_id_last4"})
    bob = auth.directory.add("acme", "Bob", email="bob@example.com", phone="+14155550124")
    assert auth.directory.readiness(bob.id).missing == ("tax_id_last4",)


@pytest.mark.parametrize("status", ["opted_out", "invalid"])
def test_an_unusable_contact_counts_as_missing(
    auth: Auth, status: str
) -> None:  # design: readiness
    auth.portals.update("acme", required_fields={"email", "mobile"})
    jane = auth.directory.add(
        "acme", "Jane", email="jane@example.com", phone="+14155550123", email_status=status
    )
    assert auth.directory.readiness(jane.id).missing == ("email",)
    auth.directory.update(jane.id, email_status="valid", phone_status=status)
    assert auth.directory.readiness(jane.id).missing == ("mobile",)
    auth.directory.update(jane.id, phone_status="valid")
    assert auth.directory.readiness(jane.id).ready


def test_readiness_of_an_unknown_identity(auth: Auth) -> None:
    with pytest.raises(NotFound):
        auth.directory.readiness("no-such-identity")


# -- tax id -----------------------------------------------------------------------------------
def test_tax_id_is_kept_only_as_a_digest(auth: Auth) -> None:  # R18
    jane = auth.directory.add("acme", "Jane", email="jane@example.com", tax_id_last4="8642")
    for identity in (jane, auth.directory.get(jane.id), auth.directory.list("acme")[0]):
        assert isinstance(identity.tax_id_digest, bytes)
        assert len(identity.tax_id_digest) >= 16
        for field in attrs.fields(Identity):
            value = getattr(identity, field.name)
            if field.name != "tax_id_digest":  # the digest is random-looking bytes
                assert "8642" not in repr(value), field.name
            assert value not in ("8642", b"8642", 8642), field.name
        assert "8642" not in repr(identity)
        assert repr(identity.tax_id_digest) not in repr(identity)


@pytest.mark.parametrize(
    "bad", ["12a4", "１２３４", "12345", "123", "", " 1234", "1234 ", "١٢٣٤", None, 1234]
)
def test_check_tax_id(auth: Auth, bad: object) -> None:  # R18 R21
    jane = auth.directory.add("acme", "Jane", tax_id_last4="1234")
    assert auth.directory.check_tax_id(jane, "1234")
    assert not auth.directory.check_tax_id(jane, "1235")
    assert not auth.directory.check_tax_id(jane, "4321")
    assert not auth.directory.check_tax_id(jane, bad)  # type: ignore[arg-type]
    nobody = auth.directory.add("acme", "No Tax Id")
    assert not auth.directory.check_tax_id(nobody, "1234")
    assert not auth.directory.check_tax_id(nobody, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["12a4", "１２３４", "12345", "123", "", "١٢٣٤", 1234, ["1234"]])
def test_a_malformed_tax_id_is_refused(auth: Auth, bad: object) -> None:  # R21 R23
    with pytest.raises(InvalidInput) as raised:
        auth.directory.add("acme", "Jane", tax_id_last4=bad)  # type: ignore[arg-type]
    assert raised.value.field == "tax_id_last4"
    assert auth.directory.list("acme") == []
    jane = auth.directory.add("acme", "Jane", tax_id_last4="1234")
    with pytest.raises(InvalidInput):
        auth.directory.update(jane.id, tax_id_last4=bad)  # type: ignore[arg-type]
    assert auth.directory.check_tax_id(auth.directory.get(jane.id), "1234")


def test_tax_id_digest_is_bound_to_the_identity_and_replaced_on_update(auth: Auth) -> None:  # R18
    jane = auth.directory.add("acme", "Jane", tax_id_last4="1234")
    bob = auth.directory.add("acme", "Bob", tax_id_last4="1234")
    assert jane.tax_id_digest != bob.tax_id_digest  # same digits, different digests
    updated = auth.directory.update(jane.id, tax_id_last4="9876")
    assert updated.tax_id_digest != jane.tax_id_digest
    stored = auth.directory.get(jane.id)
    assert auth.directory.check_tax_id(stored, "9876")
    assert not auth.directory.check_tax_id(stored, "1234")
    # A digest copied onto another identity does not verify there.
    forged = bob.evolve(tax_id_digest=stored.tax_id_digest)
    assert not auth.directory.check_tax_id(forged, "9876")


# -- R29: a change withdraws outstanding codes and sessions -----------------------------------
_CHANGES: dict[str, Callable[[Auth, Identity], object]] = {
    "email changed": lambda auth, who: auth.directory.update(who.id, email="jane.new@example.com"),
    "email removed": lambda auth, who: auth.directory.update(who.id, email=None),
    "phone changed": lambda auth, who: auth.directory.update(who.id, phone="+1 415 555 0199"),
    "phone removed": lambda auth, who: auth.directory.update(who.id, phone=None),
    "disabled": lambda auth, who: auth.directory.update(who.id, disabled=True),
    "deleted": lambda auth, who: auth.directory.delete(who.id),
}


@pytest.mark.parametrize("change", list(_CHANGES))
def test_a_change_kills_outstanding_codes_and_sessions(auth: Auth, change: str) -> None:  # R29 R57
    jane = auth.directory.add("acme", "Jane", email="jane@example.com", phone="+14155550123")
    token = _sign_in(auth, jane, "jane@example.com")
    flow, code = _issue_code(auth, jane, "jane@example.com")
    _CHANGES[change](auth, jane)
    with pytest.raises(SessionInvalid):
        auth.sessions.validate(token)
    with pytest.raises(VerificationFailed):
        auth.advance(flow, {"code": code}, client=CLIENT)
    assert auth.sessions.list(jane.id) == []


def test_a_new_code_to_the_new_address_works_after_an_email_change(auth: Auth) -> None:  # R29
    jane = auth.directory.add("acme", "Jane", email="jane@example.com")
    flow, code = _issue_code(auth, jane, "jane@example.com")
    auth.directory.update(jane.id, email="Jane.New@example.com")
    with pytest.raises(VerificationFailed):
        auth.advance(flow, {"code": code}, client=CLIENT)
    _sign_in(auth, jane, "jane.new@example.com")
    assert auth.outbox.latest("acme", identity=jane.id).to == "Jane.New@example.com"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "change",
    [
        {"name": "Jane Q. Roe"},
        {"email": "JANE@Example.com"},  # the same mailbox in another spelling
        {"phone": "(415) 555-0123"},  # the same number in another format
        {"attributes": {"case": "2024-001"}},
    ],
)
def test_a_change_that_keeps_the_contacts_keeps_codes_and_sessions(
    auth: Auth, change: dict[str, object]
) -> None:  # R29
    jane = auth.directory.add("acme", "Jane", email="jane@example.com", phone="+14155550123")
    token = _sign_in(auth, jane, "jane@example.com")
    flow, code = _issue_code(auth, jane, "jane@example.com")
    auth.directory.update(jane.id, **change)  # type: ignore[arg-type]
    auth.sessions.validate(token)
    done = auth.advance(flow, {"code": code}, client=CLIENT)
    assert isinstance(done, SignedIn)
    assert done.identity.id == jane.id


def test_a_refused_update_keeps_codes_and_sessions(auth: Auth) -> None:  # R29 R63
    jane = auth.directory.add("acme", "Jane", email="jane@example.com")
    auth.directory.add("acme", "Bob", email="bob@example.com")
    token = _sign_in(auth, jane, "jane@example.com")
    flow, code = _issue_code(auth, jane, "jane@example.com")
    with pytest.raises(ContactTaken):
        auth.directory.update(jane.id, email="bob@example.com")
    with pytest.raises(InvalidContact):
        auth.directory.update(jane.id, email="not an address")
    auth.sessions.validate(token)
    assert isinstance(auth.advance(flow, {"code": code}, client=CLIENT), SignedIn)


def test_a_disabled_identity_cannot_get_a_new_code(auth: Auth) -> None:  # R29
    jane = auth.directory.add("acme", "Jane", email="jane@example.com")
    auth.directory.update(jane.id, disabled=True)
    sent = len(auth.outbox.messages("acme"))
    step = auth.start("acme", "email_code", {"email": "jane@example.com"}, client=CLIENT)
    assert isinstance(step, Step) and step.flow
    assert len(auth.outbox.messages("acme")) == sent
    with pytest.raises(VerificationFailed):
        auth.advance(step.flow, {"code": "123456"}, client=CLIENT)


def test_a_deleted_identity_is_gone(auth: Auth) -> None:
    jane = auth.directory.add("acme", "Jane", email="jane@example.com", phone="+14155550123")
    assert auth.directory.delete(jane.id)
    assert not auth.directory.delete(jane.id)
    with pytest.raises(NotFound):
        auth.directory.get(jane.id)
    assert auth.directory.find_by_email("acme", "jane@example.com") is None
    assert auth.directory.find_by_phone("acme", "+14155550123") is None
    with pytest.raises(NotFound):
        auth.directory.update(jane.id, name="Ghost")


# -- events -----------------------------------------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    @hookimpl
    def portalauth_event(self, event: Event) -> None:
        self.events.append(event)


def test_directory_changes_emit_events_without_contacts_or_tax_ids(
    make_auth: Callable[..., Auth], store_kind: str
) -> None:  # R65 R66
    recorder = Recorder()
    auth = make_auth(store_kind, plugins=[EmailCodePlugin(), recorder])
    auth.portals.create("acme", "Acme Law LLP", methods={"email_code"}, simulate=True)
    jane = auth.directory.add(
        "acme",
        "Jane Roe",
        email="Jane.Roe@Example.com",
        phone="(415) 555-0123",
        tax_id_last4="8642",
        actor="staff:7",
    )
    auth.directory.update(jane.id, name="Jane Q. Roe", actor="staff:7")
    auth.directory.update(jane.id, email="Jane.New@Example.com", phone="415 555 0199")
    changed = auth.directory.update(jane.id, tax_id_last4="9753")
    auth.directory.update(jane.id, disabled=True, actor="staff:8")
    assert auth.directory.delete(jane.id, actor="staff:9")
    assert not auth.directory.delete(jane.id)  # nothing to delete: no event

    mine = [e for e in recorder.events if e.kind.startswith("identity.")]
    assert [e.kind for e in mine] == [
        "identity.added",
        "identity.updated",
        "identity.updated",
        "identity.updated",
        "identity.disabled",
        "identity.deleted",
    ]
    assert all(e.identity_id == jane.id and e.portal == "acme" for e in mine)
    assert [e.actor for e in mine] == ["staff:7", "staff:7", None, None, "staff:8", "staff:9"]
    assert list(mine[1].detail["fields"]) == ["name"]

    leaks = [
        "8642",
        "9753",
        "jane.roe",
        "Jane.Roe",
        "jane.new",
        "Jane.New",
        "example.com",
        "4155550123",
        "4155550199",
        repr(jane.tax_id_digest),
        repr(changed.tax_id_digest),
    ]
    for event in recorder.events:
        text = repr(event)
        for secret in leaks:
            assert secret not in text, (event.kind, secret)
        for value in event.detail.values():
            assert not isinstance(value, bytes)


def test_a_staff_edit_from_a_stale_read_never_undoes_a_password_change(auth: Auth) -> None:  # R29
    party = auth.directory.add("acme", "Jane Roe", email="jane@example.com")
    stale = auth.directory.get(party.id)
    assert auth.store.replace_password_hash(
        party.id, "$argon2id$new", expected=None, now=auth.clock.now(), changed=True
    )
    auth.store.update_identity(stale.evolve(name="Jane Q. Roe"))
    current = auth.directory.get(party.id)
    assert current.name == "Jane Q. Roe"
    assert current.password_hash == "$argon2id$new"
    assert current.password_changed_at == auth.clock.now()


def test_recording_a_sign_in_never_reverts_a_concurrent_disable(auth: Auth) -> None:
    party = auth.directory.add("acme", "Jane Roe", email="jane@example.com")
    stale = auth.directory.get(party.id)
    auth.directory.update(party.id, disabled=True)
    auth.directory.record_sign_in(stale, "email_code")
    current = auth.directory.get(party.id)
    assert current.disabled
    assert current.last_sign_in_method == "email_code"
    # and a staff edit from an old read keeps the recorded sign-in
    auth.store.update_identity(stale.evolve(name="Jane Q. Roe", disabled=True))
    assert auth.directory.get(party.id).last_sign_in_method == "email_code"

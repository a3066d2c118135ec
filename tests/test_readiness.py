"""Readiness (Firm360): a portal's ``required_fields``, the invites they gate, the Tax ID kept as a
keyed digest of its last four digits, and the access-status CSV export for staff.

Basic readiness and tax-id checks live in ``test_directory.py``; this file adds every combination
of required and present fields, the invites of every strategy that has one, the PIN-style Tax ID
stand-in and the export. Every test runs on the memory and the SQLite store (the ``auth``
fixture). Requirement numbers refer to ``../shared/SECURITY-REQUIREMENTS.md``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conftest import CLIENT, code_from
from portalauth import (
    Auth,
    FrozenClock,
    InvalidInput,
    Keyring,
    NotReady,
    Readiness,
    SignedIn,
    Step,
)
from portalauth.records import Identity

PORTAL = "acme"
BASE_URL = "https://acme.example"
ORDER = ("email", "mobile", "tax_id_last4")
HEADER = [
    "name",
    "email",
    "phone",
    "ready",
    "missing",
    "invited_method",
    "invited_at",
    "last_sign_in_at",
    "last_sign_in_method",
]
ALL_REQUIRED = set(ORDER)

# "mobile" is meant to be a number the portal can text (the seed says "Mobile phone number",
# and second_factor.begin relies on readiness to guarantee the second factor's contact).


def subsets(items: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [c for n in range(len(items) + 1) for c in itertools.combinations(items, n)]


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def records(auth: Auth, portal: str = PORTAL) -> dict[str, dict[str, str]]:
    """The export as {name: {column: cell}}, checking the header on the way."""
    header, *body = rows(auth.directory.export_access_status(portal))
    assert header == HEADER
    by_name = {row[0]: dict(zip(header, row, strict=True)) for row in body}
    assert len(by_name) == len(body)
    return by_name


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="seconds")


def add(auth: Auth, name: str, n: int, present: tuple[str, ...] = ORDER, **more: Any) -> Identity:
    """Add ``name`` with the contacts in ``present`` (unique per ``n``)."""
    return auth.directory.add(
        PORTAL,
        name,
        email=f"person{n}@example.com" if "email" in present else None,
        phone=f"+1 202 555 {100 + n:04d}" if "mobile" in present else None,
        tax_id_last4=f"{7300 + n:04d}" if "tax_id_last4" in present else None,
        **more,
    )


# -- invites of every strategy that has one ----------------------------------------------------
Invite = Callable[[Auth, Identity], object]
INVITES: dict[str, Invite] = {
    "share_code": lambda auth, who: auth.share_codes.issue(who, scope="case-1", send=True),
    "magic_link": lambda auth, who: auth.magic_links.invite(who),
    "password": lambda auth, who: auth.passwords.invite(who),
}


def open_for_invites(auth: Auth, required: set[str] | list[str]) -> None:
    auth.portals.update(
        PORTAL,
        methods={"email_code", *INVITES},
        base_url=BASE_URL,
        required_fields=required,
    )


# -- readiness ----------------------------------------------------------------------------------
def test_missing_fields_for_every_combination_in_a_stable_order(auth: Auth) -> None:
    people = {present: add(auth, f"P{n}", n, present) for n, present in enumerate(subsets(ORDER))}
    for required in subsets(ORDER):
        # Whatever order staff list the fields in, the answer lists them in one order.
        for spelling in (list(required), list(reversed(required))):
            auth.portals.update(PORTAL, required_fields=spelling)
            for present, who in people.items():
                expected = tuple(f for f in ORDER if f in required and f not in present)
                readiness = auth.directory.readiness(who)
                assert readiness == Readiness(ready=not expected, missing=expected), (
                    required,
                    present,
                )
                assert auth.directory.readiness(who.id) == readiness


def test_a_disabled_contact_is_not_ready(auth: Auth) -> None:
    auth.portals.update(PORTAL, required_fields=ALL_REQUIRED)
    jane = add(auth, "Jane", 1)
    assert auth.directory.readiness(jane).ready
    auth.directory.update(jane.id, disabled=True)
    assert not auth.directory.readiness(jane.id).ready


def test_a_number_that_cannot_be_texted_is_not_a_mobile(auth: Auth) -> None:
    auth.portals.update(PORTAL, required_fields={"mobile"})
    premium = auth.directory.add(PORTAL, "Premium", phone="+1 900 555 0123")
    assert auth.directory.readiness(premium).missing == ("mobile",)


# -- invites refused while not ready ------------------------------------------------------------
@pytest.mark.parametrize("method", list(INVITES))
def test_invites_are_refused_while_not_ready(auth: Auth, method: str) -> None:
    open_for_invites(auth, ["tax_id_last4", "mobile", "email"])
    jane = add(auth, "Jane", 1, present=("email",))
    invite = INVITES[method]

    with pytest.raises(NotReady) as refused:
        invite(auth, jane)

    assert refused.value.missing == ("mobile", "tax_id_last4")
    assert refused.value.missing == auth.directory.readiness(jane).missing
    assert refused.value.code == "not_ready"
    # Nothing happened: no message, no invitation recorded, no outstanding secret.
    assert auth.outbox.messages(PORTAL) == []
    stored = auth.directory.get(jane.id)
    assert (stored.invited_method, stored.invited_at) == (None, None)
    if method == "share_code":
        assert not auth.share_codes.status(jane, "case-1").invited


@pytest.mark.parametrize("method", list(INVITES))
def test_invites_succeed_once_the_fields_are_filled(
    auth: Auth, clock: FrozenClock, method: str
) -> None:
    open_for_invites(auth, ALL_REQUIRED)
    jane = auth.directory.add(PORTAL, "Jane")
    invite = INVITES[method]
    fills: list[dict[str, Any]] = [
        {"email": "jane@example.com"},
        {"phone": "(202) 555-0143"},
        {"tax_id_last4": "0000"},  # a PIN-style stand-in when there is no SSN
    ]
    for step, fields in enumerate(fills):
        with pytest.raises(NotReady) as refused:
            invite(auth, jane)
        assert refused.value.missing == ORDER[step:]
        auth.directory.update(jane.id, **fields)

    clock.advance(3600)
    invite(auth, jane)

    message = auth.outbox.latest(PORTAL, identity=jane.id)
    assert message is not None and message.to == "jane@example.com"
    stored = auth.directory.get(jane.id)
    assert stored.invited_method == method
    assert stored.invited_at == clock.now()


def test_every_strategy_with_an_invite_is_covered(auth: Auth) -> None:
    # A strategy whose staff API can invite must be gated, and listed in INVITES above.
    inviting = set()
    for name, strategy in auth.plugins.strategies.items():
        if callable(getattr(strategy, "staff", None)) and hasattr(auth.staff(name), "invite"):
            inviting.add(name)
    assert inviting <= set(INVITES)
    assert {"magic_link", "share_code"} <= set(INVITES)


# -- the Tax ID: a keyed digest of the last four digits -----------------------------------------
def test_a_pin_style_stand_in_is_accepted_and_kept_only_as_a_keyed_digest(auth: Auth) -> None:
    auth.portals.update(PORTAL, required_fields={"tax_id_last4"})
    jane = auth.directory.add(PORTAL, "Jane")
    assert auth.directory.readiness(jane).missing == ("tax_id_last4",)

    stored = auth.directory.update(jane.id, tax_id_last4="0000")

    assert auth.directory.readiness(stored).ready
    digest = auth.directory.get(jane.id).tax_id_digest
    assert isinstance(digest, bytes) and len(digest) == 32
    assert digest not in {
        hashlib.new(name, b"0000").digest() for name in ("md5", "sha1", "sha256", "sha512")
    }
    # Keyed: the server key verifies it, another key does not.
    assert auth.keyring.matches(digest, "tax_id_last4", PORTAL, jane.id, "0000")
    other = Keyring(["another-server-key-0123456789abcdef"])
    assert not other.matches(digest, "tax_id_last4", PORTAL, jane.id, "0000")
    assert auth.directory.check_tax_id(auth.directory.get(jane.id), "0000")
    assert not auth.directory.check_tax_id(auth.directory.get(jane.id), "0001")


@pytest.mark.parametrize(
    "bad", ["１２３４", "12a4", "12345", "123-45-6789", "123456789", "0000\n", " 0000"]
)
def test_anything_but_four_ascii_digits_is_refused(auth: Auth, bad: str) -> None:  # R21
    auth.portals.update(PORTAL, required_fields={"tax_id_last4"})
    jane = auth.directory.add(PORTAL, "Jane")
    with pytest.raises(InvalidInput) as refused:
        auth.directory.update(jane.id, tax_id_last4=bad)
    assert refused.value.field == "tax_id_last4"
    # A full SSN is never stored or truncated to its last four: the contact stays not ready.
    assert auth.directory.get(jane.id).tax_id_digest is None
    assert auth.directory.readiness(jane.id).missing == ("tax_id_last4",)


# -- the access-status export -------------------------------------------------------------------
def test_export_has_one_row_per_identity_with_readiness(auth: Auth) -> None:
    auth.portals.update(PORTAL, required_fields=ALL_REQUIRED)
    auth.portals.create("beta", "Beta & Co", methods={"email_code"}, simulate=True)
    add(auth, "Ready Rita", 1)
    add(auth, "Mail Only Mo", 2, present=("email",))
    add(auth, "Nothing Ned", 3, present=())
    auth.directory.add("beta", "Other Firm Olga", email="olga@example.com")

    header, *body = rows(auth.directory.export_access_status(PORTAL))

    assert header == HEADER
    assert [row[0] for row in body] == ["Mail Only Mo", "Nothing Ned", "Ready Rita"]
    got = records(auth)
    assert got["Ready Rita"] == {
        "name": "Ready Rita",
        "email": "person1@example.com",
        "phone": "'+12025550101",  # E.164 starts with "+": guarded like a formula (see below)
        "ready": "yes",
        "missing": "",
        "invited_method": "",
        "invited_at": "",
        "last_sign_in_at": "",
        "last_sign_in_method": "",
    }
    assert got["Mail Only Mo"]["ready"] == "no"
    assert got["Mail Only Mo"]["missing"] == "mobile tax_id_last4"
    assert got["Nothing Ned"]["missing"] == "email mobile tax_id_last4"
    assert (got["Nothing Ned"]["email"], got["Nothing Ned"]["phone"]) == ("", "")
    assert "7301" not in auth.directory.export_access_status(PORTAL)  # no Tax ID, ever
    assert [row[0] for row in rows(auth.directory.export_access_status("beta"))[1:]] == [
        "Other Firm Olga"
    ]


def test_export_shows_the_invitation_and_the_last_sign_in(auth: Auth, clock: FrozenClock) -> None:
    open_for_invites(auth, set())
    jane = auth.directory.add(PORTAL, "Jane Roe", email="jane@example.com")
    assert records(auth)["Jane Roe"]["invited_method"] == ""

    clock.advance(86400)
    invited_at = clock.now()
    auth.magic_links.invite(jane)
    row = records(auth)["Jane Roe"]
    assert (row["invited_method"], row["invited_at"]) == ("magic_link", iso(invited_at))
    when = datetime.fromisoformat(row["invited_at"])
    assert when.utcoffset() == timedelta(0)
    assert when.timestamp() == invited_at
    assert row["last_sign_in_at"] == ""

    clock.advance(7200)
    step = auth.start(PORTAL, "email_code", {"email": "jane@example.com"}, client=CLIENT)
    assert isinstance(step, Step) and step.flow is not None
    done = auth.advance(step.flow, {"code": code_from(auth, identity=jane.id)}, client=CLIENT)
    assert isinstance(done, SignedIn)

    row = records(auth)["Jane Roe"]
    assert row["last_sign_in_at"] == iso(clock.now())
    assert row["last_sign_in_method"] == "email_code"
    assert row["invited_at"] == iso(invited_at)  # unchanged by signing in
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", row["last_sign_in_at"])


@pytest.mark.parametrize(
    "name",
    ['=HYPERLINK("http://evil.example","click")', "+1", "@x", "-2", "  =1+1", "=cmd|'/c calc'!A0"],
)
def test_formula_looking_cells_are_defused(auth: Auth, name: str) -> None:  # CSV injection
    auth.directory.add(PORTAL, name, email="-jane@example.com")
    auth.directory.add(PORTAL, 'A=B, "Quoted" Co', email="plain@example.com")

    _, *body = rows(auth.directory.export_access_status(PORTAL))

    cells = {row[0] for row in body}
    assert "'" + name.strip() in cells
    assert 'A=B, "Quoted" Co' in cells  # only a leading formula character is touched
    for row in body:
        for cell in row:
            assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r"), row
    emails = {row[1] for row in body}
    assert emails == {"'-jane@example.com", "plain@example.com"}


def test_export_writes_the_same_text_to_out(auth: Auth, clock: FrozenClock) -> None:
    open_for_invites(auth, {"email"})
    jane = auth.directory.add(PORTAL, "Jane Roe", email="jane@example.com", phone="2025550143")
    auth.directory.add(PORTAL, "=Bob", phone="+1 202 555 0144")
    auth.magic_links.invite(jane)

    out = io.StringIO()
    returned = auth.directory.export_access_status(PORTAL, out=out)

    assert out.getvalue() == returned == auth.directory.export_access_status(PORTAL)
    assert returned.endswith("\r\n")
    assert len(rows(out.getvalue())) == 3

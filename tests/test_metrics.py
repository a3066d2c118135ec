"""SMS conversion per country and prefix (R17)."""

from __future__ import annotations

import re
from collections.abc import Callable

from portalauth import Auth, ClientInfo, FrozenClock, SignedIn, Step
from portalauth.metrics import ConversionRow, SmsConversion

PORTAL = "court"
CLIENT = ClientInfo(ip="192.0.2.1")
PHONES = ["+1 202 555 0143", "+1 202 555 0144", "+1 415 555 0102"]


def _code(auth: Auth, identity_id: str) -> str:
    (message,) = auth.outbox.messages(PORTAL, identity=identity_id, limit=1)
    found = re.search(r"\b(\d{6})\b", message.text)
    assert found
    return found.group(1)


def test_codes_sent_and_verified_are_counted_per_country_and_prefix(
    make_auth: Callable[..., Auth], store_kind: str, clock: FrozenClock
) -> None:  # R17
    conversion = SmsConversion()
    auth = make_auth(store_kind, plugins=[conversion])
    auth.portals.create(PORTAL, "County Court", methods={"contact_otp"}, simulate=True)
    people = [
        auth.directory.add(PORTAL, f"Client {i}", phone=phone) for i, phone in enumerate(PHONES)
    ]
    steps = {}
    for person, phone in zip(people, PHONES, strict=True):
        step = auth.start(PORTAL, "contact_otp", {"contact": phone}, client=CLIENT)
        assert isinstance(step, Step)
        steps[person.id] = step
    # Only the first client of the 202 prefix and the 415 client finish.
    for person in (people[0], people[2]):
        flow = steps[person.id].flow
        assert flow is not None
        done = auth.advance(flow, {"code": _code(auth, person.id)}, client=CLIENT)
        assert isinstance(done, SignedIn)
    # An e-mail code is no SMS: it counts nowhere.
    mailed = auth.directory.add(PORTAL, "Mailed", email="mailed@example.com")
    step = auth.start(PORTAL, "contact_otp", {"contact": "mailed@example.com"}, client=CLIENT)
    assert isinstance(step, Step) and step.flow is not None
    done = auth.advance(step.flow, {"code": _code(auth, mailed.id)}, client=CLIENT)
    assert isinstance(done, SignedIn)
    rows = {(r.country, r.prefix): r for r in conversion.rows()}
    assert rows[("US", None)] == ConversionRow("US", None, sent=3, verified=2)
    assert rows[("US", "+1202555")] == ConversionRow("US", "+1202555", sent=2, verified=1)
    assert rows[("US", "+1415555")] == ConversionRow("US", "+1415555", sent=1, verified=1)
    assert rows[("US", "+1202555")].ratio == 0.5
    # Worst first: the place to look for pumping.
    assert conversion.rows()[0].prefix == "+1202555"
    assert [r.prefix for r in conversion.rows(min_sent=2)] == ["+1202555", None]
    assert "+12025550143" not in repr(conversion)


def test_a_verification_counts_once_for_the_last_code_sent(
    make_auth: Callable[..., Auth], clock: FrozenClock
) -> None:  # R17
    conversion = SmsConversion()
    auth = make_auth("memory", plugins=[conversion])
    auth.portals.create(PORTAL, "County Court", methods={"contact_otp"}, simulate=True)
    person = auth.directory.add(PORTAL, "Client", phone=PHONES[0])
    for _ in range(3):  # three codes, past the cooldown each time
        clock.advance(61)
        step = auth.start(PORTAL, "contact_otp", {"contact": PHONES[0]}, client=CLIENT)
    assert isinstance(step, Step) and step.flow is not None
    assert isinstance(
        auth.advance(step.flow, {"code": _code(auth, person.id)}, client=CLIENT), SignedIn
    )
    (country, *_) = [r for r in conversion.rows() if r.prefix is None]
    assert (country.sent, country.verified) == (3, 1)

"""Sign a party in to a portal against a SQLite file, printing each step.

    python examples/sign_in.py [--db PATH]

It creates a case portal in simulate mode (messages are recorded in the outbox, not sent), adds a
party, has staff issue a share code for a case, signs the party in with the share code and the
confirmation code e-mailed to them (read from the simulated message feed, as staff would), then
signs a second person in with a code sent by SMS to their phone, validates a session and signs out.
"""

from __future__ import annotations

import argparse
import re
import secrets
import tempfile
from pathlib import Path

from portalauth import (
    Auth,
    ClientInfo,
    SessionInvalid,
    SignedIn,
    Step,
    mask_email,
    mask_phone,
)


def code_in(auth: Auth, portal: str, identity: str) -> str:
    """The newest code in the identity's simulated message feed."""
    message = auth.outbox.latest(portal, identity=identity)
    assert message is not None
    found = re.search(r"\b(\d{5,10})\b", message.text)
    assert found
    return found.group(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--db", type=Path, default=None, help="SQLite file (default: temporary)")
    args = parser.parse_args()
    db = args.db or Path(tempfile.mkdtemp(prefix="portalauth-")) / "portal.db"

    # A real application keeps its keys in a secret store, newest first.
    auth = Auth(secret_keys=[secrets.token_urlsafe(32)], store=f"sqlite:///{db}")
    print(f"1. Store: SQLite file {db}")

    auth.portals.create(
        "acme",
        "Acme Law LLP",
        methods={"share_code", "contact_otp"},
        simulate=True,
        base_url="https://portal.acme.example",
        support_phone="+1 202 555 0100",
    )
    print("2. Portal 'acme' (Acme Law LLP) created in simulate mode: share_code, contact_otp")

    party = auth.directory.add("acme", "Jane Roe", email="Jane.Roe@Example.com")
    share = auth.share_codes.issue(party, scope="case-42", scope_label="Roe v. Doe")
    print(f"3. Party {party.name} <{party.email}> invited to case-42 with share code {share.code}")

    client = ClientInfo(ip="127.0.0.1", user_agent="examples/sign_in.py")
    typed = share.code.lower().replace("-", " ")
    step = auth.start("acme", "share_code", {"share_code": typed}, client=client)
    assert isinstance(step, Step)
    assert step.flow
    print(f"4. The party typed {typed!r}; next step {step.next!r}: {step.notice}")

    code = code_in(auth, "acme", party.id)
    message = auth.outbox.latest("acme", identity=party.id)
    assert message is not None
    print(f"5. Simulated e-mail to {mask_email(message.to)}: {message.subject!r}; code {code}")

    done = auth.advance(step.flow, {"code": code}, client=client)
    assert isinstance(done, SignedIn)
    print(f"6. Signed in as {done.identity.name} by {done.method}, scope {done.session.scope!r}")

    other = auth.directory.add("acme", "Sam Poe", phone="(202) 555-0143")
    step = auth.start("acme", "contact_otp", {"contact": "202.555.0143"}, client=client)
    assert isinstance(step, Step)
    assert step.flow
    sms = auth.outbox.latest("acme", identity=other.id)
    assert sms is not None
    print(f"7. {other.name} asked for a code by phone; simulated SMS to {mask_phone(sms.to)}")
    done = auth.advance(step.flow, {"code": code_in(auth, "acme", other.id)}, client=client)
    assert isinstance(done, SignedIn)
    print(f"8. Signed in as {done.identity.name} by {done.method}")

    session = auth.sessions.validate(done.token)
    idle = session.idle_expires_at - session.last_seen_at
    print(f"9. Session valid for identity {session.identity_id}; idle expiry in {idle:.0f} s")

    auth.sessions.revoke(done.token)
    try:
        auth.sessions.validate(done.token)
    except SessionInvalid as exc:
        print(f"10. Signed out: the token no longer validates ({exc.code})")
    else:
        raise SystemExit("the revoked session still validates")
    auth.close()


if __name__ == "__main__":
    main()

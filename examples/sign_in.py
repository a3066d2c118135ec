"""Sign a party in to a portal against a SQLite file, printing each step.

    python examples/sign_in.py [--db PATH]

It creates a portal in simulate mode (messages are recorded in the outbox, not sent), adds a
party, starts a sign-in with the party's e-mail address, reads the code from the simulated message
feed as staff would, finishes the sign-in, validates the session and signs out.

The sign-in method is a small strategy plugin defined right here and registered through the same
``portalauth_add_strategies`` hook the built-in strategies use.
"""

from __future__ import annotations

import argparse
import re
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from portalauth import (
    Auth,
    Authenticated,
    ClientInfo,
    Context,
    Continue,
    Field,
    FlowState,
    SessionInvalid,
    SignedIn,
    Step,
    hookimpl,
    mask_email,
    read_code,
)
from portalauth.errors import DeliveryFailed


class EmailCode:
    """Enter your e-mail address, then the 6-digit code sent to it."""

    name = "email_code"
    label = "E-mail me a code"
    digits = 6
    ttl = 600

    def configure(self, raw: Mapping[str, Any]) -> None:
        return None

    def fields(self, step: str, config: None) -> tuple[Field, ...]:
        if step == "start":
            return (Field("email", "email", "E-mail address", autocomplete="email"),)
        return (
            Field("code", "code", "Code", max_length=6, numeric=True, autocomplete="one-time-code"),
        )

    def start(self, ctx: Context) -> Continue:
        # Unknown (or unreachable) addresses get a decoy challenge and the same answer.
        identity, subject = ctx.lookup_email(ctx.form["email"])
        code = ctx.challenges.new_code(self.digits)
        challenge = ctx.challenges.issue(
            portal=ctx.portal.slug,
            subject=subject,
            purpose="login",
            secret=code,
            ttl=self.ttl,
            method=self.name,
            decoy=identity is None,
        )
        if identity is not None:
            try:
                ctx.dispatcher.send(
                    identity,
                    ctx.portal,
                    channel="email",
                    template="code",
                    context={"code": code, "minutes": self.ttl // 60, "purpose_label": "sign in"},
                    purpose="login",
                    method=self.name,
                )
            except DeliveryFailed:
                # A code that was never delivered must not stay usable.
                ctx.challenges.revoke(ctx.portal.slug, subject, purposes=["login"])
                raise
        return Continue(
            step="code",
            challenge=challenge,
            notice="If that address is registered, we sent it a code.",
        )

    def advance(self, ctx: Context, state: FlowState) -> Authenticated:
        record = ctx.challenges.verify(
            state.challenge_id,
            read_code(ctx.form["code"], self.digits),
            settings=ctx.portal,
            purpose="login",
            method=self.name,
        )
        return Authenticated(identity=ctx.directory.get(record.subject))


class ExamplePlugin:
    @hookimpl
    def portalauth_add_strategies(self) -> list[object]:
        return [EmailCode()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--db", type=Path, default=None, help="SQLite file (default: a temporary one)"
    )
    args = parser.parse_args()
    db = args.db or Path(tempfile.mkdtemp(prefix="portalauth-")) / "portal.db"

    # A real application keeps its keys in a secret store, newest first.
    auth = Auth(
        secret_keys=[secrets.token_urlsafe(32)], store=f"sqlite:///{db}", plugins=[ExamplePlugin()]
    )
    print(f"1. Store: SQLite file {db}")

    auth.portals.create(
        "acme",
        "Acme Law LLP",
        methods={"email_code"},
        simulate=True,
        support_phone="+1 202 555 0100",
    )
    print("2. Portal 'acme' (Acme Law LLP) created in simulate mode")

    email = f"jane.roe+{secrets.token_hex(3)}@example.com"
    party = auth.directory.add("acme", "Jane Roe", email=email, phone="(202) 555-0123")
    print(f"3. Party added: {party.name}, {party.email}, phone stored as {party.phone}")

    client = ClientInfo(ip="127.0.0.1", user_agent="examples/sign_in.py")
    step = auth.start("acme", "email_code", {"email": email.upper()}, client=client)
    assert isinstance(step, Step)
    assert step.flow
    labels = [f.label for f in step.fields]
    print(f"4. Client typed {email.upper()!r}; next step {step.next!r} asks for {labels}")
    print(f"   notice: {step.notice}")

    message = auth.outbox.latest("acme", identity=party.id)
    assert message is not None
    found = re.search(r"\b(\d{6})\b", message.text)
    assert found
    code = found.group(1)
    print(f"5. Simulated e-mail to {mask_email(message.to)}: subject {message.subject!r}")
    print(f"   staff read the code in the simulated feed: {code}")

    done = auth.advance(step.flow, {"code": code}, client=client)
    assert isinstance(done, SignedIn)
    print(f"6. Signed in as {done.identity.name} by {done.method}")
    print(f"   session token (the cookie value): {done.token[:12]}...")

    session = auth.sessions.validate(done.token)
    idle = session.idle_expires_at - session.last_seen_at
    print(f"7. Session valid for identity {session.identity_id}; idle expiry in {idle:.0f} s")

    auth.sessions.revoke(done.token)
    try:
        auth.sessions.validate(done.token)
    except SessionInvalid as exc:
        print(f"8. Signed out: the token no longer validates ({exc.code})")
    else:
        raise SystemExit("the revoked session still validates")
    auth.close()


if __name__ == "__main__":
    main()

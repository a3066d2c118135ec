"""After a series of flows, the SQLite file holds none of the issued secrets in plain text
outside the outbox table (R18): codes, session ids and flow tokens."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Callable
from pathlib import Path

from conftest import CLIENT, code_from
from portalauth import Auth, SignedIn, Step


def _forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    forms = [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw).rstrip(b"=")]
    if secret.isdigit():
        forms.append(int(secret).to_bytes(8, "big"))
    return forms


def test_sqlite_file_holds_no_plaintext_secrets(
    make_auth: Callable[..., Auth], tmp_path: Path
) -> None:  # R18
    auth = make_auth("sqlite")
    auth.portals.create("acme", "Acme Law LLP", methods={"email_code"}, simulate=True)
    secrets_seen: list[str] = []
    for i in range(12):
        party = auth.directory.add("acme", f"Party {i}", email=f"party{i}@example.com")
        step = auth.start("acme", "email_code", {"email": f"party{i}@example.com"}, client=CLIENT)
        assert isinstance(step, Step) and step.flow
        code = code_from(auth, identity=party.id)
        done = auth.advance(step.flow, {"code": code}, client=CLIENT)
        assert isinstance(done, SignedIn)
        session_id = done.token.rsplit(".", 1)[0]
        secrets_seen += [code, session_id, step.flow]
        # A second, unused code stays live in the store.
        auth.start("acme", "email_code", {"email": f"party{i}@example.com"}, client=CLIENT)
        secrets_seen.append(code_from(auth, identity=party.id))
    auth.close()

    db = tmp_path / "portalauth.db"
    con = sqlite3.connect(db)
    tables = [
        r[0]
        for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
        if r[0] != "portalauth_messages"
    ]
    assert "portalauth_challenges" in tables and "portalauth_sessions" in tables
    values: list[bytes] = []
    for table in tables:
        for row in con.execute(f'SELECT * FROM "{table}"'):
            for value in row:
                if isinstance(value, bytes):
                    values.append(value)
                elif value is not None:
                    values.append(str(value).encode())
    con.close()
    blob = b"\x00".join(values)
    assert blob
    for secret in secrets_seen:
        for form in _forms(secret):
            assert form not in blob, f"a secret was found at rest ({len(secret)} chars)"
    # Long secrets (session ids, flow tokens) must not be anywhere in the file, WAL included.
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("portalauth.db*"))
    for secret in secrets_seen:
        if len(secret) > 20:
            assert secret.encode() not in raw

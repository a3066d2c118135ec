"""The demo's one :class:`~portalauth.Auth`, and the seed it starts from.

``PORTALAUTH["AUTH"]`` names :func:`get_auth`. On first use it opens the SQLite file in the data
directory (``DEMO_DATA_DIR``), with server keys kept beside it, and seeds the demo if the store is
empty: the client portal ``acme`` with every sign-in method in simulate mode, a few parties, and
the staff portal ``acme-staff`` with one password account.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from portalauth import Auth, Clock

CLIENT_PORTAL = "acme"
STAFF_PORTAL = "acme-staff"
STAFF_COOKIE = "demo_staff"
METHODS = ("contact_otp", "magic_link", "password", "share_code", "staff_pin")

STAFF_EMAIL = "staff@acme.example"
STAFF_PASSWORD = "staff desk lantern 7301"  # a demo account; printed by the demo command
CLIENT_PASSWORD = "plum kettle orbit 42"

PARTIES: tuple[dict[str, Any], ...] = (
    {
        "name": "Jane Roe",
        "email": "jane.roe@example.com",
        "phone": "(202) 555-0123",
        "tax_id_last4": "6789",
        "attributes": {"case": "case-42", "case_label": "Roe v. Doe"},
    },
    {
        "name": "Sam Poe",
        "email": "sam.poe@example.com",
        "phone": "(202) 555-0143",
        "attributes": {"case": "case-7", "case_label": "Estate of Poe"},
    },
    {
        "name": "Mia Chen",
        "email": "mia.chen@example.com",
        "attributes": {"case": "case-42", "case_label": "Roe v. Doe"},
    },
    {
        "name": "Pat Lee",
        "email": "pat.lee@example.com",
        "attributes": {"case": "case-9", "case_label": "Lee Holdings"},
    },
)


def data_dir() -> Path:
    return Path(
        os.environ.get("DEMO_DATA_DIR") or Path(tempfile.gettempdir()) / "portalauth-django-demo"
    )


def base_url() -> str:
    return os.environ.get("DEMO_BASE_URL", "http://127.0.0.1:8000").rstrip("/")


def _keys(folder: Path) -> list[str]:
    """Server keys from ``PORTALAUTH_KEYS`` or a key file beside the database (made once)."""
    if os.environ.get("PORTALAUTH_KEYS"):
        return os.environ["PORTALAUTH_KEYS"].split()
    path = folder / "keys.txt"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32) + "\n", encoding="ascii")
        path.chmod(0o600)
    return path.read_text(encoding="ascii").split()


def seed(auth: Auth, url: str) -> dict[str, str]:
    """Create the demo portals and parties; returns what the demo command prints."""
    auth.portals.create(
        CLIENT_PORTAL,
        "Acme Law LLP",
        methods=set(METHODS),
        simulate=True,
        base_url=url,
        support_phone="+1 202 555 0100",
        required_fields={"email"},
        # The share-code invitation links to the share-code form of this site.
        method_settings={"share_code": {"sign_in_path": "/sign-in/share_code"}},
    )
    auth.portals.create(
        STAFF_PORTAL, "Acme Law LLP staff", methods={"password"}, simulate=True, base_url=url
    )
    staff = auth.directory.add(STAFF_PORTAL, "Sam Staff", email=STAFF_EMAIL, actor="seed")
    auth.directory.replace_password_hash(staff, auth.hasher.hash(STAFF_PASSWORD), expected=None)

    made = {}
    for party in PARTIES:
        made[party["name"]] = auth.directory.add(CLIENT_PORTAL, actor="seed", **party)
    jane = made["Jane Roe"]
    share = auth.share_codes.issue(
        jane, scope="case-42", scope_label="Roe v. Doe", send=True, actor="seed"
    )
    auth.magic_links.invite(made["Mia Chen"], actor="seed")
    pat = made["Pat Lee"]
    auth.directory.replace_password_hash(pat, auth.hasher.hash(CLIENT_PASSWORD), expected=None)
    return {"share_code": share.code}


_lock = threading.Lock()
_auth: dict[str, Auth] = {}
#: What the seed made in this process (the share code is shown once, like staff see it).
seeded: dict[str, str] = {}


class OffsetClock:
    """The system clock moved forward by the number of seconds in a file (``DEMO_CLOCK_FILE``):
    lets a browser test expire a code in a running demo without waiting."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def now(self) -> float:
        try:
            offset = float(self._path.read_text(encoding="ascii").strip() or 0)
        except (OSError, ValueError):
            offset = 0.0
        return time.time() + offset


def make_auth(clock: Clock | None = None) -> Auth:
    """A new :class:`Auth` on the data directory's SQLite file, seeded if the store is empty."""
    folder = data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if clock is None and os.environ.get("DEMO_CLOCK_FILE"):
        clock = OffsetClock(Path(os.environ["DEMO_CLOCK_FILE"]))
    auth = Auth(_keys(folder), f"sqlite:///{folder / 'portal.db'}", clock=clock)
    seeded.update(ensure_seeded(auth) or {})
    return auth


def get_auth() -> Auth:
    """The demo's :class:`Auth` (``PORTALAUTH["AUTH"]``), made and seeded on first use."""
    with _lock:
        auth = _auth.get("auth")
        if auth is None:
            auth = _auth["auth"] = make_auth()
        return auth


def install(auth: Auth) -> None:
    """Serve the demo with ``auth`` (one a test built, with its own clock, say)."""
    with _lock:
        _auth["auth"] = auth


def ensure_seeded(auth: Auth, url: str | None = None) -> dict[str, str] | None:
    """Seed an empty store; on later runs only move the portals to the current base URL."""
    url = url or base_url()
    if auth.portals.find(CLIENT_PORTAL, fresh=True) is None:
        return seed(auth, url)
    for slug in (CLIENT_PORTAL, STAFF_PORTAL):
        if auth.portals.get(slug, fresh=True).base_url != url:
            auth.portals.update(slug, base_url=url, actor="demo")
    return None


def reset() -> None:
    """Forget everything: close the open store and delete the data directory's files."""
    with _lock:
        auth = _auth.pop("auth", None)
        if auth is not None:
            auth.close()
        folder = data_dir()
        for name in ("portal.db", "portal.db-wal", "portal.db-shm", "keys.txt"):
            (folder / name).unlink(missing_ok=True)

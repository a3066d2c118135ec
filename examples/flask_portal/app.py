"""The portalauth demo: a law firm's client portal and its staff pages, on Flask.

    python -m pip install -e '.[flask]' && python examples/flask_portal/app.py

It serves http://127.0.0.1:5000 (``PORT=8000`` to change the port) from a SQLite file in a fresh
temporary directory, in simulate mode: no e-mail or SMS leaves the machine, every message lands
in the outbox, and staff read it in each client's message feed. It seeds a firm portal with every
sign-in method on (share code, code by text or e-mail, magic link, office PIN, password with
self sign-up), three clients, and a staff account on a separate staff portal, then prints what to
try.

Client pages: ``/`` (private: who is signed in, and the case scope) and ``/auth/...`` (the
sign-in pages of :class:`portalauth.integrations.flask.PortalAuth`). Staff pages: ``/staff/...``
behind their own sign-in (``/staff/auth/...``, its own cookie): parties with readiness and
invitation status, add and edit a party, share codes, invitations, PINs, the message feed, portal
settings and the access-status CSV export.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, abort, make_response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from portalauth import Auth, Clock, Identity, NotFound, PortalAuthError, Sender
from portalauth.integrations.flask import PortalAuth, error_status

HERE = Path(__file__).resolve().parent
FIRM = "acme"
STAFF = "acme-staff"
METHODS = ("share_code", "contact_otp", "magic_link", "staff_pin", "password")
SECOND_FACTORS = {
    "none": "None",
    "sms_code": "A code by text message",
    "email_code": "A code by e-mail",
    "tax_id_last4": "Last four digits of the Tax ID (first sign-in)",
}
DEFAULT_URL = "http://127.0.0.1:5000"


def _keys(db: Path) -> list[str]:
    """Server keys: ``PORTALAUTH_KEYS`` (newest first), else a key file beside the database."""
    if os.environ.get("PORTALAUTH_KEYS"):
        return os.environ["PORTALAUTH_KEYS"].split()
    key_file = db.with_name(db.name + ".key")
    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
    return [key_file.read_text().strip()]


def _when(at: float | None) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC") if at else ""


def seed_demo(auth: Auth, base_url: str, staff_password: str) -> dict[str, str]:
    """The firm portal, three clients, and a staff account on the staff portal."""
    auth.portals.create(
        FIRM,
        "Acme Law LLP",
        methods=set(METHODS),
        signup_enabled=True,
        simulate=True,
        base_url=f"{base_url}/auth",  # links are built on it: where the sign-in pages live
        support_phone="+1 202 555 0100",
    )
    auth.portals.create(
        STAFF, "Acme Law LLP staff", methods={"password"}, base_url=f"{base_url}/staff/auth"
    )
    add = auth.directory.add
    jane = add(
        FIRM,
        "Jane Roe",
        email="jane.roe@example.com",
        phone="(202) 555-0123",
        tax_id_last4="6789",
        attributes={"case": "case-42", "case_label": "Roe v. Doe"},
        actor="seed",
    )
    sam = add(
        FIRM,
        "Sam Poe",
        email="sam.poe@example.com",
        phone="(202) 555-0143",
        tax_id_last4="1234",
        attributes={"case": "case-7", "case_label": "Estate of Poe"},
        actor="seed",
    )
    ana = add(
        FIRM,
        "Ana Diaz",
        email="ana.diaz@example.com",
        phone="(202) 555-0187",
        attributes={"case": "case-19", "case_label": "Diaz LLC formation"},
        actor="seed",
    )
    share = auth.share_codes.issue(jane, scope="case-42", scope_label="Roe v. Doe", actor="seed")
    pin = auth.pins.issue(sam, actor="seed")
    auth.passwords.invite(ana, actor="seed")
    staff = add(STAFF, "Sam Staff", email="staff@acme.example", actor="seed")
    auth.directory.replace_password_hash(staff, auth.hasher.hash(staff_password), expected=None)
    return {
        "share_code": share.code,
        "jane": jane.id,
        "pin": pin.pin,
        "sam": sam.id,
        "ana": ana.id,
        "staff_email": staff.email or "",
        "staff_password": staff_password,
    }


def create_app(
    db_path: str | Path | None = None,
    seed: bool = True,
    *,
    base_url: str = DEFAULT_URL,
    secret_keys: list[str] | None = None,
    clock: Clock | None = None,
    testing: bool = False,
    cookie_secure: bool | None = None,
    staff_password: str | None = None,
    email: Sender | str | None = None,
    sms: Sender | str | None = None,
) -> Flask:
    """The demo app. ``db_path``: the SQLite file (default: in a new temporary directory).
    ``base_url``: where the app is served (links in messages are built on it). Cookies are
    Secure unless ``base_url`` is plain ``http://`` (or ``cookie_secure`` says otherwise).
    What was seeded (the share code, the PIN, the staff login) is in
    ``app.config["PORTALAUTH_DEMO"]``. ``email`` / ``sms``: senders (or URIs) for when staff turn
    simulate mode off; without one, that channel's messages stay in the feed."""
    db = Path(db_path) if db_path else Path(tempfile.mkdtemp(prefix="portalauth-demo-")) / "demo.db"
    base_url = base_url.rstrip("/")
    auth = Auth(secret_keys or _keys(db), f"sqlite:///{db}", email=email, sms=sms, clock=clock)
    demo: dict[str, str] = {"url": base_url, "db": str(db)}
    if seed and auth.portals.find(FIRM) is None:
        demo.update(seed_demo(auth, base_url, staff_password or secrets.token_urlsafe(12)))
    elif auth.portals.find(FIRM) is not None:  # an existing database served elsewhere now
        auth.portals.update(FIRM, base_url=f"{base_url}/auth")
        auth.portals.update(STAFF, base_url=f"{base_url}/staff/auth")

    app = Flask(__name__, root_path=str(HERE))
    app.testing = testing
    app.config["PORTALAUTH_DEMO"] = demo
    app.add_template_filter(_when, "datetime")
    if cookie_secure is None and base_url.startswith("http://"):
        cookie_secure = False  # the demo is served over plain HTTP on this machine
    clients = PortalAuth(app, auth=auth, portal=FIRM, cookie_secure=cookie_secure)
    staff = PortalAuth(
        app,
        auth=auth,
        portal=STAFF,
        url_prefix="/staff/auth",
        staff=True,
        home="/staff/",
        cookie_secure=cookie_secure,
    )

    def page(
        template: str, status: int = 200, *, pa: PortalAuth = staff, **context: Any
    ) -> Response:
        portal = auth.portals.get(FIRM)
        html = render_template(template, pa=pa, portal_name=portal.name, portal=portal, **context)
        return make_response(html, status)

    def one(name: str) -> str:
        """A form value; a repeated field is refused (never quietly reduced to one value)."""
        values = request.form.getlist(name)
        if len(values) > 1:
            abort(400)
        return values[0].strip() if values else ""

    def actor() -> str:
        person = staff.current_identity()
        return f"staff:{person.id}" if person else "staff"

    def party_or_404(party_id: str) -> Identity:
        try:
            party = auth.directory.get(party_id)
        except NotFound:
            abort(404)
        if party.portal != FIRM:
            abort(404)
        return party

    # -- the client side ------------------------------------------------------------------------
    @app.get("/")
    @clients.login_required
    def home() -> Response:
        session = clients.current_session()
        person = clients.current_identity()
        assert session is not None
        assert person is not None
        case = person.attributes.get("case_label") if session.scope else None
        return page("home.html", pa=clients, person=person, session=session, case=case)

    # -- the staff side ----------------------------------------------------------------------------
    def staff_view(rule: str, methods: tuple[str, ...] = ("GET",)) -> Callable[..., Any]:
        def register(view: Callable[..., Response]) -> Callable[..., Response]:
            protected = staff.login_required(staff.csrf_protect(view))
            app.add_url_rule(f"/staff{rule}", view.__name__, protected, methods=list(methods))
            return view

        return register

    @staff_view("/")
    def parties() -> Response:
        people = auth.directory.list(FIRM)
        rows = [(p, auth.directory.readiness(p)) for p in people]
        return page("parties.html", rows=rows)

    def party_form_values() -> dict[str, Any]:
        values: dict[str, Any] = {
            "name": one("name"),
            "email": one("email") or None,
            "phone": one("phone") or None,
        }
        if one("tax_id_last4"):
            values["tax_id_last4"] = one("tax_id_last4")
        case, label = one("case"), one("case_label")
        values["attributes"] = {"case": case, "case_label": label or case} if case else {}
        return values

    @staff_view("/parties/new", ("GET", "POST"))
    def new_party() -> Response:
        if request.method == "POST":
            try:
                party = auth.directory.add(FIRM, actor=actor(), **party_form_values())
            except PortalAuthError as exc:
                return page(
                    "party_new.html", error_status(exc), error=exc.message, form=request.form
                )
            return redirect(url_for("party", party_id=party.id), code=303)
        return page("party_new.html", form={})

    def party_page(party: Identity, status: int = 200, **extra: Any) -> Response:
        settings = auth.portals.get(FIRM)
        case = party.attributes.get("case")
        share = (
            auth.share_codes.status(party, case)
            if case and "share_code" in settings.methods
            else None
        )
        pin = auth.pins.status(party) if "staff_pin" in settings.methods else None
        return page(
            "party.html",
            status,
            party=party,
            readiness=auth.directory.readiness(party),
            share=share,
            pin=pin,
            messages=auth.outbox.messages(FIRM, identity=party.id, limit=20),
            **extra,
        )

    @staff_view("/parties/<party_id>", ("GET", "POST"))
    def party(party_id: str) -> Response:
        person = party_or_404(party_id)
        if request.method == "POST":
            try:
                person = auth.directory.update(person.id, actor=actor(), **party_form_values())
            except PortalAuthError as exc:
                return party_page(person, error_status(exc), error=exc.message)
            return party_page(person, done="Saved.")
        return party_page(person)

    @staff_view("/parties/<party_id>/<action>", ("POST",))
    def party_action(party_id: str, action: str) -> Response:
        person = party_or_404(party_id)
        case = str(person.attributes.get("case") or "")
        label = str(person.attributes.get("case_label") or case)
        try:
            if action == "share-code":
                issued = auth.share_codes.issue(
                    person, scope=case, scope_label=label, actor=actor()
                )
                sent = " and e-mailed it" if issued.sent else ""
                return party_page(
                    person, done=f"Issued a new share code{sent}.", secret=issued.code
                )
            if action == "revoke-share-code":
                revoked = auth.share_codes.revoke(person, case, actor=actor())
                return party_page(
                    person, done="Share code revoked." if revoked else "No live share code."
                )
            if action == "magic-link":
                auth.magic_links.invite(person, actor=actor())
                return party_page(person, done="Sign-in link e-mailed.")
            if action == "password-invite":
                auth.passwords.invite(person, actor=actor())
                return party_page(person, done="Set-your-password invitation e-mailed.")
            if action == "pin":
                pin = auth.pins.issue(person, actor=actor())
                return party_page(
                    person, done="New PIN (shown once): tell it to the client.", secret=pin.pin
                )
        except PortalAuthError as exc:
            return party_page(person, error_status(exc), error=exc.message)
        abort(404)

    @staff_view("/settings", ("GET", "POST"))
    def settings() -> Response:
        labels = {name: getattr(auth.plugins.strategy(name), "label", name) for name in METHODS}
        if request.method == "POST":
            second = one("second_factor")
            try:
                auth.portals.update(
                    FIRM,
                    methods=set(request.form.getlist("methods")),
                    signup_enabled=one("signup_enabled") == "on",
                    simulate=one("simulate") == "on",
                    second_factor=second,
                    actor=actor(),
                )
            except PortalAuthError as exc:
                return page(
                    "settings.html",
                    400,
                    labels=labels,
                    second_factors=SECOND_FACTORS,
                    error=exc.message,
                )
            return page(
                "settings.html", labels=labels, second_factors=SECOND_FACTORS, done="Saved."
            )
        return page("settings.html", labels=labels, second_factors=SECOND_FACTORS)

    @staff_view("/export.csv")
    def export() -> Response:
        response = make_response(auth.directory.export_access_status(FIRM))
        response.mimetype = "text/csv"
        response.headers["Content-Disposition"] = 'attachment; filename="access-status.csv"'
        response.headers["Cache-Control"] = "no-store"
        return response

    return app


def main() -> None:
    port = int(os.environ.get("PORT", "5000"))
    url = f"http://127.0.0.1:{port}"
    # A stop by signal runs the clean-up below too (the temporary directory goes).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with tempfile.TemporaryDirectory(prefix="portalauth-demo-") as tmp:
        app = create_app(Path(tmp) / "demo.db", base_url=url)
        demo = app.config["PORTALAUTH_DEMO"]
        print(
            f"""
portalauth demo: {url}/   (SQLite file {demo["db"]}, simulate mode: nothing is sent)

Sign in as a client at {url}/auth/ with any method:
  share code   Jane Roe's share code {demo["share_code"]}, then the code e-mailed to her
  text/e-mail  (202) 555-0143 or sam.poe@example.com, then the code sent there
  magic link   ana.diaz@example.com, then open the link from her message feed
  office PIN   sam.poe@example.com with PIN {demo["pin"]} (works once)
  password     create an account at {url}/auth/sign-up, or accept Ana's invitation
Read every code and link in the staff pages: {url}/staff/
  staff login  {demo["staff_email"]} / {demo["staff_password"]}
Stop with Ctrl+C.
""",
            flush=True,
        )
        try:
            app.run(host="127.0.0.1", port=port)
        finally:
            app.extensions["portalauth"].auth.close()


if __name__ == "__main__":
    main()

"""The demo's own pages: a landing page, the client's private home, and the staff pages."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from portalauth import ConfigError, InvalidInput, NotFound, PortalAuthError
from portalauth.config import SECOND_FACTORS
from portalauth.integrations.django.conf import get_auth
from portalauth.integrations.django.decorators import portalauth_required
from portalauth.integrations.django.utils import error_status

from .portal import CLIENT_PORTAL, METHODS
from .staff import staff_required

STYLESHEET = Path(__file__).resolve().parent / "static" / "demo.css"


def when(at: float | None) -> str:
    if at is None:
        return ""
    return datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def stylesheet(request: Any) -> HttpResponse:
    response = HttpResponse(STYLESHEET.read_text(encoding="utf-8"), content_type="text/css")
    response["Cache-Control"] = "max-age=300"
    return response


@require_GET
def landing(request: Any) -> HttpResponse:
    auth = get_auth()
    return render(
        request,
        "demo/landing.html",
        {"portal": auth.portals.get(CLIENT_PORTAL), "identity": request.portalauth_identity},
    )


@portalauth_required
def home(request: Any) -> HttpResponse:
    """The client's private page: who is signed in, how, and the case scope of the session."""
    auth = get_auth()
    identity = request.portalauth_identity
    session = request.portalauth_session
    attributes = dict(identity.attributes)
    case_label = attributes.get("case_label") if attributes.get("case") == session.scope else None
    return render(
        request,
        "demo/home.html",
        {
            "portal": auth.portals.get(CLIENT_PORTAL),
            "identity": identity,
            "session": session,
            "case_label": case_label,
            "signed_in_at": when(session.created_at),
            "password": "password" in auth.portals.get(CLIENT_PORTAL).methods,
        },
    )


# -- staff ---------------------------------------------------------------------------------


def _one(request: Any, name: str) -> str:
    values = request.POST.getlist(name)
    if len(values) > 1:
        raise InvalidInput(field=name)
    return values[0].strip() if values else ""


def _code(error: PortalAuthError) -> int:
    # Staff typed the setting: a refused one is their input's fault, not the server's.
    return 400 if isinstance(error, ConfigError) else error_status(error)


def _party(identity_id: str) -> Any:
    try:
        party = get_auth().directory.get(identity_id)
    except NotFound:
        raise Http404 from None
    if party.portal != CLIENT_PORTAL:
        raise Http404
    return party


def _status(party: Any) -> dict[str, Any]:
    auth = get_auth()
    methods = auth.portals.get(CLIENT_PORTAL).methods
    readiness = auth.directory.readiness(party)
    case = party.attributes.get("case")
    share = auth.share_codes.status(party, case) if case and "share_code" in methods else None
    pin = auth.pins.status(party) if "staff_pin" in methods else None
    return {
        "party": party,
        "case": case or "",
        "case_label": party.attributes.get("case_label", ""),
        "ready": readiness.ready,
        "missing": ", ".join(readiness.missing),
        "invited": f"{party.invited_method} {when(party.invited_at)}"
        if party.invited_method
        else "",
        "last_sign_in": f"{party.last_sign_in_method} {when(party.last_sign_in_at)}"
        if party.last_sign_in_method
        else "",
        "share": f"live until {when(share.expires_at)}" if share and share.invited else "",
        "pin": f"outstanding until {when(pin.expires_at)}" if pin and pin.outstanding else "",
    }


@staff_required
def parties(request: Any) -> HttpResponse:
    auth = get_auth()
    rows = [_status(party) for party in auth.directory.list(CLIENT_PORTAL)]
    return render(request, "demo/parties.html", {"rows": rows, "staff": request.staff})


def _party_fields(request: Any) -> dict[str, Any]:
    fields = {name: _one(request, name) for name in ("name", "email", "phone", "tax_id_last4")}
    case, label = _one(request, "case"), _one(request, "case_label")
    return {
        "name": fields["name"],
        "email": fields["email"] or None,
        "phone": fields["phone"] or None,
        "tax_id_last4": fields["tax_id_last4"] or None,
        "attributes": {"case": case, "case_label": label or case} if case else {},
    }


@csrf_protect
@require_http_methods(["GET", "HEAD", "POST"])
@staff_required
def party_new(request: Any) -> HttpResponse:
    context: dict[str, Any] = {"staff": request.staff, "party": None, "form": {}}
    if request.method == "POST":
        try:
            values = _party_fields(request)
            context["form"] = values
            party = get_auth().directory.add(CLIENT_PORTAL, actor=request.staff.id, **values)
        except PortalAuthError as exc:
            context["error"] = exc
            return render(request, "demo/party.html", context, status=_code(exc))
        return _party_page(request, party, result=f"{party.name} was added.")
    return render(request, "demo/party.html", context)


def _party_page(
    request: Any,
    party: Any,
    *,
    result: str | None = None,
    secret: str | None = None,
    error: PortalAuthError | None = None,
) -> HttpResponse:
    return render(
        request,
        "demo/party.html",
        {
            "staff": request.staff,
            "party": party,
            "status": _status(party),
            "form": {
                "name": party.name,
                "email": party.email or "",
                "phone": party.phone or "",
                "attributes": dict(party.attributes),
            },
            "methods": get_auth().portals.get(CLIENT_PORTAL).methods,
            "result": result,
            "secret": secret,
            "error": error,
        },
        status=_code(error) if error is not None else 200,
    )


@csrf_protect
@require_http_methods(["GET", "HEAD", "POST"])
@staff_required
def party_edit(request: Any, identity_id: str) -> HttpResponse:
    party = _party(identity_id)
    if request.method != "POST":
        return _party_page(request, party)
    try:
        values = _party_fields(request)
        if values["tax_id_last4"] is None:
            del values["tax_id_last4"]  # blank: keep what is stored (it is never shown)
        party = get_auth().directory.update(party.id, actor=request.staff.id, **values)
    except PortalAuthError as exc:
        return _party_page(request, party, error=exc)
    return _party_page(request, party, result="Saved.")


@csrf_protect
@require_POST
@staff_required
def party_action(request: Any, identity_id: str, action: str) -> HttpResponse:
    """Invite and credential actions; a new share code or PIN is shown once, here."""
    auth = get_auth()
    party = _party(identity_id)
    actor = request.staff.id
    case = party.attributes.get("case", "")
    secret = None
    try:
        if action == "share-code":
            if not case:
                raise InvalidInput("Give the party a case first: a share code is for one case.")
            issued = auth.share_codes.issue(
                party,
                scope=case,
                scope_label=party.attributes.get("case_label") or case,
                send=_one(request, "send") == "1",
                actor=actor,
            )
            secret = issued.code
            result = f"Share code for {case} (shown once)" + (
                ", and e-mailed to the party." if issued.sent else "."
            )
        elif action == "revoke-share-code":
            done = auth.share_codes.revoke(party, case, actor=actor)
            result = "Share code revoked." if done else "There was no live share code."
        elif action == "magic-link":
            auth.magic_links.invite(party, actor=actor)
            result = "Sign-in link e-mailed."
        elif action == "password-invite":
            auth.passwords.invite(party, actor=actor)
            result = "Set-your-password invitation e-mailed."
        elif action == "pin":
            pin = auth.pins.issue(party, actor=actor)
            secret = pin.pin
            result = f"PIN (shown once, valid until {when(pin.expires_at)})."
        elif action == "revoke-pin":
            done = auth.pins.revoke(party, actor=actor)
            result = "PIN revoked." if done else "There was no outstanding PIN."
        else:
            raise Http404
    except PortalAuthError as exc:
        return _party_page(request, _party(identity_id), error=exc)
    return _party_page(request, _party(identity_id), result=result, secret=secret)


@require_GET
@staff_required
def messages(request: Any, identity_id: str) -> HttpResponse:
    """The simulated feed: every message the portal recorded for this party, newest first."""
    party = _party(identity_id)
    feed = [
        {"message": message, "at": when(message.created_at)}
        for message in get_auth().outbox.messages(CLIENT_PORTAL, identity=party.id)
    ]
    return render(
        request, "demo/messages.html", {"staff": request.staff, "party": party, "feed": feed}
    )


@csrf_protect
@require_http_methods(["GET", "HEAD", "POST"])
@staff_required
def portal_settings(request: Any) -> HttpResponse:
    """Methods (client authentication by contact code included), sign-up, simulate, second
    factor."""
    auth = get_auth()
    settings = auth.portals.get(CLIENT_PORTAL, fresh=True)
    result = error = None
    if request.method == "POST":
        try:
            methods = set(request.POST.getlist("methods"))
            second = _one(request, "second_factor")
            settings = auth.portals.update(
                CLIENT_PORTAL,
                actor=request.staff.id,
                methods=methods & set(METHODS),
                signup_enabled=_one(request, "signup_enabled") == "1",
                simulate=_one(request, "simulate") == "1",
                second_factor=second,
            )
            result = "Settings saved."
        except PortalAuthError as exc:
            error = exc
    return render(
        request,
        "demo/settings.html",
        {
            "staff": request.staff,
            "settings": settings,
            "methods": [(name, name in settings.methods) for name in METHODS],
            "second_factors": SECOND_FACTORS,
            "result": result,
            "error": error,
        },
        status=_code(error) if error is not None else 200,
    )


@require_GET
@staff_required
def export(request: Any) -> HttpResponse:
    """The access-status CSV (ready, missing, invited, last sign-in) for every party."""
    text = get_auth().directory.export_access_status(CLIENT_PORTAL)
    response = HttpResponse(text, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="access-status.csv"'
    return response

"""The message renderer and the built-in templates, rendered for real."""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

import jinja2
import jinja2.meta
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape

from portalauth.config import PortalSettings
from portalauth.errors import ConfigError, PluginError
from portalauth.rendering import TEMPLATES, Rendered, Renderer

PORTAL = PortalSettings(
    slug="acme",
    name="Acme Law LLP",
    support_phone="+1 202 555 0100",
    base_url="https://portal.acme.example",
)
CODE = "493817"
SHARE_CODE = "K7QX-M2WD-9TPB"
LINK = "https://portal.acme.example/auth/link?t=Zm9vYmFyYmF6cXV4"
CONTEXT: Mapping[str, Any] = {
    "code": CODE,
    "minutes": 10,
    "days": 7,
    "identity_name": "Jane Roe",
    "purpose_label": "sign in",
    "share_code": SHARE_CODE,
    "scope_label": "the documents of case 2024-113",
    "expires_on": "31 March 2026",
    "sign_in_url": "https://portal.acme.example/sign-in",
    "link": LINK,
    "sign_up_url": "https://portal.acme.example/sign-up",
    "how": "reset",
}
SECRETS = {"code": CODE, "share_code": SHARE_CODE, "link": LINK}
CASES = [(name, channel) for name, spec in TEMPLATES.items() for channel in sorted(spec.channels)]
# The GSM 03.38 basic character set (without ESC): what fits 160 characters in one SMS.
GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)

renderer = Renderer()


def context_for(template: str, **changes: Any) -> dict[str, Any]:
    keys = TEMPLATES[template].keys
    context = {k: v for k, v in CONTEXT.items() if k in keys}
    context.update(changes)
    return context


# -- every template, every channel


@pytest.mark.parametrize(("template", "channel"), CASES)
def test_every_template_renders(template: str, channel: str) -> None:
    out = renderer.render(template, channel, context_for(template), PORTAL)

    assert out.subject
    assert out.subject == out.subject.strip()
    assert "\n" not in out.subject
    assert "\r" not in out.subject
    assert "Acme Law LLP" in out.subject
    assert "Acme Law LLP" in out.text
    assert "{{" not in out.text
    assert "{%" not in out.text
    if channel == "sms":
        assert out.html is None
        assert out.text.startswith("Acme Law LLP: ")
    else:
        assert out.html is not None
        assert out.html.startswith("<!DOCTYPE html>")
        assert "+1 202 555 0100" in out.text
        assert "+1 202 555 0100" in out.html
        assert "{{" not in out.html


# Notices (no account, account exists, password changed) carry no secret by design.
_NOTICES = ("no_account", "account_exists", "password_changed")


@pytest.mark.parametrize(("template", "channel"), [c for c in CASES if c[0] not in _NOTICES])
def test_secrets_are_in_the_body_never_in_the_subject(template: str, channel: str) -> None:
    context = context_for(template)
    out = renderer.render(template, channel, context, PORTAL)

    carried = [value for key, value in SECRETS.items() if key in context]
    assert carried
    for secret in carried:
        assert secret not in out.subject
        if secret is LINK and channel == "sms":
            continue
        assert secret in out.text
        if out.html is not None:
            assert str(escape(secret)) in out.html


def test_no_account_carries_no_secret_and_greets_nobody_by_name() -> None:
    out = renderer.render(
        "no_account", "email", {"sign_up_url": None, "identity_name": "X"}, PORTAL
    )
    assert out.html is not None
    assert "Hello," in out.text
    assert "X" not in out.text.replace("Questions?", "")
    assert "invite you" in out.text
    assert "invite you" in out.html
    with_signup = renderer.render(
        "no_account", "email", {"sign_up_url": "https://portal.acme.example/sign-up"}, PORTAL
    )
    assert "https://portal.acme.example/sign-up" in with_signup.text
    assert 'href="https://portal.acme.example/sign-up"' in (with_signup.html or "")


@pytest.mark.parametrize(("template", "channel"), [c for c in CASES if c[1] == "email"])
def test_html_is_self_contained(template: str, channel: str) -> None:
    html = renderer.render(template, channel, context_for(template), PORTAL).html
    assert html is not None
    lowered = html.lower()
    for forbidden in ("<img", "<script", "<link", "<iframe", "<form", "src=", "url(", "@import"):
        assert forbidden not in lowered
    # The only links lead to the portal.
    for href in re.findall(r'href="([^"]*)"', html):
        assert href.startswith("https://portal.acme.example/")


def test_wording_says_how_long_and_never_share() -> None:
    code = renderer.render("code", "email", context_for("code"), PORTAL)
    assert "expires in 10 minutes" in code.text
    assert "Never share this code" in code.text
    assert "never ask you for it" in code.text
    one = renderer.render("code", "email", context_for("code", minutes=1), PORTAL)
    assert "expires in 1 minute." in one.text
    reset = renderer.render("password_reset", "email", context_for("password_reset"), PORTAL)
    assert "If you did not ask for this, ignore this message" in reset.text
    invite = renderer.render("password_invite", "email", context_for("password_invite"), PORTAL)
    assert "expires in 7 days" in invite.text
    share = renderer.render("share_code_invite", "email", context_for("share_code_invite"), PORTAL)
    assert "valid until 31 March 2026" in share.text


def test_footer_without_support_phone() -> None:
    portal = PORTAL.evolve(support_phone=None)
    out = renderer.render("magic_link", "email", context_for("magic_link"), portal)
    assert out.html is not None
    assert "Questions?" not in out.text
    assert "Questions?" not in out.html


def test_greeting_without_a_name() -> None:
    out = renderer.render("code", "email", context_for("code", identity_name=""), PORTAL)
    assert out.text.startswith("Hello,\n")


# -- SMS


@pytest.mark.parametrize(
    ("name", "purpose"),
    [
        ("Acme Law LLP", "sign in"),
        ("Müller & Söhne Rechtsanwälte", "sign in"),
        ("Acme Law LLP", "confirm your phone number"),
    ],
)
def test_sms_is_one_gsm7_message_with_the_origin_bound_line(name: str, purpose: str) -> None:
    portal = PORTAL.evolve(name=name)
    out = renderer.render("code", "sms", context_for("code", purpose_label=purpose), portal)

    assert len(out.text) <= 160
    assert set(out.text) <= GSM7
    assert out.text.startswith(f"{name}: ")
    assert CODE in out.text
    assert "Valid for 10 minutes." in out.text
    assert out.text.splitlines()[-1] == f"@portal.acme.example #{CODE}"


def test_sms_without_base_url_has_no_origin_line() -> None:
    out = renderer.render("code", "sms", context_for("code"), PORTAL.evolve(base_url=None))
    assert "@" not in out.text
    assert "#" not in out.text
    assert out.text.endswith(".")


def test_sms_origin_line_uses_the_host_only() -> None:
    portal = PORTAL.evolve(base_url="https://Portal.Acme.example:8443/clients")
    out = renderer.render("code", "sms", context_for("code"), portal)
    assert out.text.splitlines()[-1] == f"@portal.acme.example #{CODE}"


# -- escaping

EVIL = "<script>alert(1)</script>"


def test_evil_portal_and_identity_names_are_escaped_in_html_only() -> None:
    portal = PORTAL.evolve(name=EVIL)
    out = renderer.render(
        "magic_link", "email", context_for("magic_link", identity_name=EVIL), portal
    )
    assert out.html is not None
    assert "<script" not in out.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out.html
    assert f"Hello {EVIL}," in out.text
    assert EVIL in out.subject


def test_quotes_in_a_link_cannot_break_out_of_the_attribute() -> None:
    link = 'https://portal.acme.example/x?a="onmouseover="alert(1)'
    out = renderer.render("magic_link", "email", context_for("magic_link", link=link), PORTAL)
    assert out.html is not None
    assert '"onmouseover' not in out.html
    assert "&#34;onmouseover=&#34;alert(1)" in out.html


PLACEHOLDER = "Zq9PlaceholderNameZq9"


@settings(max_examples=200, deadline=None)
@given(name=st.text(min_size=1, max_size=60))
def test_identity_names_only_ever_appear_escaped(name: str) -> None:
    template = "password_invite"
    baseline = renderer.render(
        template, "email", context_for(template, identity_name=PLACEHOLDER), PORTAL
    )
    out = renderer.render(template, "email", context_for(template, identity_name=name), PORTAL)

    assert baseline.html is not None
    assert out.html == baseline.html.replace(PLACEHOLDER, str(escape(name)))
    assert out.text == baseline.text.replace(PLACEHOLDER, name)


@settings(max_examples=100, deadline=None)
@given(name=st.text(min_size=1, max_size=80))
def test_portal_names_only_ever_appear_escaped(name: str) -> None:
    try:
        portal = PORTAL.evolve(name=name)
    except ConfigError:
        return  # not a name PortalSettings accepts, so it can never reach a template
    out = renderer.render("code", "email", context_for("code"), portal)
    assert out.html is not None
    assert str(escape(portal.name)) in out.html
    # Take the firm's name out and no markup from it remains.
    assert "<script" not in out.html.replace(str(escape(portal.name)), "")


# -- the override (the portalauth_build_message hook)


def test_override_wins_when_it_returns_a_rendered() -> None:
    calls: list[tuple[str, str, dict[str, Any], PortalSettings]] = []

    def override(
        template: str, channel: str, context: Mapping[str, Any], portal: PortalSettings
    ) -> Rendered | None:
        calls.append((template, channel, dict(context), portal))
        return Rendered(subject=f"  Custom {context['portal_name']}\n", text="Body", html=None)

    out = Renderer(override).render("code", "email", context_for("code"), PORTAL)
    assert out == Rendered(subject="Custom Acme Law LLP", text="Body", html=None)
    ((template, channel, context, portal),) = calls
    assert (template, channel, portal) == ("code", "email", PORTAL)
    assert context["code"] == CODE
    assert context["portal_name"] == "Acme Law LLP"
    assert context["support_phone"] == "+1 202 555 0100"
    assert context["base_url"] == "https://portal.acme.example"


def test_override_returning_none_is_ignored() -> None:
    def override(*args: Any) -> Rendered | None:
        return None

    assert Renderer(override).render("code", "sms", context_for("code"), PORTAL) == renderer.render(
        "code", "sms", context_for("code"), PORTAL
    )


def test_override_may_add_templates_and_sms_subjects_may_be_empty() -> None:
    def override(*args: Any) -> Rendered | None:
        return Rendered(subject="", text="Acme: see you at 10:00.\n")

    out = Renderer(override).render("court_reminder", "sms", {}, PORTAL)
    assert out == Rendered(subject="", text="Acme: see you at 10:00.", html=None)


@pytest.mark.parametrize(
    "rendered",
    [
        Rendered(subject="Hi\r\nBcc: evil@example.com", text="x"),
        Rendered(subject="=?utf-8?q?Hi?=", text="x"),
        Rendered(subject=f"Your code is {CODE}", text="x"),
        Rendered(subject="", text="x"),
    ],
)
def test_override_results_are_checked_too(rendered: Rendered) -> None:
    with pytest.raises(ConfigError):
        Renderer(lambda *a: rendered).render("code", "email", context_for("code"), PORTAL)


def test_override_returning_the_wrong_type_is_a_plugin_error() -> None:
    with pytest.raises(PluginError):
        Renderer(lambda *a: "text").render("code", "email", context_for("code"), PORTAL)  # type: ignore[arg-type]
    broken = Rendered(subject="Hello", text=None)  # type: ignore[arg-type]
    with pytest.raises(PluginError):
        Renderer(lambda *a: broken).render("code", "email", context_for("code"), PORTAL)


# -- errors


def test_portal_branding_cannot_be_overridden_by_the_context() -> None:
    out = renderer.render("code", "email", context_for("code", portal_name="Evil Corp"), PORTAL)
    assert "Evil Corp" not in out.text
    assert "Acme Law LLP" in out.subject


def test_context_keys_cannot_replace_the_shared_macros() -> None:
    plain = renderer.render("magic_link", "email", context_for("magic_link"), PORTAL)
    shadowed = context_for("magic_link", secret="<i>not a macro</i>", button="x")
    out = renderer.render("magic_link", "email", shadowed, PORTAL)
    assert out.html == plain.html and out.text == plain.text


@pytest.mark.parametrize(
    ("template", "channel", "message"),
    [
        ("nonexistent", "email", "no message template named 'nonexistent'"),
        ("magic_link", "sms", "has no sms version"),
        ("code", "fax", "Unknown message channel"),
        ("../code", "email", "Invalid message template name"),
        ("_base", "email", "Invalid message template name"),
    ],
)
def test_unknown_template_or_channel(template: str, channel: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        renderer.render(template, channel, CONTEXT, PORTAL)


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_each_missing_key_is_named(template: str) -> None:
    for key in TEMPLATES[template].keys:
        context = context_for(template)
        del context[key]
        channel = sorted(TEMPLATES[template].channels)[0]
        with pytest.raises(ConfigError, match=key) as info:
            renderer.render(template, channel, context, PORTAL)
        for secret in SECRETS.values():
            assert secret not in str(info.value)


def test_strict_undefined_is_the_second_net() -> None:
    # The catalogue check normally fires first; underneath, templates fail on any missing name.
    with pytest.raises(ConfigError, match="'code' is undefined"):
        renderer._render_file(
            "code.txt", {"portal_name": "Acme", "minutes": 5, "purpose_label": "x"}
        )


@pytest.mark.parametrize(
    "link",
    ["javascript:alert(1)", "ftp://portal.acme.example/x", "/relative", "https://a b.example"],
)
def test_links_must_be_http_urls(link: str) -> None:
    with pytest.raises(ConfigError, match="link"):
        renderer.render("magic_link", "email", context_for("magic_link", link=link), PORTAL)


def test_rendered_repr_hides_the_body() -> None:
    out = renderer.render("code", "email", context_for("code"), PORTAL)
    assert CODE not in repr(out)
    assert "Acme Law LLP" in repr(out)


# -- the catalogue matches the files


def test_catalogue_matches_the_template_files() -> None:
    folder = resources.files("portalauth") / "delivery" / "templates"
    names = {entry.name for entry in folder.iterdir() if entry.is_file()}
    env = jinja2.Environment(autoescape=True)
    env.filters["plural"] = str  # only parsed here, never rendered
    portal_keys = {"portal_name", "support_phone", "base_url", "portal_host"}

    def variables(name: str) -> set[str]:
        return set(jinja2.meta.find_undeclared_variables(env.parse((folder / name).read_text())))

    layout = variables("_base.txt") | variables("_base.html")
    macros = set(re.findall(r"\{% macro (\w+)", (folder / "_macros.html").read_text()))
    for template, spec in TEMPLATES.items():
        files = {f"{template}.subject.txt"}
        if "email" in spec.channels:
            files |= {f"{template}.txt", f"{template}.html"}
        if "sms" in spec.channels:
            files.add(f"{template}.sms.txt")
        assert files <= names, template
        used = set().union(*(variables(f) for f in files)) - macros
        assert used <= spec.keys | spec.optional | portal_keys, template
        assert spec.keys <= used | layout, template
    expected = {n for n in names if not n.startswith("_")}
    listed = {n for n in names if n.split(".", 1)[0] in TEMPLATES}
    assert expected == listed, "a template file that no catalogue entry names"

"""Message rendering: a template name, a channel and a context in; subject, text and HTML out.

Guarantees a caller may rely on:

- **Built-in templates** live in ``portalauth/delivery/templates`` and ship in the wheel. Each one
  is listed in :data:`TEMPLATES` with the channels it supports and the context keys it needs.
- **Branding**: every template receives ``portal_name``, ``support_phone`` and ``base_url`` from
  the :class:`~portalauth.config.PortalSettings` (these always win over a same-named key in the
  caller's context), plus ``portal_host``, the host name of ``base_url`` or ``None``.
- **Escaping**: the HTML part is autoescaped, so a firm name or a person's name can never inject
  markup; the text parts and the SMS carry text literally.
- **Subjects are header-safe**: stripped, and refused (:class:`~portalauth.errors.ConfigError`)
  when they contain a line break or an RFC 2047 encoded word, and refused when they contain a
  secret passed in the context (``code``, ``share_code``, ``link``): subjects show in mail
  previews, notification banners and logs, so secrets go in the body only. This is checked for
  plugin overrides too.
- **Links are http(s)**: ``link``, ``sign_in_url`` and ``sign_up_url`` must be absolute http(s)
  URLs without whitespace, or rendering raises ``ConfigError`` (so no ``javascript:`` URL can
  reach an ``href``).
- **Missing pieces fail loudly**: an unknown template, a channel the template does not support, or
  a missing context key raises ``ConfigError`` naming the template, the channel and the missing
  keys (never their values). Templates render with ``StrictUndefined`` as a second net.
- **SMS** bodies are stripped (the origin-bound ``@host #code`` line must be the last line) and
  their ``subject`` is the e-mail subject of the same template when there is one (a label for the
  outbox feed and audit, never sent to the phone), else ``""``. ``html`` is ``None`` for SMS.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import jinja2
from attrs import field, frozen

from .config import PortalSettings, check_header_text
from .errors import ConfigError, PluginError

__all__ = ["CHANNELS", "TEMPLATES", "Override", "Rendered", "Renderer", "TemplateSpec"]

#: The channels a message can be rendered for.
CHANNELS = ("email", "sms")

# Long enough for any built-in subject around a 200-character firm name (the most
# PortalSettings allows); well under the 998-octet line limit of RFC 5322 before folding.
_SUBJECT_MAX = 400
# Context values that are secrets (or carry one): never allowed in a subject line. Values shorter
# than _SECRET_MIN are not searched for, so a tiny test value cannot match by coincidence.
_SECRET_KEYS = ("code", "share_code", "link")
_SECRET_MIN = 4
_URL_KEYS = ("link", "sign_in_url", "sign_up_url")
_PORTAL_KEYS = ("portal_name", "support_phone", "base_url", "portal_host")
_TEMPLATE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}", re.ASCII)
_URL_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")


@frozen
class Rendered:
    """A rendered message. ``text`` and ``html`` carry secrets, so ``repr()`` leaves them out."""

    subject: str
    text: str = field(repr=False)
    html: str | None = field(default=None, repr=False)


@frozen
class TemplateSpec:
    """What a built-in template supports: its ``channels``, the context ``keys`` it needs and
    the ``optional`` keys it reads when given."""

    channels: frozenset[str]
    keys: frozenset[str]
    optional: frozenset[str] = frozenset()


def _spec(channels: str, keys: str, optional: str = "") -> TemplateSpec:
    return TemplateSpec(
        frozenset(channels.split()), frozenset(keys.split()), frozenset(optional.split())
    )


#: The built-in templates. ``keys`` are needed in addition to the portal keys every template gets.
TEMPLATES: Mapping[str, TemplateSpec] = MappingProxyType(
    {
        "code": _spec("email sms", "code minutes identity_name purpose_label", "code_in_subject"),
        "share_code_invite": _spec(
            "email", "share_code identity_name scope_label expires_on sign_in_url"
        ),
        "magic_link": _spec("email", "link code minutes identity_name"),
        "magic_link_invite": _spec("email", "link days identity_name"),
        "password_invite": _spec("email", "link days identity_name"),
        "password_reset": _spec("email", "link minutes identity_name"),
        "signup_confirm": _spec("email", "link minutes identity_name"),
        "no_account": _spec("email", "sign_up_url"),
        "account_exists": _spec("email", "sign_in_url identity_name"),
        "password_changed": _spec("email", "how identity_name"),
    }
)

#: ``override(template, channel, context, portal)``: return a :class:`Rendered` to replace the
#: built-in template, or ``None`` to use it. The core passes a function that calls the
#: ``portalauth_build_message`` hook.
Override = Callable[[str, str, Mapping[str, Any], PortalSettings], Rendered | None]


def _plural(count: object, word: str) -> str:
    """``10|plural("minute")`` → ``"10 minutes"``; ``1|plural("day")`` → ``"1 day"``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def _host(base_url: str | None) -> str | None:
    if not base_url:
        return None
    host = urlsplit(base_url).hostname
    if not host:
        return None
    # urlsplit drops the brackets of an IPv6 literal; put them back so "@host" stays one token.
    return f"[{host}]" if ":" in host else host


def _check_url(template: str, key: str, value: object) -> None:
    if value is None and key in ("sign_up_url", "sign_in_url"):
        return  # links a notice may go without (no self sign-up, no base_url)
    if not isinstance(value, str) or _URL_BAD_CHARS.search(value):
        raise ConfigError(f"Template {template!r}: {key} must be an absolute http(s) URL.")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"Template {template!r}: {key} must be an absolute http(s) URL.")


def _make_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        # PackageLoader finds the directory through the import system, so it works from a source
        # checkout, an editable install and an installed wheel alike.
        loader=jinja2.PackageLoader("portalauth", "delivery/templates"),
        # Only .html templates are escaped: text parts, SMS and subjects must stay literal.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        # The templates ship with the package and never change while it runs.
        auto_reload=False,
    )
    env.filters["plural"] = _plural
    # The shared macros are globals rather than a "{% from %}" in each template: an import in a
    # template runs again on every render, about a sixth of an HTML part's cost.
    macros = env.get_template("_macros.html").module
    env.globals.update({name: getattr(macros, name) for name in _MACROS})
    return env


#: The shared macros of the HTML templates (``_macros.html``), by name.
_MACROS = ("secret", "button")


class Renderer:
    """Renders the built-in templates, or lets ``override`` (a plugin hook) render instead.

    Thread-safe: it holds no per-call state, and Jinja's template cache is safe to share.
    """

    __slots__ = ("_env", "_override")

    def __init__(self, override: Override | None = None) -> None:
        self._override = override
        self._env = _make_environment()

    def __repr__(self) -> str:
        return f"Renderer(override={self._override!r})"

    def render(
        self, template: str, channel: str, context: Mapping[str, Any], portal: PortalSettings
    ) -> Rendered:
        """Render ``template`` for ``channel`` (``"email"`` or ``"sms"``) and ``portal``.

        The override is asked first; when it returns ``None`` the built-in template is used.
        Either way the result obeys the guarantees in the module docstring. Raises
        :class:`ConfigError` for an unknown template or channel, a missing context key or an
        unsafe subject or link, and :class:`PluginError` when the override returns something
        other than a :class:`Rendered` or ``None``.
        """
        if channel not in CHANNELS:
            raise ConfigError(f"Unknown message channel {channel!r}; use 'email' or 'sms'.")
        if not isinstance(template, str) or not _TEMPLATE_NAME.fullmatch(template):
            raise ConfigError(f"Invalid message template name {template!r}.")
        full = self._context(context, portal)
        for key in _URL_KEYS:
            if key in full:
                _check_url(template, key, full[key])

        if self._override is not None:
            result = self._override(template, channel, MappingProxyType(full), portal)
            if result is not None:
                if not isinstance(result, Rendered):
                    raise PluginError(
                        f"A message override returned {type(result).__name__} for template "
                        f"{template!r}; it must return a Rendered or None."
                    )
                return self._finish(template, channel, result, full)

        spec = TEMPLATES.get(template)
        if spec is None:
            raise ConfigError(f"There is no message template named {template!r}.")
        if channel not in spec.channels:
            raise ConfigError(
                f"Message template {template!r} has no {channel} version "
                f"(it supports: {', '.join(sorted(spec.channels))})."
            )
        missing = sorted(spec.keys - full.keys())
        if missing:
            raise ConfigError(
                f"Message template {template!r} needs context keys it was not given: "
                f"{', '.join(missing)}."
            )

        # One variables mapping for every part, the environment's globals (the shared macros)
        # merged in once: Jinja would otherwise merge them again for each part, about a third
        # of what rendering a part costs.
        shared = {**self._env.globals, **full}
        # The macros win over context keys of the same name, as the "{% from %}" they replace.
        shared.update({name: self._env.globals[name] for name in _MACROS})
        if channel == "sms":
            subject = self._render_file(f"{template}.subject.txt", shared, optional=True) or ""
            text = self._render_file(f"{template}.sms.txt", shared)
            rendered = Rendered(subject=subject, text=text, html=None)
        else:
            rendered = Rendered(
                subject=self._render_file(f"{template}.subject.txt", shared),
                text=self._render_file(f"{template}.txt", shared),
                html=self._render_file(f"{template}.html", shared),
            )
        return self._finish(template, channel, rendered, full)

    # -- helpers

    @staticmethod
    def _context(context: Mapping[str, Any], portal: PortalSettings) -> dict[str, Any]:
        full = dict(context)
        # Branding comes from the portal's settings, never from the caller's context.
        full.update(
            portal_name=portal.name,
            support_phone=portal.support_phone,
            base_url=portal.base_url,
            portal_host=_host(portal.base_url),
        )
        return full

    def _render_file(self, name: str, variables: dict[str, Any], *, optional: bool = False) -> str:
        """Render one file with ``variables``, which must already hold the environment's
        globals."""
        try:
            tmpl = self._env.get_template(name)
        except jinja2.TemplateNotFound:
            if optional:
                return ""
            raise ConfigError(f"The message template file {name!r} is missing.") from None
        try:
            # What Template.render does, on a context that takes ``variables`` as they are
            # (``shared=True``: no copy, no second merge of the globals; rendering never
            # writes to it).
            return "".join(tmpl.root_render_func(tmpl.new_context(variables, shared=True)))
        except jinja2.UndefinedError as exc:
            # The message names the missing variable, never a context value; dropping the
            # chained traceback keeps context values out of logs that print frame locals.
            raise ConfigError(f"Message template {name!r} failed: {exc.message}.") from None
        except jinja2.TemplateError as exc:
            raise ConfigError(f"Message template {name!r} failed: {type(exc).__name__}.") from None

    @staticmethod
    def _finish(
        template: str, channel: str, rendered: Rendered, context: Mapping[str, Any]
    ) -> Rendered:
        if not (
            isinstance(rendered.subject, str)
            and isinstance(rendered.text, str)
            and (rendered.html is None or isinstance(rendered.html, str))
        ):
            raise PluginError(f"Message {template!r}: subject, text and html must be text.")
        subject = rendered.subject.strip()
        if subject or channel == "email":
            # An SMS may go without a subject (it never has one on the phone); an e-mail may not.
            subject = check_header_text(
                subject, f"Subject of message {template!r}", max_len=_SUBJECT_MAX
            )
        for key in _SECRET_KEYS:
            if key == "code" and context.get("code_in_subject") is True:
                # The portal opted in (some clients read codes from notification previews).
                continue
            value = context.get(key)
            secret = "" if value is None else str(value)
            if len(secret) >= _SECRET_MIN and secret in subject:
                raise ConfigError(
                    f"Subject of message {template!r} contains the {key}; secrets belong in "
                    "the body only."
                )
        text = rendered.text
        html = rendered.html
        if channel == "sms":
            # The origin-bound "@host #code" line only works as the very last line.
            text = text.strip()
            html = None
        if (subject, text, html) == (rendered.subject, rendered.text, rendered.html):
            return rendered
        return Rendered(subject=subject, text=text, html=html)

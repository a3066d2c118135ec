"""The ``PORTALAUTH`` setting, read once and re-read when a test overrides it.

::

    PORTALAUTH = {
        "AUTH": "myproject.portal.get_auth",  # dotted path to an Auth, or a factory returning one
        "PORTAL": "acme",  # the portal slug, or a callable(request) -> slug (or its dotted path)
        "COOKIE_NAME": None,  # default "__Host-portalauth" when Secure, else "portalauth"
        "COOKIE_SECURE": None,  # default: not DEBUG
        "TRUSTED_PROXIES": 0,  # reverse proxies whose X-Forwarded-For entry is trusted
        "HOME_URL": "/",  # where a client lands after signing in (when no safe ``next``)
        "SIGNED_OUT_URL": None,  # where sign-out leads (default: the chooser)
    }

``AUTH`` may also be an :class:`~portalauth.Auth` object. A factory is called once per process
(and again after ``override_settings`` changes ``PORTALAUTH``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from ...auth import Auth
from ...errors import ConfigError

__all__ = ["Settings", "get_auth", "get_settings", "portal_for"]

_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?", re.ASCII)
_KNOWN = {
    "AUTH",
    "PORTAL",
    "COOKIE_NAME",
    "COOKIE_SECURE",
    "TRUSTED_PROXIES",
    "HOME_URL",
    "SIGNED_OUT_URL",
}


class Settings:
    """The validated ``PORTALAUTH`` setting."""

    def __init__(self, raw: dict[str, Any], debug: bool) -> None:
        unknown = set(raw) - _KNOWN
        if unknown:
            raise ConfigError(f"Unknown PORTALAUTH settings: {', '.join(sorted(unknown))}.")
        if "AUTH" not in raw or "PORTAL" not in raw:
            raise ConfigError("PORTALAUTH needs AUTH and PORTAL.")
        self.auth = _load_auth(raw["AUTH"])
        self.portal = _load_portal(raw["PORTAL"])
        secure = raw.get("COOKIE_SECURE")
        self.cookie_secure: bool = (not debug) if secure is None else bool(secure)
        name = raw.get("COOKIE_NAME")
        if name is None:
            name = "__Host-portalauth" if self.cookie_secure else "portalauth"
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", name):
            raise ConfigError("PORTALAUTH COOKIE_NAME must be 1-64 letters, digits, - or _.")
        if name.startswith("__Host-") and not self.cookie_secure:
            raise ConfigError("A __Host- cookie needs COOKIE_SECURE (browsers drop it otherwise).")
        self.cookie_name: str = name
        proxies = raw.get("TRUSTED_PROXIES", 0)
        if not isinstance(proxies, int) or isinstance(proxies, bool) or not 0 <= proxies <= 10:
            raise ConfigError("PORTALAUTH TRUSTED_PROXIES must be a whole number 0-10.")
        self.trusted_proxies: int = proxies
        self.home_url: str = str(raw.get("HOME_URL") or "/")
        signed_out = raw.get("SIGNED_OUT_URL")
        self.signed_out_url: str | None = str(signed_out) if signed_out else None


def _load_auth(value: object) -> Auth:
    if isinstance(value, str):
        value = import_string(value)
    if isinstance(value, Auth):
        return value
    if callable(value):
        made = value()
        if isinstance(made, Auth):
            return made
    raise ConfigError("PORTALAUTH AUTH must be an Auth, a factory returning one, or its path.")


def _load_portal(value: object) -> str | Callable[[Any], str]:
    if isinstance(value, str) and _SLUG.fullmatch(value):
        return value
    if isinstance(value, str) and "." in value:
        value = import_string(value)
    if callable(value):
        return value
    raise ConfigError("PORTALAUTH PORTAL must be a portal slug or a callable(request).")


_cache: dict[str, Settings] = {}


def get_settings() -> Settings:
    """The current ``PORTALAUTH`` settings (built on first use)."""
    current = _cache.get("settings")
    if current is None:
        raw = getattr(django_settings, "PORTALAUTH", None)
        if not isinstance(raw, dict):
            raise ConfigError("Set PORTALAUTH = {'AUTH': ..., 'PORTAL': ...} in settings.")
        current = _cache["settings"] = Settings(raw, bool(getattr(django_settings, "DEBUG", False)))
    return current


def get_auth() -> Auth:
    """The :class:`~portalauth.Auth` the pages use."""
    return get_settings().auth


def portal_for(request: Any) -> str:
    """The portal slug for ``request``."""
    portal = get_settings().portal
    slug = portal if isinstance(portal, str) else portal(request)
    if not isinstance(slug, str) or not _SLUG.fullmatch(slug):
        raise ConfigError("PORTALAUTH PORTAL returned something that is not a portal slug.")
    return slug


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting in ("PORTALAUTH", "DEBUG"):
        _cache.clear()


setting_changed.connect(_reset, dispatch_uid="portalauth.integrations.django.conf")

"""Per-portal settings.

A :class:`PortalSettings` is an immutable, validated value. Staff change a portal at run time by
building a new one with :meth:`PortalSettings.evolve` and saving it through ``auth.portals``; the
store keeps it as JSON, so every app server sees the change.

Each strategy reads its own settings from ``method_settings[strategy_name]``, validated by the
strategy's ``configure()`` when the portal is saved.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs
from attrs import field, frozen

from .errors import ConfigError

__all__ = ["SECOND_FACTORS", "PortalSettings", "check_header_text"]

_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?", re.ASCII)
# Characters that end or fold a mail header line, and RFC 2047 encoded words (which may decode to
# them): never allowed in text that reaches a Subject or a From display name (R61).
_HEADER_BREAKERS = re.compile(r"[\r\n\x00\x0b\x0c\x85\u2028\u2029]|=\?")
_REGION = re.compile(r"[A-Z]{2}", re.ASCII)

SECOND_FACTORS = ("none", "sms_code", "email_code", "tax_id_last4")
REQUIRED_FIELDS = ("email", "mobile", "tax_id_last4")


def check_header_text(value: str, what: str, *, max_len: int = 200) -> str:
    """Validate text that will appear in a mail header; raise :class:`ConfigError` if unsafe."""
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be text.")
    if _HEADER_BREAKERS.search(value):
        raise ConfigError(f"{what} may not contain line breaks or encoded words.")
    if not value.strip() or len(value) > max_len:
        raise ConfigError(f"{what} must be 1 to {max_len} characters.")
    return value.strip()


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _freeze_methods(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        raise ConfigError("methods must be a collection of strategy names, not one string.")
    return frozenset(value)


def _freeze_mapping(value: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Mapping[str, Any]]:
    return MappingProxyType({str(k): MappingProxyType(dict(v)) for k, v in dict(value).items()})


def _positive(lo: int, hi: int) -> Any:
    def check(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise ConfigError(f"{attribute.name} must be a whole number from {lo} to {hi}.")

    return check


def _slug(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not _SLUG.fullmatch(value):
        raise ConfigError("slug must be 1-64 lowercase letters, digits and hyphens.")


def _name(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    check_header_text(value, attribute.name)


def _optional_header(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None:
        check_header_text(value, attribute.name, max_len=64)


def _region(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not _REGION.fullmatch(value):
        raise ConfigError("default_region must be a two-letter ISO country code such as 'US'.")


def _regions(instance: object, attribute: attrs.Attribute[Any], value: frozenset[str]) -> None:
    for region in value:
        _region(instance, attribute, region)


def _base_url(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not re.fullmatch(
        r"https?://[A-Za-z0-9.\-:\[\]]+(/\S*)?", value
    ):
        raise ConfigError(
            "base_url must be an absolute http(s) URL such as https://portal.example."
        )


def _second_factor(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in SECOND_FACTORS:
        raise ConfigError(f"second_factor must be one of {', '.join(SECOND_FACTORS)}.")


def _required(instance: object, attribute: attrs.Attribute[Any], value: frozenset[str]) -> None:
    unknown = set(value) - set(REQUIRED_FIELDS)
    if unknown:
        raise ConfigError(f"required_fields may name only {', '.join(REQUIRED_FIELDS)}.")


@frozen(kw_only=True)
class PortalSettings:
    """One portal's settings. Every field has a safe default.

    Attributes callers may rely on:

    - ``slug``: the portal's identifier in URLs and in every record.
    - ``name``: the firm's or agency's name, shown on pages and in every message (branding).
    - ``methods``: the enabled strategy names; a method not listed raises ``MethodDisabled``.
    - ``simulate``: record messages in the outbox feed instead of delivering them.
    - ``helpful_errors``: opt in to answers that say an identifier is unknown (off by default:
      unknown and known identifiers get the same answer).
    - ``session_idle`` / ``session_absolute``: session lifetimes in seconds.
    - ``failure_budget``: consecutive failed verifications per identity and method before
      escalating delays begin; ``failure_hard_limit`` is where that method locks until a success
      through a recovery path (NIST SP 800-63B-4 §3.2.2 allows at most 100).
    """

    slug: str = field(validator=_slug)
    name: str = field(converter=_strip, validator=_name)
    methods: frozenset[str] = field(default=frozenset(), converter=_freeze_methods)
    signup_enabled: bool = False
    simulate: bool = False
    helpful_errors: bool = False
    default_region: str = field(default="US", validator=_region)
    sms_countries: frozenset[str] = field(
        default=frozenset({"US"}), converter=frozenset, validator=_regions
    )
    support_phone: str | None = field(default=None, validator=_optional_header)
    base_url: str | None = field(default=None, validator=_base_url)
    session_idle: int = field(default=3600, validator=_positive(60, 30 * 86400))
    session_absolute: int = field(default=86400, validator=_positive(60, 30 * 86400))
    required_fields: frozenset[str] = field(
        default=frozenset(), converter=frozenset, validator=_required
    )
    second_factor: str = field(default="none", validator=_second_factor)
    failure_budget: int = field(default=10, validator=_positive(1, 100))
    failure_hard_limit: int = field(default=100, validator=_positive(1, 100))
    method_settings: Mapping[str, Mapping[str, Any]] = field(
        factory=dict, converter=_freeze_mapping, eq=True
    )

    def __attrs_post_init__(self) -> None:
        if self.session_idle > self.session_absolute:
            raise ConfigError("session_idle cannot be longer than session_absolute.")
        if self.failure_budget > self.failure_hard_limit:
            raise ConfigError("failure_budget cannot exceed failure_hard_limit.")

    def evolve(self, **changes: Any) -> PortalSettings:
        """A copy with ``changes`` applied and validated again."""
        return attrs.evolve(self, **changes)

    def settings_for(self, method: str) -> Mapping[str, Any]:
        """The raw settings stored for one strategy (validated by that strategy)."""
        return self.method_settings.get(method, MappingProxyType({}))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reverses it."""
        return {
            "slug": self.slug,
            "name": self.name,
            "methods": sorted(self.methods),
            "signup_enabled": self.signup_enabled,
            "simulate": self.simulate,
            "helpful_errors": self.helpful_errors,
            "default_region": self.default_region,
            "sms_countries": sorted(self.sms_countries),
            "support_phone": self.support_phone,
            "base_url": self.base_url,
            "session_idle": self.session_idle,
            "session_absolute": self.session_absolute,
            "required_fields": sorted(self.required_fields),
            "second_factor": self.second_factor,
            "failure_budget": self.failure_budget,
            "failure_hard_limit": self.failure_hard_limit,
            "method_settings": {k: dict(v) for k, v in self.method_settings.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PortalSettings:
        known = {a.name for a in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

"""Shared checks for strategy settings: one place that turns raw mappings into settings objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import attrs

from .errors import ConfigError
from .ratelimit import parse_limit

__all__ = ["check_limit", "int_range", "settings_from"]

_S = TypeVar("_S")


def check_limit(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """An attrs validator: ``value`` is a rate limit such as ``"5/hour;50/day"``."""
    parse_limit(value)


def int_range(lo: int, hi: int) -> Any:
    """An attrs validator: a whole number (not a bool) from ``lo`` to ``hi``; ``ConfigError``
    naming the setting otherwise."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise ConfigError(f"{attribute.name} must be a whole number from {lo} to {hi}.")

    return check


def settings_from(cls: type[_S], raw: Mapping[str, Any], method: str) -> _S:
    """Build a strategy's settings object from the portal's raw mapping; unknown keys and wrong
    types are a :class:`ConfigError` naming the method, never a ``TypeError``."""
    known = {a.name for a in attrs.fields(cls)}  # type: ignore[arg-type]
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"Unknown {method} settings: {', '.join(sorted(unknown))}.")
    try:
        return cls(**raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Invalid {method} settings: {exc}") from None

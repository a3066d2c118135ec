"""The plugin manager: built-in and third-party plugins, registered the same way.

Each :class:`~portalauth.auth.Auth` owns one :class:`Plugins` (nothing is built at import time, so
two apps in one process never share plugins). It registers the built-in modules listed in
:data:`BUILTIN`, then any plugins passed in code, then (unless turned off) the ``portalauth``
entry-point group, and calls ``check_pending()`` so a misspelt ``portalauth_*`` hook fails loudly.
Callers use the typed methods below and never touch pluggy's untyped results.

Set the environment variable ``PORTALAUTH_DISABLE_PLUGINS=1`` (or pass ``entry_points=False``) to
load no third-party plugins, e.g. while investigating a problem.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pluggy

from . import hooks
from .config import PortalSettings
from .delivery.base import Sender
from .errors import PluginError
from .events import Event
from .flows import Attempt
from .records import Identity
from .rendering import Rendered
from .stores.base import Store
from .strategies.base import Strategy

__all__ = ["BUILTIN", "DISABLE_ENV", "ENTRY_POINT_GROUP", "Plugins"]

ENTRY_POINT_GROUP = "portalauth"
DISABLE_ENV = "PORTALAUTH_DISABLE_PLUGINS"

#: The built-in plugin modules, registered exactly as third-party plugins are.
BUILTIN: tuple[str, ...] = (
    "portalauth.stores",
    "portalauth.delivery",
    "portalauth.strategies.share_code",
    "portalauth.strategies.contact_otp",
    "portalauth.strategies.staff_pin",
    "portalauth.strategies.magic_link",
    "portalauth.strategies.password",
)

# Names the core uses for its own steps and failure counts.
_RESERVED = frozenset({"second_factor"})
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}", re.ASCII)
_log = logging.getLogger("portalauth.plugins")

StoreFactory = Callable[[str], Store]
SenderFactory = Callable[[str], Sender]


class Plugins:
    """The plugins of one ``Auth``: strategies, stores, senders and the other hooks."""

    def __init__(
        self,
        plugins: Iterable[object] = (),
        *,
        builtins: bool = True,
        entry_points: bool | None = None,
    ) -> None:
        self._pm = pluggy.PluginManager(hooks.PROJECT)
        self._pm.add_hookspecs(hooks)
        if builtins:
            for module_name in BUILTIN:
                self._pm.register(importlib.import_module(module_name), name=module_name)
        for plugin in plugins:
            if isinstance(plugin, type):
                raise PluginError(f"Pass a plugin instance or module, not the class {plugin!r}.")
            try:
                self._pm.register(plugin)
            except ValueError:
                raise PluginError(
                    f"The plugin {type(plugin).__name__} is registered twice."
                ) from None
        if entry_points is None:
            entry_points = os.environ.get(DISABLE_ENV, "") not in ("1", "true", "yes")
        if entry_points:
            try:
                self._pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
            except Exception as exc:
                raise PluginError(f"A portalauth plugin failed to load: {exc}") from exc
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(str(exc)) from exc
        self._strategies = self._collect_strategies()
        self._stores = self._collect_factories(self._pm.hook.portalauth_add_stores(), "store")
        self._senders = self._collect_factories(self._pm.hook.portalauth_add_senders(), "sender")

    def register(self, plugin: object) -> None:
        """Not supported after construction: pass plugins to ``Auth(plugins=[...])``."""
        raise PluginError("Register plugins when the Auth is built: Auth(plugins=[...]).")

    # -- collected once -------------------------------------------------------------------
    def _collect_strategies(self) -> dict[str, Strategy]:
        found: dict[str, Strategy] = {}
        for batch in self._pm.hook.portalauth_add_strategies():
            for strategy in batch or ():
                if not isinstance(strategy, Strategy):
                    raise PluginError(f"{strategy!r} is not a portalauth strategy.")
                name = strategy.name
                if not isinstance(name, str) or not _NAME.fullmatch(name):
                    raise PluginError(f"Strategy name {name!r} is not a valid name.")
                if name in found:
                    raise PluginError(f"Two strategies are named {name!r}.")
                if name in _RESERVED:
                    raise PluginError(f"The name {name!r} is reserved by the core.")
                found[name] = strategy
        return found

    @staticmethod
    def _collect_factories(
        batches: list[Mapping[str, Any]], what: str
    ) -> dict[str, Callable[[str], Any]]:
        found: dict[str, Callable[[str], Any]] = {}
        for batch in batches:
            for scheme, factory in (batch or {}).items():
                if scheme in found:
                    raise PluginError(f"Two {what} plugins claim the URI scheme {scheme!r}.")
                if not callable(factory):
                    raise PluginError(f"The {what} factory for {scheme!r} is not callable.")
                found[scheme] = factory
        return found

    # -- typed access ---------------------------------------------------------------------
    @property
    def strategies(self) -> Mapping[str, Strategy]:
        return self._strategies

    def strategy(self, name: str) -> Strategy | None:
        return self._strategies.get(name)

    def store_factory(self, scheme: str) -> StoreFactory | None:
        return self._stores.get(scheme)

    def sender_factory(self, scheme: str) -> SenderFactory | None:
        return self._senders.get(scheme)

    @property
    def store_schemes(self) -> frozenset[str]:
        return frozenset(self._stores)

    @property
    def sender_schemes(self) -> frozenset[str]:
        return frozenset(self._senders)

    def build_message(
        self, template: str, channel: str, context: Mapping[str, Any], portal: PortalSettings
    ) -> Rendered | None:
        result = self._pm.hook.portalauth_build_message(
            template=template, channel=channel, context=context, portal=portal
        )
        if result is not None and not isinstance(result, Rendered):
            raise PluginError("portalauth_build_message must return a Rendered or None.")
        return result

    def check_attempt(self, attempt: Attempt) -> str | None:
        """The first veto reason a plugin gives, or ``None``. A plugin that raises vetoes
        (fail closed: a broken risk check must not wave attempts through)."""
        try:
            reasons = self._pm.hook.portalauth_check_attempt(attempt=attempt)
        except Exception:
            _log.exception("portalauth_check_attempt raised; refusing the attempt")
            return "check_failed"
        for reason in reasons:
            if reason:
                return str(reason)
        return None

    def session_claims(
        self, identity: Identity, portal: PortalSettings, method: str
    ) -> dict[str, Any]:
        """Merged claims; a plugin that raises or returns something that is not a JSON-ready
        mapping is a :class:`PluginError` (the sign-in fails closed)."""
        claims: dict[str, Any] = {}
        try:
            results = self._pm.hook.portalauth_session_claims(
                identity=identity, portal=portal, method=method
            )
        except Exception as exc:
            raise PluginError("A portalauth_session_claims plugin failed.") from exc
        # pluggy calls the last-registered first; apply in registration order so later wins.
        for extra in reversed(results):
            if extra is None:
                continue
            if not isinstance(extra, Mapping):
                raise PluginError("portalauth_session_claims must return a mapping or None.")
            claims.update(extra)
        try:
            json.dumps(claims)
        except (TypeError, ValueError):
            raise PluginError("Session claims must be JSON values.") from None
        return claims

    def event(self, event: Event) -> None:
        """Deliver an event to every listener; one that raises is logged and skipped, so a
        broken listener never hides events from the others or breaks the operation."""
        for impl in self._pm.hook.portalauth_event.get_hookimpls():
            if impl.hookwrapper or impl.wrapper:
                continue  # wrappers have nothing to wrap here: each listener is called alone
            try:
                impl.function(*(event for _ in impl.argnames))
            except Exception:
                _log.exception("portalauth_event listener %s raised", impl.plugin_name)

    @property
    def has_event_listeners(self) -> bool:
        return bool(self._pm.hook.portalauth_event.get_hookimpls())

"""The hook specifications: every extension point of portalauth, in one module.

Built-in strategies, stores and senders are registered through these same hooks, exactly as a
third party's plugins are (those arrive through the ``portalauth`` entry-point group). Every hook
name starts with ``portalauth_``. Implement one with :data:`hookimpl`::

    from portalauth.hooks import hookimpl

    @hookimpl
    def portalauth_add_strategies():
        return [MyStrategy()]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .config import PortalSettings
    from .delivery.base import Sender
    from .events import Event
    from .flows import Attempt
    from .records import Identity
    from .rendering import Rendered
    from .stores.base import Store
    from .strategies.base import Strategy

__all__ = ["PROJECT", "hookimpl", "hookspec"]

PROJECT = "portalauth"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def portalauth_add_strategies() -> list[Strategy]:  # type: ignore[empty-body]
    """Return strategy objects to make available (a name used twice is a ``PluginError``)."""


@hookspec
def portalauth_add_stores() -> Mapping[str, Callable[[str], Store]]:  # type: ignore[empty-body]
    """Return ``{uri_scheme: factory}``; ``factory(uri)`` builds a store for that URI."""


@hookspec
def portalauth_add_senders() -> Mapping[str, Callable[[str], Sender]]:  # type: ignore[empty-body]
    """Return ``{uri_scheme: factory}``; ``factory(uri)`` builds a sender for that URI."""


@hookspec(firstresult=True)
def portalauth_build_message(
    template: str, channel: str, context: Mapping[str, Any], portal: PortalSettings
) -> Rendered | None:
    """Render a message yourself (override a built-in template); ``None`` to pass."""


@hookspec
def portalauth_check_attempt(attempt: Attempt) -> str | None:
    """Veto a sign-in attempt before the strategy runs (risk checks, geo rules).

    Return a short reason to refuse (the client sees the generic throttled answer), or ``None``.
    """


@hookspec
def portalauth_session_claims(
    identity: Identity, portal: PortalSettings, method: str
) -> Mapping[str, Any] | None:
    """Return extra claims to store on a new session (merged; later plugins win on clashes)."""


@hookspec
def portalauth_event(event: Event) -> None:
    """Receive every audit event. Must not raise; an exception is logged and swallowed."""

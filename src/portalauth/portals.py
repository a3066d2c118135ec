"""Portals: the per-portal settings staff change at run time, kept in the store.

``auth.portals`` creates, saves and reads :class:`~portalauth.config.PortalSettings`. Reads are
cached for a few seconds per :class:`Portals` (per ``Auth``), so a sign-in does not re-read and
re-parse the settings on every step; a save through this object takes effect here at once, and on
other app servers within the cache lifetime.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .clock import Clock
from .config import PortalSettings
from .errors import NotFound
from .events import Emitter
from .stores.base import Store

__all__ = ["Portals"]


class Portals:
    """Create, change and read portals."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        emitter: Emitter,
        validate: Callable[[PortalSettings], None],
        *,
        cache_seconds: float = 2.0,
    ) -> None:
        self._store = store
        self._clock = clock
        self._emitter = emitter
        self._validate = validate
        self._cache_seconds = cache_seconds
        # slug -> (settings, monotonic time read). Monotonic is right here: this is a local cache
        # lifetime, never persisted or compared with stored times.
        self._cache: dict[str, tuple[PortalSettings, float]] = {}
        self._lock = threading.Lock()

    def create(self, slug: str, name: str, **settings: Any) -> PortalSettings:
        """Create (or replace) a portal from keyword settings; return the saved settings."""
        return self.save(PortalSettings(slug=slug, name=name, **settings))

    def save(self, settings: PortalSettings, *, actor: str | None = None) -> PortalSettings:
        """Validate ``settings`` against the installed strategies and store them."""
        self._validate(settings)
        self._store.put_portal(settings, self._clock.now())
        with self._lock:
            self._cache[settings.slug] = (settings, time.monotonic())
        self._emitter.emit("portal.saved", portal=settings.slug, actor=actor)
        return settings

    def update(self, slug: str, *, actor: str | None = None, **changes: Any) -> PortalSettings:
        """Change some settings of an existing portal."""
        return self.save(self.get(slug, fresh=True).evolve(**changes), actor=actor)

    def get(self, slug: str, *, fresh: bool = False) -> PortalSettings:
        """The portal's settings; raises :class:`NotFound` for an unknown slug."""
        found = self.find(slug, fresh=fresh)
        if found is None:
            raise NotFound("No such portal.")
        return found

    def find(self, slug: object, *, fresh: bool = False) -> PortalSettings | None:
        """The portal's settings, or ``None`` (also for a non-string or oversized slug)."""
        if not isinstance(slug, str) or not 0 < len(slug) <= 64:
            return None
        if not fresh:
            with self._lock:
                cached = self._cache.get(slug)
            if cached is not None and time.monotonic() - cached[1] < self._cache_seconds:
                return cached[0]
        settings = self._store.get_portal(slug)
        if settings is not None:
            with self._lock:
                self._cache[slug] = (settings, time.monotonic())
        return settings

    def list(self) -> list[PortalSettings]:
        return self._store.list_portals()

"""Built-in stores, offered through the ``portalauth_add_stores`` hook like any plugin's.

``memory://`` keeps everything in this process (tests, demos); ``sqlite:///path`` is the embedded
default; ``postgresql://`` (or ``postgres://``) is PostgreSQL, shared by many app servers (the
``postgres`` extra); ``redis://`` (or ``rediss://``) is Redis, for the hot records (the ``redis``
extra); ``composite://?records=<uri>&hot=<uri>`` keeps portals and identities in one store and
the rest in another. A store is chosen by URI: ``Auth(store="sqlite:///portal.db")``. Store
modules are imported only when a URI of theirs is opened.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..errors import ConfigError
from ..hooks import hookimpl
from .base import Store

__all__ = ["Store"]


def _memory(uri: str) -> Store:
    from .memory import MemoryStore

    return MemoryStore(uri)


def _sql(uri: str) -> Store:
    from .sql import SQLStore

    return SQLStore(uri)


def _redis(uri: str) -> Store:
    try:
        from .redis import RedisStore
    except ImportError as exc:
        raise ConfigError(
            "redis:// stores need redis-py: pip install 'portalauth[redis]'."
        ) from exc
    return RedisStore(uri)


def _composite(uri: str) -> Store:
    from .composite import CompositeStore

    return CompositeStore.from_uri(uri)


@hookimpl
def portalauth_add_stores() -> Mapping[str, Callable[[str], Store]]:
    return {
        "memory": _memory,
        "sqlite": _sql,
        "postgresql": _sql,
        "postgres": _sql,
        "redis": _redis,
        "rediss": _redis,
        "composite": _composite,
    }

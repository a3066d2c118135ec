"""Built-in stores, offered through the ``portalauth_add_stores`` hook like any plugin's.

``memory://`` keeps everything in this process (tests, demos); ``sqlite:///path`` is the embedded
default. A store is chosen by URI: ``Auth(store="sqlite:///portal.db")``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..hooks import hookimpl
from .base import Store

__all__ = ["Store"]


def _memory(uri: str) -> Store:
    from .memory import MemoryStore

    return MemoryStore(uri)


def _sql(uri: str) -> Store:
    from .sql import SQLStore

    return SQLStore(uri)


@hookimpl
def portalauth_add_stores() -> Mapping[str, Callable[[str], Store]]:
    return {"memory": _memory, "sqlite": _sql}

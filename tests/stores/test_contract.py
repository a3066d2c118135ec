"""The store contract, run on every store kind of the ``store`` fixture (tests/conftest.py)."""

from __future__ import annotations

from portalauth.testing import StoreContract


class TestStoreContract(StoreContract):
    """Every contract test, once per store kind (the ``store`` fixture is in tests/conftest.py)."""


#: Stores that need a server run the same contract in their own module, against a real server
#: the fixtures start (the ``store`` fixture stays on the embedded stores, so the whole suite
#: does not multiply by every backend).
SERVER_STORES = {
    "postgresql": "test_postgres.py",
    "postgres": "test_postgres.py",
    "redis": "test_redis.py",
    "rediss": "test_redis.py",
    "composite": "test_redis.py",
}


def test_every_registered_store_scheme_runs_the_contract(store_kinds: tuple[str, ...]) -> None:
    # The schemes the library registers itself (no third-party entry points): each must run the
    # contract, through the ``store`` fixture or a StoreContract subclass in its own module.
    from pathlib import Path

    from portalauth.plugins import Plugins

    registered = Plugins(entry_points=False).store_schemes
    missing = registered - set(store_kinds) - set(SERVER_STORES)
    assert not missing, f"stores that never run the contract: {missing}"
    here = Path(__file__).parent
    for scheme, module in SERVER_STORES.items():
        text = (here / module).read_text()
        assert "(StoreContract)" in text, f"{module} runs no StoreContract for {scheme}"

"""The store contract, run on every store kind of the ``store`` fixture (tests/conftest.py)."""

from __future__ import annotations

from portalauth.testing import StoreContract


class TestStoreContract(StoreContract):
    """Every contract test, once per store kind (the ``store`` fixture is in tests/conftest.py)."""


def test_every_registered_store_scheme_is_a_store_kind(store_kinds: tuple[str, ...]) -> None:
    # The schemes the library registers itself (no third-party entry points): a new built-in
    # store must be added to STORE_KINDS, and so to the ``store`` fixture's params.
    from portalauth.plugins import Plugins

    registered = Plugins(entry_points=False).store_schemes
    assert registered <= set(store_kinds), f"not in STORE_KINDS: {registered - set(store_kinds)}"

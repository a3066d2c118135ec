"""Fixtures and reporting for the security suite."""

from __future__ import annotations

import os

import pytest

from .helpers import MEASURED
from .leaks import SecretLeaks, secret_leaks  # noqa: F401 (the fixture, by name)


def slow_enabled(config: pytest.Config) -> bool:
    """Slow statistical tests run with ``--run-slow`` (when a conftest provides that option) or
    with ``PORTALAUTH_SLOW=1`` in the environment; pyproject's ``slow`` marker documents the
    option, but no ``--run-slow`` option is defined yet."""
    try:
        if config.getoption("--run-slow"):
            return True
    except ValueError:
        pass
    return os.environ.get("PORTALAUTH_SLOW", "").strip().lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if slow_enabled(config):
        return
    skip = pytest.mark.skip(reason="slow statistical test: set PORTALAUTH_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords and "security" in item.nodeid:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_secret_leaks(request: pytest.FixtureRequest) -> SecretLeaks:  # R66
    """Every security test fails if a secret issued during it leaks (see ``leaks.py``)."""
    scan: SecretLeaks = request.getfixturevalue("secret_leaks")
    return scan


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if MEASURED:
        terminalreporter.section("targeted online guesser, 30 days, default settings")
        for line in MEASURED:
            terminalreporter.write_line(line)

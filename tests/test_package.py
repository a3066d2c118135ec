"""The package itself: imports cleanly, with no removed or deprecated stdlib modules."""

from __future__ import annotations

import subprocess
import sys


def test_importing_raises_no_warning_and_never_imports_crypt() -> None:  # R46
    code = (
        "import sys, portalauth, portalauth.stores.sql, portalauth.delivery.smtp; "
        "assert 'crypt' not in sys.modules, 'crypt'; "
        "print(portalauth.__name__)"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "portalauth"


def test_the_hasher_comes_from_the_maintained_libpass() -> None:  # R46
    # libpass installs under the ``passlib`` name; the unmaintained passlib 1.7 would import
    # the removed ``crypt`` module on Python 3.13.
    from importlib.metadata import PackageNotFoundError, distribution

    assert distribution("libpass").version
    try:
        distribution("passlib")
    except PackageNotFoundError:
        pass
    else:  # pragma: no cover - a broken environment
        raise AssertionError("the unmaintained passlib distribution is installed")

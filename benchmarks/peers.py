"""Peers: django-sesame (a signed sign-in link) and django-otp's e-mail device (an e-mailed code).

A minimal Django in this process: ``settings.configure`` with a SQLite file in the benchmark's
temporary directory (WAL, ``synchronous=NORMAL`` and ``BEGIN IMMEDIATE``, as the portalauth
SQLite store), ``migrate``, 256 users with an e-mail address and an ``EmailDevice`` each. E-mail
goes to Django's locmem backend (the message is built, as portalauth's simulate mode builds its
own). Threads each get their own database connection, as Django gives them.

- **django-sesame create + verify**: load the user by username (an indexed column), create a
  token (``sesame.utils.get_token``) and verify it (``sesame.utils.get_user``). Configured as
  portalauth's links are: single use (``SESAME_ONE_TIME``: verifying writes ``last_login``) and
  expiring (``SESAME_MAX_AGE`` 15 minutes). The default configuration (reusable, no expiry: a
  verify is one SELECT) is measured too, for orientation.
- **django-otp e-mail code**: load the user's device, ``generate_challenge()`` (store a token,
  render and e-mail it), load the device again (the second request) and ``verify_token``.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from measure import WorkerFactory
from signins import IDENTITIES, round_robin

MISSING = "django-sesame or django-otp is not installed (pip install -e '.[bench]')"
_configured: list[Any] = []  # the user ids, once Django is set up


def available() -> str | None:
    """None when the peers can run, else why not."""
    try:
        import django  # noqa: F401
        import django_otp  # type: ignore[import-untyped]  # noqa: F401
        import sesame  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return MISSING
    return None


def setup(workdir: Path) -> list[Any]:
    """Configure Django once per process (a SQLite file in ``workdir``); the user ids."""
    if _configured:
        return _configured
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY=secrets.token_urlsafe(48),
        USE_TZ=True,
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django_otp",
            "django_otp.plugins.otp_email",
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(workdir / "django-peers.db"),
                "OPTIONS": {
                    "timeout": 30,
                    "transaction_mode": "IMMEDIATE",
                    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                },
            }
        },
        AUTHENTICATION_BACKENDS=["sesame.backends.ModelBackend"],
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        TEMPLATES=[
            {"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}
        ],
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],  # setup only
        SESAME_ONE_TIME=True,
        SESAME_MAX_AGE=15 * 60,
        OTP_EMAIL_COOLDOWN_DURATION=0,
        OTP_EMAIL_SENDER="portal@bench.example",
    )
    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django_otp.plugins.otp_email.models import (  # type: ignore[import-untyped]
        EmailDevice,
    )

    call_command("migrate", verbosity=0, interactive=False)
    user_model = get_user_model()
    for i in range(IDENTITIES):
        email = f"client{i}@example.com"
        user = user_model.objects.create_user(username=email, email=email)
        EmailDevice.objects.create(user=user, name="email", confirmed=True)
        _configured.append(email)
    return _configured


def _clear_outbox() -> None:
    from django.core import mail

    if hasattr(mail, "outbox"):
        mail.outbox.clear()


@contextlib.contextmanager
def sesame(workdir: str, one_time: bool = True, *, part: int = 0) -> Iterator[WorkerFactory]:
    """django-sesame create + verify (``one_time``: single use with a 15-minute max age, else
    the defaults)."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import override_settings

    usernames = setup(Path(workdir))
    from sesame.utils import get_token, get_user  # type: ignore[import-untyped]

    user_model = get_user_model()
    take = round_robin(usernames)
    overrides = {} if one_time else {"SESAME_ONE_TIME": False, "SESAME_MAX_AGE": None}

    def op() -> object:
        user = user_model.objects.get(username=take())
        found = get_user(get_token(user))
        if found is None or found.pk != user.pk:
            raise RuntimeError("django-sesame did not verify its own token")
        return found

    def factory() -> Any:
        return op

    with override_settings(**overrides):
        try:
            yield factory
        finally:
            connection.close()


@contextlib.contextmanager
def otp_email(workdir: str, *, part: int = 0) -> Iterator[WorkerFactory]:
    """django-otp ``EmailDevice``: generate_challenge, then (a fresh load) verify_token."""
    from django.db import connection
    from django_otp.plugins.otp_email.models import EmailDevice

    usernames = setup(Path(workdir))
    take = round_robin(usernames)

    def op() -> object:
        username = take()
        device = EmailDevice.objects.get(user__username=username)
        device.generate_challenge()
        token = device.token  # what the client reads in the e-mail
        again = EmailDevice.objects.get(pk=device.pk)  # the second request
        if not again.verify_token(token):
            raise RuntimeError("django-otp refused its own token")
        return again

    def factory() -> Any:
        return op

    try:
        yield factory
    finally:
        _clear_outbox()
        connection.close()

"""Settings of the Django demo portal.

Environment: ``DEMO_DATA_DIR`` (the SQLite file and server keys; default
``portalauth-django-demo`` in the temporary directory), ``DEMO_BASE_URL`` (default
``http://127.0.0.1:8000``: links in messages are built on it) and ``DEMO_DEBUG=1``.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

# A demo: the Django key only signs Django's own CSRF cookie here. A real site reads it from a
# secret store, like portalauth's keys (see demo_site/portal.py).
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-django-secret-key-not-for-production")
DEBUG = os.environ.get("DEMO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"]

INSTALLED_APPS = [
    "demo_site",  # first, so its templates/portalauth/base.html overrides the app's layout
    "portalauth.integrations.django",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "portalauth.integrations.django.middleware.PortalAuthMiddleware",
]

ROOT_URLCONF = "demo_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

# Django's own database is not used: portalauth keeps its records in its SQLite file.
DATABASES: dict[str, dict[str, str]] = {}

CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
USE_TZ = True

PORTALAUTH = {
    "AUTH": "demo_site.portal.get_auth",
    "PORTAL": "acme",
    # The demo is served over plain http on 127.0.0.1, where a Secure cookie would not be
    # sent back; a real deployment leaves this out (Secure whenever DEBUG is off).
    "COOKIE_SECURE": False,
    "HOME_URL": "/home",
}

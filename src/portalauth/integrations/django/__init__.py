"""portalauth for Django: a reusable app with the sign-in pages, a middleware and a decorator.

Wiring (see ``docs/integrations/django.md``)::

    INSTALLED_APPS = [..., "portalauth.integrations.django"]
    MIDDLEWARE = [..., "django.middleware.csrf.CsrfViewMiddleware",
                  "portalauth.integrations.django.middleware.PortalAuthMiddleware"]
    PORTALAUTH = {"AUTH": "myproject.auth.get_auth", "PORTAL": "acme"}
    # urls.py
    path("", include("portalauth.integrations.django.urls"))

Every page renders the portal's enabled strategies generically from their field descriptors,
so a third-party strategy needs no template of its own. Forms use Django's own CSRF protection.
"""

from __future__ import annotations

__all__: list[str] = []

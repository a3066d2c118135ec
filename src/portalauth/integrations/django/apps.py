"""The Django app configuration of portalauth."""

from __future__ import annotations

from django.apps import AppConfig


class PortalAuthConfig(AppConfig):  # type: ignore[misc]  # Django ships no type information
    name = "portalauth.integrations.django"
    label = "portalauth"
    verbose_name = "portalauth"
    default_auto_field = "django.db.models.AutoField"

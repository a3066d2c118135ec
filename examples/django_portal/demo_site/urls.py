"""The demo's URLs: the portalauth app at the root (the portal's base_url), plus the demo's
own pages."""

from __future__ import annotations

from django.urls import include, path

from . import staff, views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("home", views.home, name="home"),
    path("static/demo.css", views.stylesheet, name="stylesheet"),
    path("staff/sign-in", staff.sign_in, name="staff_sign_in"),
    path("staff/sign-out", staff.sign_out, name="staff_sign_out"),
    path("staff/", views.parties, name="parties"),
    path("staff/parties/new", views.party_new, name="party_new"),
    path("staff/parties/<str:identity_id>", views.party_edit, name="party"),
    path("staff/parties/<str:identity_id>/messages", views.messages, name="messages"),
    path("staff/parties/<str:identity_id>/<slug:action>", views.party_action, name="party_action"),
    path("staff/settings", views.portal_settings, name="portal_settings"),
    path("staff/access-status.csv", views.export, name="export"),
    path("", include("portalauth.integrations.django.urls")),
]

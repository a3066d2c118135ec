"""URLs of the sign-in pages: ``path("", include("portalauth.integrations.django.urls"))``.

The link paths match the strategies' default settings (``/sign-in/link``, ``/password/set``,
``/password/reset``, ``/sign-up/confirm``), relative to the portal's ``base_url``: include the
app at the root of ``base_url`` (or set the strategies' ``*_path`` settings to match).
"""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "portalauth"

urlpatterns = [
    path("sign-in", views.chooser, name="chooser"),
    path("sign-in/link", views.magic_link, name="magic_link"),
    path("sign-in/step", views.step, name="step"),
    path("sign-in/<slug:method>", views.start, name="start"),
    path("sign-out", views.sign_out, name="sign_out"),
    path("sign-up", views.sign_up, name="sign_up"),
    path("sign-up/confirm", views.confirm_sign_up, name="confirm_sign_up"),
    path("password/forgot", views.forgot_password, name="forgot_password"),
    path("password/reset", views.reset_password, name="reset_password"),
    path("password/set", views.set_password, name="set_password"),
    path("password/change", views.change_password, name="change_password"),
]

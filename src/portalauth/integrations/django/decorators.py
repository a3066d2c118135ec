"""``@portalauth_required``: a view only signed-in clients may see."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlencode

from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from .middleware import load_session
from .utils import safe_next

__all__ = ["portalauth_required"]

_View = TypeVar("_View", bound=Callable[..., Any])


def sign_in_url(request: Any, next_url: str | None = None) -> str:
    """The chooser's URL, with a ``next`` back to ``next_url`` (or this page) when it is safe."""
    url: str = reverse("portalauth:chooser")
    target = safe_next(request, next_url if next_url is not None else request.get_full_path())
    if target:
        url += "?" + urlencode({"next": target})
    return url


def portalauth_required(view: _View) -> _View:
    """Redirect to the sign-in chooser (with a safe ``next``) unless a client is signed in.

    Works with or without :class:`~.middleware.PortalAuthMiddleware` (the session is read here
    if the middleware did not run). Responses are marked not cacheable.
    """

    @functools.wraps(view)
    def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
        if not hasattr(request, "portalauth_identity"):
            load_session(request)
        if request.portalauth_identity is None:
            return HttpResponseRedirect(sign_in_url(request))
        response = view(request, *args, **kwargs)
        add_never_cache_headers(response)
        return response

    return cast(_View, wrapper)

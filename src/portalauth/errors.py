"""The exception hierarchy.

Every error portalauth raises on purpose is a :class:`PortalAuthError`. Each class has a stable
``code`` (a short snake_case string an integration may branch on or translate) and a ``message``
that is safe to show to the person at the keyboard: it never contains a secret, never says whether
an account exists, and never carries a traceback, SQL or key material.

Callers may rely on ``code`` values staying the same across releases; the wording of ``message``
may improve.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ConfigError",
    "ContactTaken",
    "DeliveryFailed",
    "FlowInvalid",
    "InvalidContact",
    "InvalidInput",
    "MethodDisabled",
    "NotFound",
    "NotReady",
    "PluginError",
    "PortalAuthError",
    "SessionInvalid",
    "SignupDisabled",
    "StoreUnavailable",
    "Throttled",
    "UnknownContact",
    "VerificationFailed",
    "WeakCodeWarning",
]


class PortalAuthError(Exception):
    """Base class: a typed error with a stable ``code`` and a safe ``message``."""

    code: str = "error"
    default_message: str = "Something went wrong. Please try again."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class ConfigError(PortalAuthError):
    """The library or a portal was configured with a value it cannot use (a programming error)."""

    code = "config_error"
    default_message = "portalauth is not configured correctly."


class PluginError(ConfigError):
    """A plugin is broken: a duplicate name, an unknown hook, a wrong return type."""

    code = "plugin_error"
    default_message = "A portalauth plugin is not configured correctly."


class InvalidInput(PortalAuthError):
    """A submitted field is malformed: wrong type, repeated, oversized, or of the wrong shape.

    ``field`` names the offending field so a page can mark it; it never echoes the value.
    """

    code = "invalid_input"
    default_message = "Please check what you entered and try again."

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidContact(InvalidInput):
    """An e-mail address or phone number that cannot be used (staff-side and sign-in input)."""

    code = "invalid_contact"
    default_message = "That e-mail address or phone number is not valid."


class UnknownContact(PortalAuthError):
    """The contact a client typed belongs to nobody who can sign in here.

    Raised **only** by portals that opted into helpful errors (``helpful_errors=True``); by
    default an unknown contact gets the same answer as a known one.
    """

    code = "unknown_contact"
    default_message = "We couldn't find that contact. Check your information or contact the office."


class ContactTaken(PortalAuthError):
    """Staff-side: another identity of this portal already has that e-mail address or phone."""

    code = "contact_taken"
    default_message = "Another person in this portal already uses that contact."

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(PortalAuthError):
    """The portal or identity named does not exist (staff side; for clients only an unknown
    portal, whose slug is public anyway)."""

    code = "not_found"
    default_message = "Not found."


class VerificationFailed(PortalAuthError):
    """A code, PIN, link or password did not verify.

    ``reason`` is one of ``"invalid"`` (wrong, expired, used up or unknown: deliberately one
    answer) or ``"superseded"`` (a newer secret was sent to the same person, so the page can
    say so; only a holder of the flow can learn it).
    """

    code = "verification_failed"
    default_message = "That did not work. Check what you entered, or request a new code."

    def __init__(self, message: str | None = None, *, reason: str = "invalid") -> None:
        if reason == "superseded" and message is None:
            message = "A newer code or link was sent to you. Please use the most recent one."
        super().__init__(message)
        self.reason = reason


class FlowInvalid(PortalAuthError):
    """The flow token is malformed, tampered with, for another portal, or too old: start again."""

    code = "flow_invalid"
    default_message = "This sign-in has expired. Please start again."


class Throttled(PortalAuthError):
    """Too many attempts; ``retry_after`` is the number of seconds to wait (rounded up)."""

    code = "throttled"
    default_message = "Too many attempts. Please wait a moment and try again."

    def __init__(self, message: str | None = None, *, retry_after: int = 60) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


class MethodDisabled(PortalAuthError):
    """The sign-in method is not enabled for this portal."""

    code = "method_disabled"
    default_message = "This sign-in method is not available here."


class SignupDisabled(PortalAuthError):
    """Self sign-up is switched off for this portal."""

    code = "signup_disabled"
    default_message = "Sign-up is not available here. Please contact the office for an invitation."


class NotReady(PortalAuthError):
    """Staff-side: the identity lacks fields the portal requires before it can be invited."""

    code = "not_ready"
    default_message = "This person's record is missing information required for portal access."

    def __init__(self, message: str | None = None, *, missing: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.missing = tuple(missing)


class SessionInvalid(PortalAuthError):
    """The session token is missing, tampered with, expired or revoked: sign in again."""

    code = "session_invalid"
    default_message = "Please sign in."


class DeliveryFailed(PortalAuthError):
    """A message could not be handed to the mail or SMS provider."""

    code = "delivery_failed"
    default_message = "We could not send the message. Please try again later."


class StoreUnavailable(PortalAuthError):
    """The store could not be reached or failed mid-operation. Nobody is signed in (fail closed)."""

    code = "store_unavailable"
    default_message = "The service is temporarily unavailable. Please try again shortly."


class WeakCodeWarning(UserWarning):
    """A portal pairs short codes with a generous failure budget (R5): allowed, but the odds of
    an online guesser grow with the budget. Not an error; shown when the portal is saved."""

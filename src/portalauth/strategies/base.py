"""What a sign-in strategy is, and what it is handed.

A strategy is a thin policy: it decides what to look up, which secret to issue, where to send it
and what counts as success. It has no I/O of its own; it works only through the services in the
:class:`Context` it is handed (directory, challenges, dispatcher, hasher, throttles), so it is
testable without a store and never touches a store or a sender directly.

A strategy is registered through the ``portalauth_add_strategies`` hook, the built-in ones exactly
as a third party's::

    class EmailCode:
        name = "email_code"
        label = "E-mail me a code"

        def configure(self, raw):  # validate this strategy's per-portal settings
            return MySettings(**raw)

        def fields(self, step, config):
            return (Field("email", "email", "E-mail"),) if step == "start" else (...)

        def start(self, ctx): ...  # -> Continue | Authenticated | Done
        def advance(self, ctx, state): ...

The core checks every submitted value against :meth:`Strategy.fields` before the strategy sees
it (strings only, not repeated, not longer than ``max_length``), so ``ctx.form`` holds exactly the
declared fields as ``str``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from attrs import frozen

from ..challenges import Challenges, read_code
from ..client import ClientInfo
from ..clock import Clock
from ..config import PortalSettings
from ..contacts import normalize_email
from ..delivery.dispatch import Dispatcher
from ..directory import Directory
from ..events import Emitter
from ..flows import Field, FlowState, Outcome
from ..passwords import PasswordHasher
from ..ratelimit import Throttles
from ..records import Identity
from ..sessions import Sessions

__all__ = ["Context", "Services", "Strategy"]

#: The name of the first step of every flow.
START = "start"


@runtime_checkable
class Strategy(Protocol):
    """A sign-in method."""

    #: Unique name, used in portal settings and flow tokens (``[a-z][a-z0-9_]*``).
    name: str
    #: What a chooser shows ("Sign in with a share code").
    label: str

    def configure(self, raw: Mapping[str, Any]) -> Any:
        """Validate this strategy's per-portal settings (``PortalSettings.method_settings[name]``)
        and return the object the strategy reads them from; raise ``ConfigError`` if invalid."""

    def fields(self, step: str, config: Any) -> tuple[Field, ...]:
        """The inputs of ``step`` (``"start"`` is the first), for rendering and checking."""

    def start(self, ctx: Context) -> Outcome:
        """Handle the first step's form."""

    def advance(self, ctx: Context, state: FlowState) -> Outcome:
        """Handle a later step's form (``state.step`` names it)."""


@frozen
class Services:
    """The core services a strategy may use; one set per ``Auth``."""

    directory: Directory
    challenges: Challenges
    sessions: Sessions
    dispatcher: Dispatcher
    hasher: PasswordHasher
    throttles: Throttles
    emitter: Emitter
    clock: Clock


@frozen(kw_only=True)
class Context:
    """One request, as a strategy sees it."""

    services: Services
    portal: PortalSettings
    config: Any
    method: str
    client: ClientInfo
    form: Mapping[str, str]

    # Shortcuts, so strategies read as policy rather than plumbing.
    @property
    def directory(self) -> Directory:
        return self.services.directory

    @property
    def challenges(self) -> Challenges:
        return self.services.challenges

    @property
    def dispatcher(self) -> Dispatcher:
        return self.services.dispatcher

    @property
    def hasher(self) -> PasswordHasher:
        return self.services.hasher

    @property
    def throttles(self) -> Throttles:
        return self.services.throttles

    @property
    def now(self) -> float:
        return self.services.clock.now()

    def read_code(self, field: str, digits: int) -> str | None:
        """The form field if it is exactly ``digits`` ASCII digits, else ``None`` (which
        :meth:`Challenges.verify` counts as a failed attempt)."""
        return read_code(self.form.get(field), digits)

    def lookup_email(
        self, value: str, *, channel: str | None = "email"
    ) -> tuple[Identity | None, str]:
        """Who an e-mail address typed by the client belongs to in this portal.

        Returns ``(identity, subject)``: the identity if it exists, is not disabled and (unless
        ``channel`` is ``None``, for methods that send nothing) can be reached on ``channel``
        (else ``None``), and the subject to issue a challenge to: its id, or a decoy subject
        keyed on the canonical address, so unknown addresses behave alike. Raises
        ``InvalidContact`` for a malformed address (which enumerates nothing).
        """
        key = normalize_email(value).key
        identity = self.directory.find_by_email_key(self.portal.slug, key)
        reachable = identity is not None and (
            channel is None or self.dispatcher.can_reach(identity, channel)
        )
        if identity is not None and reachable and not identity.disabled:
            return identity, identity.id
        return None, self.challenges.decoy_subject(self.portal.slug, key)

    def hit(self, limit: str, *key: str) -> None:
        """Count one use of ``key`` against ``limit`` (``Throttled`` once over), with this
        request's portal, method and client on the ``throttled`` event."""
        self.services.throttles.hit(
            limit, *key, portal=self.portal.slug, method=self.method, ip=self.client.ip
        )

    def emit(self, kind: str, **fields: Any) -> None:
        """Emit an event stamped with this request's portal, method and client."""
        fields.setdefault("portal", self.portal.slug)
        fields.setdefault("method", self.method)
        self.services.emitter.emit(
            kind,
            ip=self.client.ip,
            user_agent=self.client.user_agent,
            request_id=self.client.request_id,
            **fields,
        )

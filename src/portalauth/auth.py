"""The :class:`Auth` facade: one object that wires settings, plugins, services and the flow API.

::

    from portalauth import Auth, ClientInfo

    auth = Auth(["a-long-random-server-key"], "sqlite:///portal.db", plugins=[MyStrategies()])
    auth.portals.create("acme", "Acme Law LLP", methods={"email_code"}, simulate=True)
    step = auth.start("acme", "email_code", {"email": "jane@example.com"}, client=client)
    done = auth.advance(step.flow, {"code": "123456"}, client=client)  # SignedIn

``start`` and ``advance`` are the whole client-side API: they return a
:class:`~portalauth.flows.Step` (ask for more, or a finished notice) or
:class:`~portalauth.flows.SignedIn`, and raise only :class:`~portalauth.errors.PortalAuthError`
subclasses. Before a strategy runs, the core checks the
portal and method, the form (declared fields only, strings only, never repeated, within length),
the per-client and per-portal throttles and the ``portalauth_check_attempt`` plugins. A strategy
that raises anything else, or returns something unexpected, fails closed: nobody is signed in.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from .challenges import Challenges
from .client import ClientInfo
from .clock import Clock, SystemClock
from .config import PortalSettings
from .delivery.base import Sender
from .delivery.dispatch import Dispatcher
from .delivery.outbox import Outbox
from .delivery.queue import BackgroundQueue, DeliveryQueue, InlineQueue
from .directory import Directory
from .errors import (
    ConfigError,
    MethodDisabled,
    NotFound,
    PortalAuthError,
    StoreUnavailable,
    Throttled,
    VerificationFailed,
    WeakCodeWarning,
)
from .events import Emitter
from .flows import (
    Attempt,
    Authenticated,
    Continue,
    Done,
    Field,
    FlowCodec,
    FlowState,
    SignedIn,
    Step,
    read_form,
)
from .keys import Keyring
from .passwords import PasswordHasher
from .plugins import Plugins
from .portals import Portals
from .ratelimit import Throttles, parse_limit
from .records import Identity
from .rendering import Renderer
from .second_factor import STEP as SECOND_STEP
from .second_factor import SecondFactor
from .sessions import Sessions
from .stores.base import Store
from .stores.base import batch as store_batch
from .strategies.base import START, Context, Services, Strategy

if TYPE_CHECKING:
    from .strategies.magic_link import MagicLinks
    from .strategies.password import Passwords
    from .strategies.share_code import ShareCodes
    from .strategies.staff_pin import Pins

__all__ = ["DEFAULT_LIMITS", "Auth"]

_log = logging.getLogger("portalauth")

#: Throttles applied by the core to every flow, before any strategy runs. Strategies add their
#: own (per identifier, per destination). Override any of them with ``Auth(limits={...})``.
DEFAULT_LIMITS: Mapping[str, str] = {
    # flow starts from one client address (IPv6 by /64), per portal
    "start_per_ip": "30/minute",
    # later steps (codes, PINs) from one client address, per portal
    "advance_per_ip": "60/minute",
    # every flow step in one portal: a ceiling against a distributed flood
    "per_portal": "6000/minute",
}

_T = TypeVar("_T")


class Auth:
    """portalauth for one application.

    ``secret_keys``: server keys, newest first (≥16 bytes each; rotate by prepending).
    ``store``: a :class:`~portalauth.stores.base.Store` or a URI (``sqlite:///portal.db`` is
    the default, ``memory://`` for tests). ``email`` / ``sms``: a sender or sender URI per
    channel; a channel without one records its messages in the outbox (simulate mode).
    ``plugins``: extra plugin objects (modules or instances with ``portalauth_*`` hooks).
    ``delivery``: where client-facing deliveries run: ``"background"`` (a worker thread, so a
    slow transport never makes a known identifier's request slower than an unknown one's, R32),
    ``"inline"`` (in the request; a failure reaches the caller), a
    :class:`~portalauth.delivery.queue.DeliveryQueue`, or ``"auto"`` (the default: background
    when a real sender is configured, inline when every channel records in the outbox).
    """

    def __init__(
        self,
        secret_keys: Sequence[str | bytes] | str | bytes,
        store: Store | str = "sqlite:///portalauth.db",
        *,
        email: Sender | str | None = None,
        sms: Sender | str | None = None,
        clock: Clock | None = None,
        plugins: Iterable[object] = (),
        entry_points: bool | None = None,
        password_hasher: PasswordHasher | None = None,
        limits: Mapping[str, str] | None = None,
        flow_max_age: int = 3600,
        delivery: str | DeliveryQueue = "auto",
    ) -> None:
        self._owned: list[object] = []
        self.clock: Clock = clock or SystemClock()
        self.keyring = Keyring(secret_keys)
        self.plugins = Plugins(plugins, entry_points=entry_points)
        unknown = set(limits or {}) - set(DEFAULT_LIMITS)
        if unknown:
            raise ConfigError(f"Unknown limit names: {', '.join(sorted(unknown))}.")
        self._limits = {**DEFAULT_LIMITS, **(limits or {})}
        for text in self._limits.values():
            parse_limit(text)
        # Opened last among the checks, so a configuration error leaves no connection open.
        self.store: Store = self._open_store(store)

        emitter = Emitter(self.plugins.event, self.clock)
        self.emitter = emitter
        self.portals = Portals(self.store, self.clock, emitter, self._check_portal)
        self.directory = Directory(self.store, self.clock, self.keyring, emitter, self.portals)
        self.challenges = Challenges(self.store, self.clock, self.keyring, emitter)
        self.sessions = Sessions(
            self.store, self.clock, self.keyring, emitter, lambda slug: self.portals.find(slug)
        )
        self.hasher = password_hasher or PasswordHasher()
        self.throttles = Throttles(self.store, self.clock, emitter)
        self.outbox = Outbox(self.store, self.clock)
        self.renderer = Renderer(self.plugins.build_message)
        senders = {"email": self._open_sender(email), "sms": self._open_sender(sms)}
        self.dispatcher = Dispatcher(
            self.renderer,
            self.outbox,
            senders,
            self.clock,
            emitter,
            self._delivery_queue(delivery, any(s is not None for s in senders.values())),
        )
        self.services = Services(
            directory=self.directory,
            challenges=self.challenges,
            sessions=self.sessions,
            dispatcher=self.dispatcher,
            hasher=self.hasher,
            throttles=self.throttles,
            emitter=emitter,
            clock=self.clock,
        )
        self._flows = FlowCodec(self.keyring, self.clock, max_age=flow_max_age)
        self._second = SecondFactor(self.services)
        # (method, portal slug) -> (settings object it was built from, parsed strategy config)
        self._configs: dict[tuple[str, str], tuple[PortalSettings, Any]] = {}
        self._staff: dict[str, Any] = {}

    # -- wiring ---------------------------------------------------------------------------
    def _open_store(self, store: Store | str) -> Store:
        if not isinstance(store, str):
            return store
        scheme = urlsplit(store).scheme
        factory = self.plugins.store_factory(scheme)
        if factory is None:
            known = ", ".join(sorted(self.plugins.store_schemes))
            raise ConfigError(f"No store for {scheme!r} URIs (installed: {known}).")
        return factory(store)

    def _open_sender(self, sender: Sender | str | None) -> Sender | None:
        if sender is None or not isinstance(sender, str):
            return sender
        scheme = urlsplit(sender).scheme
        factory = self.plugins.sender_factory(scheme)
        if factory is None:
            raise ConfigError(f"No sender for {scheme!r} URIs.")
        opened = factory(sender)
        self._owned.append(opened)  # built here from a URI, so closed by close()
        return opened

    def _check_portal(self, settings: PortalSettings) -> None:
        unknown = settings.methods - set(self.plugins.strategies)
        if unknown:
            raise ConfigError(f"Unknown sign-in methods: {', '.join(sorted(unknown))}.")
        # Every enabled method and every method with settings is configured now, so a bad
        # setting is refused when staff save it, not shown to a client at sign-in.
        for name in settings.methods | set(settings.method_settings):
            strategy = self.plugins.strategy(name)
            if strategy is None:
                raise ConfigError(f"Settings given for unknown method {name!r}.")
            config = strategy.configure(settings.settings_for(name))
            check_portal = getattr(strategy, "check_portal", None)
            if name in settings.methods and callable(check_portal):
                check_portal(settings)  # portal-level needs (a base_url for links)
            digits = getattr(config, "code_digits", None)
            if isinstance(digits, int) and digits < 6 and settings.failure_budget > 10:
                # R5: 5-digit codes are below NIST's 6-digit floor; their safety rests on the
                # failure budget, so a larger budget is allowed but called out.
                warnings.warn(
                    f"Portal {settings.slug!r}: {name} uses {digits}-digit codes with a "
                    f"failure budget of {settings.failure_budget} (more than 10); see "
                    "docs/strategies for the guessing odds.",
                    WeakCodeWarning,
                    stacklevel=4,
                )

    def _delivery_queue(self, delivery: str | DeliveryQueue, real_senders: bool) -> DeliveryQueue:
        if not isinstance(delivery, str):
            return delivery
        if delivery == "auto":
            delivery = "background" if real_senders else "inline"
        if delivery == "inline":
            return InlineQueue()
        if delivery == "background":
            queue = BackgroundQueue()
            self._owned.insert(0, queue)  # closed first: it drains into the senders
            return queue
        raise ConfigError("delivery must be 'auto', 'inline', 'background' or a DeliveryQueue.")

    def close(self) -> None:
        """Run the deliveries still queued, then close the store (also one passed in as an
        object) and the senders built here from URIs (a sender object passed in stays open: it
        is the caller's)."""
        for owned in self._owned:
            close = getattr(owned, "close", None)
            if callable(close):
                close()
        self.store.close()

    def __enter__(self) -> Auth:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- staff side of the strategies ------------------------------------------------------
    def staff(self, method: str) -> Any:
        """The staff-side API of a strategy (``auth.staff("share_code")``), for strategies that
        have one (a ``staff(auth)`` method); ``ConfigError`` otherwise."""
        api = self._staff.get(method)
        if api is None:
            strategy = self.plugins.strategy(method)
            make = getattr(strategy, "staff", None)
            if strategy is None or not callable(make):
                raise ConfigError(f"The method {method!r} has no staff API.")
            api = self._staff[method] = make(self)
        return api

    @property
    def share_codes(self) -> ShareCodes:
        """Issue, send, check and revoke share codes (the ``share_code`` strategy)."""
        api: ShareCodes = self.staff("share_code")
        return api

    @property
    def magic_links(self) -> MagicLinks:
        """Invite by link, inspect and redeem links (the ``magic_link`` strategy)."""
        api: MagicLinks = self.staff("magic_link")
        return api

    @property
    def passwords(self) -> Passwords:
        """Invitations, sign-up, reset and change (the ``password`` strategy)."""
        api: Passwords = self.staff("password")
        return api

    @property
    def pins(self) -> Pins:
        """Issue, check and revoke staff PINs (the ``staff_pin`` strategy)."""
        api: Pins = self.staff("staff_pin")
        return api

    # -- reading what a portal offers ------------------------------------------------------
    def methods(self, portal: str) -> list[Strategy]:
        """The strategies enabled for ``portal``, in a stable order (for a chooser)."""
        settings = self.portals.get(portal)
        return [
            self.plugins.strategies[name]
            for name in sorted(settings.methods)
            if name in self.plugins.strategies
        ]

    def fields(self, portal: str, method: str, step: str = START) -> tuple[Field, ...]:
        """The inputs of ``step`` of ``method`` in ``portal`` (to render the first form)."""
        _, strategy, config = self._resolve(portal, method)
        return self._run(strategy, lambda: strategy.fields(step, config))

    def strategy_config(self, portal: str, method: str) -> Any:
        """The parsed per-portal settings object of a strategy."""
        return self._resolve(portal, method)[2]

    def _resolve(self, portal: object, method: object) -> tuple[PortalSettings, Strategy, Any]:
        settings = self.portals.find(portal)
        if settings is None:
            raise NotFound("No such portal.")
        if not isinstance(method, str):
            raise MethodDisabled()
        strategy = self.plugins.strategy(method)
        if strategy is None or method not in settings.methods:
            raise MethodDisabled()
        cached = self._configs.get((method, settings.slug))
        if cached is not None and cached[0] is settings:
            return settings, strategy, cached[1]
        config = self._run(strategy, lambda: strategy.configure(settings.settings_for(method)))
        self._configs[(method, settings.slug)] = (settings, config)
        return settings, strategy, config

    # -- the flow API -----------------------------------------------------------------------
    def start(
        self,
        portal: str,
        method: str,
        data: Mapping[str, Any] | None = None,
        *,
        client: ClientInfo | None = None,
    ) -> Step | SignedIn:
        """Begin a sign-in with ``method`` in ``portal`` using the first step's form ``data``."""
        with self.batch():
            return self._start(portal, method, data, client or ClientInfo())

    def _start(
        self, portal: str, method: str, data: Mapping[str, Any] | None, client: ClientInfo
    ) -> Step | SignedIn:
        settings, strategy, config = self._resolve(portal, method)
        form = read_form(data, self._run(strategy, lambda: strategy.fields(START, config)))
        self.guard(settings, method, START, client, form, "start_per_ip")
        ctx = Context(
            services=self.services,
            portal=settings,
            config=config,
            method=method,
            client=client,
            form=form,
        )
        ctx.emit("flow.started")
        outcome = self._run(strategy, lambda: strategy.start(ctx))
        return self._finish(outcome, ctx, strategy)

    def advance(
        self,
        flow: str,
        data: Mapping[str, Any] | None = None,
        *,
        client: ClientInfo | None = None,
    ) -> Step | SignedIn:
        """Continue the flow ``flow`` (from the last :class:`Step`) with this step's form."""
        with self.batch():
            return self._advance(flow, data, client or ClientInfo())

    def _advance(
        self, flow: str, data: Mapping[str, Any] | None, client: ClientInfo
    ) -> Step | SignedIn:
        state = self._flows.load(flow)
        if state.step == SECOND_STEP:
            return self._advance_second_factor(state, data, client)
        settings, strategy, config = self._resolve(state.portal, state.method)
        step_fields = self._run(strategy, lambda: strategy.fields(state.step, config))
        form = read_form(data, step_fields)
        self.guard(settings, state.method, state.step, client, form, "advance_per_ip")
        ctx = Context(
            services=self.services,
            portal=settings,
            config=config,
            method=state.method,
            client=client,
            form=form,
        )
        outcome = self._run(strategy, lambda: strategy.advance(ctx, state))
        return self._finish(outcome, ctx, strategy)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Run one client step's store calls as one group (see
        :func:`portalauth.stores.base.batch`: on PostgreSQL one pooled connection for the
        step). ``start``, ``advance`` and strategies' own entry points (redeeming a link) run
        in one."""
        with store_batch(self.store):
            yield

    def guard(
        self,
        settings: PortalSettings,
        method: str,
        step: str,
        client: ClientInfo,
        form: Mapping[str, str],
        ip_limit: str,
    ) -> None:
        """The checks every client-side step passes before a strategy runs: the per-portal and
        per-client throttles and the ``portalauth_check_attempt`` plugins (``Throttled``).
        Strategies' own entry points (redeeming a link) call it too."""
        event: dict[str, Any] = {"portal": settings.slug, "method": method, "ip": client.ip}
        self.throttles.hit(self._limits["per_portal"], "portal", settings.slug, **event)
        self.throttles.hit(self._limits[ip_limit], ip_limit, settings.slug, client.ip_key, **event)
        veto = self.plugins.check_attempt(
            Attempt(
                portal=settings.slug,
                method=method,
                step=step,
                ip_key=client.ip_key,
                user_agent=client.user_agent,
                fields=form,
            )
        )
        if veto is not None:
            self.emitter.emit("throttled", detail={"veto": veto[:64]}, **event)
            raise Throttled()

    def _run(self, strategy: Strategy, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except PortalAuthError:
            raise
        except Exception as exc:
            # Fail closed, and keep what the strategy was handling out of the log line.
            _log.error("strategy %r raised %s", strategy.name, type(exc).__name__)
            _log.debug("strategy failure", exc_info=True)
            raise PortalAuthError() from None

    def _finish(self, outcome: object, ctx: Context, strategy: Strategy) -> Step | SignedIn:
        if isinstance(outcome, Continue):
            challenge_id = outcome.challenge.id if outcome.challenge is not None else None
            state = FlowState(
                portal=ctx.portal.slug,
                method=ctx.method,
                step=outcome.step,
                challenge_id=challenge_id,
            )
            return Step(
                flow=self._flows.dump(state),
                method=ctx.method,
                next=outcome.step,
                fields=self._run(strategy, lambda: strategy.fields(outcome.step, ctx.config)),
                notice=outcome.notice,
                sent_to=outcome.sent_to,
                expires_at=outcome.challenge.expires_at if outcome.challenge else None,
            )
        if isinstance(outcome, Done):
            return Step(flow=None, method=ctx.method, next=None, notice=outcome.notice)
        if isinstance(outcome, Authenticated):
            identity = outcome.identity
            return self._run(
                strategy,
                lambda: self.complete(
                    ctx.portal, identity, method=ctx.method, scope=outcome.scope, client=ctx.client
                ),
            )
        _log.error("strategy %r returned %s", strategy.name, type(outcome).__name__)
        raise PortalAuthError()

    def complete(
        self,
        settings: PortalSettings,
        identity: Identity,
        *,
        method: str,
        scope: str = "",
        client: ClientInfo | None = None,
    ) -> Step | SignedIn:
        """Finish a primary sign-in: the portal's second-factor step if one is due, else
        :meth:`sign_in`. Strategies' staff-side entry points (a redeemed link) use this too."""
        if identity.portal != settings.slug:
            raise VerificationFailed()  # a strategy vouching for another portal's client (R72)
        kind = self._second.required(settings, identity)
        if kind is None:
            return self.sign_in(identity, method=method, scope=scope, client=client)
        pending = self._second.begin(settings, identity, kind, method=method, scope=scope)
        state = FlowState(
            portal=settings.slug, method=method, step=SECOND_STEP, challenge_id=pending.challenge.id
        )
        return Step(
            flow=self._flows.dump(state),
            method=method,
            next=SECOND_STEP,
            fields=self._second.fields(kind),
            notice=pending.notice,
            sent_to=pending.sent_to,
            expires_at=pending.challenge.expires_at,
        )

    def _advance_second_factor(
        self, state: FlowState, data: Mapping[str, Any] | None, client: ClientInfo
    ) -> SignedIn:
        settings, strategy, _ = self._resolve(state.portal, state.method)
        pending = self.challenges.get_live(state.challenge_id or "")
        if pending is None:
            # Expired, used or superseded: fail whatever the form holds (saying "superseded"
            # when a newer step replaced this one, as every challenge does).
            dead = self.store.get_challenge(state.challenge_id or "")
            superseded = dead is not None and dead.state == "superseded"
            raise VerificationFailed(reason="superseded" if superseded else "invalid")
        kind = str(pending.data.get("kind", ""))
        form = read_form(data, self._second.fields(kind))
        self.guard(settings, state.method, SECOND_STEP, client, form, "advance_per_ip")
        identity, method, scope = self._run(
            strategy, lambda: self._second.check(settings, state.challenge_id, form)
        )
        if method != state.method:
            raise VerificationFailed()
        return self._run(
            strategy, lambda: self.sign_in(identity, method=method, scope=scope, client=client)
        )

    def sign_in(
        self,
        identity: Identity,
        *,
        method: str,
        scope: str = "",
        client: ClientInfo | None = None,
    ) -> SignedIn:
        """Create a session for an identity a strategy has authenticated.

        Re-reads the identity (a disabled or deleted one is refused), asks plugins for session
        claims, records the sign-in, clears the identity's consecutive-failure counts for the
        portal's methods, and emits ``signed_in``. ``identity`` is the record the strategy
        authenticated: if its password, e-mail address or phone number changed, or it was
        disabled, before the new session exists, the sign-in fails and no session remains.
        """
        client = client or ClientInfo()
        if identity.disabled:
            raise VerificationFailed()
        settings = self.portals.get(identity.portal)
        claims = self.plugins.session_claims(identity, settings, method)
        try:
            token, record = self.sessions.create(
                identity, settings, method=method, scope=scope, claims=claims
            )
        except StoreUnavailable:
            # A store that enforces the identity's existence refuses a session for one deleted
            # meanwhile: that is a failed sign-in, not an outage.
            if self.store.get_identity(identity.id) is None:
                raise VerificationFailed() from None
            raise
        # Read the identity only now that the session exists (R57): a password change, reset,
        # disable, deletion or contact change that wrote before this read shows here and the
        # session goes; one that writes after it runs its revoke_all after that write, so it
        # finds this session and ends it.
        latest = self.store.get_identity(identity.id)
        if latest is None or not _unchanged(identity, latest):
            self.store.delete_session(record.key)
            raise VerificationFailed()
        current = self.directory.record_sign_in(latest, method)
        for name in settings.methods:
            if name != method:  # verify() already cleared the method that succeeded
                self.challenges.clear_failures(settings.slug, name, current.id)
        self.emitter.emit(
            "signed_in",
            portal=settings.slug,
            identity_id=current.id,
            method=method,
            ip=client.ip,
            user_agent=client.user_agent,
            request_id=client.request_id,
            detail={"scope": scope} if scope else None,
        )
        return SignedIn(identity=current, session=record, token=token, method=method)

    # -- housekeeping -----------------------------------------------------------------------
    def purge_expired(self, *, batch: int = 1000, max_batches: int | None = None) -> int:
        """Delete expired challenges, sessions and counters in bounded batches (for a cron job).
        Returns how many records went."""
        total = 0
        rounds = 0
        while max_batches is None or rounds < max_batches:
            deleted = self.store.purge_expired(self.clock.now(), batch=batch)
            total += deleted
            rounds += 1
            if deleted < batch:
                break
        return total


def _unchanged(authenticated: Identity, current: Identity) -> bool:
    """Whether the identity still has the credentials and contacts the strategy checked."""
    return (
        not current.disabled
        and current.portal == authenticated.portal
        and current.password_hash == authenticated.password_hash
        and current.email_key == authenticated.email_key
        and current.phone == authenticated.phone
    )

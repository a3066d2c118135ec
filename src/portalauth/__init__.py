"""portalauth: sign clients in to the web portals of firms and agencies.

Everything an application needs is importable from here; other modules may change between
releases. Start with :class:`Auth`.
"""

from __future__ import annotations

from .auth import DEFAULT_LIMITS, Auth
from .challenges import read_code
from .client import ClientInfo, client_ip_from_forwarded, ip_key
from .clock import Clock, FrozenClock, SystemClock
from .config import PortalSettings
from .contacts import mask_email, mask_phone, normalize_email, normalize_phone
from .delivery.base import Sender
from .delivery.outbox import Outbox
from .directory import Readiness
from .errors import (
    ConfigError,
    ContactTaken,
    DeliveryFailed,
    FlowInvalid,
    InvalidContact,
    InvalidInput,
    MethodDisabled,
    NotFound,
    NotReady,
    PluginError,
    PortalAuthError,
    SessionInvalid,
    SignupDisabled,
    StoreUnavailable,
    Throttled,
    UnknownContact,
    VerificationFailed,
)
from .events import Event
from .flows import Attempt, Authenticated, Continue, Done, Field, FlowState, SignedIn, Step
from .hooks import hookimpl
from .keys import Keyring
from .metrics import ConversionRow, SmsConversion
from .passwords import PasswordHasher
from .records import ChallengeRecord, Identity, Message, SessionRecord
from .rendering import Rendered
from .stores.base import Store
from .strategies.base import Context, Strategy

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_LIMITS",
    "Attempt",
    "Auth",
    "Authenticated",
    "ChallengeRecord",
    "ClientInfo",
    "Clock",
    "ConfigError",
    "ContactTaken",
    "Context",
    "Continue",
    "ConversionRow",
    "DeliveryFailed",
    "Done",
    "Event",
    "Field",
    "FlowInvalid",
    "FlowState",
    "FrozenClock",
    "Identity",
    "InvalidContact",
    "InvalidInput",
    "Keyring",
    "Message",
    "MethodDisabled",
    "NotFound",
    "NotReady",
    "Outbox",
    "PasswordHasher",
    "PluginError",
    "PortalAuthError",
    "PortalSettings",
    "Readiness",
    "Rendered",
    "Sender",
    "SessionInvalid",
    "SessionRecord",
    "SignedIn",
    "SignupDisabled",
    "SmsConversion",
    "Step",
    "Store",
    "StoreUnavailable",
    "Strategy",
    "SystemClock",
    "Throttled",
    "UnknownContact",
    "VerificationFailed",
    "__version__",
    "client_ip_from_forwarded",
    "hookimpl",
    "ip_key",
    "mask_email",
    "mask_phone",
    "normalize_email",
    "normalize_phone",
    "read_code",
]

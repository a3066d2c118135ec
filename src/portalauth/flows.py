"""The generic, multi-step sign-in flow: what a strategy returns and what an integration renders.

A strategy declares its steps and their :class:`Field` descriptors, so an integration can render
any strategy (a third party's included) without code of its own. ``auth.start`` and
``auth.advance`` return a :class:`Step` (ask for more) or :class:`SignedIn` (done).

Between requests the flow lives in a signed, opaque token (:class:`FlowCodec`). It carries the
portal, method, step and challenge id only: no identity, contact or secret, so decoding it
without the key reveals nothing, and it looks the same whether or not an identifier was known.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from attrs import field, frozen

from .clock import Clock
from .errors import FlowInvalid, InvalidInput
from .keys import Keyring
from .records import ChallengeRecord, Identity
from .signing import TokenSigner, b64

__all__ = [
    "Attempt",
    "Authenticated",
    "Continue",
    "Done",
    "Field",
    "FlowCodec",
    "FlowState",
    "Outcome",
    "SignedIn",
    "Step",
    "read_form",
]

#: The longest flow token accepted (a real one is about 130 characters).
TOKEN_MAX = 512

FIELD_KINDS = ("text", "email", "tel", "code", "password", "name", "contact")


@frozen
class Field:
    """One input a step asks for.

    ``kind`` tells an integration how to render it: ``email``, ``tel``, ``contact`` (e-mail or
    phone), ``code`` (one-time code: ``autocomplete="one-time-code"``, ``inputmode`` numeric when
    ``numeric``), ``password``, ``name`` or ``text``. ``max_length`` is enforced by the core
    before the strategy sees the value.
    """

    name: str
    kind: str
    label: str
    max_length: int = 254
    numeric: bool = False
    autocomplete: str | None = None
    help: str | None = None


def _fields(value: Any) -> tuple[Field, ...]:
    return tuple(value)


@frozen(kw_only=True)
class Step:
    """The next thing to ask the client, or the end of a flow that signs nobody in.

    ``flow`` is the opaque token to send back with :meth:`Auth.advance`; ``next`` names the step
    (``None`` when the flow is finished, e.g. after "we've sent you a link"); ``fields`` are what
    to render; ``notice`` is a safe message for the page; ``sent_to`` a masked destination.
    """

    flow: str | None = field(repr=False)
    method: str
    next: str | None
    fields: tuple[Field, ...] = field(default=(), converter=_fields)
    notice: str | None = None
    sent_to: str | None = None
    expires_at: float | None = None

    @property
    def done(self) -> bool:
        return self.next is None


@frozen(kw_only=True)
class SignedIn:
    """A finished sign-in: the identity, its new session and the cookie value for it."""

    identity: Identity
    session: Any  # portalauth.sessions.Session (kept loose to avoid an import cycle)
    token: str = field(repr=False)
    method: str = ""


# -- what strategies return -----------------------------------------------------------------


@frozen(kw_only=True)
class Continue:
    """Ask the client for step ``step`` next; ``challenge`` is the secret it must answer."""

    step: str
    challenge: ChallengeRecord | None = None
    notice: str | None = None
    sent_to: str | None = None


@frozen(kw_only=True)
class Authenticated:
    """The strategy is satisfied that the client is ``identity`` (scoped to ``scope``)."""

    identity: Identity
    scope: str = ""


@frozen(kw_only=True)
class Done:
    """The flow ends here without a sign-in (a link or notice was sent); show ``notice``."""

    notice: str


Outcome = Continue | Authenticated | Done


@frozen(kw_only=True)
class FlowState:
    """What the core hands back to a strategy on ``advance``."""

    portal: str
    method: str
    step: str
    challenge_id: str | None


def _frozen_form(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@frozen(kw_only=True)
class Attempt:
    """What ``portalauth_check_attempt`` plugins see about an attempt before it runs."""

    portal: str
    method: str
    step: str
    ip_key: str
    user_agent: str | None
    fields: Mapping[str, str] = field(factory=dict, converter=_frozen_form, repr=False)


#: The only shape of flow token ever issued: base64url payload, timestamp and HMAC-SHA256.
_FLOW_TOKEN = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}", re.ASCII)


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FlowCodec:
    """Signs and reads flow tokens: bound to portal, method, step and challenge; expiring.

    A token is what ``itsdangerous.URLSafeTimedSerializer(keys, salt=SALT, signer_kwargs=
    {"digest_method": sha256})`` writes, except that the payload is never compressed (token
    length must not depend on content: flows of known and unknown identifiers look alike). The
    signing keys are derived once; a token is accepted only in the exact form issued, because
    the signature is compared as the string this codec would write over the exact text of the
    payload and timestamp.
    """

    SALT = "portalauth.flow"

    def __init__(self, keyring: Keyring, clock: Clock, *, max_age: int = 3600) -> None:
        self._max_age = max_age
        self._clock = clock
        self._signer = TokenSigner(keyring, self.SALT)

    def dump(self, state: FlowState) -> str:
        # A random nonce makes every token unique, so two flows never share a token.
        nonce = base64.urlsafe_b64encode(secrets.token_bytes(9)).decode()
        payload = [state.portal, state.method, state.step, state.challenge_id or "", nonce]
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        now = int(self._clock.now())
        stamp = now.to_bytes((now.bit_length() + 7) // 8, "big")
        signed = b64(text) + b"." + b64(stamp)
        return (signed + b"." + self._signer.sign(signed)).decode("ascii")

    def load(self, token: object) -> FlowState:
        if not isinstance(token, str) or len(token) > TOKEN_MAX or not _FLOW_TOKEN.fullmatch(token):
            raise FlowInvalid()
        signed, _, signature = token.rpartition(".")
        if not self._signer.verify(signed.encode("ascii"), signature.encode("ascii")):
            raise FlowInvalid()
        encoded, stamp = signed.split(".")
        try:
            age = int(self._clock.now()) - int.from_bytes(_unb64(stamp), "big")
            payload = json.loads(_unb64(encoded))
        except (binascii.Error, ValueError):  # JSONDecodeError and UnicodeError included
            raise FlowInvalid() from None
        if not 0 <= age <= self._max_age:
            raise FlowInvalid()
        if (
            not isinstance(payload, list)
            or len(payload) != 5
            or not all(isinstance(p, str) for p in payload)
        ):
            raise FlowInvalid()
        portal, method, step, challenge_id, _nonce = payload
        return FlowState(portal=portal, method=method, step=step, challenge_id=challenge_id or None)


_MAX_FORM_FIELDS = 32


def read_form(data: object, fields: tuple[Field, ...]) -> dict[str, str]:
    """Exactly the declared fields of ``data``, as strings within their declared length.

    Anything else is an :class:`InvalidInput`: a missing field, a value that is not a string
    (a list from a repeated form field, a number, a mapping: never coerced, R23) or one longer
    than the field allows (checked before any hashing, R22).
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping) or len(data) > _MAX_FORM_FIELDS:
        raise InvalidInput()
    form: dict[str, str] = {}
    getlist = getattr(data, "getlist", None)  # werkzeug MultiDict, Django QueryDict
    for declared in fields:
        if callable(getlist) and len(getlist(declared.name)) > 1:
            # A repeated field (email=a&email=b) is refused, never narrowed to one value.
            raise InvalidInput(field=declared.name)
        value = data.get(declared.name)
        if value is None:
            raise InvalidInput("Please fill in every field.", field=declared.name)
        if not isinstance(value, str):
            # Lists (a repeated field), numbers, mappings: never coerced.
            raise InvalidInput(field=declared.name)
        if len(value) > declared.max_length:
            raise InvalidInput("That is longer than expected.", field=declared.name)
        form[declared.name] = value
    return form

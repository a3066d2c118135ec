"""Sessions: what a client holds after signing in, and the server-side record behind it.

A session id is 256 random bits. The client gets it signed (itsdangerous ``Signer``, salt
``portalauth.session``, every server key accepted, the newest used), so a forged or truncated
token is refused before the store is asked. The store keeps only the SHA-256 of the id, so a
database dump holds no usable session. Each sign-in creates a new id (no fixation). A session
ends at its idle expiry (sliding: activity moves it, at most up to the absolute expiry) or its
absolute expiry, or when revoked (:meth:`Sessions.revoke`, :meth:`Sessions.revoke_all`); the
directory ends all of an identity's sessions when a contact changes or the identity is disabled
or deleted.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from typing import Any

from .clock import Clock
from .config import PortalSettings
from .errors import SessionInvalid
from .events import Emitter
from .keys import Keyring
from .records import Identity, SessionRecord
from .signing import TokenSigner
from .stores.base import Store

__all__ = ["TOKEN_MAX", "Sessions"]

#: The longest session token accepted (a real one is about 70 characters).
TOKEN_MAX = 512
#: Activity moves the idle expiry at most this often, to keep validation read-only most times.
_TOUCH_EVERY = 60.0


#: The only token shape ever issued: a 43-character id (``token_urlsafe(32)``), a dot and the
#: 43-character unpadded base64url HMAC-SHA256 of the id.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}", re.ASCII)


def _key(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("ascii")).digest()


class Sessions:
    """Create, validate and revoke sessions."""

    SALT = "portalauth.session"

    def __init__(
        self,
        store: Store,
        clock: Clock,
        keyring: Keyring,
        emitter: Emitter,
        settings_for: Any,
    ) -> None:
        self._store = store
        self._clock = clock
        self._emitter = emitter
        self._settings_for = settings_for  # Callable[[str], PortalSettings | None]
        # Tokens are what itsdangerous.Signer(keys, salt=SALT, sha256) writes (see signing.py).
        self._signer = TokenSigner(keyring, self.SALT)

    def create(
        self,
        identity: Identity,
        settings: PortalSettings,
        *,
        method: str,
        scope: str = "",
        claims: Mapping[str, Any] | None = None,
    ) -> tuple[str, SessionRecord]:
        """A new session for ``identity``: ``(token, record)``. The token is the cookie value."""
        now = self._clock.now()
        session_id = secrets.token_urlsafe(32)
        record = SessionRecord(
            key=_key(session_id),
            identity_id=identity.id,
            portal=settings.slug,
            method=method,
            scope=scope,
            created_at=now,
            last_seen_at=now,
            idle_expires_at=min(now + settings.session_idle, now + settings.session_absolute),
            absolute_expires_at=now + settings.session_absolute,
            claims=claims,
        )
        self._store.create_session(record)
        self._emitter.emit(
            "session.created", portal=settings.slug, identity_id=identity.id, method=method
        )
        signature = self._signer.sign(session_id.encode("ascii")).decode("ascii")
        return f"{session_id}.{signature}", record

    def _unsign(self, token: object) -> str:
        # id.signature in the exact form issued: the signature is compared as the string this
        # server would write, so no re-padded or bit-flipped spelling of it passes.
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise SessionInvalid()
        session_id, signature = token.split(".")
        if not self._signer.verify(session_id.encode("ascii"), signature.encode("ascii")):
            raise SessionInvalid()
        return session_id

    def validate(self, token: object, *, portal: str | None = None) -> SessionRecord:
        """The live session for ``token`` (moving its idle expiry); else :class:`SessionInvalid`.

        With ``portal``, a session of another portal is refused too.
        """
        key = _key(self._unsign(token))
        record = self._store.get_session(key)
        now = self._clock.now()
        if record is None or (portal is not None and record.portal != portal):
            raise SessionInvalid()
        if not record.live_at(now):
            self._store.delete_session(key)
            raise SessionInvalid()
        if now - record.last_seen_at >= _TOUCH_EVERY:
            settings = self._settings_for(record.portal)
            idle = settings.session_idle if settings is not None else 0
            idle_expires_at = min(now + idle, record.absolute_expires_at)
            self._store.touch_session(key, now, idle_expires_at)
            record = record.evolve(last_seen_at=now, idle_expires_at=idle_expires_at)
        return record

    def revoke(self, token: object) -> bool:
        """End the session ``token`` names. False if it was not a live session."""
        try:
            key = _key(self._unsign(token))
        except SessionInvalid:
            return False
        record = self._store.get_session(key)
        deleted = self._store.delete_session(key)
        if deleted and record is not None:
            self._emitter.emit(
                "session.revoked", portal=record.portal, identity_id=record.identity_id
            )
        return deleted

    def revoke_all(self, identity_id: str, *, keep: str | None = None) -> int:
        """End every session of the identity, except the one ``keep`` names (e.g. "sign out
        everywhere else"). Returns how many ended."""
        keep_key = None
        if keep is not None:
            try:
                keep_key = _key(self._unsign(keep))
            except SessionInvalid:
                keep_key = None
        count = self._store.delete_sessions(identity_id, keep=keep_key)
        if count:
            self._emitter.emit("session.revoked", identity_id=identity_id, detail={"count": count})
        return count

    def list(self, identity_id: str) -> list[SessionRecord]:
        """The identity's sessions that are still live, newest first."""
        now = self._clock.now()
        return [s for s in self._store.list_sessions(identity_id) if s.live_at(now)]

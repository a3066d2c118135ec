"""``redis://host:port/db?prefix=pa`` (``rediss://`` for TLS): a store in Redis, through redis-py.

Install the extra: ``pip install 'portalauth[redis]'``. Redis is meant for the *hot* records
(challenges, sessions, throttle counters, the outbox feed), usually behind
:class:`~portalauth.stores.composite.CompositeStore` with portals and identities in SQL; it can
also keep everything by itself.

What this store guarantees, on top of the :class:`~portalauth.stores.base.Store` contract:

- **Atomic by Lua.** Every atomic operation of the contract is one Lua script, which Redis runs
  without interleaving any other command: issue-with-supersede, spend-attempt, consume, revoke,
  counter increments, the uniqueness check and insert of an identity, the password
  compare-and-swap. Each script touches the keys of **one hash slot** only.
- **Expiry decided by time, not by TTL.** Records carry their ``expires_at`` and every decision
  compares it with the ``now`` passed in, exactly as the SQL store does. Native TTLs
  (``PEXPIREAT``) only collect garbage: a key lives until ``ttl_grace`` seconds (default 60) after
  its record expires (and at least that long after it was written), so ``purge_expired`` has
  nothing to do and returns 0.
- **Hash-tagged keys.** Keys start with the ``prefix`` URI option (default ``portalauth``). Keys
  that belong to one identity (its sessions, its challenges and their indexes, its message feed)
  carry the hash tag ``{i:<identity id>}``, so a Redis Cluster keeps them in one slot and each
  script stays in that slot. Challenges of a decoy subject are tagged the same way by subject.
  The directory (portals, identities and their unique-address indexes) shares the tag
  ``{<prefix>:dir}``: the uniqueness check and the insert must be one script, so they need one
  slot. It is small and cold; for large directories keep identities in SQL (the composite).
  Challenges and sessions are found by id or key through a small pointer key
  (``chid:<id>`` / ``sk:<key>`` → the owner's id, immutable, cached in the process).
- **Fail closed.** Any redis-py error (connection refused, timeout, a server error) raises
  :class:`~portalauth.errors.StoreUnavailable` with the driver's exception as ``__cause__``.
  Commands are never retried by the client: a lost reply is an error, never a silent second
  consume or attempt.
- **Exact round trips.** Records are Redis hashes with one field per attribute (``None`` is an
  absent field, bytes are stored raw, floats as ``repr`` text, which parses back to the same
  double, mappings as sorted JSON). Lua compares times with ``tonumber`` on that text (the same
  double) and never formats a float; stored times are always the text Python wrote.

URI options, removed before the URI goes to redis-py (every other redis-py URL option, such as
``socket_timeout`` or ``max_connections``, passes through): ``prefix`` (letters, digits and
``_.:-``), ``ttl_grace`` (seconds a record outlives its expiry, 1-86400) and ``message_cap``
(how many messages each outbox list keeps, default 1000). Socket timeouts default to 5 seconds.

Operating the server (the store cannot check these; they decide what the guarantees above are
worth):

- **Persistence.** A Redis without persistence (``appendonly no``) loses every hot record when it
  restarts: sessions end and pending codes stop working (that fails closed: nobody is signed in
  by it). Run it with ``appendonly yes`` to keep them, and ``appendfsync always`` to lose nothing
  a caller was told succeeded, even on a crash.
- **No eviction.** Use ``maxmemory-policy noeviction``: every key here has a TTL, so a
  ``volatile-*`` or ``allkeys-*`` policy under memory pressure would silently drop throttle and
  failure counters (resetting them) or consumed challenges. With ``noeviction`` a full server
  refuses writes, which this store reports as :class:`StoreUnavailable`.
- **Failover.** Replication is asynchronous: a replica promoted after a crash may lack the last
  writes, for example a consume, which would make that code usable again until it expires.
  Prefer one persistent primary, or accept that window.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

from ..config import PortalSettings
from ..errors import ConfigError, ContactTaken, NotFound, StoreUnavailable
from ..records import ChallengeRecord, Identity, Message, SessionRecord

__all__ = ["RedisStore"]

#: Defaults of the URI options.
DEFAULT_PREFIX = "portalauth"
DEFAULT_TTL_GRACE = 60.0
DEFAULT_MESSAGE_CAP = 1000
#: Socket timeouts (seconds) unless the URI sets ``socket_timeout`` / ``socket_connect_timeout``.
DEFAULT_TIMEOUT = 5.0

_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}", re.ASCII)
_OPTIONS = ("prefix", "ttl_grace", "message_cap")
#: Index sizes: the newest entries of one challenge key and of one lookup are kept.
_LATEST_KEEP = 64
_LOOKUP_KEEP = 16
#: Owner ids of challenges and sessions remembered in the process (pointers never change).
_POINTER_CACHE = 65536
#: A record whose expiry cannot be represented is kept this long (then collected).
_FAR_FUTURE = 4102444800.0  # 2100-01-01


# -- Lua ------------------------------------------------------------------------------------------
# Conventions: KEYS are all in one hash slot. A script that reaches a record by an id held in an
# index builds the key from a prefix passed in ARGV that has the same hash tag, so it stays in the
# slot. Times arrive as Python's repr() text; Lua only compares them (tonumber gives the same
# double) and stores the text it was given. Expiry times arrive as whole milliseconds.

# extend(key, at_ms, wall_ms): move the key's expiry later to at_ms, never earlier.
_EXTEND = """
local function extend(key, at, wall)
  local ttl = redis.call('PTTL', key)
  if ttl < 0 or ttl < tonumber(at) - tonumber(wall) then
    redis.call('PEXPIREAT', key, at)
  end
end
"""

# next_seq(key, at_ms, wall_ms): a number that orders the records of one slot by insertion (the
# server's clock in microseconds, forced to increase), as 20 zero-padded digits.
_NEXT_SEQ = """
local function next_seq(key, at, wall)
  local t = redis.call('TIME')
  local seq = math.max(tonumber(redis.call('GET', key) or '0') + 1, t[1] * 1000000 + t[2])
  local text = string.format('%020.0f', seq)
  redis.call('SET', key, text)
  extend(key, at, wall)
  return text
end
"""

# KEYS: record, live set, all set, latest zset, index-name set, sequence
# ARGV: supersede, record prefix, qid, portal, purpose, scope, created_at, expire ms, wall ms,
#       field/value pairs... Returns the insertion sequence number.
_ISSUE = (
    _EXTEND
    + _NEXT_SEQ
    + f"""
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('ERR portalauth: challenge id exists')
end
if ARGV[1] == '1' then
  for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    local k = ARGV[2] .. m
    local f = redis.call('HMGET', k, 'state', 'portal', 'purpose', 'scope')
    if f[1] ~= 'live' then
      redis.call('SREM', KEYS[2], m)
    elseif f[2] == ARGV[4] and f[3] == ARGV[5] and f[4] == ARGV[6] then
      redis.call('HSET', k, 'state', 'superseded')
      redis.call('SREM', KEYS[2], m)
    end
  end
end
local seq = next_seq(KEYS[6], ARGV[8], ARGV[9])
redis.call('HSET', KEYS[1], unpack(ARGV, 10))
redis.call('PEXPIREAT', KEYS[1], ARGV[8])
redis.call('SADD', KEYS[2], ARGV[3])
extend(KEYS[2], ARGV[8], ARGV[9])
redis.call('SADD', KEYS[3], ARGV[3])
extend(KEYS[3], ARGV[8], ARGV[9])
redis.call('ZADD', KEYS[4], ARGV[7], seq .. ':' .. ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -{_LATEST_KEEP + 1})
extend(KEYS[4], ARGV[8], ARGV[9])
redis.call('SADD', KEYS[5], KEYS[4])
extend(KEYS[5], ARGV[8], ARGV[9])
if redis.call('SCARD', KEYS[3]) > 256 then
  for _, m in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    if redis.call('EXISTS', ARGV[2] .. m) == 0 then redis.call('SREM', KEYS[3], m) end
  end
end
return seq
"""
)

# KEYS: lookup zset. ARGV: created_at, member, expire ms, wall ms
_LOOKUP_ADD = (
    _EXTEND
    + f"""
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -{_LOOKUP_KEEP + 1})
extend(KEYS[1], ARGV[3], ARGV[4])
return 1
"""
)

# KEYS: record. ARGV: now. The whole usable_at() test, then the increment.
_SPEND = """
local f = redis.call('HMGET', KEYS[1], 'state', 'expires_at', 'attempts', 'max_attempts')
if not f[1] then return {0} end
local ok = 0
if f[1] == 'live' and tonumber(ARGV[1]) < tonumber(f[2])
    and tonumber(f[3]) < tonumber(f[4]) then
  redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  ok = 1
end
return {ok, redis.call('HGETALL', KEYS[1])}
"""

# KEYS: record, live set. ARGV: now, qid
_CONSUME = """
local f = redis.call('HMGET', KEYS[1], 'state', 'expires_at')
if f[1] == 'live' and tonumber(ARGV[1]) < tonumber(f[2]) then
  redis.call('HSET', KEYS[1], 'state', 'consumed', 'consumed_at', ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

# KEYS: latest zset. ARGV: record prefix. Members are "<20-digit seq>:<qid>": the newest record
# that still exists (ties in created_at go to the higher sequence number).
_LATEST = """
for _, m in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, -1)) do
  local h = redis.call('HGETALL', ARGV[1] .. string.sub(m, 22))
  if #h > 0 then return h end
  redis.call('ZREM', KEYS[1], m)
end
return {}
"""

# KEYS: live set. ARGV: record prefix, portal, has purposes, has scope, scope, purposes...
_REVOKE = """
local purposes = nil
if ARGV[3] == '1' then
  purposes = {}
  for i = 6, #ARGV do purposes[ARGV[i]] = true end
end
local n = 0
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local k = ARGV[1] .. m
  local f = redis.call('HMGET', k, 'state', 'portal', 'purpose', 'scope')
  if f[1] ~= 'live' then
    redis.call('SREM', KEYS[1], m)
  elseif f[2] == ARGV[2] and (purposes == nil or purposes[f[3]])
      and (ARGV[4] ~= '1' or f[4] == ARGV[5]) then
    redis.call('HSET', k, 'state', 'revoked')
    redis.call('SREM', KEYS[1], m)
    n = n + 1
  end
end
return n
"""

# KEYS: all-challenges set, live set, index-name set, sessions set, sequence.
# ARGV: challenge record prefix, session record prefix. Returns {challenge qids, session hexes}.
_PURGE_SUBJECT = """
local ch = redis.call('SMEMBERS', KEYS[1])
for _, m in ipairs(ch) do redis.call('DEL', ARGV[1] .. m) end
for _, k in ipairs(redis.call('SMEMBERS', KEYS[3])) do redis.call('DEL', k) end
local ss = redis.call('SMEMBERS', KEYS[4])
for _, m in ipairs(ss) do redis.call('DEL', ARGV[2] .. m) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return {ch, ss}
"""

# KEYS: record, sessions set, sequence. ARGV: member, record expire ms, set expire ms, wall ms,
# fields...
_SESSION_CREATE = (
    _EXTEND
    + _NEXT_SEQ
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('ERR portalauth: session key exists')
end
redis.call('HSET', KEYS[1], '_seq', next_seq(KEYS[3], ARGV[3], ARGV[4]), unpack(ARGV, 5))
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
extend(KEYS[2], ARGV[3], ARGV[4])
return 1
"""
)

# KEYS: record. ARGV: last_seen_at, idle_expires_at, grace ms, wall ms, latest ms
_SESSION_TOUCH = """
local abs = redis.call('HGET', KEYS[1], 'absolute_expires_at')
if not abs then return 0 end
local idle = ARGV[2]
if tonumber(abs) < tonumber(idle) then idle = abs end
redis.call('HSET', KEYS[1], 'last_seen_at', ARGV[1], 'idle_expires_at', idle)
local at = math.max(math.floor(tonumber(idle) * 1000), tonumber(ARGV[4])) + tonumber(ARGV[3])
if not (at < tonumber(ARGV[5])) then at = tonumber(ARGV[5]) end
redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', at))
return 1
"""

# KEYS: record, sessions set. ARGV: member
_SESSION_DELETE = """
local n = redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return n
"""

# KEYS: sessions set. ARGV: record prefix, member to keep ('' for none)
_SESSIONS_DELETE = """
local n = 0
local gone = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if m ~= ARGV[2] then
    n = n + redis.call('DEL', ARGV[1] .. m)
    redis.call('SREM', KEYS[1], m)
    gone[#gone + 1] = m
  end
end
return {n, gone}
"""

# KEYS: sessions set. ARGV: record prefix. Returns member, fields, member, fields...
_SESSIONS_LIST = """
local out = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local h = redis.call('HGETALL', ARGV[1] .. m)
  if #h > 0 then
    out[#out + 1] = m
    out[#out + 1] = h
  else
    redis.call('SREM', KEYS[1], m)
  end
end
return out
"""

# KEYS: counter. ARGV: amount, expires_at, now, extend, expire ms
_COUNTER = """
local e = redis.call('HGET', KEYS[1], 'e')
local c
if (not e) or tonumber(ARGV[3]) >= tonumber(e) then
  redis.call('HSET', KEYS[1], 'c', ARGV[1], 'e', ARGV[2])
  redis.call('PEXPIREAT', KEYS[1], ARGV[5])
  c = tonumber(ARGV[1])
  e = ARGV[2]
else
  c = redis.call('HINCRBY', KEYS[1], 'c', ARGV[1])
  if ARGV[4] == '1' then
    redis.call('HSET', KEYS[1], 'e', ARGV[2])
    redis.call('PEXPIREAT', KEYS[1], ARGV[5])
    e = ARGV[2]
  end
end
return {c, e}
"""

# -- the directory (one slot): identities by id, unique (portal, email_key) and (portal, phone)
# KEYS: record, e-mail index, phone index, members. ARGV: qid, email key, has email, phone,
# has phone, field/value pairs...
_IDENTITY_ADD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'id' end
if ARGV[3] == '1' and redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return 'email' end
if ARGV[5] == '1' and redis.call('HEXISTS', KEYS[3], ARGV[4]) == 1 then return 'phone' end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
if ARGV[3] == '1' then redis.call('HSET', KEYS[2], ARGV[2], ARGV[1]) end
if ARGV[5] == '1' then redis.call('HSET', KEYS[3], ARGV[4], ARGV[1]) end
redis.call('SADD', KEYS[4], ARGV[1])
return 'ok'
"""

# KEYS: record, new e-mail index, new phone index, new members. ARGV: qid, email key, has email,
# phone, has phone, directory prefix, n, n field/value items, fields to delete...
_IDENTITY_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
if ARGV[3] == '1' then
  local o = redis.call('HGET', KEYS[2], ARGV[2])
  if o and o ~= ARGV[1] then return 'email' end
end
if ARGV[5] == '1' then
  local o = redis.call('HGET', KEYS[3], ARGV[4])
  if o and o ~= ARGV[1] then return 'phone' end
end
local old = redis.call('HMGET', KEYS[1], '_qp', 'email_key', 'phone')
local pre = ARGV[6]
if old[2] then
  local k = pre .. 'e:' .. old[1]
  if redis.call('HGET', k, old[2]) == ARGV[1] then redis.call('HDEL', k, old[2]) end
end
if old[3] then
  local k = pre .. 'p:' .. old[1]
  if redis.call('HGET', k, old[3]) == ARGV[1] then redis.call('HDEL', k, old[3]) end
end
local mk = pre .. 'm:' .. old[1]
if mk ~= KEYS[4] then redis.call('SREM', mk, ARGV[1]) end
local n = tonumber(ARGV[7])
redis.call('HSET', KEYS[1], unpack(ARGV, 8, 7 + n))
for i = 8 + n, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
if ARGV[3] == '1' then redis.call('HSET', KEYS[2], ARGV[2], ARGV[1]) end
if ARGV[5] == '1' then redis.call('HSET', KEYS[3], ARGV[4], ARGV[1]) end
redis.call('SADD', KEYS[4], ARGV[1])
return 'ok'
"""

# KEYS: record. ARGV: directory prefix, qid
_IDENTITY_DELETE = """
local f = redis.call('HMGET', KEYS[1], '_qp', 'email_key', 'phone')
if not f[1] then return 0 end
local pre = ARGV[1]
if f[2] then
  local k = pre .. 'e:' .. f[1]
  if redis.call('HGET', k, f[2]) == ARGV[2] then redis.call('HDEL', k, f[2]) end
end
if f[3] then
  local k = pre .. 'p:' .. f[1]
  if redis.call('HGET', k, f[3]) == ARGV[2] then redis.call('HDEL', k, f[3]) end
end
redis.call('SREM', pre .. 'm:' .. f[1], ARGV[2])
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS: e-mail index, phone index. ARGV: has email, email key, has phone, phone, record prefix
_IDENTITY_FIND = """
local q = false
if ARGV[1] == '1' then q = redis.call('HGET', KEYS[1], ARGV[2]) end
if (not q) and ARGV[3] == '1' then q = redis.call('HGET', KEYS[2], ARGV[4]) end
if not q then return {} end
return redis.call('HGETALL', ARGV[5] .. q)
"""

# KEYS: members. ARGV: record prefix
_IDENTITY_LIST = """
local out = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local h = redis.call('HGETALL', ARGV[1] .. m)
  if #h > 0 then out[#out + 1] = h else redis.call('SREM', KEYS[1], m) end
end
return out
"""

# KEYS: record. ARGV: at, method
_IDENTITY_SIGN_IN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'last_sign_in_at', ARGV[1], 'last_sign_in_method', ARGV[2])
return 1
"""

# KEYS: record. ARGV: expected is none, expected, new hash, now, changed
_IDENTITY_SWAP_HASH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local cur = redis.call('HGET', KEYS[1], 'password_hash')
if ARGV[1] == '1' then
  if cur then return 0 end
elseif cur ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'password_hash', ARGV[3], 'updated_at', ARGV[4])
if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'password_changed_at', ARGV[4]) end
return 1
"""

_SCRIPTS: dict[str, str] = {
    "issue": _ISSUE,
    "lookup_add": _LOOKUP_ADD,
    "spend": _SPEND,
    "consume": _CONSUME,
    "latest": _LATEST,
    "revoke": _REVOKE,
    "purge_subject": _PURGE_SUBJECT,
    "session_create": _SESSION_CREATE,
    "session_touch": _SESSION_TOUCH,
    "session_delete": _SESSION_DELETE,
    "sessions_delete": _SESSIONS_DELETE,
    "sessions_list": _SESSIONS_LIST,
    "counter": _COUNTER,
    "identity_add": _IDENTITY_ADD,
    "identity_update": _IDENTITY_UPDATE,
    "identity_delete": _IDENTITY_DELETE,
    "identity_find": _IDENTITY_FIND,
    "identity_list": _IDENTITY_LIST,
    "identity_sign_in": _IDENTITY_SIGN_IN,
    "identity_swap_hash": _IDENTITY_SWAP_HASH,
}


# -- record <-> hash --------------------------------------------------------------------------
_STR, _FLOAT, _INT, _BOOL, _BYTES, _JSON = range(6)

_IDENTITY_FIELDS: tuple[tuple[str, int], ...] = (
    ("id", _STR),
    ("portal", _STR),
    ("name", _STR),
    ("email", _STR),
    ("email_key", _STR),
    ("email_status", _STR),
    ("phone", _STR),
    ("phone_status", _STR),
    ("disabled", _BOOL),
    ("created_at", _FLOAT),
    ("updated_at", _FLOAT),
    ("last_sign_in_at", _FLOAT),
    ("last_sign_in_method", _STR),
    ("invited_method", _STR),
    ("invited_at", _FLOAT),
    ("email_confirmed", _BOOL),
    ("tax_id_digest", _BYTES),
    ("password_hash", _STR),
    ("password_changed_at", _FLOAT),
    ("attributes", _JSON),
)
#: Written only by their own methods (record_sign_in, replace_password_hash), never by an update.
_OWN_WRITERS = frozenset(
    {"password_hash", "password_changed_at", "last_sign_in_at", "last_sign_in_method"}
)
_CHALLENGE_FIELDS: tuple[tuple[str, int], ...] = (
    ("id", _STR),
    ("portal", _STR),
    ("subject", _STR),
    ("purpose", _STR),
    ("scope", _STR),
    ("digest", _BYTES),
    ("lookup", _BYTES),
    ("created_at", _FLOAT),
    ("expires_at", _FLOAT),
    ("attempts", _INT),
    ("max_attempts", _INT),
    ("state", _STR),
    ("consumed_at", _FLOAT),
    ("data", _JSON),
)
_SESSION_FIELDS: tuple[tuple[str, int], ...] = (
    ("identity_id", _STR),
    ("portal", _STR),
    ("method", _STR),
    ("scope", _STR),
    ("created_at", _FLOAT),
    ("last_seen_at", _FLOAT),
    ("idle_expires_at", _FLOAT),
    ("absolute_expires_at", _FLOAT),
    ("claims", _JSON),
)


def _json_default(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} cannot be stored as JSON")


def _dump(value: Mapping[str, Any]) -> str:
    # Sorted and compact; json writes floats with repr(), which reads back as the same double.
    return json.dumps(dict(value), sort_keys=True, separators=(",", ":"), default=_json_default)


def _load(raw: bytes) -> dict[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise TypeError("a stored mapping is not a JSON object")
    return value


def _float_text(value: float) -> str:
    return repr(float(value))


def _encode_value(value: Any, kind: int) -> str | bytes:
    if kind == _STR:
        return str(value)
    if kind == _FLOAT:
        return _float_text(value)
    if kind == _INT:
        return str(int(value))
    if kind == _BOOL:
        return "1" if value else "0"
    if kind == _BYTES:
        return bytes(value)
    return _dump(value)


def _decode_value(raw: bytes, kind: int) -> Any:
    if kind == _STR:
        return raw.decode()
    if kind == _FLOAT:
        return float(raw)
    if kind == _INT:
        return int(raw)
    if kind == _BOOL:
        return raw == b"1"
    if kind == _BYTES:
        return bytes(raw)
    return _load(raw)


def _encode(record: object, fields: Sequence[tuple[str, int]]) -> list[str | bytes]:
    """Field/value items for HSET; ``None`` attributes are left out (an absent field)."""
    items: list[str | bytes] = []
    for name, kind in fields:
        value = getattr(record, name)
        if value is not None:
            items.extend((name, _encode_value(value, kind)))
    return items


def _decode(stored: Mapping[bytes, bytes], fields: Sequence[tuple[str, int]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, kind in fields:
        raw = stored.get(name.encode())
        values[name] = None if raw is None else _decode_value(raw, kind)
    return values


def _pairs(flat: Sequence[Any]) -> dict[bytes, bytes]:
    """A flat ``[field, value, ...]`` reply (HGETALL inside Lua) as a dict."""
    return {bytes(flat[i]): bytes(flat[i + 1]) for i in range(0, len(flat), 2)}


def _identity(stored: Mapping[bytes, bytes]) -> Identity:
    return Identity(**_decode(stored, _IDENTITY_FIELDS))


def _challenge(stored: Mapping[bytes, bytes]) -> ChallengeRecord:
    return ChallengeRecord(**_decode(stored, _CHALLENGE_FIELDS))


def _session(key: bytes, stored: Mapping[bytes, bytes]) -> SessionRecord:
    return SessionRecord(key=key, **_decode(stored, _SESSION_FIELDS))


def _message_text(message: Message) -> str:
    return json.dumps(
        {
            "id": message.id,
            "portal": message.portal,
            "identity_id": message.identity_id,
            "channel": message.channel,
            "to": message.to,
            "subject": message.subject,
            "text": message.text,
            "html": message.html,
            "purpose": message.purpose,
            "created_at": float(message.created_at),
            "simulated": bool(message.simulated),
        },
        separators=(",", ":"),
    )


def _message(raw: bytes) -> Message:
    data = json.loads(raw)
    data["created_at"] = float(data["created_at"])
    return Message(**data)


def _q(text: str) -> str:
    """A key component: percent-encoded, so it holds no ``:``, ``{`` or ``}``."""
    return quote(text, safe="")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- URIs -------------------------------------------------------------------------------------
def _parse_uri(uri: object) -> tuple[str, str, float, int, str]:
    """``(redis-py URL, prefix, ttl grace, message cap, display)`` or :class:`ConfigError`."""
    if not isinstance(uri, str):
        raise ConfigError("The store URI must be a string such as redis://127.0.0.1:6379/0.")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ConfigError("The redis:// store URI is malformed.") from None
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError("A Redis store URI must start with redis:// or rediss://.")
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in _OPTIONS:
            if name in ours:
                raise ConfigError(f"The store URI sets {name} twice.")
            ours[name] = value
        else:
            rest.append((name, value))
    prefix = ours.get("prefix", DEFAULT_PREFIX)
    if not _PREFIX.fullmatch(prefix):
        raise ConfigError("The Redis key prefix must be 1-64 letters, digits or _ . : -")
    try:
        grace = float(ours.get("ttl_grace", DEFAULT_TTL_GRACE))
        cap = int(ours.get("message_cap", DEFAULT_MESSAGE_CAP))
    except ValueError:
        raise ConfigError("ttl_grace and message_cap must be numbers.") from None
    if not 1.0 <= grace <= 86400.0:
        raise ConfigError("ttl_grace must be 1 to 86400 seconds.")
    if not 1 <= cap <= 1_000_000:
        raise ConfigError("message_cap must be 1 to 1000000.")
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), ""))
    host = parts.hostname or "localhost"
    display = f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path or '/0'} prefix={prefix!r}"
    return url, prefix, grace, cap, display


class _Pointers:
    """A bounded, thread-safe map of ids to owners (pointer keys never change)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._map: OrderedDict[str, str] = OrderedDict()

    def get(self, key: str) -> str | None:
        with self._lock:
            owner = self._map.get(key)
            if owner is not None:
                self._map.move_to_end(key)
            return owner

    def put(self, key: str, owner: str) -> None:
        with self._lock:
            self._map[key] = owner
            self._map.move_to_end(key)
            while len(self._map) > self._size:
                self._map.popitem(last=False)

    def drop(self, key: str) -> None:
        with self._lock:
            self._map.pop(key, None)


# -- the store --------------------------------------------------------------------------------
class RedisStore:
    """A :class:`~portalauth.stores.base.Store` in Redis (see the module documentation).

    ``RedisStore("redis://127.0.0.1:6379/0?prefix=pa")``. Connects lazily through a connection
    pool built from the URI: a server that is down makes each call raise
    :class:`StoreUnavailable`, and the store recovers by itself once it is back. Raises
    :class:`ConfigError` for a malformed URI. Thread-safe; a forked child opens its own
    connections.
    """

    #: Records expire natively; :meth:`purge_expired` has nothing to do.
    native_ttl = True

    def __init__(self, uri: str) -> None:
        url, self._prefix, self._grace, self._cap, self._display = _parse_uri(uri)
        self._closed = False
        try:
            self._pool = redis.ConnectionPool.from_url(
                url,
                socket_timeout=DEFAULT_TIMEOUT,
                socket_connect_timeout=DEFAULT_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
        except (ValueError, TypeError):
            # The driver's message is not repeated: it may quote the URI, password included.
            raise ConfigError("The redis:// store URI is not usable.") from None
        self._client = redis.Redis(connection_pool=self._pool)
        self._scripts: dict[str, Script] = {
            name: self._client.register_script(source) for name, source in _SCRIPTS.items()
        }
        self._dir = f"{self._prefix}:{{{self._prefix}:dir}}:"
        self._challenge_owners = _Pointers(_POINTER_CACHE)
        self._session_owners = _Pointers(_POINTER_CACHE)
        # slug -> (stored JSON, parsed settings), as the SQL store: parsing costs more than
        # comparing the text.
        self._portal_cache: dict[str, tuple[bytes, PortalSettings]] = {}

    def __repr__(self) -> str:
        return f"RedisStore({self._display})"

    # -- plumbing ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Redis errors of the body become :class:`StoreUnavailable` (fail closed)."""
        if self._closed:
            raise StoreUnavailable()
        try:
            yield
        except redis.RedisError as exc:
            raise StoreUnavailable() from exc

    def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        with self._guard():
            return self._scripts[name](keys=list(keys), args=list(args))

    def _expire_ms(self, expires_at: float) -> int:
        """When Redis may drop a record expiring at ``expires_at``: ``ttl_grace`` later, and
        never sooner than ``ttl_grace`` from now (frozen test clocks may lag the wall clock)."""
        at = max(float(expires_at), time.time())
        if not at < _FAR_FUTURE:  # also NaN
            at = _FAR_FUTURE
        return int((at + self._grace) * 1000)

    @staticmethod
    def _wall_ms() -> int:
        return int(time.time() * 1000)

    # key names
    def _slot(self, owner: str) -> str:
        """The prefix of one identity's (or challenge subject's) keys: one hash slot."""
        return f"{self._prefix}:{{i:{_q(owner)}}}:"

    def _challenge_pointer(self, challenge_id: str) -> str:
        return f"{self._prefix}:chid:{_q(challenge_id)}"

    def _session_pointer(self, hexkey: str) -> str:
        return f"{self._prefix}:sk:{hexkey}"

    def _lookup_key(self, portal: str, purpose: str, lookup: bytes) -> str:
        return f"{self._prefix}:lk:{_q(portal)}:{_q(purpose)}:{lookup.hex()}"

    def _latest_key(self, slot: str, portal: str, purpose: str, scope: str) -> str:
        return f"{slot}cl:{_q(portal)}:{_q(purpose)}:{_q(scope)}"

    def _counter_key(self, key: str) -> str:
        return f"{self._prefix}:ctr:{_q(key)}"

    def _portal_messages(self, portal: str) -> str:
        return f"{self._prefix}:msg:{_q(portal)}"

    # owners, through the pointer keys
    def _challenge_subject(self, challenge_id: str) -> str | None:
        subject = self._challenge_owners.get(challenge_id)
        if subject is None:
            with self._guard():
                raw = self._client.get(self._challenge_pointer(challenge_id))
            if raw is None:
                return None
            subject = _text(raw)
            self._challenge_owners.put(challenge_id, subject)
        return subject

    def _session_identity(self, hexkey: str) -> str | None:
        identity_id = self._session_owners.get(hexkey)
        if identity_id is None:
            with self._guard():
                raw = self._client.get(self._session_pointer(hexkey))
            if raw is None:
                return None
            identity_id = _text(raw)
            self._session_owners.put(hexkey, identity_id)
        return identity_id

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Disconnect the pool. Later calls fail closed with :class:`StoreUnavailable`."""
        self._closed = True
        with contextlib.suppress(redis.RedisError, OSError):
            self._pool.disconnect()

    # -- portals ----------------------------------------------------------------------------
    def put_portal(self, settings: PortalSettings, now: float) -> None:
        text = json.dumps(
            settings.to_dict(), sort_keys=True, separators=(",", ":"), default=_json_default
        )
        with self._guard():
            self._client.hset(self._dir + "portals", settings.slug, text)

    def _settings(self, slug: str, raw: bytes) -> PortalSettings:
        cached = self._portal_cache.get(slug)
        if cached is not None and cached[0] == raw:
            return cached[1]
        settings = PortalSettings.from_dict(json.loads(raw))
        self._portal_cache[slug] = (raw, settings)
        return settings

    def get_portal(self, slug: str) -> PortalSettings | None:
        with self._guard():
            raw = cast("bytes | None", self._client.hget(self._dir + "portals", slug))
        return None if raw is None else self._settings(slug, raw)

    def list_portals(self) -> list[PortalSettings]:
        with self._guard():
            stored = cast("dict[bytes, bytes]", self._client.hgetall(self._dir + "portals"))
        found = [self._settings(slug.decode(), raw) for slug, raw in stored.items()]
        return sorted(found, key=lambda p: p.slug)

    # -- identities -------------------------------------------------------------------------
    def _identity_keys(self, identity: Identity) -> list[str]:
        qp = _q(identity.portal)
        return [
            f"{self._dir}i:{_q(identity.id)}",
            f"{self._dir}e:{qp}",
            f"{self._dir}p:{qp}",
            f"{self._dir}m:{qp}",
        ]

    @staticmethod
    def _contact_args(identity: Identity) -> list[str]:
        email, phone = identity.email_key, identity.phone
        return [email or "", "1" if email else "0", phone or "", "1" if phone else "0"]

    @staticmethod
    def _raise_taken(result: object) -> None:
        outcome = _text(result)
        if outcome == "id":
            raise ContactTaken("That identity id exists already.")
        if outcome in ("email", "phone"):
            raise ContactTaken(field=outcome)
        if outcome == "missing":
            raise NotFound()

    def add_identity(self, identity: Identity) -> None:
        """Insert an identity; :class:`ContactTaken` if its id, e-mail key or phone is taken in
        its portal. The check and the insert are one script."""
        fields = [*_encode(identity, _IDENTITY_FIELDS), "_qp", _q(identity.portal)]
        result = self._run(
            "identity_add",
            self._identity_keys(identity),
            [_q(identity.id), *self._contact_args(identity), *fields],
        )
        self._raise_taken(result)

    def update_identity(self, identity: Identity) -> None:
        """Replace an identity except the fields with their own writers, in one script."""
        written = [(n, k) for n, k in _IDENTITY_FIELDS if n not in _OWN_WRITERS]
        items = [*_encode(identity, written), "_qp", _q(identity.portal)]
        cleared = [n for n, _ in written if getattr(identity, n) is None]
        result = self._run(
            "identity_update",
            self._identity_keys(identity),
            [
                _q(identity.id),
                *self._contact_args(identity),
                self._dir,
                len(items),
                *items,
                *cleared,
            ],
        )
        self._raise_taken(result)

    def record_sign_in(self, identity_id: str, at: float, method: str) -> None:
        self._run(
            "identity_sign_in", [f"{self._dir}i:{_q(identity_id)}"], [_float_text(at), method]
        )

    def get_identity(self, identity_id: str) -> Identity | None:
        with self._guard():
            stored = cast(
                "dict[bytes, bytes]", self._client.hgetall(f"{self._dir}i:{_q(identity_id)}")
            )
        return _identity(stored) if stored else None

    def find_identity(
        self, portal: str, *, email_key: str | None = None, phone: str | None = None
    ) -> Identity | None:
        """The identity with that e-mail key or phone; given both, an e-mail match wins."""
        if email_key is None and phone is None:
            return None
        qp = _q(portal)
        flat = self._run(
            "identity_find",
            [f"{self._dir}e:{qp}", f"{self._dir}p:{qp}"],
            [
                "0" if email_key is None else "1",
                email_key or "",
                "0" if phone is None else "1",
                phone or "",
                f"{self._dir}i:",
            ],
        )
        return _identity(_pairs(flat)) if flat else None

    def list_identities(self, portal: str) -> list[Identity]:
        rows = self._run("identity_list", [f"{self._dir}m:{_q(portal)}"], [f"{self._dir}i:"])
        found = [_identity(_pairs(flat)) for flat in rows]
        return sorted(found, key=lambda i: (i.name, i.id))

    def delete_identity(self, identity_id: str) -> bool:
        """Delete an identity with its sessions and challenges.

        The identity (directory slot) and its hot records (its own slot) cannot change in one
        script, so the order fails closed: the hot records go first (a failure leaves the
        identity, so the call can be repeated), then the identity, then the hot records once more
        (any session created in between). An unknown id changes nothing: it may be a decoy
        subject, whose challenges stay.
        """
        record_key = f"{self._dir}i:{_q(identity_id)}"
        with self._guard():
            exists = self._client.exists(record_key)
        if not exists:
            return False
        self.delete_subject(identity_id)
        deleted = self._run("identity_delete", [record_key], [self._dir, _q(identity_id)])
        self.delete_subject(identity_id)
        return bool(deleted)

    def delete_subject(self, subject: str) -> None:
        """Delete every challenge and session of ``subject`` (an identity id or a decoy
        subject), whatever their state. Used by :meth:`delete_identity` and by the composite
        store, whose identities live elsewhere. Its outbox messages stay, as in every store."""
        slot = self._slot(subject)
        gone = self._run(
            "purge_subject",
            [slot + "call", slot + "clive", slot + "cidx", slot + "sess", slot + "seq"],
            [slot + "c:", slot + "s:"],
        )
        challenge_ids = [_text(m) for m in gone[0]]
        session_keys = [_text(m) for m in gone[1]]
        if not challenge_ids and not session_keys:
            return
        with self._guard():
            pipe = self._client.pipeline(transaction=False)
            for qid in challenge_ids:
                pipe.delete(f"{self._prefix}:chid:{qid}")
            for hexkey in session_keys:
                pipe.delete(self._session_pointer(hexkey))
            pipe.execute()
        for hexkey in session_keys:
            self._session_owners.drop(hexkey)

    def replace_password_hash(
        self,
        identity_id: str,
        new_hash: str,
        *,
        expected: str | None,
        now: float,
        changed: bool = False,
    ) -> bool:
        result = self._run(
            "identity_swap_hash",
            [f"{self._dir}i:{_q(identity_id)}"],
            [
                "1" if expected is None else "0",
                expected or "",
                new_hash,
                _float_text(now),
                "1" if changed else "0",
            ],
        )
        return bool(result)

    # -- challenges -------------------------------------------------------------------------
    def issue_challenge(self, record: ChallengeRecord, *, supersede: bool) -> None:
        """Insert ``record`` (retiring the live challenges of its key first, with
        ``supersede``) in one script, with its pointer; then its lookup entry, which carries the
        insertion sequence number the script assigned."""
        slot = self._slot(record.subject)
        qid = _q(record.id)
        created = _float_text(record.created_at)
        expire_ms = self._expire_ms(record.expires_at)
        wall_ms = self._wall_ms()
        keys = [
            slot + "c:" + qid,
            slot + "clive",
            slot + "call",
            self._latest_key(slot, record.portal, record.purpose, record.scope),
            slot + "cidx",
            slot + "seq",
        ]
        args: list[Any] = [
            "1" if supersede else "0",
            slot + "c:",
            qid,
            record.portal,
            record.purpose,
            record.scope,
            created,
            expire_ms,
            wall_ms,
            *_encode(record, _CHALLENGE_FIELDS),
        ]
        with self._guard():
            # One round trip, in this order on one connection. EVAL (not EVALSHA) so that a
            # restarted server without the script cached cannot half-run the batch.
            pipe = self._client.pipeline(transaction=False)
            pipe.eval(_ISSUE, len(keys), *keys, *args)
            pipe.set(self._challenge_pointer(record.id), record.subject, pxat=expire_ms)
            seq = _text(pipe.execute()[0])
            if record.lookup is not None:
                member = f"{seq}:{_q(record.subject)}:{qid}"
                lookup_key = self._lookup_key(record.portal, record.purpose, record.lookup)
                self._scripts["lookup_add"](
                    keys=[lookup_key], args=[created, member, expire_ms, wall_ms]
                )
        self._challenge_owners.put(record.id, record.subject)

    def get_challenge(self, challenge_id: str) -> ChallengeRecord | None:
        subject = self._challenge_subject(challenge_id)
        if subject is None:
            return None
        with self._guard():
            stored = cast(
                "dict[bytes, bytes]",
                self._client.hgetall(self._slot(subject) + "c:" + _q(challenge_id)),
            )
        return _challenge(stored) if stored else None

    def find_challenge(
        self, portal: str, purpose: str, lookups: Sequence[bytes]
    ) -> ChallengeRecord | None:
        """The most recent challenge (by ``created_at``, then insertion) with one of
        ``lookups``, in any state."""
        wanted = list(dict.fromkeys(lookups))
        if not wanted:
            return None
        keys = [self._lookup_key(portal, purpose, lookup) for lookup in wanted]
        with self._guard():
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.zrevrange(key, 0, -1, withscores=True)
            replies = pipe.execute()
        candidates: list[tuple[float, int, str, str, str, bytes]] = []
        for key, reply in zip(keys, replies, strict=True):
            for member, score in reply:
                seq, qsubject, qid = _text(member).split(":", 2)
                candidates.append((float(score), int(seq), qsubject, qid, key, bytes(member)))
        candidates.sort(reverse=True)
        for _, _, qsubject, qid, key, member in candidates:
            record_key = f"{self._prefix}:{{i:{qsubject}}}:c:{qid}"
            with self._guard():
                stored = cast("dict[bytes, bytes]", self._client.hgetall(record_key))
                if stored:
                    return _challenge(stored)
                self._client.zrem(key, member)  # deleted or expired: prune the index
        return None

    def latest_challenge(
        self, portal: str, subject: str, purpose: str, scope: str = ""
    ) -> ChallengeRecord | None:
        slot = self._slot(subject)
        flat = self._run("latest", [self._latest_key(slot, portal, purpose, scope)], [slot + "c:"])
        return _challenge(_pairs(flat)) if flat else None

    def spend_attempt(self, challenge_id: str, now: float) -> tuple[bool, ChallengeRecord | None]:
        """One script: the usable test and the increment. ``(True, record after)`` or
        ``(False, record as it is)``; ``(False, None)`` for an unknown id."""
        subject = self._challenge_subject(challenge_id)
        if subject is None:
            return False, None
        reply = self._run(
            "spend", [self._slot(subject) + "c:" + _q(challenge_id)], [_float_text(now)]
        )
        if len(reply) < 2:
            return False, None
        return bool(reply[0]), _challenge(_pairs(reply[1]))

    def consume_challenge(self, challenge_id: str, now: float) -> bool:
        """One script: True for exactly one of any number of concurrent callers."""
        subject = self._challenge_subject(challenge_id)
        if subject is None:
            return False
        slot = self._slot(subject)
        qid = _q(challenge_id)
        result = self._run("consume", [slot + "c:" + qid, slot + "clive"], [_float_text(now), qid])
        return bool(result)

    def revoke_challenges(
        self,
        portal: str,
        subject: str,
        *,
        purposes: Sequence[str] | None = None,
        scope: str | None = None,
    ) -> int:
        if purposes is not None and not purposes:
            return 0  # no purpose can match an empty list
        slot = self._slot(subject)
        result = self._run(
            "revoke",
            [slot + "clive"],
            [
                slot + "c:",
                portal,
                "0" if purposes is None else "1",
                "0" if scope is None else "1",
                scope or "",
                *(purposes or ()),
            ],
        )
        return int(result)

    # -- sessions ---------------------------------------------------------------------------
    def create_session(self, record: SessionRecord) -> None:
        """Insert a session (one script in its identity's slot) and its pointer. A key that
        exists already is :class:`StoreUnavailable`, as in the SQL store."""
        slot = self._slot(record.identity_id)
        hexkey = record.key.hex()
        keys = [slot + "s:" + hexkey, slot + "sess", slot + "seq"]
        record_ms = self._expire_ms(min(record.idle_expires_at, record.absolute_expires_at))
        final_ms = self._expire_ms(record.absolute_expires_at)
        fields = _encode(record, _SESSION_FIELDS)
        with self._guard():
            pipe = self._client.pipeline(transaction=False)
            pipe.eval(
                _SESSION_CREATE,
                len(keys),
                *keys,
                hexkey,
                record_ms,
                final_ms,
                self._wall_ms(),
                *fields,
            )
            pipe.set(self._session_pointer(hexkey), record.identity_id, pxat=final_ms)
            pipe.execute()
        self._session_owners.put(hexkey, record.identity_id)

    def get_session(self, key: bytes) -> SessionRecord | None:
        hexkey = key.hex()
        identity_id = self._session_identity(hexkey)
        if identity_id is None:
            return None
        with self._guard():
            stored = cast(
                "dict[bytes, bytes]",
                self._client.hgetall(self._slot(identity_id) + "s:" + hexkey),
            )
        return _session(bytes(key), stored) if stored else None

    def touch_session(self, key: bytes, last_seen_at: float, idle_expires_at: float) -> None:
        """Move the idle expiry, capped at the absolute expiry in the same script."""
        hexkey = key.hex()
        identity_id = self._session_identity(hexkey)
        if identity_id is None:
            return
        self._run(
            "session_touch",
            [self._slot(identity_id) + "s:" + hexkey],
            [
                _float_text(last_seen_at),
                _float_text(idle_expires_at),
                int(self._grace * 1000),
                self._wall_ms(),
                int(_FAR_FUTURE * 1000),
            ],
        )

    def delete_session(self, key: bytes) -> bool:
        hexkey = key.hex()
        identity_id = self._session_identity(hexkey)
        if identity_id is None:
            return False
        slot = self._slot(identity_id)
        deleted = self._run("session_delete", [slot + "s:" + hexkey, slot + "sess"], [hexkey])
        with self._guard():
            self._client.delete(self._session_pointer(hexkey))
        self._session_owners.drop(hexkey)
        return bool(deleted)

    def delete_sessions(self, identity_id: str, *, keep: bytes | None = None) -> int:
        slot = self._slot(identity_id)
        count, gone = self._run(
            "sessions_delete", [slot + "sess"], [slot + "s:", "" if keep is None else keep.hex()]
        )
        if gone:
            with self._guard():
                self._client.delete(*(self._session_pointer(_text(m)) for m in gone))
            for member in gone:
                self._session_owners.drop(_text(member))
        return int(count)

    def list_sessions(self, identity_id: str) -> list[SessionRecord]:
        """Newest first by ``created_at``; sessions created at the same instant in the order
        they were created."""
        slot = self._slot(identity_id)
        flat = self._run("sessions_list", [slot + "sess"], [slot + "s:"])
        found: list[tuple[float, int, SessionRecord]] = []
        for i in range(0, len(flat), 2):
            stored = _pairs(flat[i + 1])
            record = _session(bytes.fromhex(_text(flat[i])), stored)
            found.append((-record.created_at, int(stored.get(b"_seq", b"0")), record))
        found.sort(key=lambda item: (item[0], item[1]))
        return [record for _, _, record in found]

    # -- simulated messages -----------------------------------------------------------------
    def add_message(self, message: Message) -> None:
        """Push onto the portal's list (and the identity's), each capped at ``message_cap``."""
        text = _message_text(message)
        with self._guard():
            pipe = self._client.pipeline(transaction=False)
            lists = [self._portal_messages(message.portal)]
            if message.identity_id is not None:
                lists.append(f"{self._slot(message.identity_id)}msg:{_q(message.portal)}")
            for key in lists:
                pipe.lpush(key, text)
                pipe.ltrim(key, 0, self._cap - 1)
            pipe.execute()

    def list_messages(
        self, portal: str, *, identity_id: str | None = None, limit: int = 100
    ) -> list[Message]:
        """Newest (last added) first, at most ``limit`` (and at most ``message_cap``)."""
        if limit <= 0:
            return []
        if identity_id is None:
            key = self._portal_messages(portal)
        else:
            key = f"{self._slot(identity_id)}msg:{_q(portal)}"
        with self._guard():
            raws = cast("list[bytes]", self._client.lrange(key, 0, limit - 1))
        return [_message(raw) for raw in raws]

    # -- counters ---------------------------------------------------------------------------
    def incr_counter(
        self, key: str, amount: int, expires_at: float, now: float, *, extend: bool = False
    ) -> tuple[int, float]:
        """One script: restart a missing or expired counter, else add (and, with ``extend``,
        take the new expiry). Returns the stored ``(count, expires_at)``."""
        count, stored_expiry = self._run(
            "counter",
            [self._counter_key(key)],
            [
                int(amount),
                _float_text(expires_at),
                _float_text(now),
                "1" if extend else "0",
                self._expire_ms(expires_at),
            ],
        )
        return int(count), float(stored_expiry)

    def get_counter(self, key: str, now: float) -> tuple[int, float]:
        with self._guard():
            count, expiry = cast(
                "list[bytes | None]", self._client.hmget(self._counter_key(key), ["c", "e"])
            )
        if count is None or expiry is None or now >= float(expiry):
            return 0, 0.0
        return int(count), float(expiry)

    def clear_counter(self, key: str) -> None:
        with self._guard():
            self._client.delete(self._counter_key(key))

    # -- housekeeping -----------------------------------------------------------------------
    def purge_expired(self, now: float, *, batch: int = 1000) -> int:
        """Nothing to do: Redis drops expired keys itself (``ttl_grace`` after expiry)."""
        return 0

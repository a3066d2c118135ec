"""Who is asking: the client's address and agent, normalised for throttling.

Throttles key on :attr:`ClientInfo.ip_key`, not on the raw address: IPv4-mapped IPv6 addresses
are unwrapped to IPv4, and IPv6 addresses are grouped by their /64 (one subscriber usually holds
a whole /64, so rotating within it must not buy fresh limits). portalauth never reads
``X-Forwarded-For`` itself: an integration resolves the client address, trusting forwarded headers
only when a trusted-proxy count is configured (see :func:`client_ip_from_forwarded`).
"""

from __future__ import annotations

import ipaddress

from attrs import Factory, field, frozen

__all__ = ["ClientInfo", "client_ip_from_forwarded", "ip_key"]

_MAX_AGENT = 512


def ip_key(ip: str | None) -> str:
    """The throttle bucket for an address: IPv4 as is, IPv6 by /64, mapped IPv4 unwrapped.

    Anything unparsable (or missing) falls into one shared ``"unknown"`` bucket, so garbage in the
    address cannot create fresh buckets.
    """
    if not ip:
        return "unknown"
    try:
        addr = ipaddress.ip_address(ip.strip().split("%", 1)[0])
    except ValueError:
        return "unknown"
    if isinstance(addr, ipaddress.IPv6Address):
        mapped = addr.ipv4_mapped
        if mapped is not None:
            return str(mapped)
        net = ipaddress.IPv6Network((int(addr) >> 64 << 64, 64))
        return str(net)
    return str(addr)


def client_ip_from_forwarded(
    remote_addr: str | None, forwarded_for: str | None, trusted: int
) -> str:
    """The client address given ``trusted`` reverse proxies in front of the app.

    With ``trusted == 0`` (the default everywhere) ``X-Forwarded-For`` is ignored. Otherwise the
    address ``trusted`` hops from the right of the header is used, as each trusted proxy appends
    the address it saw; a header shorter than that falls back to ``remote_addr``.
    """
    if trusted <= 0 or not forwarded_for:
        return remote_addr or ""
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    if len(hops) < trusted:
        return remote_addr or ""
    return hops[-trusted]


def _agent(value: str | None) -> str | None:
    if value is None:
        return None
    # Control characters would let a client forge log lines (R67).
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in value[:_MAX_AGENT])
    return cleaned


@frozen(kw_only=True)
class ClientInfo:
    """What the integration knows about the client making a request."""

    ip: str | None = None
    user_agent: str | None = field(default=None, converter=_agent)
    request_id: str | None = None
    #: The throttle bucket of ``ip`` (see :func:`ip_key`), parsed once per request.
    ip_key: str = field(
        init=False,
        default=Factory(lambda self: ip_key(self.ip), takes_self=True),
        eq=False,
        repr=False,
    )

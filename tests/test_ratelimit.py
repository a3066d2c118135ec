"""Throttles over a real store (memory and SQLite), and the client-address keys they count on."""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portalauth import (
    Auth,
    ClientInfo,
    ConfigError,
    Throttled,
    client_ip_from_forwarded,
    ip_key,
)
from portalauth.clock import FrozenClock
from portalauth.events import Emitter, Event
from portalauth.ratelimit import StoreCounters, Throttles, parse_limit
from portalauth.stores.base import Store
from portalauth.stores.memory import MemoryStore


@pytest.fixture
def store(make_auth: Callable[..., Auth], store_kind: str) -> Store:
    return make_auth(store_kind).store


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def throttles(store: Store, clock: FrozenClock, events: list[Event]) -> Throttles:
    return Throttles(store, clock, Emitter(events.append, clock))


# -- counting --------------------------------------------------------------------------------


def test_three_per_minute_allows_three(throttles: Throttles, events: list[Event]) -> None:
    for _ in range(3):
        throttles.hit("3/minute", "start", "acme", "192.0.2.1")
    assert not throttles.test("3/minute", "start", "acme", "192.0.2.1")
    with pytest.raises(Throttled) as refused:
        throttles.hit("3/minute", "start", "acme", "192.0.2.1", portal="acme")
    assert 0 < refused.value.retry_after <= 60
    assert [e.kind for e in events] == ["throttled"]
    assert events[0].portal == "acme"


def test_retry_after_counts_down_to_the_window_end(
    throttles: Throttles, clock: FrozenClock
) -> None:
    for _ in range(3):
        throttles.hit("3/minute", "k")
    with pytest.raises(Throttled) as refused:
        throttles.hit("3/minute", "k")
    assert refused.value.retry_after == 60
    clock.advance(20.5)
    with pytest.raises(Throttled) as refused:
        throttles.hit("3/minute", "k")
    assert refused.value.retry_after == 40  # rounded up
    clock.advance(39)
    with pytest.raises(Throttled) as refused:
        throttles.hit("3/minute", "k")
    assert refused.value.retry_after == 1


def test_the_window_resets_when_the_clock_passes_it(
    throttles: Throttles, clock: FrozenClock
) -> None:
    for _ in range(3):
        throttles.hit("3/minute", "k")
    clock.advance(59)
    with pytest.raises(Throttled):
        throttles.hit("3/minute", "k")
    clock.advance(1)
    assert throttles.test("3/minute", "k")
    for _ in range(3):
        throttles.hit("3/minute", "k")
    with pytest.raises(Throttled):
        throttles.hit("3/minute", "k")


def test_different_keys_are_independent(throttles: Throttles) -> None:
    for _ in range(3):
        throttles.hit("3/minute", "start", "acme", "192.0.2.1")
    with pytest.raises(Throttled):
        throttles.hit("3/minute", "start", "acme", "192.0.2.1")
    throttles.hit("3/minute", "start", "acme", "192.0.2.2")
    throttles.hit("3/minute", "start", "other", "192.0.2.1")
    throttles.hit("3/minute", "advance", "acme", "192.0.2.1")
    # Another limit on the same key is another bucket as well.
    throttles.hit("5/minute", "start", "acme", "192.0.2.1")


def test_key_parts_cannot_be_merged_into_one_bucket(throttles: Throttles) -> None:
    # ("a/b", "c") and ("a", "b/c") must not share a bucket.
    for _ in range(3):
        throttles.hit("3/minute", "a/b", "c")
    with pytest.raises(Throttled):
        throttles.hit("3/minute", "a/b", "c")
    throttles.hit("3/minute", "a", "b/c")


def test_counting_continues_while_throttled(
    throttles: Throttles, store: Store, clock: FrozenClock
) -> None:
    for _ in range(3):
        throttles.hit("3/minute", "k")
    for _ in range(5):
        with pytest.raises(Throttled):
            throttles.hit("3/minute", "k")
    counters = StoreCounters(store, clock)
    assert counters.get(parse_limit("3/minute")[0].key_for("k")) == 8
    # Hammering does not push the window's end out (no permanent lock-out, R12).
    clock.advance(60)
    throttles.hit("3/minute", "k")


def test_test_counts_nothing(throttles: Throttles) -> None:
    for _ in range(10):
        assert throttles.test("3/minute", "k")
    for _ in range(3):
        throttles.hit("3/minute", "k")


@pytest.mark.parametrize("limit", ["3/minute", "2/5 seconds;10/hour"])
def test_hit_test_and_clear_share_one_counter(throttles: Throttles, limit: str) -> None:
    # hit counts on the key limits' own limiter reads in test() and resets in clear().
    amount = min(item.amount for item in parse_limit(limit))
    for _ in range(amount):
        assert throttles.test(limit, "a/b", "c")
        throttles.hit(limit, "a/b", "c")
    assert not throttles.test(limit, "a/b", "c")
    throttles.clear(limit, "a/b", "c")
    assert throttles.test(limit, "a/b", "c")
    for _ in range(amount):  # no key parts at all: its own bucket, on limits' key too
        assert throttles.test(limit)
        throttles.hit(limit)
    assert not throttles.test(limit)
    with pytest.raises(Throttled):
        throttles.hit(limit)


def test_cost_counts_several_uses(throttles: Throttles) -> None:
    throttles.hit("3/minute", "k", cost=3)
    with pytest.raises(Throttled):
        throttles.hit("3/minute", "k")


def test_clear_resets_a_bucket(throttles: Throttles) -> None:
    for _ in range(3):
        throttles.hit("3/minute", "k")
    throttles.clear("3/minute", "k")
    throttles.hit("3/minute", "k")


def test_limits_are_shared_by_every_throttles_on_one_store(
    store: Store, clock: FrozenClock
) -> None:
    # Two app servers sharing a store share the limits.
    one = Throttles(store, clock, Emitter(lambda e: None, clock))
    two = Throttles(store, clock, Emitter(lambda e: None, clock))
    one.hit("3/minute", "k")
    two.hit("3/minute", "k")
    one.hit("3/minute", "k")
    with pytest.raises(Throttled):
        two.hit("3/minute", "k")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "3",
        "/minute",
        "3/fortnight",
        "-1/minute",
        "3/minute garbage",
        "１/minute",
        "1e3/minute",
        None,
        5,
        b"3/minute",
    ],
    ids=repr,
)
def test_malformed_limit_is_a_config_error(throttles: Throttles, text: object) -> None:
    with pytest.raises(ConfigError):
        parse_limit(text)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        throttles.hit(text, "k")  # type: ignore[arg-type]


def test_malformed_limit_is_refused_when_auth_is_built(make_auth: Callable[..., Auth]) -> None:
    for bad in ("lots", "", "3/fortnight", ["3/minute"], None):
        with pytest.raises(ConfigError):
            make_auth(limits={"start_per_ip": bad})


def test_a_multi_limit_string_is_refused_or_fully_enforced(
    throttles: Throttles, clock: FrozenClock
) -> None:
    try:
        parse_limit("3/minute;5/hour")
    except ConfigError:
        return
    allowed = 0
    for _ in range(3):  # three windows of the minute limit, well within the hour
        for _ in range(3):
            try:
                throttles.hit("3/minute;5/hour", "k")
                allowed += 1
            except Throttled:
                pass
        clock.advance(60)
    assert allowed <= 5


# -- the property: never more than the limit per window ----------------------------------------

_key_numbers = itertools.count()


def hit_or_refusal(throttles: Throttles, limit: str, *key: str) -> Throttled | None:
    try:
        throttles.hit(limit, *key)
    except Throttled as refused:
        return refused
    return None


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    limit=st.integers(1, 5),
    gaps=st.lists(st.sampled_from([0.0, 0.0, 0.5, 1.0, 10.0, 29.5, 59.0, 60.0, 61.0]), max_size=40),
)
def test_allowed_hits_per_window_never_exceed_the_limit(
    store: Store, limit: int, gaps: list[float]
) -> None:
    # Windows are fixed: a window opens at the first hit after the previous one closed and
    # lasts 60 s; within it at most ``limit`` hits are allowed, and the rest are refused.
    clock = FrozenClock()
    throttles = Throttles(store, clock, Emitter(lambda e: None, clock))
    key = f"prop-{next(_key_numbers)}"  # a fresh bucket per example on the shared store
    text = f"{limit}/minute"
    window_start: float | None = None
    in_window = 0
    allowed_in_window = 0
    for gap in gaps:
        clock.advance(gap)
        now = clock.now()
        if window_start is None or now >= window_start + 60:
            window_start, in_window, allowed_in_window = now, 0, 0
        in_window += 1
        refused = hit_or_refusal(throttles, text, key)
        allowed = refused is None
        if refused is not None:
            assert 0 < refused.retry_after <= 60
            assert refused.retry_after >= window_start + 60 - now
        allowed_in_window += allowed
        assert allowed_in_window <= limit
        # Refusing while under the limit would be a bug too.
        assert allowed == (in_window <= limit)


def test_property_also_holds_on_a_fresh_memory_store() -> None:
    clock = FrozenClock()
    throttles = Throttles(MemoryStore(), clock, Emitter(lambda e: None, clock))
    allowed = 0
    for _ in range(100):
        try:
            throttles.hit("7/hour", "k")
            allowed += 1
        except Throttled:
            pass
        clock.advance(30)  # 100 hits over 50 minutes: one window
    assert allowed == 7


# -- client address keys (R9) ---------------------------------------------------------------------


def test_ipv6_addresses_in_one_64_share_a_bucket() -> None:  # R9
    keys = {
        ip_key("2001:db8::1"),
        ip_key("2001:DB8:0:0:0:0:0:1"),
        ip_key("2001:0db8:0000:0000:0000:0000:0000:0001"),
        ip_key("2001:db8::ffff"),
        ip_key("2001:db8::ffff:ffff:ffff:ffff"),
        ip_key(" 2001:db8::2 "),
        ip_key("2001:db8::1%eth0"),
    }
    assert len(keys) == 1
    assert ip_key("2001:db8:0:1::1") not in keys
    assert ip_key("2001:db9::1") not in keys


def test_ipv4_mapped_ipv6_is_unwrapped() -> None:  # R9
    assert ip_key("::ffff:192.0.2.1") == ip_key("192.0.2.1") == "192.0.2.1"
    assert ip_key("::ffff:c000:201") == "192.0.2.1"
    assert ip_key("0:0:0:0:0:ffff:192.0.2.1") == "192.0.2.1"
    assert ip_key("::FFFF:192.0.2.1") == "192.0.2.1"
    assert ip_key("192.0.2.1") != ip_key("192.0.2.2")


def test_zone_ids_are_dropped() -> None:
    assert ip_key("fe80::1%eth0") == ip_key("fe80::2")


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        "",
        " ",
        "unknown",
        "not an ip",
        "999.1.1.1",
        "1.2.3",
        "192.0.2.1/24",
        "::g",
        "192.0.2.1, 10.0.0.1",
        "\x00",
        "１９２.０.２.１",
        "a" * 10_000,
    ],
    ids=lambda value: repr(value)[:20],
)
def test_garbage_and_missing_addresses_share_the_unknown_bucket(garbage: str | None) -> None:
    assert ip_key(garbage) == "unknown"
    assert ClientInfo(ip=garbage).ip_key == "unknown"


@given(address=st.integers(0, 2**128 - 1), low=st.integers(0, 2**64 - 1))
def test_every_textual_form_of_a_64_gives_one_key(address: int, low: int) -> None:  # R9
    addr = ipaddress.IPv6Address(address)
    if addr.ipv4_mapped is not None:
        assert ip_key(str(addr)) == ip_key(addr.exploded) == str(addr.ipv4_mapped)
        return
    sibling = ipaddress.IPv6Address(address >> 64 << 64 | low)
    forms = {addr.compressed, addr.exploded, addr.exploded.upper(), sibling.compressed}
    if sibling.ipv4_mapped is None:
        assert len({ip_key(f) for f in forms}) == 1
    key = ip_key(addr.compressed)
    assert key != "unknown"
    assert ipaddress.IPv6Network(key).prefixlen == 64


def test_throttles_see_one_bucket_for_a_64(throttles: Throttles) -> None:  # R9
    for i in range(3):
        throttles.hit("3/minute", "start", "acme", ip_key(f"2001:db8::{i + 1:x}"))
    with pytest.raises(Throttled):
        throttles.hit("3/minute", "start", "acme", ip_key("2001:DB8:0:0:ffff:ffff:ffff:ffff"))


# -- forwarded headers (R9) -----------------------------------------------------------------------


def test_forwarded_for_is_ignored_without_trusted_proxies() -> None:  # R9
    assert client_ip_from_forwarded("203.0.113.5", "1.2.3.4", 0) == "203.0.113.5"
    assert client_ip_from_forwarded("203.0.113.5", "1.2.3.4, 198.51.100.7", 0) == "203.0.113.5"
    assert client_ip_from_forwarded("203.0.113.5", "1.2.3.4", -1) == "203.0.113.5"
    assert client_ip_from_forwarded(None, "1.2.3.4", 0) == ""


def test_forwarded_for_with_one_trusted_proxy_takes_the_rightmost() -> None:  # R9
    # A client may send its own XFF; the trusted proxy appends what it saw, at the right.
    spoofed = "1.2.3.4, 5.6.7.8, 198.51.100.7"
    assert client_ip_from_forwarded("10.0.0.1", spoofed, 1) == "198.51.100.7"
    assert client_ip_from_forwarded("10.0.0.1", spoofed, 2) == "5.6.7.8"
    assert client_ip_from_forwarded("10.0.0.1", "198.51.100.7 ", 1) == "198.51.100.7"
    assert client_ip_from_forwarded("10.0.0.1", "198.51.100.7,", 1) == "198.51.100.7"


def test_forwarded_for_shorter_than_the_proxy_chain_falls_back() -> None:  # R9
    assert client_ip_from_forwarded("10.0.0.1", "198.51.100.7", 2) == "10.0.0.1"
    assert client_ip_from_forwarded("10.0.0.1", "", 1) == "10.0.0.1"
    assert client_ip_from_forwarded("10.0.0.1", None, 1) == "10.0.0.1"
    assert client_ip_from_forwarded("10.0.0.1", " , ,", 1) == "10.0.0.1"


# -- user agents in logs (R67) --------------------------------------------------------------------


@pytest.mark.parametrize(
    "agent",
    [
        "Mozilla/5.0\r\nX-Injected: 1",
        "evil\n2026-01-01 INFO signed_in identity=admin",
        "nul\x00byte",
        "esc\x1b[31mred",
        "tab\there",
        "del\x7f",
        "nel\x85line",
        "ls\u2028ps\u2029",
        "rtl\u202eoverride",
        "bidi\u2066isolate",
    ],
    ids=lambda value: repr(value)[:24],
)
def test_user_agent_control_characters_are_neutralised(agent: str) -> None:  # R67
    cleaned = ClientInfo(user_agent=agent).user_agent
    assert cleaned is not None
    for bad in ("\r", "\n", "\x00", "\x1b", "\t", "\x7f", "\x85", "\u2028", "\u2029", "\u202e"):
        assert bad not in cleaned
    assert "\u2066" not in cleaned
    assert cleaned.isprintable()
    assert len(cleaned) == len(agent)  # replaced, not removed (the log still shows something)


def test_user_agent_is_capped_and_plain_agents_are_untouched() -> None:  # R22 R67
    agent = "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"
    assert ClientInfo(user_agent=agent).user_agent == agent
    long_agent = ClientInfo(user_agent="a" * 10_000).user_agent
    assert long_agent is not None and len(long_agent) <= 512
    assert ClientInfo().user_agent is None

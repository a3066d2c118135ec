"""PortalSettings validation, serialisation, and persistence through ``auth.portals``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portalauth import Auth, ConfigError, NotFound, PortalSettings
from portalauth.config import REQUIRED_FIELDS, SECOND_FACTORS, check_header_text


def portal(**changes: Any) -> PortalSettings:
    fields: dict[str, Any] = {"slug": "acme", "name": "Acme Law LLP", **changes}
    return PortalSettings(**fields)


def test_defaults_are_safe() -> None:
    settings = portal()
    assert settings.methods == frozenset()
    assert settings.signup_enabled is False
    assert settings.simulate is False
    assert settings.helpful_errors is False
    assert settings.session_idle <= settings.session_absolute
    assert settings.failure_budget <= settings.failure_hard_limit <= 100


# -- slug -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("slug", ["a", "acme", "acme-law", "a1", "0", "a" * 64, "a-b-c", "x9-y"])
def test_valid_slugs(slug: str) -> None:
    assert portal(slug=slug).slug == slug


@pytest.mark.parametrize(
    "slug",
    [
        "",
        "Acme",
        "ACME",
        "acme law",
        "acme_law",
        "-acme",
        "acme-",
        "a" * 65,
        "acme/../x",
        "acme.example",
        "acme\n",
        "ａｃｍｅ",  # fullwidth
        "аcme",  # Cyrillic а
        "acmé",
        None,
        1,
        b"acme",
    ],
    ids=repr,
)
def test_invalid_slugs(slug: object) -> None:
    with pytest.raises(ConfigError):
        portal(slug=slug)


# -- header-bound text (R61) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Acme\rBcc: x@evil.example",
        "Acme\nBcc: x@evil.example",
        "Acme\r\nBcc: x@evil.example",
        "Acme\x00",
        "Acme\x0bLaw",
        "Acme\x0cLaw",
        "Acme\x85Law",
        "Acme\u2028Law",
        "Acme\u2029Law",
        "=?utf-8?q?Acme=0ABcc:_x@evil.example?=",
        "=?UTF-8?Q?=0A?=",
        "Acme =?utf-8?b?QmNjOg==?=",
        "",
        "   ",
        "a" * 201,
        None,
        42,
    ],
    ids=repr,
)
def test_names_that_could_break_a_mail_header_are_refused(name: object) -> None:  # R61
    with pytest.raises(ConfigError):
        portal(name=name)


@pytest.mark.parametrize(
    "name",
    ["Acme Law LLP", "Müller & Söhne", "O'Brien, Smith (Attorneys)", "法律事務所", "a" * 200],
)
def test_ordinary_names_are_accepted(name: str) -> None:
    assert portal(name=name).name == name


@pytest.mark.parametrize(
    "phone", ["+1 202 555 0100\r\nBcc: x", "+1\u2028202", "=?utf-8?q?x?=", "1" * 65, ""]
)
def test_support_phone_is_header_text_too(phone: str) -> None:  # R61
    with pytest.raises(ConfigError):
        portal(support_phone=phone)
    assert portal(support_phone="+1 202 555 0100").support_phone == "+1 202 555 0100"
    assert portal(support_phone=None).support_phone is None


def test_check_header_text_helper() -> None:  # R61
    assert check_header_text("  Acme  ", "name") == "Acme"
    for bad in ("a\rb", "a\nb", "a\x00b", "a\u2028b", "a\u2029b", "a\x85b", "=?x?="):
        with pytest.raises(ConfigError):
            check_header_text(bad, "name")


# -- regions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["us", "USA", "U", "", "U1", "ＵＳ", None, "U\n"], ids=repr)
def test_default_region_must_be_two_uppercase_letters(region: object) -> None:
    with pytest.raises(ConfigError):
        portal(default_region=region)


def test_sms_countries_are_validated() -> None:
    assert portal(sms_countries={"US", "CA"}).sms_countries == frozenset({"US", "CA"})
    for bad in ({"us"}, {"US", "USA"}, {""}, ["U S"]):
        with pytest.raises(ConfigError):
            portal(sms_countries=bad)


# -- lifetimes and budgets -------------------------------------------------------------------------


def test_session_idle_may_not_exceed_absolute() -> None:  # R56
    assert portal(session_idle=600, session_absolute=600).session_idle == 600
    with pytest.raises(ConfigError):
        portal(session_idle=601, session_absolute=600)
    with pytest.raises(ConfigError):
        portal(session_idle=86401)  # default absolute is 86400


@pytest.mark.parametrize(
    "changes",
    [
        {"session_idle": 59},
        {"session_idle": 0},
        {"session_idle": -1},
        {"session_absolute": 30 * 86400 + 1},
        {"session_idle": 600.0},
        {"session_idle": "600"},
        {"session_idle": True},
        {"session_absolute": None},
    ],
    ids=repr,
)
def test_lifetimes_must_be_whole_seconds_in_range(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        portal(**changes)


def test_failure_budget_may_not_exceed_the_hard_limit() -> None:  # R7 R12
    assert portal(failure_budget=5, failure_hard_limit=5).failure_budget == 5
    with pytest.raises(ConfigError):
        portal(failure_budget=11, failure_hard_limit=10)
    with pytest.raises(ConfigError):
        portal(failure_hard_limit=5)  # default budget is 10


def test_hard_limit_is_at_most_100() -> None:  # R7 (NIST: at most 100)
    assert portal(failure_hard_limit=100).failure_hard_limit == 100
    for bad in (101, 1000, 0, -1, True, 50.5):
        with pytest.raises(ConfigError):
            portal(failure_hard_limit=bad, failure_budget=1)
    with pytest.raises(ConfigError):
        portal(failure_budget=101, failure_hard_limit=100)


# -- base URL (R37) --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["https://portal.example", "http://localhost:8000", "https://portal.example/acme/"]
)
def test_http_base_urls_are_accepted(url: str) -> None:
    assert portal(base_url=url).base_url == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://portal.example",
        "javascript:alert(1)",
        "//portal.example",
        "portal.example",
        "/relative",
        "https://",
        "https://portal.example\r\nX: y",
        "https://portal.example/\n",
        "https://evil.example\\@portal.example",
        "data:text/html,hi",
        "",
        "https://user:pass@portal.example",
        42,
    ],
    ids=repr,
)
def test_other_base_urls_are_refused(url: object) -> None:  # R37
    with pytest.raises(ConfigError):
        portal(base_url=url)


# -- methods and other enumerations -------------------------------------------------------------


def test_methods_given_as_one_string_are_refused() -> None:
    with pytest.raises(ConfigError):
        portal(methods="email_code")
    with pytest.raises(ConfigError):
        portal(methods="")
    assert portal(methods=["email_code"]).methods == frozenset({"email_code"})


def test_second_factor_and_required_fields_are_enumerations() -> None:
    for factor in SECOND_FACTORS:
        assert portal(second_factor=factor).second_factor == factor
    with pytest.raises(ConfigError):
        portal(second_factor="carrier_pigeon")
    assert portal(required_fields=REQUIRED_FIELDS).required_fields == frozenset(REQUIRED_FIELDS)
    with pytest.raises(ConfigError):
        portal(required_fields={"email", "password"})


def test_settings_are_immutable() -> None:
    settings = portal(method_settings={"email_code": {"digits": 6}})
    with pytest.raises(AttributeError):
        settings.name = "Evil"  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.method_settings["email_code"]["digits"] = 4  # type: ignore[index]
    with pytest.raises(TypeError):
        settings.method_settings["other"] = {}  # type: ignore[index]


# -- evolve re-validates -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"slug": "Bad Slug"},
        {"name": "Acme\r\nBcc: x"},
        {"default_region": "usa"},
        {"session_idle": 90000},
        {"failure_budget": 101},
        {"base_url": "ftp://x"},
        {"methods": "email_code"},
        {"second_factor": "nope"},
    ],
    ids=repr,
)
def test_evolve_revalidates(changes: dict[str, Any]) -> None:
    original = portal()
    with pytest.raises(ConfigError):
        original.evolve(**changes)
    assert original == portal()


def test_evolve_applies_valid_changes() -> None:
    evolved = portal().evolve(name="New Name", session_idle=120, methods={"email_code"})
    assert (evolved.name, evolved.session_idle, evolved.methods) == (
        "New Name",
        120,
        frozenset({"email_code"}),
    )


# -- to_dict / from_dict ---------------------------------------------------------------------------


def test_to_dict_from_dict_round_trip_through_json() -> None:
    settings = PortalSettings(
        slug="acme-law",
        name="Acme Law LLP",
        methods={"email_code", "password"},
        signup_enabled=True,
        simulate=True,
        helpful_errors=True,
        default_region="GB",
        sms_countries={"GB", "IE"},
        support_phone="+44 20 7946 0000",
        base_url="https://portal.example/acme",
        session_idle=900,
        session_absolute=43200,
        required_fields={"email", "mobile"},
        second_factor="sms_code",
        failure_budget=5,
        failure_hard_limit=20,
        method_settings={"email_code": {"digits": 8, "ttl": 300}},
    )
    data = json.loads(json.dumps(settings.to_dict()))
    assert PortalSettings.from_dict(data) == settings
    assert PortalSettings.from_dict(data).to_dict() == settings.to_dict()


def test_from_dict_ignores_unknown_keys_and_validates() -> None:
    data = {**portal().to_dict(), "future_setting": 1}
    assert PortalSettings.from_dict(data) == portal()
    with pytest.raises(ConfigError):
        PortalSettings.from_dict({**portal().to_dict(), "name": "x\ny"})
    with pytest.raises(ConfigError):
        PortalSettings.from_dict({**portal().to_dict(), "methods": "email_code"})


slugs = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
names = st.text(
    alphabet=st.characters(
        whitelist_categories=("L", "N", "P", "S", "Zs"), blacklist_characters="=\x85"
    ),
    min_size=1,
    max_size=40,
).filter(lambda s: s.strip() != "")
regions = st.sampled_from(["US", "GB", "CA", "DE", "FR", "IE", "AU"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**31), 2**31) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def portal_settings(draw: st.DrawFn) -> PortalSettings:
    absolute = draw(st.integers(60, 30 * 86400))
    hard_limit = draw(st.integers(1, 100))
    return PortalSettings(
        slug=draw(slugs),
        name=draw(names),
        methods=draw(st.frozensets(st.sampled_from(["email_code", "password", "share_code"]))),
        signup_enabled=draw(st.booleans()),
        simulate=draw(st.booleans()),
        helpful_errors=draw(st.booleans()),
        default_region=draw(regions),
        sms_countries=draw(st.frozensets(regions)),
        support_phone=draw(st.none() | st.from_regex(r"\+[0-9 ]{1,20}", fullmatch=True)),
        base_url=draw(
            st.none() | st.sampled_from(["https://portal.example", "http://localhost:8000/x"])
        ),
        session_idle=draw(st.integers(60, absolute)),
        session_absolute=absolute,
        required_fields=draw(st.frozensets(st.sampled_from(REQUIRED_FIELDS))),
        second_factor=draw(st.sampled_from(SECOND_FACTORS)),
        failure_budget=draw(st.integers(1, hard_limit)),
        failure_hard_limit=hard_limit,
        method_settings=draw(
            st.dictionaries(
                st.sampled_from(["email_code", "password"]),
                st.dictionaries(st.text(max_size=8), json_values, max_size=3),
                max_size=2,
            )
        ),
    )


@given(settings=portal_settings())
def test_any_valid_settings_round_trip(settings: PortalSettings) -> None:
    data = json.loads(json.dumps(settings.to_dict()))
    restored = PortalSettings.from_dict(data)
    assert restored == settings
    assert restored.to_dict() == settings.to_dict()


# -- persistence through auth.portals --------------------------------------------------------------


def test_saved_portals_read_back_equal(auth: Auth) -> None:
    created = auth.portals.create(
        "beta",
        "Beta & Partners",
        methods={"email_code"},
        simulate=True,
        default_region="GB",
        sms_countries={"GB"},
        session_idle=900,
        session_absolute=7200,
        failure_budget=5,
        failure_hard_limit=50,
        base_url="https://beta.example",
        method_settings={"email_code": {"digits": 8}},
    )
    assert auth.portals.get("beta", fresh=True) == created
    assert auth.store.get_portal("beta") == created
    assert auth.portals.get("acme", fresh=True).name == "Acme Law LLP"
    assert [p.slug for p in auth.portals.list()] == ["acme", "beta"]


def test_update_changes_and_persists(auth: Auth) -> None:
    updated = auth.portals.update("acme", name="Acme & Co", session_idle=300)
    assert updated.name == "Acme & Co"
    fresh = auth.portals.get("acme", fresh=True)
    assert fresh == updated
    assert fresh.support_phone == "+1 202 555 0100"  # untouched fields stay


def test_invalid_updates_are_refused_and_change_nothing(auth: Auth) -> None:
    before = auth.portals.get("acme", fresh=True)
    for changes in (
        {"name": "Acme\r\nBcc: x"},
        {"methods": {"no_such_method"}},
        {"session_idle": 10},
        {"method_settings": {"email_code": {"digits": 2}}},
    ):
        with pytest.raises(ConfigError):
            auth.portals.update("acme", **changes)
    assert auth.portals.get("acme", fresh=True) == before


def test_unknown_portals_are_not_found(auth: Auth) -> None:
    with pytest.raises(NotFound):
        auth.portals.get("nope", fresh=True)
    with pytest.raises(NotFound):
        auth.portals.update("nope", name="x")
    for bad in (None, 1, "", "a" * 65, ["acme"]):
        assert auth.portals.find(bad) is None


def test_updates_persist_across_a_new_auth_on_one_sqlite_file(
    make_auth: Callable[..., Auth],
) -> None:
    first = make_auth("sqlite")
    first.portals.create("acme", "Acme Law LLP", methods={"email_code"}, simulate=True)
    other = make_auth("sqlite")  # another app server, same file, already running
    assert other.portals.get("acme").name == "Acme Law LLP"
    first.portals.update("acme", name="Acme & Co", session_idle=300, methods=set())
    assert other.portals.get("acme", fresh=True).name == "Acme & Co"
    later = make_auth("sqlite")
    fresh = later.portals.get("acme", fresh=True)
    assert fresh == first.portals.get("acme", fresh=True)
    assert (fresh.name, fresh.session_idle, fresh.methods) == ("Acme & Co", 300, frozenset())

"""Plugins: third-party strategies arrive through the ``portalauth`` entry-point group and are
registered exactly like the built-in plugins; the environment switch turns them off."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conftest import SECRET_KEYS
from portalauth import Auth, PluginError
from portalauth.plugins import BUILTIN, DISABLE_ENV, Plugins


def _install_fake_distribution(root: Path, body: str) -> None:
    (root / "acme_portal_plugin.py").write_text(textwrap.dedent(body))
    dist = root / "acme_portal_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: acme-portal-plugin\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text("[portalauth]\nacme = acme_portal_plugin\n")


PLUGIN = """
    from portalauth import hookimpl
    from portalauth.flows import Field

    class Knock:
        name = "knock"
        label = "Knock"
        def configure(self, raw): return None
        def fields(self, step, config): return (Field("word", "text", "Word"),)
        def start(self, ctx): raise NotImplementedError
        def advance(self, ctx, state): raise NotImplementedError

    @hookimpl
    def portalauth_add_strategies():
        return [Knock()]
"""


@pytest.fixture
def fake_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_fake_distribution(tmp_path, PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(DISABLE_ENV, raising=False)


@pytest.mark.usefixtures("fake_plugin")
def test_entry_point_strategy_is_loaded() -> None:
    auth = Auth(SECRET_KEYS, "memory://")
    assert "knock" in auth.plugins.strategies
    auth.portals.create("acme", "Acme", methods={"knock"})
    assert [f.name for f in auth.fields("acme", "knock")] == ["word"]


@pytest.mark.usefixtures("fake_plugin")
def test_environment_switch_turns_entry_points_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DISABLE_ENV, "1")
    auth = Auth(SECRET_KEYS, "memory://")
    assert "knock" not in auth.plugins.strategies
    assert Plugins(entry_points=True).strategy("knock") is not None


def test_builtins_are_registered_through_the_same_hooks() -> None:
    plugins = Plugins(entry_points=False)
    assert {"memory", "sqlite"} <= plugins.store_schemes
    assert {"smtp", "smtps"} <= plugins.sender_schemes
    assert all(name.startswith("portalauth.") for name in BUILTIN)
    bare = Plugins(builtins=False, entry_points=False)
    assert bare.store_schemes == frozenset()


def test_each_auth_owns_its_plugins() -> None:
    from conftest import EmailCodePlugin

    one = Auth(SECRET_KEYS, "memory://", plugins=[EmailCodePlugin()], entry_points=False)
    two = Auth(SECRET_KEYS, "memory://", entry_points=False)
    assert "email_code" in one.plugins.strategies
    assert "email_code" not in two.plugins.strategies


def test_unknown_store_scheme_is_a_config_error() -> None:
    from portalauth import ConfigError

    with pytest.raises(ConfigError, match="mongodb"):
        Auth(SECRET_KEYS, "mongodb://localhost/x", entry_points=False)


def test_a_store_scheme_claimed_twice_is_a_plugin_error() -> None:
    from portalauth import hookimpl

    class Again:
        @hookimpl
        def portalauth_add_stores(self) -> dict[str, object]:
            return {"memory": lambda uri: None}

    with pytest.raises(PluginError, match="memory"):
        Auth(SECRET_KEYS, "memory://", plugins=[Again()], entry_points=False)


def test_not_a_strategy_is_refused() -> None:
    from portalauth import hookimpl

    class Bad:
        @hookimpl
        def portalauth_add_strategies(self) -> list[object]:
            return [object()]

    with pytest.raises(PluginError):
        Auth(SECRET_KEYS, "memory://", plugins=[Bad()], entry_points=False)


def test_a_raising_event_listener_does_not_hide_events_from_others() -> None:
    from portalauth import hookimpl

    seen: list[str] = []

    class Broken:
        @hookimpl
        def portalauth_event(self, event: object) -> None:
            raise RuntimeError("log shipper down")

    class Recorder:
        @hookimpl
        def portalauth_event(self, event: object) -> None:
            seen.append(event.kind)  # type: ignore[attr-defined]

    for order in ([Broken(), Recorder()], [Recorder(), Broken()]):
        seen.clear()
        auth = Auth(SECRET_KEYS, "memory://", plugins=order, entry_points=False)
        auth.portals.create("acme", "Acme")
        assert seen == ["portal.saved"]


def test_raising_or_non_json_session_claims_fail_closed() -> None:
    from conftest import EmailCodePlugin, code_from
    from portalauth import PortalAuthError, Step, hookimpl

    class Raising:
        @hookimpl
        def portalauth_session_claims(
            self, identity: object, portal: object, method: str
        ) -> dict[str, object]:
            raise RuntimeError("claims service down")

    class NotJson:
        @hookimpl
        def portalauth_session_claims(
            self, identity: object, portal: object, method: str
        ) -> dict[str, object]:
            return {"when": object()}

    for plugin in (Raising(), NotJson()):
        auth = Auth(
            SECRET_KEYS, "memory://", plugins=[EmailCodePlugin(), plugin], entry_points=False
        )
        auth.portals.create("acme", "Acme", methods={"email_code"}, simulate=True)
        party = auth.directory.add("acme", "Jane", email="jane@example.com")
        step = auth.start("acme", "email_code", {"email": "jane@example.com"})
        assert isinstance(step, Step) and step.flow
        with pytest.raises(PortalAuthError):
            auth.advance(step.flow, {"code": code_from(auth, identity=party.id)})
        assert auth.sessions.list(party.id) == []


def test_a_plugin_class_instead_of_an_instance_is_a_plugin_error() -> None:
    from conftest import EmailCodePlugin

    with pytest.raises(PluginError):
        Auth(SECRET_KEYS, "memory://", plugins=[EmailCodePlugin], entry_points=False)


def test_unknown_limit_names_are_refused() -> None:
    from portalauth import ConfigError

    with pytest.raises(ConfigError, match="start_per_ipp"):
        Auth(SECRET_KEYS, "memory://", limits={"start_per_ipp": "1/minute"}, entry_points=False)


def test_an_enabled_method_with_bad_default_settings_is_refused_at_save() -> None:
    from conftest import EmailCode
    from portalauth import ConfigError, hookimpl

    class Fussy(EmailCode):
        name = "fussy"

        def configure(self, raw):  # type: ignore[no-untyped-def]
            if "digits" not in raw:
                raise ConfigError("fussy needs digits")
            return super().configure(raw)

    class Plugin:
        @hookimpl
        def portalauth_add_strategies(self) -> list[object]:
            return [Fussy()]

    auth = Auth(SECRET_KEYS, "memory://", plugins=[Plugin()], entry_points=False)
    with pytest.raises(ConfigError, match="digits"):
        auth.portals.create("acme", "Acme", methods={"fussy"})
    auth.portals.create("acme", "Acme", methods={"fussy"}, method_settings={"fussy": {"digits": 6}})

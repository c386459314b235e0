"""The plugin registry: entry points, allow/block lists, duplicate names, misspelt hooks."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint
from typing import Any

import pluggy
import pytest
from iii_state_kvfile import KvFileStore

from iii_state_core import (
    Adapter,
    AdapterNotFoundError,
    Capabilities,
    ConfigError,
    Registry,
    hookimpl,
    hookspecs,
    open_store,
    plugins,
)
from iii_state_core.adapter import Page, Token

Register = Callable[[type[Adapter]], None]


class DictAdapter(Adapter):
    """A tiny working adapter that calls itself ``kv``: a duplicate of the real one."""

    name = "kv"
    capabilities = Capabilities(shared=False)

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.data: dict[tuple[str, str], bytes] = {}

    def read(self, scope: str, key: str) -> bytes | None:
        return self.data.get((scope, key))

    def write(self, scope: str, key: str, data: bytes) -> bytes | None:
        old = self.data.get((scope, key))
        self.data[(scope, key)] = data
        return old

    def remove(self, scope: str, key: str) -> bytes | None:
        return self.data.pop((scope, key), None)

    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        if self.data.get((scope, key)) != token:
            return False
        self.data[(scope, key)] = data
        return True

    def list_scopes(self) -> list[str]:
        return [s for s, _ in self.data]

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        return sorted((k, v) for (s, k), v in self.data.items() if s == scope), None


class OtherName(DictAdapter):
    name = "dict"


def plugin_registering(*classes: Any) -> object:
    class Plugin:
        @hookimpl
        def iii_state_register_adapters(self, register: Register) -> None:
            for cls in classes:
                register(cls)

    return Plugin()


def test_kv_is_loaded_from_its_entry_point() -> None:
    registry = Registry()
    info = registry.adapter("kv")
    assert info.cls is KvFileStore and info.plugin == "kv"


def test_extra_plugin_adapter_is_usable() -> None:
    registry = Registry(extra_plugins=[plugin_registering(OtherName)])
    with open_store(adapter="dict", registry=registry) as store:
        store.set("s", "k", {"n": 1})
        assert store.update("s", "k", [{"type": "increment", "path": "n", "by": 1}]).new_value == {"n": 2}


def test_allow_list_env_limits_loaded_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugins.ALLOW_ENV, "something-else")
    registry = Registry()
    assert "kv" not in registry.adapters
    with pytest.raises(AdapterNotFoundError, match=r"installed: none"):
        registry.adapter("kv")
    monkeypatch.setenv(plugins.ALLOW_ENV, " kv , something-else")
    assert "kv" in Registry().adapters


def test_empty_allow_list_loads_no_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugins.ALLOW_ENV, "")
    assert Registry().adapters == {}


def test_block_list_env_skips_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugins.BLOCK_ENV, "kv")
    assert "kv" not in Registry().adapters
    monkeypatch.setenv(plugins.ALLOW_ENV, "kv")  # block wins over allow
    assert "kv" not in Registry().adapters


def test_block_list_lets_a_replacement_take_the_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugins.BLOCK_ENV, "kv")
    registry = Registry(extra_plugins=[plugin_registering(DictAdapter)])
    assert registry.adapter("kv").cls is DictAdapter


def test_duplicate_adapter_name_is_an_error_naming_both_plugins() -> None:
    with pytest.raises(ConfigError, match="registered twice") as info:
        Registry(extra_plugins=[plugin_registering(DictAdapter)])
    assert "'kv'" in str(info.value) and plugins.BLOCK_ENV in str(info.value)


def test_same_class_registered_twice_is_fine() -> None:
    registry = Registry(extra_plugins=[plugin_registering(OtherName, OtherName)])
    assert registry.adapter("dict").cls is OtherName


def test_misspelt_hookimpl_fails_check_pending() -> None:
    class Misspelt:
        @hookimpl
        def iii_state_register_adapter(self, register: Register) -> None:  # missing "s"
            register(OtherName)

    with pytest.raises(pluggy.PluginValidationError, match="iii_state_register_adapter"):
        Registry(extra_plugins=[Misspelt()])


def test_hookimpl_with_unknown_argument_is_refused() -> None:
    class WrongArgs:
        @hookimpl
        def iii_state_register_adapters(self, registrar: Register) -> None:
            raise AssertionError("never called")

    with pytest.raises(pluggy.PluginValidationError):
        Registry(extra_plugins=[WrongArgs()])


@pytest.mark.parametrize("thing", [object, dict, "kv", 5])
def test_registering_a_non_adapter_is_an_error(thing: Any) -> None:
    with pytest.raises(ConfigError, match="not an Adapter subclass"):
        Registry(extra_plugins=[plugin_registering(thing)])


def test_adapter_without_name_or_capabilities_is_an_error() -> None:
    class Nameless(OtherName):
        name = ""

    class NoCapabilities(OtherName):
        name = "nocaps"
        capabilities = ("durable",)  # type: ignore[assignment]

    for cls in (Nameless, NoCapabilities):
        with pytest.raises(ConfigError, match="must set `name` and `capabilities`"):
            Registry(extra_plugins=[plugin_registering(cls)])


def test_plugin_that_fails_to_import_is_reported_when_asked_for(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broken = EntryPoint(
        name="broken", value="iii_state_no_such_module_xyz.plugin", group=plugins.ENTRY_POINT_GROUP
    )
    kv = EntryPoint(name="kv", value="iii_state_kvfile.plugin", group=plugins.ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [broken, kv])
    registry = Registry()  # one broken plugin does not take the others down
    assert registry.adapter("kv").cls is KvFileStore
    assert any("broken" in r.getMessage() for r in caplog.records)
    with pytest.raises(AdapterNotFoundError, match="failed to import") as info:
        registry.adapter("broken")
    assert "iii_state_no_such_module_xyz" in str(info.value)
    assert "pip install" in str(info.value) and "iii-state-broken" in str(info.value)
    monkeypatch.setenv(plugins.BLOCK_ENV, "broken")
    assert "broken" not in Registry().broken


def test_registry_without_entry_points() -> None:
    assert Registry(load_entry_points=False).adapters == {}


# -- the hook specifications are documented (datasette's test_docs idea) ----------------------


def _hookspecs() -> list[Any]:
    return [
        f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("iii_state_")
    ]


def test_hookspecs_are_the_known_set() -> None:
    assert sorted(f.__name__ for f in _hookspecs()) == ["iii_state_event", "iii_state_register_adapters"]


@pytest.mark.parametrize("spec", _hookspecs(), ids=lambda f: f.__name__)
def test_every_hookspec_is_documented(spec: Any) -> None:
    doc = inspect.getdoc(spec) or ""
    assert "versionadded" in doc
    registry = Registry(load_entry_points=False)
    assert getattr(registry.manager.hook, spec.__name__).spec is not None
    params = list(inspect.signature(spec).parameters)
    assert params, spec.__name__
    if spec.__name__ == "iii_state_register_adapters":
        assert all(f":param {p}:" in doc for p in params)

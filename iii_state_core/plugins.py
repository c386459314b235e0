"""The plugin manager: load ``iii_state`` entry points, collect the adapters they register."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .adapter import Adapter, Capabilities, expiry_events_problem
from .errors import AdapterNotFoundError, ConfigError
from .install_hints import install_hint

log = logging.getLogger("iii_state.plugins")

ENTRY_POINT_GROUP = "iii_state"
#: Comma-separated entry-point names: only these plugins load (default: all installed).
ALLOW_ENV = "III_STATE_PLUGINS"
#: Comma-separated entry-point names that never load.
BLOCK_ENV = "III_STATE_DISABLE_PLUGINS"
#: Where our own adapters live, for "pip install …" hints.
KNOWN_DISTRIBUTIONS = {
    "kv": "iii-state-kvfile",
    "redis": "iii-state-redis",
    "dynamodb": "iii-state-dynamodb",
    "memcached": "iii-state-memcached",
}


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    cls: type[Adapter]
    plugin: str

    @property
    def capabilities(self) -> Capabilities:
        return self.cls.capabilities


def _names(env: str) -> set[str] | None:
    raw = os.environ.get(env)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


class Registry:
    """A pluggy manager plus the adapters its plugins registered."""

    def __init__(self, extra_plugins: Iterable[object] = (), load_entry_points: bool = True) -> None:
        extra_plugins = list(extra_plugins)
        #: Importable names of the extra plugins, so another process can build the same registry.
        self.extra_plugin_modules = [p.__name__ for p in extra_plugins if isinstance(p, ModuleType)]
        self.load_entry_points = load_entry_points
        #: Entry points that failed to import: name -> the error.
        self.broken: dict[str, str] = {}
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        if load_entry_points:
            self._load_entry_points()
        for plugin in extra_plugins:
            self.manager.register(plugin)
        # A misspelt hook name in a plugin fails here, loudly, instead of never being called.
        self.manager.check_pending()
        self.adapters: dict[str, AdapterInfo] = {}
        for impl in self.manager.hook.iii_state_register_adapters.get_hookimpls():
            impl.function(register=lambda cls, _p=impl.plugin_name: self._register(cls, _p))

    def _load_entry_points(self) -> None:
        allow, block = _names(ALLOW_ENV), _names(BLOCK_ENV) or set()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in block or (allow is not None and ep.name not in allow):
                continue
            if self.manager.has_plugin(ep.name):
                continue
            try:
                module = ep.load()
            except Exception as exc:
                # One broken plugin must not take every other adapter down with it: remember
                # the failure and report it when (and only when) that adapter is asked for.
                self.broken[ep.name] = f"{type(exc).__name__}: {exc}"
                log.warning("iii-state plugin %r failed to import: %s", ep.name, exc)
                continue
            self.manager.register(module, name=ep.name)

    def _register(self, cls: Any, plugin: str) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Adapter)):
            raise ConfigError(f"plugin {plugin!r} registered {cls!r}, which is not an Adapter subclass")
        name = getattr(cls, "name", None)
        if (
            not isinstance(name, str)
            or not name
            or not isinstance(getattr(cls, "capabilities", None), Capabilities)
        ):
            raise ConfigError(f"plugin {plugin!r}: {cls.__name__} must set `name` and `capabilities`")
        problem = expiry_events_problem(cls)
        if problem:
            raise ConfigError(f"plugin {plugin!r}: {cls.__name__} {problem}")
        if name in self.adapters and self.adapters[name].cls is not cls:
            raise ConfigError(
                f"adapter name {name!r} is registered twice: by plugin {self.adapters[name].plugin!r} "
                f"and by {plugin!r}; uninstall one or block it with {BLOCK_ENV}"
            )
        self.adapters[name] = AdapterInfo(name, cls, plugin)

    def adapter(self, name: str) -> AdapterInfo:
        """:raises AdapterNotFoundError: listing what is installed and what to install."""
        info = self.adapters.get(name)
        if info is not None:
            return info
        if name in self.broken:
            raise AdapterNotFoundError(
                f"the plugin for adapter {name!r} is installed but failed to import "
                f"({self.broken[name]}); reinstall it with --force-reinstall; "
                f"{install_hint(KNOWN_DISTRIBUTIONS.get(name, f'iii-state-{name}'))}"
            )
        installed = ", ".join(sorted(self.adapters)) or "none"
        package = KNOWN_DISTRIBUTIONS.get(name, f"iii-state-{name}")
        raise AdapterNotFoundError(
            f"no installed plugin provides the adapter {name!r} (installed: {installed}); "
            f"{install_hint(package)}"
        )

    def event_hook(self) -> Any:
        """The ``iii_state_event`` hook caller, or ``None`` when no plugin implements it."""
        hook = self.manager.hook.iii_state_event
        if not hook.get_hookimpls():
            return None
        return lambda event: hook(event=event)


_default: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry of installed plugins (loaded on first use)."""
    global _default
    if _default is None:
        _default = Registry()
    return _default


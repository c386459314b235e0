"""Find and read the state block of ``iii-config.yaml`` (contract § Configuration)."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from .errors import ConfigError
from .options import Options
from .values import DEFAULT_MAX_DEPTH

CONFIG_ENV = "III_CONFIG"
DEFAULT_CONFIG_FILE = "iii-config.yaml"
#: Where the embedded file store lives when no config names an adapter.
DEFAULT_FILE_STORE = os.path.join("data", "state_store")
#: The state block used when no config names an adapter: data, as a user would write it.
EMBEDDED_DEFAULT: Final[Mapping[str, Any]] = {
    "adapter": {"name": "kv", "config": {"store_method": "file_based", "file_path": DEFAULT_FILE_STORE}}
}
WORKER_NAMES = ("iii-state", "state")
LEGACY_MODULE = "modules::state::StateModule"
LEGACY_ADAPTERS = {
    "modules::state::adapters::KvStore": "kv",
    "modules::state::adapters::RedisAdapter": "redis",
}
#: Where a store's expiry sweeper may run (``expiry_sweeper``).
EXPIRY_SWEEPERS: Final = ("thread", "process")
#: The deepest nesting a store may be configured to accept (JSON encoding recurses per level).
MAX_VALUE_DEPTH_LIMIT = 512
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


@dataclass(frozen=True)
class StateConfig:
    """The state worker's settings: which adapter, its config, and the core's limits."""

    adapter: str = "kv"
    adapter_config: dict[str, Any] = field(default_factory=dict)
    triggers_enabled: bool = True
    max_value_bytes: int | None = None
    max_value_depth: int = DEFAULT_MAX_DEPTH
    source: str = "defaults"
    #: The directory of the config file these settings came from: relative paths in the adapter
    #: config are taken relative to it (``None``: relative to the current directory).
    base_dir: str | None = None
    #: Adapter settings the engine's format puts in the state block itself (``save_interval_ms``):
    #: given to the adapter's config when the adapter declares them (``Adapter.state_options``).
    state_options: dict[str, Any] = field(default_factory=dict)
    #: Emit ``state:expired`` events (contract § Expiry): a sweeper per open store polls the
    #: adapter's ``take_expired``.
    expiry_events: bool = False
    #: Where the expiry sweeper claims: ``thread`` (a thread of the opening process) or
    #: ``process`` (a child process; decision 0030). Only with ``expiry_events``.
    expiry_sweeper: str = "thread"

    def __repr__(self) -> str:  # the adapter config may hold secrets: never print it
        return f"StateConfig(adapter={self.adapter!r}, source={self.source!r})"


def expand_env(text: str, *, where: str = "config") -> str:
    """Replace ``${VAR}`` and ``${VAR:default}`` in one string.

    :raises ConfigError: naming a variable that is unset and has no default.
    """

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is not None:
            return value
        if default is not None:
            return default
        raise ConfigError(
            f"{where} uses ${{{name}}} but the environment variable {name} is not set; "
            f"set it or write ${{{name}:default}}"
        )

    return _VAR.sub(replace, text)


def _expand_tree(node: Any, where: str) -> Any:
    """Expand variables inside the string scalars of a parsed document.

    Expanding after parsing keeps a value holding ``#`` or quotes intact and ignores
    comments. A scalar that is exactly one ``${…}`` is read again as a YAML scalar, so
    ``max_value_bytes: ${LIMIT:1048576}`` stays an integer. Call :func:`_check_shape` first:
    this copies the tree, which YAML aliases could otherwise make huge or endless.
    """
    if isinstance(node, dict):
        return {k: _expand_tree(v, where) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_tree(v, where) for v in node]
    if isinstance(node, str) and "${" in node:
        expanded = expand_env(node, where=where)
        if _VAR.fullmatch(node.strip()):
            try:
                typed = yaml.safe_load(expanded)
            except (yaml.YAMLError, ValueError, RecursionError):
                return expanded
            if isinstance(typed, (int, float, bool)) or typed is None:
                return typed
        return expanded
    return node


#: The most values (scalars, lists, mappings) a config may hold once YAML aliases are expanded.
#: Real configs hold dozens; a few aliases nested ten wide would otherwise make billions.
MAX_CONFIG_VALUES = 100_000


def _check_shape(doc: Any, where: str) -> None:
    """Refuse a document that refers to itself or expands to more than MAX_CONFIG_VALUES values.

    YAML aliases make the parsed document a graph (``&a [*a]`` is a list inside itself). The
    count is memoised per shared node, so this takes time linear in the document as written.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Any, path: str, depth: int) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        ident = id(node)
        if ident in sizes:
            return sizes[ident]
        if ident in open_nodes:
            raise ConfigError(
                f"{where}: {path or 'the document'} refers back to a value that contains it "
                f"(a YAML alias loop such as `&a [*a]`)"
            )
        if depth > 100:
            raise ConfigError(f"{where}: {path} nests more than 100 levels deep")
        open_nodes.add(ident)
        items = node.items() if isinstance(node, dict) else enumerate(node)
        total = 1
        for k, v in items:
            step = f"[{k}]" if isinstance(k, int) else f".{k}" if path else str(k)
            total += size(v, f"{path}{step}", depth + 1)
            if total > MAX_CONFIG_VALUES:
                raise ConfigError(
                    f"{where}: {path or 'the document'} expands to more than {MAX_CONFIG_VALUES} "
                    f"values through YAML aliases; a config is never that large"
                )
        open_nodes.discard(ident)
        sizes[ident] = total
        return total

    size(doc, "", 0)


#: Brackets deeper than this are refused before PyYAML reads them: its scanner takes time
#: quadratic in flow nesting (20,000 levels took seconds), and a config nests a few levels.
MAX_FLOW_DEPTH = 200


def _flow_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}" and depth:
            depth -= 1
    return deepest


def _parse_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` whose every failure is one ConfigError naming the file."""
    if ("[[" in text or "{{" in text or text.count("[") + text.count("{") > MAX_FLOW_DEPTH) and (
        _flow_depth(text) > MAX_FLOW_DEPTH
    ):
        raise ConfigError(f"{where} nests brackets more than {MAX_FLOW_DEPTH} levels deep")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        raise
    except RecursionError:
        raise ConfigError(f"{where} nests too deeply to read") from None
    except (ValueError, OverflowError, TypeError) as exc:  # e.g. the timestamp 0000-01-01
        raise ConfigError(f"{where} holds a value YAML cannot build: {exc}") from None
    _check_shape(doc, where)
    return doc


def _entries(doc: Mapping[str, Any], section: str, where: str) -> list[Any]:
    entries = doc.get(section)
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ConfigError(
            f"{where}: '{section}' must be a list of {section[:-1]} entries "
            f"(`{section}:` then `- {'name' if section == 'workers' else 'class'}: …` lines), "
            f"got {_yaml_type(entries)}"
        )
    return entries


def _yaml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    return "null" if value is None else type(value).__name__


def _state_block_of_document(doc: Any, where: str) -> Mapping[str, Any] | None:
    """The state settings inside a whole iii-config document, or ``None`` when it has none."""
    if doc is None:
        return None
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where} must be a YAML mapping at the top level, got {_yaml_type(doc)}")
    for worker in _entries(doc, "workers", where):
        if isinstance(worker, Mapping) and worker.get("name") in WORKER_NAMES:
            return _block(worker.get("config"), f"{where}: workers[{worker.get('name')!r}].config")
    for module in _entries(doc, "modules", where):
        if isinstance(module, Mapping) and module.get("class") == LEGACY_MODULE:
            return _block(module.get("config"), f"{where}: modules[{LEGACY_MODULE!r}].config")
    return None


def _block(config: Any, where: str) -> Mapping[str, Any]:
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ConfigError(f"{where} must be a mapping of state settings, got {_yaml_type(config)}")
    return config


def _adapter_of(block: Any, where: str) -> tuple[str, dict[str, Any]]:
    if block is None:
        return "kv", {}
    if not isinstance(block, Mapping):
        raise ConfigError(f"{where}: 'adapter' must be a mapping with 'name' and 'config'")
    opts = Options(f"{where}: 'adapter'", block)
    name = opts.optional_str("name")
    legacy = opts.optional_str("class")
    config = opts.raw("config", None) or {}
    opts.finish()
    if legacy is not None and name is None:
        if legacy not in LEGACY_ADAPTERS:
            raise ConfigError(
                f"{where}: unknown adapter class {legacy!r}; use one of "
                f"{', '.join(LEGACY_ADAPTERS)} or the new form `name: <adapter>`"
            )
        name = LEGACY_ADAPTERS[legacy]
    if not isinstance(config, Mapping):
        raise ConfigError(f"{where}: 'adapter.config' must be a mapping")
    return name or "kv", dict(config)


def parse_state_block(block: Mapping[str, Any], *, source: str) -> StateConfig:
    """Validate a state block (``{adapter: {name, config}, triggers_enabled, …}``)."""
    opts = Options(f"state config ({source})", block)
    name, adapter_config = _adapter_of(opts.raw("adapter", None), source)
    triggers = opts.bool("triggers_enabled", True)
    # 0 means no limit, as in iii's state worker (its block is accepted as it is)
    max_bytes = opts.int("max_value_bytes", None, minimum=0) or None
    depth = opts.int("max_value_depth", DEFAULT_MAX_DEPTH, minimum=1)
    if depth > MAX_VALUE_DEPTH_LIMIT:
        raise ConfigError(
            f"state config ({source}): 'max_value_depth' is {depth}; at most {MAX_VALUE_DEPTH_LIMIT} "
            f"(deeper values would exhaust Python's recursion limit while encoding)"
        )
    interval = opts.int("save_interval_ms", None, minimum=0)
    expiry_events = opts.bool("expiry_events", False)
    sweeper = opts.str("expiry_sweeper", "thread", choices=EXPIRY_SWEEPERS)
    opts.finish()
    if sweeper != "thread" and not expiry_events:
        raise ConfigError(
            f"state config ({source}): 'expiry_sweeper: {sweeper}' places the sweeper of expiry events, "
            f"but 'expiry_events' is not true; set 'expiry_events: true' or drop expiry_sweeper"
        )
    if expiry_events and not triggers:
        raise ConfigError(
            f"state config ({source}): 'expiry_events: true' needs events, but 'triggers_enabled' is "
            f"false; enable triggers or drop expiry_events"
        )
    folded: dict[str, Any] = {} if interval is None else {"save_interval_ms": interval}
    if expiry_events:  # an adapter that cleans up expired entries itself must leave them to the sweeper
        folded["expiry_events"] = True
    return StateConfig(
        name, adapter_config, triggers, max_bytes, depth, source,
        state_options=folded, expiry_events=expiry_events, expiry_sweeper=sweeper,
    )  # fmt: skip


def load_file(path: str | os.PathLike[str]) -> StateConfig | None:
    """Read an iii-config file; ``None`` when it has no state worker block.

    Relative paths in the adapter config will be taken relative to the file's directory.
    """
    where = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {where}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{where} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); save it as UTF-8"
        ) from None
    try:
        doc = _expand_tree(_parse_yaml(text, where), where)
    except yaml.YAMLError as exc:
        if "${" not in text:
            raise _yaml_error(where, exc) from None
        # `${…}` inside a flow mapping ({a: ${X}}) is not valid YAML before expansion:
        # expand the text (whole-line comments excepted), then parse.
        lines = text.splitlines(keepends=True)
        expanded = "".join(ln if ln.lstrip().startswith("#") else expand_env(ln, where=where) for ln in lines)
        try:
            doc = _parse_yaml(expanded, where)
        except yaml.YAMLError:
            raise _yaml_error(where, exc) from None
    block = _state_block_of_document(doc, where)
    if block is None:
        return None
    settings = parse_state_block(block, source=where)
    return dataclasses.replace(settings, base_dir=os.path.dirname(os.path.abspath(path)))


def require_file(path: str | os.PathLike[str]) -> StateConfig:
    """Read an iii-config file that must hold the state block.

    :raises ConfigError: naming the file when it has none (an empty file, another program's
        config, the iii engine's own ``config.yaml``).
    """
    settings = load_file(path)
    if settings is None:
        raise ConfigError(
            f"{path} has no iii-state block: iii-state reads `workers: - name: iii-state` with its "
            f"`config:` (see docs/contract.md § Configuration); the iii engine's own config.yaml "
            f"is a different file"
        )
    return settings


def _yaml_error(where: str, exc: yaml.YAMLError) -> ConfigError:
    """A one-line message: PyYAML's own text spans several lines with carets."""
    if isinstance(exc, yaml.MarkedYAMLError):
        line = f" at line {exc.problem_mark.line + 1}" if exc.problem_mark else ""
        return ConfigError(f"{where} is not valid YAML{line}: {exc.problem or exc.context}")
    return ConfigError(f"{where} is not valid YAML: {str(exc).splitlines()[0]}")


def default_config() -> StateConfig:
    """The embedded file store under ``./data/state_store`` (:data:`EMBEDDED_DEFAULT`)."""
    return parse_state_block(EMBEDDED_DEFAULT, source="default file store")


def resolve(config: str | os.PathLike[str] | Mapping[str, Any] | None) -> StateConfig:
    """Turn what the caller gave into settings.

    A path is an iii-config file; a mapping is a state block (or a whole iii-config document).
    With nothing given: ``$III_CONFIG``, then ``./iii-config.yaml``, then the embedded store.
    """
    if isinstance(config, Mapping):
        _check_shape(config, "config mapping")
        if "workers" in config or "modules" in config:
            block = _state_block_of_document(config, "config mapping")
            if block is None:
                raise ConfigError(
                    "the config mapping has `workers`/`modules` but no iii-state block "
                    "(`workers: [{name: iii-state, config: {...}}]`)"
                )
            return parse_state_block(block, source="config mapping")
        return parse_state_block(config, source="config mapping")
    if config is not None:
        return require_file(config)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return require_file(env)
    if Path(DEFAULT_CONFIG_FILE).is_file():
        return require_file(DEFAULT_CONFIG_FILE)
    return default_config()

"""contract § Configuration: finding and reading the state block of ``iii-config.yaml``."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from iii_state_kvfile import KvFileStore, KvMemoryStore

from iii_state_core import AdapterNotFoundError, ConfigError, StateEvent, open_store
from iii_state_core.config import StateConfig, load_file, resolve


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


WORKERS_FORM = """\
    workers:
      - name: some-other-worker
        config: {{port: 1}}
      - name: iii-state
        config:
          adapter:
            name: kv
            config:
              store_method: file_based
              file_path: {path}
          triggers_enabled: false
          max_value_bytes: 64
"""


def test_workers_form(tmp_path: Path) -> None:
    config = write(tmp_path / "iii-config.yaml", WORKERS_FORM.format(path=tmp_path / "store"))
    settings = load_file(config)
    assert settings is not None
    assert settings.adapter == "kv"
    assert settings.adapter_config == {"store_method": "file_based", "file_path": str(tmp_path / "store")}
    assert settings.triggers_enabled is False and settings.max_value_bytes == 64
    with open_store(config) as store:
        assert isinstance(store.adapter, KvFileStore)
        store.set("s", "k", 1)
    assert (tmp_path / "store" / "state.sqlite3").is_file()


def test_workers_form_with_short_name_state(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.yaml",
        """\
        workers:
          - name: state
            config: {adapter: {name: kv}, max_value_bytes: 5}
        """,
    )
    settings = load_file(config)
    assert settings is not None and settings.max_value_bytes == 5


@pytest.mark.parametrize(
    ("adapter_class", "name"),
    [("modules::state::adapters::KvStore", "kv"), ("modules::state::adapters::RedisAdapter", "redis")],
)
def test_legacy_modules_form(tmp_path: Path, adapter_class: str, name: str) -> None:
    config = write(
        tmp_path / "iii-config.yaml",
        f"""\
        modules:
          - class: modules::stream::StreamModule
          - class: modules::state::StateModule
            config:
              adapter:
                class: {adapter_class}
                config:
                  some_option: 1
        """,
    )
    settings = load_file(config)
    assert settings is not None
    assert settings.adapter == name and settings.adapter_config == {"some_option": 1}


def test_legacy_kv_store_opens(tmp_path: Path) -> None:
    config = write(
        tmp_path / "iii-config.yaml",
        f"""\
        modules:
          - class: modules::state::StateModule
            config:
              adapter:
                class: modules::state::adapters::KvStore
                config: {{store_method: file_based, file_path: "{tmp_path / "legacy"}"}}
        """,
    )
    with open_store(config) as store:
        store.set("s", "k", [1])
    assert (tmp_path / "legacy" / "state.sqlite3").is_file()


def test_legacy_unknown_adapter_class_is_refused(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.yaml",
        """\
        modules:
          - class: modules::state::StateModule
            config: {adapter: {class: modules::state::adapters::Nope}}
        """,
    )
    with pytest.raises(ConfigError, match="modules::state::adapters::Nope"):
        load_file(config)


@pytest.mark.parametrize(
    "text",
    ["", "foo: 1\n", "workers:\n  - name: other\n", "workers: []\n",
     # the iii engine's own config.yaml, with its state worker left out
     "workers:\n  - name: iii-http\n    config:\n      port: 3111\n"],
    ids=["empty", "foo", "other-worker", "no-workers", "engine-config"],
)  # fmt: skip
def test_config_file_without_state_block_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    config = write(tmp_path / "c.yaml", text)
    assert load_file(config) is None
    with pytest.raises(ConfigError, match=r"c\.yaml has no iii-state block") as explicit:
        resolve(str(config))
    assert "\n" not in str(explicit.value)
    monkeypatch.setenv("III_CONFIG", str(config))
    with pytest.raises(ConfigError, match=r"c\.yaml has no iii-state block"):
        resolve(None)


def test_config_mapping_without_state_block_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no iii-state block"):
        resolve({"workers": [{"name": "other"}]})


def test_relative_file_path_resolves_against_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    write(
        project / "iii-config.yaml",
        "workers:\n  - name: iii-state\n    config:\n      adapter:\n        name: kv\n"
        "        config: {store_method: file_based, file_path: ./data/store}\n",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with open_store("../project/iii-config.yaml") as store:
        store.set("s", "k", 1)
        assert store.adapter.describe() == f"kv (file_based at {project / 'data/store/state.sqlite3'})"
        # reopening from the store's settings (the suite's other processes do) finds the same store
        assert store.settings is not None
        assert store.settings.adapter_config["file_path"] == str(project / "data/store")
    assert (project / "data/store/state.sqlite3").is_file()
    assert not (elsewhere / "data").exists()
    # without a config file, a relative path stays relative to the current directory
    with open_store(adapter="kv", adapter_config={"store_method": "file_based", "file_path": "here"}) as s:
        assert s.adapter.describe() == f"kv (file_based at {elsewhere / 'here/state.sqlite3'})"


def test_must_exist_refuses_a_missing_file_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(
        tmp_path / "iii-config.yaml",
        "workers:\n  - name: iii-state\n    config:\n      adapter:\n        name: kv\n"
        "        config: {store_method: file_based, file_path: nothere}\n",
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"does not exist \(.*nothere/state\.sqlite3 does not exist\)"):
        open_store(str(config), must_exist=True)
    assert not (tmp_path / "nothere").exists(), "refusing must not create the store"
    with open_store(str(config)) as store:  # without must_exist it is created
        store.set("s", "k", 1)
    with open_store(str(config), must_exist=True) as store:
        assert store.get("s", "k") == 1


# -- ${VAR} expansion --------------------------------------------------------------------------

EXPANDING = """\
    workers:
      - name: iii-state
        config:
          adapter:
            name: kv
            config:
              store_method: ${{METHOD:in_memory}}
              file_path: ${{STORE_DIR}}/nested
              # a comment naming ${{NEVER_SET}} is not expanded
          max_value_bytes: ${{LIMIT:128}}
"""


def test_env_expansion_with_and_without_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORE_DIR", str(tmp_path))
    monkeypatch.delenv("METHOD", raising=False)
    monkeypatch.delenv("LIMIT", raising=False)
    monkeypatch.delenv("NEVER_SET", raising=False)
    config = write(tmp_path / "c.yaml", EXPANDING.format())
    settings = load_file(config)
    assert settings is not None
    assert settings.adapter_config == {"store_method": "in_memory", "file_path": f"{tmp_path}/nested"}
    assert settings.max_value_bytes == 128  # YAML sees the expanded text: an integer

    monkeypatch.setenv("METHOD", "file_based")
    monkeypatch.setenv("LIMIT", "7")
    settings = load_file(config)
    assert settings is not None
    assert settings.adapter_config["store_method"] == "file_based" and settings.max_value_bytes == 7


def test_env_expansion_empty_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMPTY_DEFAULT", raising=False)
    config = write(
        tmp_path / "c.yaml",
        """\
        workers:
          - name: iii-state
            config: {adapter: {name: kv, config: {file_path: "x${EMPTY_DEFAULT:}y"}}}
        """,
    )
    settings = load_file(config)
    assert settings is not None and settings.adapter_config == {"file_path": "xy"}


def test_env_expansion_unset_variable_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STORE_DIR", raising=False)
    config = write(tmp_path / "c.yaml", EXPANDING.format())
    with pytest.raises(ConfigError, match="STORE_DIR") as info:
        load_file(config)
    assert "NEVER_SET" not in str(info.value)


# -- unknown keys, unknown adapters ------------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "named"),
    [
        ({"adapter": {"name": "kv"}, "trigers_enabled": True}, "trigers_enabled"),
        ({"adapter": {"name": "kv", "cofig": {}}}, "cofig"),
        ({"adapter": {"name": "kv"}, "max_value_bytes": 10, "maxvalue": 1}, "maxvalue"),
    ],
)
def test_unknown_key_in_state_block_is_rejected_naming_it(block: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        resolve(block)


def test_unknown_key_in_adapter_config_is_rejected_naming_it() -> None:
    with pytest.raises(ConfigError, match="store_methd") as info:
        open_store({"adapter": {"name": "kv", "config": {"store_methd": "in_memory"}}})
    assert "store_method" in str(info.value)  # the known keys are listed


@pytest.mark.parametrize(
    ("block", "field"),
    [
        ({"triggers_enabled": "yes"}, "triggers_enabled"),
        ({"max_value_bytes": "1MB"}, "max_value_bytes"),
        ({"max_value_bytes": -1}, "max_value_bytes"),
        ({"max_value_bytes": True}, "max_value_bytes"),
        ({"max_value_depth": 0}, "max_value_depth"),
        ({"adapter": "kv"}, "adapter"),
        ({"adapter": {"name": "kv", "config": ["x"]}}, "config"),
        ({"adapter": {"name": 5}}, "name"),
    ],
)
def test_mistyped_state_block_fields_are_rejected(block: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        resolve(block)


@pytest.mark.parametrize(
    ("name", "package"),
    [("dynamodb", "iii-state-dynamodb"), ("memcached", "iii-state-memcached"), ("etcd", "iii-state-etcd")],
)
def test_unknown_adapter_lists_installed_and_names_package(
    name: str, package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("III_STATE_PLUGINS", "kv")  # only kv, whatever else this venv has
    from iii_state_core import Registry

    with pytest.raises(AdapterNotFoundError) as info:
        open_store({"adapter": {"name": name}}, registry=Registry())
    message = str(info.value)
    assert f"pip install {package}" in message
    assert "installed: kv" in message
    assert isinstance(info.value, ConfigError) and info.value.code == "CONFIG_ERROR"


def test_adapter_and_config_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        open_store({"adapter": {"name": "kv"}}, adapter="kv")
    with pytest.raises(ConfigError, match="adapter"):
        open_store(adapter_config={"store_method": "in_memory"})


def test_invalid_yaml_and_unreadable_file_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_file(write(tmp_path / "c.yaml", "workers: [\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_file(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        load_file(write(tmp_path / "list.yaml", "- a\n- b\n"))


def test_state_config_repr_hides_adapter_config() -> None:
    settings = StateConfig("redis", {"redis_url": "redis://:hunter2@h"})
    assert "hunter2" not in repr(settings)


# -- discovery ---------------------------------------------------------------------------------

MEMORY_CONFIG = (
    "workers:\n  - name: iii-state\n    config: {adapter: {name: kv, config: {store_method: in_memory}}}\n"
)


def test_discovery_falls_back_to_file_store_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store() as store:
        assert isinstance(store.adapter, KvFileStore)
        store.set("s", "k", {"n": 1})
    assert (tmp_path / "data" / "state_store" / "state.sqlite3").is_file()
    with open_store() as again:
        assert again.get("s", "k") == {"n": 1}


def test_discovery_uses_iii_config_yaml_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "iii-config.yaml", MEMORY_CONFIG)
    with open_store() as store:
        assert isinstance(store.adapter, KvMemoryStore)
    assert not (tmp_path / "data").exists()


def test_discovery_env_var_wins_over_cwd_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "iii-config.yaml", "workers:\n  - name: iii-state\n    config: {bogus_key: 1}\n")
    elsewhere = write(tmp_path / "elsewhere.yaml", MEMORY_CONFIG)
    monkeypatch.setenv("III_CONFIG", str(elsewhere))
    with open_store() as store:
        assert isinstance(store.adapter, KvMemoryStore)
    monkeypatch.delenv("III_CONFIG")
    with pytest.raises(ConfigError, match="bogus_key"):  # proves ./iii-config.yaml was the next in line
        open_store()


def test_discovery_env_var_pointing_nowhere_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("III_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        open_store()


def test_discovery_explicit_path_wins_over_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("III_CONFIG", str(tmp_path / "nope.yaml"))
    explicit = write(tmp_path / "explicit.yaml", MEMORY_CONFIG)
    with open_store(os.fspath(explicit)) as store:
        assert isinstance(store.adapter, KvMemoryStore)


def test_whole_document_mapping_is_accepted() -> None:
    doc = {"workers": [{"name": "iii-state", "config": {"max_value_bytes": 3}}]}
    assert resolve(doc).max_value_bytes == 3


# -- settings that change behaviour ------------------------------------------------------------


@pytest.mark.parametrize(("setting", "emitted"), [(None, 1), (True, 1), (False, 0)])
def test_triggers_enabled(setting: bool | None, emitted: int) -> None:
    block: dict[str, Any] = {"adapter": {"name": "kv"}}
    if setting is not None:
        block["triggers_enabled"] = setting
    seen: list[StateEvent] = []
    with open_store(block) as store:
        store.on_change(seen.append)
        store.set("s", "k", 1)
    assert len(seen) == emitted


def test_max_value_bytes_from_config_file(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.yaml",
        "workers:\n  - name: iii-state\n    config: {adapter: {name: kv}, max_value_bytes: 3}\n",
    )
    from iii_state_core import ValueTooLargeError

    with open_store(config) as store:
        store.set("s", "k", 123)
        with pytest.raises(ValueTooLargeError):
            store.set("s", "k", 1234)
        assert store.get("s", "k") == 123


def test_top_level_save_interval_is_folded_into_kv_config() -> None:
    from iii_state_kvfile import KvFileStore

    from iii_state_core import Adapter
    from iii_state_core.opening import adapter_config_for

    settings = resolve({"adapter": {"name": "kv"}, "save_interval_ms": 250})
    assert adapter_config_for(KvFileStore, settings) == {"save_interval_ms": 250}
    explicit = resolve(
        {"adapter": {"name": "kv", "config": {"save_interval_ms": 5}}, "save_interval_ms": 250}
    )
    assert adapter_config_for(KvFileStore, explicit) == {"save_interval_ms": 5}
    # an adapter that does not declare it never sees it
    assert adapter_config_for(Adapter, settings) == {}


def test_adapter_that_cannot_open_raises_state_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    from iii_state_core import StateError

    with pytest.raises(StateError):
        open_store(
            adapter="kv", adapter_config={"store_method": "file_based", "file_path": str(tmp_path / "file")}
        )


def test_env_value_with_hash_is_not_truncated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("III_TEST_PATH", "dir #2")
    config = write(
        tmp_path / "c.yaml",
        """\
        workers:
          - name: iii-state
            config:
              adapter:
                name: kv
                config:
                  file_path: ${III_TEST_PATH}
        """,
    )
    settings = load_file(config)
    assert settings is not None and settings.adapter_config["file_path"] == "dir #2"


def test_env_variable_in_trailing_comment_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("III_TEST_NEVER_SET", raising=False)
    config = write(
        tmp_path / "c.yaml",
        """\
        workers:
          - name: iii-state
            config:
              max_value_bytes: 10  # could come from ${III_TEST_NEVER_SET}
        """,
    )
    settings = load_file(config)
    assert settings is not None and settings.max_value_bytes == 10


def test_iiis_own_state_block_is_accepted_as_it_is() -> None:
    """iii's `state` worker block: `max_value_bytes: 0` is no limit, `save_interval_ms` at the top
    and in kv's config, a null config."""
    settings = resolve(
        {"adapter": {"name": "kv", "config": {"store_method": "file_based", "file_path": "./data/state",
                                               "save_interval_ms": 5000}},
         "triggers_enabled": None, "max_value_bytes": 0, "save_interval_ms": 750}
    )  # fmt: skip
    assert (settings.max_value_bytes, settings.triggers_enabled) == (None, True)
    assert settings.state_options == {"save_interval_ms": 750}
    assert resolve({"adapter": {"name": "redis", "config": None}}).adapter_config == {}

"""Config loading is total: any file gives settings or one ConfigError naming the file (issue 12)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import iii_state_core.cli_admin  # noqa: F401  (registers `check`, as main() does)
from iii_state_core import ConfigError, open_store
from iii_state_core.cli import cli
from iii_state_core.config import MAX_CONFIG_VALUES, load_file


def _bomb(levels: int) -> str:
    """A small YAML document whose aliases expand ten-fold per level."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    lines += ["workers:", "  - name: iii-state", "    config:", f"      bogus: *a{levels}"]
    return "\n".join(lines) + "\n"


BAD: dict[str, tuple[bytes, str]] = {
    "workers-int": (b"workers: 5\n", "'workers' must be a list"),
    "modules-int": (b"modules: 5\n", "'modules' must be a list"),
    "workers-str": (b"workers: iii-state\n", "'workers' must be a list"),
    "workers-map": (b"workers: {name: iii-state}\n", "'workers' must be a list"),
    "top-list": (b"- 1\n", "mapping at the top level"),
    "config-int": (b"workers:\n  - name: iii-state\n    config: 5\n", "must be a mapping"),
    "config-list": (
        b"modules:\n  - class: modules::state::StateModule\n    config: [1]\n",
        "must be a mapping",
    ),
    "not-utf8": (
        b'workers:\n  - name: iii-state\n    config: {x: "\xff"}\n',
        "not UTF-8 text (byte 0xff on line 3)",
    ),
    "utf16": ("workers: []\n".encode("utf-16"), "not UTF-8 text"),
    "self-alias": (b"workers: &a [*a]\n", "YAML alias loop"),
    "self-alias-map": (b"workers:\n  - &w {name: iii-state, config: {adapter: *w}}\n", "YAML alias loop"),
    "bomb": (_bomb(7).encode(), f"more than {MAX_CONFIG_VALUES} values through YAML aliases"),
    "bad-date": (b"when: 0000-01-01\n", "YAML cannot build"),
    "deep": (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", "levels deep"),
    "deep-ok-yaml": (b"a: " + b"[" * 150 + b"]" * 150 + b"\n", "more than 100 levels"),
    "unhashable-key": (b"? [a]\n: 1\n", "not valid YAML"),
    "deep-flow": (b"a: " + b"[" * 20_000 + b"]" * 20_000 + b"\n", "more than 200 levels deep"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_config_files_are_one_clear_error_naming_the_file(tmp_path: Path, name: str) -> None:
    text, expected = BAD[name]
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(text)
    with pytest.raises(ConfigError) as info:
        load_file(path)
    message = str(info.value)
    assert str(path) in message and expected in message and "\n" not in message, message


@pytest.mark.parametrize("command", [["get", "s", "k"], ["worker"], ["check"]])
@pytest.mark.parametrize("name", ["workers-int", "not-utf8", "self-alias", "bomb"])
def test_cli_and_worker_answer_a_bad_config_in_one_line(
    tmp_path: Path, name: str, command: list[str]
) -> None:
    """They raised TypeError / UnicodeDecodeError / RecursionError tracebacks, or ran for minutes."""
    path = tmp_path / "c.yaml"
    path.write_bytes(BAD[name][0])
    result = CliRunner().invoke(cli, [*command, "-c", str(path)])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: CONFIG_ERROR: ") and result.stderr.count("\n") == 1, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_aliases_that_stay_small_still_work(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "common: &kv {store_method: in_memory}\n"
        "workers:\n  - name: iii-state\n    config:\n      adapter: {name: kv, config: *kv}\n"
    )
    settings = load_file(path)
    assert settings is not None and settings.adapter_config == {"store_method": "in_memory"}


def test_a_mapping_that_contains_itself_is_refused_by_open_store() -> None:
    loop: dict[str, Any] = {"adapter": {"name": "kv"}}
    loop["adapter"]["config"] = loop
    with pytest.raises(ConfigError, match="alias loop"):
        open_store(loop)


@pytest.mark.parametrize(
    "option", ["max_value_depth", "max_value_bytes", "triggers_enabled", "save_interval_ms"]
)
def test_an_option_set_to_null_means_its_default(tmp_path: Path, option: str) -> None:
    """Found by the config fuzzer: `max_value_depth: null` raised a TypeError."""
    path = tmp_path / "c.yaml"
    path.write_text(f"workers:\n  - name: iii-state\n    config: {{{option}: null}}\n")
    settings = load_file(path)
    assert settings is not None
    assert (settings.max_value_depth, settings.max_value_bytes, settings.triggers_enabled) == (
        128,
        None,
        True,
    )

"""The ``iii-state`` command, in-process (click's CliRunner) and as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

import iii_state_core.cli_admin  # noqa: F401  (registers `plugins` and `check`, as main() does)
from iii_state_core.cli import cli

IIISTATE = Path(sys.executable).parent / "iii-state"


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory: the default file store lands in ./data/state_store."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="iii-state")


def out_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def assert_one_line_error(result: Result, exit_code: int, prefix: str) -> str:
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(prefix), lines[0]
    return lines[0]


# -- in-process --------------------------------------------------------------------------------


def test_cli_set_get_update_delete_roundtrip(in_tmp: Path) -> None:
    assert out_json(run("set", "users", "alice", '{"visits": 1, "f": 1.0}')) == {
        "old_value": None,
        "new_value": {"visits": 1, "f": 1.0},
    }
    got = run("get", "users", "alice")
    assert got.stdout == '{"visits":1,"f":1.0}\n'  # compact, and 1.0 stays a float
    updated = out_json(run("update", "users", "alice", '[{"type": "increment", "path": "visits", "by": 1}]'))
    assert updated["new_value"] == {"visits": 2, "f": 1.0}
    assert out_json(run("keys", "users")) == ["alice"]
    assert out_json(run("list", "users")) == [{"visits": 2, "f": 1.0}]
    assert out_json(run("groups")) == ["users"]
    assert out_json(run("delete", "users", "alice")) == {"visits": 2, "f": 1.0}
    assert out_json(run("get", "users", "alice")) is None
    assert out_json(run("groups")) == []
    assert (in_tmp / "data" / "state_store" / "state.sqlite3").is_file()


def test_cli_update_reports_op_errors_in_result(in_tmp: Path) -> None:
    run("set", "s", "k", '"text"')
    result = out_json(run("update", "s", "k", '[{"type": "increment", "path": "", "by": 1}]'))
    assert [e["code"] for e in result["errors"]] == ["increment.not_number"]


def test_cli_non_ascii_output_is_utf8(in_tmp: Path) -> None:
    run("set", "s", "k", '"héllo 😀"')
    assert run("get", "s", "k").stdout == '"héllo 😀"\n'


@pytest.mark.parametrize(("command", "args"), [("set", ["s", "k", "hello"]), ("update", ["s", "k", "[{]"])])
def test_cli_bad_json_exits_2_with_one_line_hint(in_tmp: Path, command: str, args: list[str]) -> None:
    result = run(command, *args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "must be JSON" in errors[0] and "a string needs quotes" in errors[0]
    assert not (in_tmp / "data").exists()  # nothing was opened or stored


@pytest.mark.parametrize("value", ["NaN", "1e400", "18446744073709551616"])
def test_cli_non_strict_json_is_refused(in_tmp: Path, value: str) -> None:
    assert run("set", "s", "k", value).exit_code == 2


def test_cli_config_error_exits_1_one_line(in_tmp: Path) -> None:
    (in_tmp / "bad.yaml").write_text("workers:\n  - name: iii-state\n    config: {bogus: 1}\n")
    line = assert_one_line_error(run("get", "s", "k", "--config", "bad.yaml"), 1, "error: CONFIG_ERROR: ")
    assert "bogus" in line


def test_cli_config_from_env_var(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (in_tmp / "bad.yaml").write_text("workers:\n  - name: iii-state\n    config: {adapter: {name: nosuch}}\n")
    monkeypatch.setenv("III_CONFIG", "bad.yaml")
    line = assert_one_line_error(run("groups"), 1, "error: CONFIG_ERROR: ")
    assert "pip install iii-state-nosuch" in line


def test_cli_unset_variable_is_one_line_error(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("III_TEST_UNSET_VAR", raising=False)
    (in_tmp / "c.yaml").write_text(
        "workers:\n  - name: iii-state\n"
        "    config: {adapter: {name: kv, config: {file_path: ${III_TEST_UNSET_VAR}}}}\n"
    )
    line = assert_one_line_error(run("keys", "s", "-c", "c.yaml"), 1, "error: CONFIG_ERROR: ")
    assert "III_TEST_UNSET_VAR" in line


def test_cli_missing_config_file_is_one_line_error(in_tmp: Path) -> None:
    assert_one_line_error(run("get", "s", "k", "-c", "nope.yaml"), 1, "error: CONFIG_ERROR: ")


def test_cli_invalid_yaml_is_one_line_error(in_tmp: Path) -> None:
    (in_tmp / "broken.yaml").write_text("workers:\n  - name: iii-state\n    config: [\n")
    line = assert_one_line_error(run("get", "s", "k", "-c", "broken.yaml"), 1, "error: CONFIG_ERROR: ")
    assert "broken.yaml" in line and "line 4" in line


def test_cli_store_that_cannot_open_is_one_line_error(in_tmp: Path) -> None:
    (in_tmp / "data").mkdir()
    (in_tmp / "data" / "state_store").write_text("not a directory")
    line = assert_one_line_error(run("get", "s", "k"), 1, "error: ")
    assert "data/state_store" in line


def test_cli_malformed_ops_exit_1_one_line(in_tmp: Path) -> None:
    line = assert_one_line_error(
        run("update", "s", "k", '[{"type": "increment", "path": "n", "by": 1.5}]'),
        1,
        "error: deserialization_error: ",
    )
    assert "by" in line
    assert out_json(run("get", "s", "k")) is None


def test_cli_value_too_large_is_one_line_error(in_tmp: Path) -> None:
    (in_tmp / "c.yaml").write_text("workers:\n  - name: iii-state\n    config: {max_value_bytes: 4}\n")
    assert_one_line_error(run("set", "s", "k", '"too long"', "-c", "c.yaml"), 1, "error: VALUE_TOO_LARGE: ")


def test_cli_plugins_lists_kv_with_capabilities(in_tmp: Path) -> None:
    result = run("plugins")
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split()[:2] == ["adapter", "plugin"] and "max value bytes" in header
    kv = [r.split() for r in rows if r.split()[0] == "kv"]
    assert kv and kv[0][1] == "kv" and kv[0][2] == "True"  # durable
    assert "ttl" in header and "expiry events ms" in header and kv[0][7:9] == ["emulated", "500"]


def test_cli_plugins_with_no_plugins(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from iii_state_core import plugins

    monkeypatch.setenv("III_STATE_PLUGINS", "")
    monkeypatch.setattr(plugins, "_default", None)
    result = run("plugins")
    assert result.exit_code == 0 and "pip install iii-state-kvfile" in result.stdout


def test_cli_check_passes_and_leaves_nothing(in_tmp: Path) -> None:
    result = run("check")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"store: kv (file_based at {in_tmp / 'data/state_store/state.sqlite3'})")
    assert result.stdout.splitlines()[-1].startswith("ok:")
    assert out_json(run("groups")) == []


def test_cli_check_reports_config_error(in_tmp: Path) -> None:
    (in_tmp / "iii-config.yaml").write_text(
        "workers:\n  - name: iii-state\n    config: {adapter: {name: nosuch}}\n"
    )
    assert_one_line_error(run("check"), 1, "error: CONFIG_ERROR: ")


def _all_commands() -> list[str]:
    with click.Context(cli) as ctx:
        return cli.list_commands(ctx)


def test_cli_lists_the_state_commands() -> None:
    assert {"get", "set", "update", "delete", "list", "keys", "groups", "plugins", "check"} <= set(
        _all_commands()
    )


@pytest.mark.parametrize("command", _all_commands())
def test_cli_help_of_each_command(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: iii-state {command}")
    assert run(command, "-h").stdout == result.stdout


def test_cli_top_level_help_and_version() -> None:
    result = run("--help")
    assert result.exit_code == 0 and "Examples:" in result.stdout
    assert run("--version").stdout.strip().endswith("0.1.0")


# -- real processes ----------------------------------------------------------------------------


def proc(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("III_CONFIG", "III_STATE_PLUGINS")}
    return subprocess.run(
        [str(IIISTATE), *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_process_set_then_get_in_another_process_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert IIISTATE.is_file(), IIISTATE
    first = proc(tmp_path, "set", "s", "k", '{"n":1}')
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"old_value": None, "new_value": {"n": 1}}
    second = proc(tmp_path, "get", "s", "k")
    assert second.returncode == 0 and second.stdout == '{"n":1}\n'
    third = proc(tmp_path, "update", "s", "k", '[{"type":"increment","path":"n","by":41}]')
    assert json.loads(third.stdout) == {"old_value": {"n": 1}, "new_value": {"n": 42}}
    # the remaining commands run in-process (each process costs a second under load) over the
    # file store the processes wrote
    monkeypatch.chdir(tmp_path)
    assert run("keys", "s").stdout == '["k"]\n'
    assert run("list", "s").stdout == '[{"n":42}]\n'
    assert run("groups").stdout == '["s"]\n'
    assert run("delete", "s", "k").stdout == '{"n":42}\n'
    assert proc(tmp_path, "groups").stdout == "[]\n"


def test_process_errors_have_no_traceback(tmp_path: Path) -> None:
    bad_json = proc(tmp_path, "set", "s", "k", "hello")
    assert bad_json.returncode == 2 and "Traceback" not in bad_json.stderr
    assert "a string needs quotes" in bad_json.stderr
    (tmp_path / "bad.yaml").write_text("workers:\n  - name: iii-state\n    config: {bogus: 1}\n")
    config_error = proc(tmp_path, "get", "s", "k", env={"III_CONFIG": "bad.yaml"})
    assert config_error.returncode == 1
    assert config_error.stderr.startswith("error: CONFIG_ERROR: ") and config_error.stderr.count("\n") == 1
    assert config_error.stdout == ""


def test_process_plugins_and_check(tmp_path: Path) -> None:
    plugins = proc(tmp_path, "plugins")
    assert plugins.returncode == 0 and any(line.startswith("kv ") for line in plugins.stdout.splitlines())
    check = proc(tmp_path, "check")
    assert check.returncode == 0, check.stderr
    assert check.stdout.splitlines()[-1].startswith("ok:")


@pytest.mark.parametrize(
    "text", ["", "foo: 1\n", "workers:\n  - name: iii-http\n"], ids=["empty", "foo", "engine"]
)
@pytest.mark.parametrize(
    "command", [["get", "s", "k"], ["groups"], ["check"], ["export"], ["set", "s", "k", "1"]]
)
def test_cli_config_without_state_block_is_refused(in_tmp: Path, text: str, command: list[str]) -> None:
    """Regression: such a file silently meant the embedded default (`check` said "ok")."""
    (in_tmp / "c.yaml").write_text(text)
    result = run(*command, "-c", "c.yaml")
    assert_one_line_error(result, 1, "error: CONFIG_ERROR: c.yaml has no iii-state block")
    assert not (in_tmp / "data").exists()


def test_cli_batch_reads_json_lines_and_transact_is_all_or_nothing(in_tmp: Path) -> None:
    lines = "\n".join([
        '{"op": "set", "scope": "u", "key": "a", "value": 1}', "",
        '{"op": "get", "scope": "u", "key": "a"}',
        '{"op": "set", "scope": "u", "key": "b"}',
    ])  # fmt: skip
    result = CliRunner().invoke(cli, ["batch"], input=lines, prog_name="iii-state")
    assert result.exit_code == 1 and "1 of 3 operations failed" in result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert (
        out[:2] == [{"old_value": None, "new_value": 1}, 1]
        and out[2]["error"]["code"] == "deserialization_error"
    )
    (in_tmp / "ops.jsonl").write_text(
        '{"op": "delete", "scope": "u", "key": "a"}\n{"op": "set", "scope": "u", "key": "b", "value": 2}\n'
    )
    assert out_json(run("batch", "--transact", str(in_tmp / "ops.jsonl")))["committed"] is True
    assert out_json(run("get", "u", "b")) == 2
    bad = CliRunner().invoke(cli, ["batch"], input='{"op": "set"}\nnot json\n', prog_name="iii-state")
    assert_one_line_error(bad, 1, "error: line 2: ")

"""``iii-state migrate``: its summary table, exit codes and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from transfer_data import HOSTILE_SCOPES, fill, kv_config_file, kv_store, make_entries

from iii_state_core.cli import cli


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_summary_table_lists_every_scope_and_the_totals(tmp_path: Path) -> None:
    source, target = kv_config_file(tmp_path, "a"), kv_config_file(tmp_path, "b")
    with kv_store(tmp_path / "a-data") as store:
        fill(store, make_entries(500))
    code, out, err = run("migrate", "--from", str(source), "--to", str(target), "--progress-interval", "0")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["scope", "source", "target", "digest", "result"]
    assert len(lines) == 1 + 50 + 1
    assert '"\\n"' in out and '"🔥"' in out and '"a:b"' in out  # hostile names shown escaped
    assert all(line.rstrip().endswith("ok") for line in lines[1:51])
    assert lines[-1].startswith("50 scopes, 500 entries: written 500, unchanged 0, skipped 0")
    assert lines[-1].endswith("verified: all 50 scopes match")
    assert "check: 500/500 entries (100.0%)" in err and "copy: 500/500" in err and "verify:" in err
    assert not list(tmp_path.glob(".iii-state-migrate-*.json"))  # verified: resume record removed


def test_a_mismatch_exits_1_and_lists_only_what_differs_for_many_scopes(tmp_path: Path) -> None:
    source, target = kv_config_file(tmp_path, "a"), kv_config_file(tmp_path, "b")
    scopes = [f"s{i:03d}" for i in range(60)]
    with kv_store(tmp_path / "a-data") as store:
        fill(store, make_entries(120, scopes))
    with kv_store(tmp_path / "b-data") as store:
        store.set("s007", "extra", 1)
    code, out, err = run("migrate", "--from", str(source), "--to", str(target))
    assert code == 1
    assert [line.split()[:3] + line.split()[-1:] for line in out.splitlines()[1:2]] == [
        ['"s007"', "2", "3", "MISMATCH"]
    ]
    assert "(59 matching scopes not listed)" in out and "VERIFICATION FAILED: 1 scope(s) differ" in out
    assert "is kept; --restart copies everything again" in err


def test_refusals(tmp_path: Path) -> None:
    source = kv_config_file(tmp_path, "a")
    with kv_store(tmp_path / "a-data") as store:
        store.set("s", "k", 1)
    same = tmp_path / "same.yaml"
    same.write_text(source.read_text())
    code, _, err = run("migrate", "--from", str(source), "--to", str(same))
    assert code == 1 and "--from and --to open the same store" in err
    empty = tmp_path / "empty.yaml"
    empty.write_text("workers: []\n")
    code, _, err = run("migrate", "--from", str(source), "--to", str(empty))
    assert code == 1 and "has no iii-state" in err
    code, _, err = run("migrate", "--from", str(source), "--to", str(tmp_path / "missing.yaml"))
    assert code == 2 and "does not exist" in err


def test_incompatible_entries_are_listed_and_nothing_is_copied(tmp_path: Path) -> None:
    source = kv_config_file(tmp_path, "a")
    target = tmp_path / "small.yaml"
    target.write_text(
        "workers:\n  - name: iii-state\n    config:\n      max_value_bytes: 100\n      adapter:\n"
        f"        name: kv\n        config: {{store_method: file_based, file_path: '{tmp_path / 'small'}'}}\n"
    )
    with kv_store(tmp_path / "a-data") as store:
        fill(store, make_entries(100, HOSTILE_SCOPES[:5]))
    code, _, err = run("migrate", "--from", str(source), "--to", str(target))
    assert code == 1 and "INCOMPATIBLE_ENTRIES" in err and "nothing was copied" in err
    with kv_store(tmp_path / "small") as store:
        assert store.list_groups() == []


def test_a_source_store_that_does_not_exist_is_refused_and_not_created(tmp_path: Path) -> None:
    source, target = kv_config_file(tmp_path, "a"), kv_config_file(tmp_path, "b")
    code, out, err = run("migrate", "--from", str(source), "--to", str(target))
    assert code == 1 and out == ""
    assert f"{tmp_path / 'a-data' / 'state.sqlite3'} does not exist" in err and err.count("\n") == 1
    assert not (tmp_path / "a-data").exists() and not (tmp_path / "b-data").exists()
    code, out, err = run("export", "-c", str(source))
    assert code == 1 and out == "" and "does not exist" in err
    assert not (tmp_path / "a-data").exists()


def relative_kv_config(folder: Path) -> Path:
    folder.mkdir()
    path = folder / "iii-config.yaml"
    path.write_text(
        "workers:\n  - name: iii-state\n    config:\n      adapter:\n        name: kv\n"
        "        config:\n          store_method: file_based\n          file_path: ./data/state_store\n"
    )
    return path


def test_relative_file_path_is_the_config_files_when_run_from_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: run from the parent, a relative file_path opened an empty store under the
    current directory, and migrate reported "0 entries … verified" with exit code 0."""
    relative_kv_config(tmp_path / "kv")
    relative_kv_config(tmp_path / "copy")
    with kv_store(tmp_path / "kv" / "data" / "state_store") as store:
        fill(store, make_entries(30, ["a", "b", "c"]))
    monkeypatch.chdir(tmp_path)
    code, out, err = run("export", "-c", "kv/iii-config.yaml")
    assert code == 0 and out.count("\n") == 30, err
    assert f"exporting from: kv (file_based at {tmp_path / 'kv/data/state_store/state.sqlite3'})" in err
    code, out, err = run("migrate", "--from", "kv/iii-config.yaml", "--to", "copy/iii-config.yaml")
    assert code == 0, err
    assert out.splitlines()[-1].startswith("3 scopes, 30 entries: written 30")
    assert f"to: kv (file_based at {tmp_path / 'copy/data/state_store/state.sqlite3'})" in err
    assert not (tmp_path / "data").exists()
    with kv_store(tmp_path / "copy" / "data" / "state_store") as store:
        assert sum(len(store.list_keys(s)) for s in store.list_groups()) == 30


def test_skip_into_a_target_holding_other_values_fails_verification_and_says_why(tmp_path: Path) -> None:
    source, target = kv_config_file(tmp_path, "a"), kv_config_file(tmp_path, "b")
    with kv_store(tmp_path / "a-data") as store:
        store.set("s", "k1", 1)
        store.set("s", "k2", 2)
    with kv_store(tmp_path / "b-data") as store:
        store.set("s", "k1", "theirs")
    code, out, err = run("migrate", "--from", str(source), "--to", str(target), "--on-conflict", "skip")
    assert code == 1 and "skipped 1" in out and "VERIFICATION FAILED: 1 scope(s) differ" in out
    assert "note: 1 entries were skipped (--on-conflict skip kept the target's different values)" in err

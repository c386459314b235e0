"""``iii-state migrate``: its summary table, exit codes and refusals."""

from __future__ import annotations

from pathlib import Path

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
    same = tmp_path / "same.yaml"
    same.write_text(source.read_text())
    code, _, err = run("migrate", "--from", str(source), "--to", str(same))
    assert code == 1 and "--from and --to open the same store" in err
    empty = tmp_path / "empty.yaml"
    empty.write_text("workers: []\n")
    code, _, err = run("migrate", "--from", str(source), "--to", str(empty))
    assert code == 1 and "has no iii-state worker block" in err
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

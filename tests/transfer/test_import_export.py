"""``iii-state export`` / ``import`` and the library calls behind them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from transfer_data import SAMPLE_VALUES, fill, kv_config_file, kv_store, make_entries

from iii_state_core import StateStore
from iii_state_core.cli import cli
from iii_state_core.transfer import (
    ConflictsFoundError,
    Entry,
    EntryConflictError,
    InvalidLinesError,
    encode_line,
    export_entries,
    import_entries,
    import_file,
    importing,
    put_entry,
    rounds,
)


def run(*args: str, input: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def everything(store: StateStore) -> list[Entry]:
    return sorted(export_entries(store), key=lambda e: (e.scope, e.key))


def write_lines(path: Path, entries: list[Entry]) -> None:
    path.write_bytes(b"".join(encode_line(e) for e in entries))


# -- import: check first, then write ---------------------------------------------------------------


def test_broken_line_37_is_reported_and_nothing_is_written(tmp_path: Path) -> None:
    config = kv_config_file(tmp_path, "store")
    lines = [encode_line(Entry(f"s{i % 3}", f"k{i}", {"n": i})) for i in range(1, 101)]
    lines[36] = b'{"scope": "s1", "key": "k37", "value": {"n": 37}\n'  # the closing brace is missing
    source = tmp_path / "state.jsonl"
    source.write_bytes(b"".join(lines))

    code, _, err = run("import", "-c", str(config), str(source))

    assert code == 1
    assert "1 invalid line(s)" in err and "nothing was written" in err
    assert "line 37: not valid JSON" in err
    assert "line 36" not in err and "line 38" not in err
    with kv_store(tmp_path / "store-data") as store:
        assert store.list_groups() == []


def test_broken_line_37_library_call_writes_nothing(tmp_path: Path, kv_target: StateStore) -> None:
    entries = [Entry("s", f"k{i}", i) for i in range(1, 51)]
    source = tmp_path / "state.jsonl"
    write_lines(source, entries)
    lines = source.read_bytes().splitlines(keepends=True)
    lines[36] = b'{"scope":"s","key":"k37","value":NaN}\n'
    source.write_bytes(b"".join(lines))
    with pytest.raises(InvalidLinesError) as caught:
        import_file(kv_target, source)
    assert [p.line for p in caught.value.problems] == [37]
    assert kv_target.list_groups() == []


def test_skip_invalid_writes_the_good_lines_and_lists_the_bad(tmp_path: Path) -> None:
    config = kv_config_file(tmp_path, "store")
    source = tmp_path / "state.jsonl"
    source.write_bytes(
        b'{"scope":"s","key":"a","value":1}\n'
        b'{"scope":"s","key":"b"}\n'
        b'{"scope":"s","key":"c","value":[]}\n'
        b'{"scope":2,"key":"d","value":1}\n'
    )
    code, out, err = run("import", "-c", str(config), "--skip-invalid", str(source))
    assert code == 0, err
    assert json.loads(out) == {"written": 2, "unchanged": 0, "skipped": 0, "invalid": 2, "expired": 0}
    assert "line 2: missing field" in err and "line 4: " in err
    with kv_store(tmp_path / "store-data") as store:
        assert everything(store) == [Entry("s", "a", 1), Entry("s", "c", [])]


def test_import_reads_stdin(tmp_path: Path) -> None:
    config = kv_config_file(tmp_path, "store")
    data = encode_line(Entry("🔥", "", {"x": "ü"})) + encode_line(Entry("", "\n", None))
    code, out, err = run("import", "-c", str(config), "-", input=data)
    assert code == 0, err
    assert json.loads(out)["written"] == 2
    with kv_store(tmp_path / "store-data") as store:
        assert everything(store) == [Entry("", "\n", None), Entry("🔥", "", {"x": "ü"})]


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    code, _, err = run("import", "-c", str(kv_config_file(tmp_path, "s")), str(tmp_path / "nope.jsonl"))
    assert code == 1 and "cannot read" in err and "nope.jsonl" in err


# -- conflict policies --------------------------------------------------------------------------------


@pytest.fixture
def existing(tmp_path: Path, kv_target: StateStore) -> Path:
    """The target holds a=1 (a different value), b=2 (the same value), n=null; the file has a, b, c, n."""
    kv_target.set("s", "a", 1)
    kv_target.set("s", "b", 2)
    kv_target.set("s", "n", None)
    path = tmp_path / "in.jsonl"
    write_lines(path, [Entry("s", "a", 10), Entry("s", "b", 2), Entry("s", "c", 3), Entry("s", "n", None)])
    return path


def test_fail_finds_conflicts_before_writing(existing: Path, kv_target: StateStore) -> None:
    with pytest.raises(ConflictsFoundError) as caught:
        import_file(kv_target, existing, "fail")
    assert [p.line for p in caught.value.problems] == [1]
    assert kv_target.get("s", "c") is None and kv_target.list_keys("s") == ["a", "b", "n"]


def test_skip_keeps_the_stored_values(existing: Path, kv_target: StateStore) -> None:
    report = import_file(kv_target, existing, "skip")
    assert report.to_dict() == {"written": 1, "unchanged": 2, "skipped": 1, "invalid": 0, "expired": 0}
    assert everything(kv_target) == [
        Entry("s", "a", 1), Entry("s", "b", 2), Entry("s", "c", 3), Entry("s", "n", None)
    ]  # fmt: skip


def test_overwrite_replaces_the_stored_values(existing: Path, kv_target: StateStore) -> None:
    report = import_file(kv_target, existing, "overwrite")
    assert (report.written + report.unchanged, report.skipped) == (4, 0)
    assert everything(kv_target) == [
        Entry("s", "a", 10), Entry("s", "b", 2), Entry("s", "c", 3), Entry("s", "n", None)
    ]  # fmt: skip


@pytest.mark.parametrize("kept_bytes", [importing.KEPT_BYTES, 0])
def test_the_file_is_parsed_once_when_its_entries_fit_and_twice_when_not(
    existing: Path, kv_target: StateStore, monkeypatch: pytest.MonkeyPatch, kept_bytes: int
) -> None:
    """The check pass keeps what fits in KEPT_BYTES for the writes; a larger file is read again.
    Either way the same outcome, including the line and key of a conflict found while writing.
    (The general path, as on Redis: kv's big rounds are switched off.)"""
    monkeypatch.setattr(rounds, "available", lambda adapter: False)
    monkeypatch.setattr(importing, "KEPT_BYTES", kept_bytes)
    passes: list[int] = []
    real = importing.iter_encoded

    def counted(stream: Any, limits: Any) -> Any:
        passes.append(1)
        return real(stream, limits)

    monkeypatch.setattr(importing, "iter_encoded", counted)
    report = import_file(kv_target, existing, "skip")
    assert report.to_dict() == {"written": 1, "unchanged": 2, "skipped": 1, "invalid": 0, "expired": 0}
    assert len(passes) == (1 if kept_bytes else 2)
    kv_target.delete("s", "c")
    real_differing = importing._differing

    def racing(store: StateStore, numbered: list[tuple[int, Entry]], **kwargs: Any) -> list[Any]:
        differs = real_differing(store, numbered, **kwargs)
        store.set("s", "c", "theirs")  # created after the check pass
        return differs

    monkeypatch.setattr(importing, "_differing", racing)
    kv_target.set("s", "a", 10)
    with pytest.raises(EntryConflictError) as caught:
        import_file(kv_target, existing, "fail")
    assert (caught.value.line, caught.value.key, kv_target.get("s", "c")) == (3, "c", "theirs")


@pytest.mark.parametrize("kept_bytes", [rounds.KEPT_BYTES, 0])
def test_kv_rounds_parse_the_file_once_when_it_fits_and_twice_when_not(
    existing: Path, kv_target: StateStore, monkeypatch: pytest.MonkeyPatch, kept_bytes: int
) -> None:
    """kv's big rounds: the same outcomes as the general path, including a key created between
    the check pass and the writes (the round's new keys are then written the general way)."""
    assert rounds.available(kv_target.adapter)
    monkeypatch.setattr(rounds, "KEPT_BYTES", kept_bytes)
    passes: list[int] = []
    real = rounds.read_rounds

    def counted(stream: Any, limits: Any, report: Any) -> Any:
        passes.append(1)
        return real(stream, limits, report)

    monkeypatch.setattr(rounds, "read_rounds", counted)
    report = import_file(kv_target, existing, "skip")
    assert report.to_dict() == {"written": 1, "unchanged": 2, "skipped": 1, "invalid": 0, "expired": 0}
    assert len(passes) == (1 if kept_bytes else 2)
    kv_target.delete("s", "c")
    real_check = rounds.check

    def racing(store: StateStore, rnd: rounds.Round, conflicts: list[Any]) -> int:
        found = real_check(store, rnd, conflicts)
        store.set("s", "c", "theirs")  # created after the check pass
        return found

    monkeypatch.setattr(rounds, "check", racing)
    kv_target.set("s", "a", 10)
    with pytest.raises(EntryConflictError) as caught:
        import_file(kv_target, existing, "fail")
    assert (caught.value.line, caught.value.key, kv_target.get("s", "c")) == (3, "c", "theirs")


def test_cli_conflict_report(existing: Path, tmp_path: Path) -> None:
    config = tmp_path / "target.yaml"
    config.write_text(
        "workers:\n  - name: iii-state\n    config:\n      adapter:\n        name: kv\n"
        f"        config: {{store_method: file_based, file_path: '{tmp_path / 'target'}'}}\n"
    )
    code, _, err = run("import", "-c", str(config), str(existing))
    assert code == 1 and "CONFLICT" in err and "line 1: " in err and "--on-conflict" in err
    code, out, err = run("import", "-c", str(config), "--on-conflict", "skip", str(existing))
    counts = {"written": 1, "unchanged": 2, "skipped": 1, "invalid": 0, "expired": 0}
    assert code == 0 and json.loads(out) == counts


def test_a_key_created_between_the_passes_is_never_overwritten(
    existing: Path, kv_target: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer creates "c" after the check pass: skip keeps its value, fail stops at it.
    (The general path; kv's big rounds meet the same race in the test above.)"""
    monkeypatch.setattr(rounds, "available", lambda adapter: False)
    real = importing._differing

    def racing(store: StateStore, numbered: list[tuple[int, Entry]], **kwargs: Any) -> list[Any]:
        differs = real(store, numbered, **kwargs)
        if any(entry.key == "c" for _, entry in numbered):
            store.set("s", "c", "theirs")
        return differs

    monkeypatch.setattr(importing, "_differing", racing)
    kv_target.set("s", "a", 10)
    with pytest.raises(EntryConflictError) as caught:
        import_file(kv_target, existing, "fail")
    assert caught.value.line == 3 and caught.value.key == "c"
    assert kv_target.get("s", "c") == "theirs"


def test_put_entry_policies_on_a_stored_null() -> None:
    with kv_store_memory() as store:
        store.set("s", "k", None)
        assert put_entry(store, Entry("s", "k", None), "fail") == "unchanged"
        assert put_entry(store, Entry("s", "k", 0), "fail") == "conflict"
        assert put_entry(store, Entry("s", "k", 0), "skip") == "skipped"
        assert store.get("s", "k") is None and store.list_keys("s") == ["k"]
        assert put_entry(store, Entry("s", "k", 0), "overwrite") == "written"
        assert put_entry(store, Entry("s", "k", 0), "overwrite") == "unchanged"
        assert put_entry(store, Entry("s", "new", None), "fail") == "written"


def test_import_entries_counts_and_stops_at_a_conflict() -> None:
    with kv_store_memory() as store:
        store.set("s", "b", "other")
        entries = [Entry("s", "a", 1), Entry("s", "a", 1), Entry("s", "b", 2), Entry("s", "c", 3)]
        with pytest.raises(EntryConflictError) as caught:
            import_entries(store, entries)
        assert caught.value.written == 1 and caught.value.key == "b"
        assert store.get("s", "c") is None
        report = import_entries(store, entries, "skip")
        assert (report.written, report.unchanged, report.skipped) == (1, 2, 1)


def kv_store_memory() -> StateStore:
    from iii_state_core import open_store

    return open_store(adapter="kv")


# -- export ------------------------------------------------------------------------------------------


def test_export_then_import_round_trips_every_sample(tmp_path: Path) -> None:
    with kv_store(tmp_path / "a-data") as store:
        fill(store, make_entries(700))
    code, out_a, err = run("export", "-c", str(kv_config_file(tmp_path, "a")))
    assert code == 0 and "exported 700 entries" in err
    lines = out_a.encode("utf-8").splitlines()
    assert len(lines) == 700 and all(json.loads(line).keys() == {"scope", "key", "value"} for line in lines)
    assert "🔥".encode() in out_a.encode("utf-8")  # non-ASCII is written as is, not \\u-escaped
    (tmp_path / "dump.jsonl").write_text(out_a, encoding="utf-8")
    code, out, err = run("import", "-c", str(kv_config_file(tmp_path, "b")), str(tmp_path / "dump.jsonl"))
    assert code == 0 and json.loads(out)["written"] == 700, err
    code, out_b, _ = run("export", "-c", str(kv_config_file(tmp_path, "b")))
    assert out_b == out_a


def test_export_selected_scopes_to_a_file(tmp_path: Path) -> None:
    with kv_store(tmp_path / "a-data") as store:
        fill(store, [Entry("a:b", "1", 1), Entry("%", "2", 2), Entry("\n", "3", SAMPLE_VALUES)])
    target = tmp_path / "out.jsonl"
    code, out, err = run(
        "export", "-c", str(kv_config_file(tmp_path, "a")), "--scope", "\n", "-s", "a:b", "-o", str(target)
    )
    assert code == 0 and out == "" and "exported 2 entries" in err
    assert not (tmp_path / "out.jsonl.partial").exists()
    entries = [json.loads(line) for line in target.read_bytes().splitlines()]
    assert [(e["scope"], e["key"]) for e in entries] == [("\n", "3"), ("a:b", "1")]
    assert entries[0]["value"] == SAMPLE_VALUES


def test_help_texts_explain_and_show_examples() -> None:
    for command in ("export", "import", "migrate"):
        code, out, _ = run(command, "--help")
        assert code == 0 and "Examples:" in out and f"iii-state {command}" in out


# -- entries another program wrote (issue 12) -----------------------------------------------------


@pytest.mark.parametrize("foreign", [b"NaN", b"1e400", b"not json"])
def test_export_of_bytes_another_program_wrote_fails_in_one_line(tmp_path: Path, foreign: bytes) -> None:
    """It printed part of the scope, then a ValueError traceback."""
    config = kv_config_file(tmp_path, "store")
    with kv_store(tmp_path / "store-data") as store:
        store.set("s", "a", 1)
        store.adapter.write("s", "b", foreign)
    out = tmp_path / "out.jsonl"
    code, _, err = run("export", "-c", str(config), "-o", str(out))
    assert code == 1 and not out.exists()
    last = err.splitlines()[-1]  # after the line naming the store it exported from
    assert last.startswith("error: LIST_ENTRIES_ERROR") and 'key "b"' in last
    assert "Traceback" not in err


def test_import_over_bytes_another_program_wrote_is_a_conflict_or_an_overwrite(tmp_path: Path) -> None:
    config = kv_config_file(tmp_path, "store")
    with kv_store(tmp_path / "store-data") as store:
        store.adapter.write("s", "k", b"NaN")
    source = tmp_path / "in.jsonl"
    write_lines(source, [Entry("s", "k", 1)])
    code, _, err = run("import", "-c", str(config), str(source))
    assert code == 1 and "Traceback" not in err
    code, _, err = run("import", "-c", str(config), "--on-conflict", "overwrite", str(source))
    assert code == 0, err
    with kv_store(tmp_path / "store-data") as store:
        assert store.get("s", "k") == 1


def test_import_entries_writes_a_chunk_per_round_trip_and_fail_stops_before_a_conflict() -> None:
    with kv_store_memory() as store:
        rounds: list[int] = []
        real = store.adapter.run_many
        store.adapter.run_many = lambda calls: rounds.append(len(calls)) or real(calls)  # type: ignore[method-assign]
        entries = [Entry("s", f"k{i}", i) for i in range(1200)]
        report = import_entries(store, entries)
        assert report.written == 1200 and store.get("s", "k1199") == 1199
        # fail: a read round and one write round per chunk of 500 (a create-only write_if needs no
        # read_versioned first: its token for "missing" is None)
        assert len(rounds) == 6 and max(rounds) == 500, rounds
        store.set("s", "k700", "other")
        again = [Entry("s", f"n{i}", i) for i in range(600)] + [Entry("s", "k700", 700), Entry("s", "z", 0)]
        with pytest.raises(EntryConflictError) as caught:
            import_entries(store, again)
        assert caught.value.written == 600 and store.get("s", "n599") == 599 and store.get("s", "z") is None

"""contract § Expiry, moving state: export writes each entry's absolute deadline, import and migrate
restore it, entries past it are skipped and counted, old files still import."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from iii_state_kvfile.memory_store import KvMemoryStore
from transfer_data import kv_store

from iii_state_core import StateStore
from iii_state_core.events import EventBus
from iii_state_core.expiry import now_ms
from iii_state_core.operations import Limits
from iii_state_core.transfer import (
    Entry,
    IncompatibleEntriesError,
    InvalidLinesError,
    export_entries,
    import_entries,
    import_file,
    migrate,
    parse_line,
    write_jsonl,
)
from iii_state_core.transfer.cli import print_summary
from iii_state_core.transfer.migration import MigrationReport

#: A deadline is carried over as "time left", so the target's may be a few ms later.
SLACK_MS = 200


def deadline(store: StateStore, scope: str, key: str) -> int | None:
    present, at = store.adapter.read_expiry(scope, key)
    assert present, (scope, key)
    return at


class NoTtlStore(KvMemoryStore):
    capabilities = replace(KvMemoryStore.capabilities, ttl="none", expiry_event_delay_ms=None)


@pytest.fixture
def no_ttl_store() -> Iterator[StateStore]:
    adapter = NoTtlStore()
    with StateStore(adapter, Limits(adapter.capabilities, adapter_name="nottl"), EventBus()) as store:
        yield store


def test_export_writes_absolute_deadlines_and_leaves_expired_entries_out(tmp_path: Path) -> None:
    with kv_store(tmp_path / "src") as source:
        source.set("s", "forever", 1)
        source.set("s", "later", {"n": 2}, ttl_ms=60_000)
        source.set("s", "soon", 3, ttl_ms=10)
        time.sleep(0.03)
        entries = list(export_entries(source))
        later = deadline(source, "s", "later")
        assert entries == [Entry("s", "forever", 1), Entry("s", "later", {"n": 2}, later)]
        out = io.BytesIO()
        write_jsonl(entries, out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0] == {"scope": "s", "key": "forever", "value": 1}  # no field: the old format
    assert lines[1]["expires_at"] == entries[1].expires_at
    assert abs(lines[1]["expires_at"] - now_ms() - 60_000) < 5_000
    scope, key, value = entries[1]  # still a 3-tuple for callers that unpack it
    assert (scope, key, value) == ("s", "later", {"n": 2})


def test_import_restores_deadlines_skips_and_counts_expired_and_reads_old_files(tmp_path: Path) -> None:
    future = now_ms() + 60_000
    path = tmp_path / "state.jsonl"
    path.write_text(
        '{"scope":"s","key":"old","value":"no deadline: a file from before"}\n'
        f'{{"scope":"s","key":"later","value":1,"expires_at":{future}}}\n'
        f'{{"scope":"s","key":"gone","value":2,"expires_at":{now_ms() - 1}}}\n'
        '{"scope":"s","key":"null","value":3,"expires_at":null}\n'
    )
    with kv_store(tmp_path / "dst") as target:
        report = import_file(target, path)
        assert report.to_dict() == {"written": 3, "unchanged": 0, "skipped": 0, "invalid": 0, "expired": 1}
        assert target.list_keys("s") == ["later", "null", "old"]
        restored = deadline(target, "s", "later")
        assert restored is not None and future <= restored <= future + SLACK_MS
        assert deadline(target, "s", "old") is None and deadline(target, "s", "null") is None
        # the typed API too, for every policy
        for policy in ("fail", "skip", "overwrite"):
            past = Entry("t", policy, 1, now_ms() - 5)
            assert import_entries(target, [past], policy).expired == 1  # type: ignore[arg-type]
        assert target.list_keys("t") == []


def test_expires_at_is_checked_like_every_field(tmp_path: Path, no_ttl_store: StateStore) -> None:
    for bad, says in (('"soon"', "got string"), ("1.5", "got 1.5"), ("-1", "got -1"), ("true", "got boolean"),
                      (str(2**63), f"got {2**63}")):  # fmt: skip
        problem = parse_line(f'{{"scope":"s","key":"k","value":1,"expires_at":{bad}}}'.encode())
        assert isinstance(problem, str) and problem.startswith('"expires_at" must be a deadline'), problem
        assert says in problem
    line = f'{{"scope":"s","key":"k","value":1,"expires_at":{now_ms() + 60_000}}}'.encode()
    problem = parse_line(line, no_ttl_store.limits)
    assert problem == (
        'the entry expires ("expires_at") but the nottl adapter does not support entry expiry '
        "(capability ttl is none)"
    )
    path = tmp_path / "expiring.jsonl"
    path.write_bytes(b'{"scope":"s","key":"plain","value":0}\n' + line + b"\n")
    with pytest.raises(InvalidLinesError) as info:
        import_file(no_ttl_store, path)
    assert info.value.count == 1 and [p.line for p in info.value.problems] == [2]
    assert "the entry expires" in str(info.value)
    assert no_ttl_store.list_groups() == []  # nothing written


def test_migrate_keeps_deadlines_and_refuses_a_target_without_expiry(
    tmp_path: Path, no_ttl_store: StateStore
) -> None:
    with kv_store(tmp_path / "src") as source, kv_store(tmp_path / "dst") as target:
        source.set("s", "forever", 1)
        source.set("s", "later", 2, ttl_ms=60_000)
        report = migrate(source, target)
        assert report.ok and (report.written, report.expired) == (2, 0)
        wanted = deadline(source, "s", "later")
        got = deadline(target, "s", "later")
        assert wanted is not None and got is not None and wanted <= got <= wanted + SLACK_MS
        assert deadline(target, "s", "forever") is None
        with pytest.raises(IncompatibleEntriesError) as info:
            migrate(source, no_ttl_store)
        assert "it expires, but the nottl adapter does not support entry expiry" in str(info.value)
        assert no_ttl_store.list_groups() == []  # nothing written


def test_the_migrate_summary_counts_expired_entries(capsys: pytest.CaptureFixture[str]) -> None:
    report = MigrationReport(
        total=5, written=3, unchanged=0, skipped=0, scopes=1, resumed=False, seconds=0.1,
        verification=None, state_file=None, expired=2,
    )  # fmt: skip
    print_summary(report, None)
    assert "written 3, unchanged 0, skipped 0, 2 expired, skipped in 0.1 s" in capsys.readouterr().out

"""``migrate`` as a library: copy, resume, refuse what does not fit, and verify by digest."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from transfer_data import HOSTILE_SCOPES, fill, kv_store, make_entries, raw_entries

from iii_state_core import Adapter, Capabilities, Registry, StateStore, hookimpl, open_store
from iii_state_core.adapter import Page, Token
from iii_state_core.transfer import (
    Entry,
    EntryConflictError,
    IncompatibleEntriesError,
    MigrationInterrupted,
    MigrationStateError,
    Progress,
    digest_entries,
    digest_scope,
    export_entries,
    migrate,
    migration,
    state_file,
    verify,
)


def stop_after(entries: int) -> Callable[[], bool]:
    """A ``should_stop`` that turns true once it has been polled ``entries`` times."""
    polls = 0

    def should_stop() -> bool:
        nonlocal polls
        polls += 1
        return polls > entries

    return should_stop


def test_10000_hostile_entries_migrate_byte_identical(kv_source: StateStore, kv_target: StateStore) -> None:
    assert fill(kv_source, make_entries(10_000)) == 10_000
    events: list[Progress] = []
    report = migrate(kv_source, kv_target, progress=events.append)

    assert report.ok and (report.total, report.written, report.unchanged) == (10_000, 10_000, 0)
    assert report.verification is not None
    assert sorted(c.scope for c in report.verification.scopes) == sorted(HOSTILE_SCOPES)
    assert all(c.source.count == c.target.count == 200 for c in report.verification.scopes)
    assert raw_entries(kv_target) == raw_entries(kv_source)
    phases = [e.phase for e in events if e.finished]
    assert phases == ["check", "copy", "verify"]
    assert [e.done for e in events if e.phase == "copy"][-1] == 10_000


def test_an_interrupted_migration_resumes_without_duplicates(
    kv_source: StateStore, kv_target: StateStore, tmp_path: Path
) -> None:
    fill(kv_source, make_entries(3_000))
    state = tmp_path / "state.json"
    with pytest.raises(MigrationInterrupted) as caught:
        migrate(kv_source, kv_target, state_file=state, page_size=100, should_stop=stop_after(50 + 20))
    # the check pass polled once per page (50 scopes of 60 entries, one page each), the copy once
    # per batch: one per page here, so 20 pages were copied
    processed = 20 * 60
    assert caught.value.processed == processed and caught.value.total == 3_000
    assert "run the same command again" in str(caught.value)
    assert state.exists() and len(raw_entries(kv_target)) == processed

    report = migrate(kv_source, kv_target, state_file=state, page_size=100)
    assert report.ok and report.resumed and report.total == 3_000
    assert (report.written, report.unchanged) == (3_000, 0)
    assert raw_entries(kv_target) == raw_entries(kv_source)
    assert not state.exists()  # verified: no resume point left behind


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no ``finally`` saves anything."""


@pytest.mark.parametrize("kill_at", range(1, 10))
def test_a_kill_at_any_state_save_then_a_rerun_counts_every_entry_once(
    kill_at: int, kv_source: StateStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saves: 1 before copying; per scope 3 pages (100, 100, then the empty end); 1 at the end.

    Dying in place of save ``kill_at`` (after that page's writes, before its record) covers every
    window, including the one between a scope's last page and the next scope.
    """
    fill(kv_source, make_entries(400, ["a", "b"]))
    state = tmp_path / "state.json"
    saves = 0
    real_save = state_file.save_state

    def dying_save(path: Any, record: Any) -> None:
        nonlocal saves
        saves += 1
        if saves == kill_at:
            raise _Killed
        real_save(path, record)

    with kv_store(tmp_path / f"target-{kill_at}") as target:
        monkeypatch.setattr(migration, "save_state", dying_save)
        if kill_at <= 8:
            with pytest.raises(_Killed):
                migrate(kv_source, target, state_file=state, page_size=100)
        else:
            assert migrate(kv_source, target, state_file=state, page_size=100).ok  # 8 saves in all
        monkeypatch.setattr(migration, "save_state", real_save)

        report = migrate(kv_source, target, state_file=state, page_size=100)
        assert report.ok and report.written + report.unchanged == report.total == 400
        assert raw_entries(target) == raw_entries(kv_source)


def test_entries_the_target_cannot_hold_stop_it_before_any_write(
    kv_source: StateStore, tmp_path: Path
) -> None:
    fill(kv_source, [Entry("s", "small", 1), Entry("s", "big", "x" * 500), Entry("t", "k", [1] * 300)])
    config = {
        "adapter": {"name": "kv", "config": {"store_method": "file_based", "file_path": str(tmp_path / "t")}},
        "max_value_bytes": 200,
    }
    with open_store(config) as target:
        with pytest.raises(IncompatibleEntriesError) as caught:
            migrate(kv_source, target)
        assert caught.value.count == 2
        message = str(caught.value)
        assert 'scope "s" key "big"' in message and "max_value_bytes limit of 200" in message
        assert target.list_groups() == []


def test_conflict_policies(kv_source: StateStore, kv_target: StateStore) -> None:
    fill(kv_source, [Entry("s", "a", 1), Entry("s", "b", 2), Entry("s", "c", 3)])
    kv_target.set("s", "b", "target's")
    with pytest.raises(EntryConflictError) as caught:
        migrate(kv_source, kv_target)
    assert (caught.value.scope, caught.value.key) == ("s", "b")
    assert kv_target.get("s", "b") == "target's"

    skipped = migrate(kv_source, kv_target, on_conflict="skip")
    assert kv_target.get("s", "b") == "target's" and skipped.skipped == 1
    assert not skipped.ok  # the verification sees the difference that skip kept

    overwritten = migrate(kv_source, kv_target, on_conflict="overwrite")
    assert overwritten.ok and kv_target.get("s", "b") == 2


def test_only_the_chosen_scopes_move(kv_source: StateStore, kv_target: StateStore) -> None:
    fill(kv_source, make_entries(100, ["a", "b", "c"]))
    report = migrate(kv_source, kv_target, scopes=["c", "a", "a"])
    assert report.ok and kv_target.list_groups() == ["a", "c"] and report.scopes == 2


def test_the_state_file_must_belong_to_this_migration(
    kv_source: StateStore, kv_target: StateStore, tmp_path: Path
) -> None:
    fill(kv_source, make_entries(300, ["a", "b"]))
    state = tmp_path / "state.json"
    with pytest.raises(MigrationInterrupted):
        migrate(kv_source, kv_target, state_file=state, page_size=50, should_stop=stop_after(10))
    with open_store(adapter="kv") as other, pytest.raises(MigrationStateError, match="another migration"):
        migrate(kv_source, other, state_file=state)
    state.write_text("{ not json")
    with pytest.raises(MigrationStateError, match="--restart"):
        migrate(kv_source, kv_target, state_file=state)
    report = migrate(kv_source, kv_target, state_file=state, restart=True)
    assert report.ok and not report.resumed and not state.exists()


def test_a_finished_copy_killed_during_verification_only_verifies_again(
    kv_source: StateStore, kv_target: StateStore, tmp_path: Path
) -> None:
    fill(kv_source, make_entries(200, ["a", "b"]))
    state = tmp_path / "state.json"
    copied = False

    def stop_in_verify() -> bool:
        return copied

    def watch(event: Progress) -> None:
        nonlocal copied
        copied = copied or (event.phase == "copy" and event.finished)

    with pytest.raises(MigrationInterrupted):
        migrate(kv_source, kv_target, state_file=state, progress=watch, should_stop=stop_in_verify)
    events: list[Progress] = []
    report = migrate(kv_source, kv_target, state_file=state, progress=events.append)
    assert report.ok and report.written == 200
    assert not [e for e in events if e.phase == "copy" and e.scope is not None]  # nothing copied again


# -- verification ------------------------------------------------------------------------------


def test_verify_finds_changed_missing_and_extra_entries(kv_source: StateStore, kv_target: StateStore) -> None:
    fill(kv_source, make_entries(500, ["a", "b", "c", "d"]))
    assert migrate(kv_source, kv_target).ok
    key_a = next(iter(kv_target.list_keys("a")))
    kv_target.set("a", key_a, {"changed": True})
    kv_target.delete("b", kv_target.list_keys("b")[0])
    kv_target.set("c", "extra", 1)
    kv_target.set("only-in-target", "k", 1)
    report = verify(kv_source, kv_target)
    assert not report.ok
    assert [c.scope for c in report.mismatched] == ["a", "b", "c"]
    by_scope = {c.scope: c for c in report.scopes}
    assert by_scope["a"].source.count == by_scope["a"].target.count  # same count, other content
    assert by_scope["a"].source.digest != by_scope["a"].target.digest
    assert by_scope["b"].target.count == by_scope["b"].source.count - 1
    assert by_scope["d"].ok and report.extra_scopes == ["only-in-target"]


def test_the_digest_ignores_order_and_matches_an_export(kv_source: StateStore) -> None:
    entries = list(make_entries(300, ["s"]))
    fill(kv_source, entries)
    stored = digest_scope(kv_source, "s", page_size=7)
    assert stored == digest_entries(reversed(entries)) == digest_entries(export_entries(kv_source))
    assert stored.count == 300 and len(stored.digest) == 64
    assert digest_entries(entries[:-1]) != stored


class _Repeating(Adapter):
    """An unordered dict store whose listing repeats the first key of every page (as HSCAN may)."""

    name = "repeating"
    capabilities = Capabilities(ordered_listing=False, shared=False)

    def __init__(self, config: Any = None) -> None:
        self.data: dict[str, dict[str, bytes]] = {}

    def read(self, scope: str, key: str) -> bytes | None:
        return self.data.get(scope, {}).get(key)

    def write(self, scope: str, key: str, data: bytes) -> bytes | None:
        old = self.read(scope, key)
        self.data.setdefault(scope, {})[key] = data
        return old

    def remove(self, scope: str, key: str) -> bytes | None:
        return self.data.get(scope, {}).pop(key, None)

    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        if self.read(scope, key) != token:
            return False
        self.write(scope, key, data)
        return True

    def list_scopes(self) -> list[str]:
        return [scope for scope, entries in self.data.items() if entries]

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        keys = sorted(self.data.get(scope, {}))
        start = int(cursor or 0)
        page = [(k, self.data[scope][k]) for k in keys[start : start + limit]]
        after = str(start + limit) if start + limit < len(keys) else None
        # the scope's first key again on every later page: repeats across pages reach the caller
        # (the core sends a key once per page, so a repeat within one page would not)
        again = [(keys[0], self.data[scope][keys[0]])] if start and keys else []
        return page + again, after


class _Plugin:
    @hookimpl
    def iii_state_register_adapters(self, register: Any) -> None:
        register(_Repeating)


def test_repeated_listing_is_counted_once_and_copied_once(kv_target: StateStore) -> None:
    registry = Registry(extra_plugins=[_Plugin()], load_entry_points=False)
    with open_store(adapter="repeating", registry=registry) as source:
        fill(source, make_entries(250, ["a", "b"]))
        assert digest_scope(source, "a", page_size=10).count == 125
        report = migrate(source, kv_target, page_size=10)
    assert report.ok and report.written == 250 and report.unchanged > 0


def test_parallel_writers_stop_resume_and_conflict(
    kv_source: StateStore, kv_target: StateStore, tmp_path: Path
) -> None:
    fill(kv_source, make_entries(2_000, ["a", "b", "c"]))
    state = tmp_path / "state.json"
    lock, polls = threading.Lock(), [0]

    def should_stop() -> bool:
        with lock:
            polls[0] += 1
            return polls[0] > 40  # the check pass polls once per page, the copy once per batch

    with pytest.raises(MigrationInterrupted):
        migrate(kv_source, kv_target, state_file=state, page_size=100, workers=4, should_stop=should_stop)
    assert 0 < len(raw_entries(kv_target)) < 2_000
    kv_target.set("c", next(iter(kv_source.list_keys("c"))), "conflicting")
    with pytest.raises(EntryConflictError):
        migrate(kv_source, kv_target, state_file=state, page_size=100, workers=4)
    report = migrate(
        kv_source, kv_target, state_file=state, page_size=100, workers=4, on_conflict="overwrite"
    )
    assert report.ok and report.resumed
    assert raw_entries(kv_target) == raw_entries(kv_source)


def test_a_stop_during_the_check_writes_nothing(kv_source: StateStore, kv_target: StateStore) -> None:
    fill(kv_source, make_entries(50, ["a"]))
    with pytest.raises(MigrationInterrupted, match="interrupted before copying") as caught:
        migrate(kv_source, kv_target, should_stop=lambda: True)
    assert caught.value.total is None and kv_target.list_groups() == []
    assert "a new run starts over" in str(caught.value)  # no state file was given

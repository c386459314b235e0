"""contract § Expiry in the core and the kv adapter: the ttl_ms rule, the refusal, the file column."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from iii_state_kvfile.file_store import KvFileStore
from iii_state_kvfile.memory_store import KvMemoryStore
from unit_helpers import call

import iii_state_core.cli_admin  # noqa: F401  (registers the admin commands, as main() does)
from iii_state_core import Adapter, ConfigError, DeserializationError, StateError, StateStore, open_store
from iii_state_core.cli import cli
from iii_state_core.events import EventBus
from iii_state_core.expiry import MAX_TTL_MS, check_ttl_ms
from iii_state_core.operations import Limits
from iii_state_core.plugins import Registry


@pytest.mark.parametrize("good", [1, 1000, MAX_TTL_MS])
def test_ttl_ms_accepts_integers_from_1_to_2_53(good: int) -> None:
    assert check_ttl_ms(good) == good


@pytest.mark.parametrize(
    ("bad", "says"),
    [(0, "got 0"), (-5, "got -5"), (MAX_TTL_MS + 1, "got 9007199254740993"), (1.5, "float 1.5"),
     (1000.0, "float 1000.0"), ("100", "a string"), (True, "a boolean"), (None, "NoneType")],
)  # fmt: skip
def test_ttl_ms_refuses_everything_else_by_name(bad: Any, says: str) -> None:
    with pytest.raises(DeserializationError) as info:
        check_ttl_ms(bad)
    assert str(info.value).startswith("ttl_ms must be an integer") and says in str(info.value)


class NoTtlStore(KvMemoryStore):
    capabilities = replace(KvMemoryStore.capabilities, ttl="none")


@pytest.fixture
def no_ttl_store() -> Iterator[StateStore]:
    adapter = NoTtlStore()
    limits = Limits(capabilities=adapter.capabilities, adapter_name="nottl")
    with StateStore(adapter, limits, EventBus()) as store:
        yield store


def test_an_adapter_without_ttl_refuses_ttl_ms_and_writes_nothing(no_ttl_store: StateStore) -> None:
    for function, payload in (
        ("set", {"value": 1, "ttl_ms": 10}),
        ("update", {"ops": [{"type": "set", "path": "", "value": 1}], "ttl_ms": 10}),
        ("compare-and-set", {"value": 1, "ttl_ms": 10}),
        ("expire", {"ttl_ms": None}),
        ("ttl", {}),
    ):
        with pytest.raises(StateError) as info:
            call(no_ttl_store, function, scope="s", key="k", **payload)
        assert info.value.code == "UNSUPPORTED", function
        assert str(info.value).startswith(
            f"state::{function}: the nottl adapter does not support entry expiry"
        )
    assert no_ttl_store.list_groups() == []
    # without ttl_ms the same calls work: nothing about expiry reaches the adapter
    assert call(no_ttl_store, "set", scope="s", key="k", value=1, ttl_ms=None)["old_value"] is None
    assert no_ttl_store.update("s", "k", [{"type": "set", "path": "", "value": 2}]).new_value == 2


@pytest.mark.parametrize(
    "ttl_ms", [1, 1000, MAX_TTL_MS, 0, -5, MAX_TTL_MS + 1, 1.5, 1000.0, "100", True, False, None]
)
def test_the_inline_ttl_check_answers_as_check_ttl_ms_and_check_ttl(ttl_ms: Any) -> None:
    """``Limits.expires_at`` checks the usual ``ttl_ms`` inline: same deadline, same errors in the
    same order (a bad value is named before an adapter without ttl is)."""
    for capabilities in (KvMemoryStore.capabilities, NoTtlStore.capabilities):
        limits = Limits(capabilities=capabilities, adapter_name="probe")
        try:
            before = time.time_ns() // 1_000_000
            got: Any = limits.expires_at("set", ttl_ms)
            after = time.time_ns() // 1_000_000
        except StateError as exc:
            got = (type(exc), exc.code, str(exc))
        if ttl_ms is None:
            assert got == ()
            continue
        try:
            valid = check_ttl_ms(ttl_ms)
            limits.check_ttl("set")
        except StateError as exc:
            assert got == (type(exc), exc.code, str(exc)), (ttl_ms, capabilities.ttl)
        else:
            assert len(got) == 1 and before + valid <= got[0] <= after + valid, (ttl_ms, got)


def test_a_memory_store_deadline_moved_later_keeps_its_heap_item_and_expires_at_the_new_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [10**13]
    monkeypatch.setattr("iii_state_kvfile.memory_store.now_ms", lambda: clock[0])
    adapter = KvMemoryStore()
    for n in range(1, 2001):  # an entry rewritten with a TTL: one heap item, not one per write
        adapter.write("s", "later", b"%d" % n, clock[0] + 10 + n)
    assert len(adapter._heap) == 1
    adapter.write("s", "earlier", b"e", clock[0] + 500)
    adapter.write("s", "earlier", b"e", clock[0] + 100)  # moved earlier: queued again
    adapter.write("s", "dropped", b"d", clock[0] + 50)
    adapter.write("s", "dropped", b"d", None)  # the deadline removed
    adapter.write("s", "renewed", b"r", clock[0] + 50)
    adapter.remove("s", "renewed")
    adapter.write("s", "renewed", b"r2", clock[0] + 3000)  # gone, then back with a later deadline
    clock[0] += 20  # the first item of "later" is due, its deadline is not
    assert adapter.take_expired(10) == [] and adapter.read("s", "later") == b"2000"
    clock[0] += 80  # "earlier" expires at its new deadline; "dropped" never does
    assert adapter.take_expired(10) == [("s", "earlier", b"e", 10**13 + 100)]
    assert adapter.read("s", "dropped") == b"d" and adapter.read("s", "renewed") == b"r2"
    clock[0] += 1910
    assert adapter.take_expired(10) == [("s", "later", b"2000", 10**13 + 2010)]
    clock[0] += 990
    assert adapter.take_expired(10) == [("s", "renewed", b"r2", 10**13 + 3000)]
    assert adapter.read_expiry("s", "dropped") == (True, None) and adapter._heap == []


def _file_store(directory: Path) -> StateStore:
    return open_store(
        adapter="kv", adapter_config={"store_method": "file_based", "file_path": str(directory)}
    )


def test_a_file_store_from_before_expiry_gains_the_column_and_keeps_its_entries(tmp_path: Path) -> None:
    directory = tmp_path / "old"
    directory.mkdir()
    db = sqlite3.connect(directory / "state.sqlite3")
    db.execute(
        "CREATE TABLE entries (scope BLOB NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL, "
        "PRIMARY KEY (scope, key)) WITHOUT ROWID"
    )
    db.execute("INSERT INTO entries VALUES (?, ?, ?)", (b"s", b"k", b'{"old":true}'))
    db.commit()
    db.close()
    with _file_store(directory) as store:
        assert store.get("s", "k") == {"old": True}
        assert store.ttl("s", "k").to_wire() == {"exists": True, "ttl_ms": None}
        store.set("s", "t", 1, ttl_ms=60_000)
        assert store.list_keys("s") == ["k", "t"]
    with _file_store(directory) as again:  # a second open finds the column and the index
        assert again.get("s", "t") == 1


def test_expired_rows_are_invisible_before_the_sweep_and_taken_once(tmp_path: Path) -> None:
    with _file_store(tmp_path / "kv") as one, _file_store(tmp_path / "kv") as two:
        one.set("s", "gone", {"v": 1}, ttl_ms=50)
        one.set("s", "kept", 2)
        time.sleep(0.08)
        assert isinstance(one.adapter, KvFileStore) and isinstance(two.adapter, KvFileStore)
        raw = sqlite3.connect(one.adapter.path).execute("SELECT count(*) FROM entries").fetchone()[0]
        assert raw == 2, "the expired row is still in the file: reads must hide it themselves"
        assert two.get("s", "gone") is None and two.list_keys("s") == ["kept"]
        taken = one.adapter.take_expired() + two.adapter.take_expired()
        assert [(s, k, v) for s, k, v, _ in taken] == [("s", "gone", b'{"v":1}')]


def test_the_cli_sets_and_reads_expiry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(*args: str) -> Any:
        result = runner.invoke(cli, list(args), prog_name="iii-state")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    run("set", "s", "k", '{"a": 1}', "--ttl-ms", "60000")
    left = run("ttl", "s", "k")
    assert left["exists"] is True and 50_000 < left["ttl_ms"] <= 60_000
    assert run("expire", "s", "k", "null") is True
    assert run("ttl", "s", "k") == {"exists": True, "ttl_ms": None}
    bad = runner.invoke(cli, ["set", "s", "k", "1", "--ttl-ms", "0"], prog_name="iii-state")
    assert bad.exit_code != 0 and "Traceback" not in bad.output
    assert len(bad.stderr.splitlines()) == 1 and "ttl_ms must be an integer" in bad.stderr
    assert run("get", "s", "k") == {"a": 1}, "a refused set wrote nothing"


def test_export_leaves_out_expired_entries(kv_store: StateStore) -> None:
    from iii_state_core.transfer.exporting import export_entries

    kv_store.set("a", "brief", 1, ttl_ms=30)
    kv_store.set("a", "kept", 2)
    kv_store.set("b", "brief", 3, ttl_ms=30)
    time.sleep(0.06)
    assert [(e.scope, e.key, e.value) for e in export_entries(kv_store)] == [("a", "kept", 2)]


def test_the_async_store_has_the_same_expiry(tmp_path: Path) -> None:
    import asyncio

    from iii_state_core import open_async_store

    async def scenario() -> None:
        config = {"store_method": "file_based", "file_path": str(tmp_path / "kv")}
        async with open_async_store(adapter="kv", adapter_config=config) as store:
            await store.set("s", "k", {"a": 1}, ttl_ms=40)
            await store.update("s", "u", [], ttl_ms=60_000)
            left = await store.ttl("s", "u")
            assert left.exists and left.ttl_ms is not None and 50_000 < left.ttl_ms <= 60_000
            assert await store.expire("s", "u", None) is True
            assert (await store.ttl("s", "u")).ttl_ms is None
            await asyncio.sleep(0.07)
            assert await store.get("s", "k") is None
            assert await store.list_keys("s") == ["u"]

    asyncio.run(scenario())


def test_refreshing_a_deadline_does_not_grow_the_memory_heap() -> None:
    adapter = KvMemoryStore()
    for n in range(2000):
        adapter.write("s", "k", b"1", 10**13 + n)
    assert len(adapter._heap) <= 2 * len(adapter._deadlines) + 64
    assert adapter.read_expiry("s", "k") == (True, 10**13 + 1999)


def test_count_leaves_out_expired_entries(kv_store: StateStore) -> None:
    kv_store.set("s", "brief", 1, ttl_ms=30)
    kv_store.set("s", "kept", 2)
    time.sleep(0.06)
    assert kv_store.adapter.count("s") == 1
    page = kv_store.list_entries("s")
    assert page.entries == [("kept", 2)] and page.total in (None, 1)


def test_the_memory_store_keeps_expired_entries_for_take_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [10**13]
    monkeypatch.setattr("iii_state_kvfile.memory_store.now_ms", lambda: clock[0])
    adapter = KvMemoryStore()
    adapter.write("s", "a", b"1", 10**13 + 10)
    adapter.write("s", "b", b"2", 10**13 + 20)
    adapter.write("s", "kept", b"3")
    assert adapter.take_expired(10) == []
    clock[0] += 15
    adapter.write("s", "a", b"new")  # a write over the expired entry: its old value is kept for the event
    clock[0] += 10
    assert adapter.read("s", "b") is None
    assert sorted(adapter.take_expired(1) + adapter.take_expired(10)) == [
        ("s", "a", b"1", 10**13 + 10),
        ("s", "b", b"2", 10**13 + 20),
    ]
    assert adapter.take_expired(10) == []
    assert adapter.read("s", "a") == b"new" and adapter.read("s", "kept") == b"3"


def test_an_adapter_declaring_expiry_events_must_take_expired_and_have_ttl() -> None:
    from iii_state_core.adapter import expiry_events_problem

    class NoTake(NoTtlStore):
        capabilities = replace(KvMemoryStore.capabilities, expiry_event_delay_ms=500)
        take_expired = Adapter.take_expired

    class NoTtl(KvMemoryStore):
        capabilities = replace(KvMemoryStore.capabilities, ttl="none")

    class BadDelay(KvMemoryStore):
        capabilities = replace(KvMemoryStore.capabilities, expiry_event_delay_ms=0)

    assert expiry_events_problem(KvMemoryStore) is None and expiry_events_problem(KvFileStore) is None
    assert "does not implement take_expired" in str(expiry_events_problem(NoTake))
    assert "without ttl" in str(expiry_events_problem(NoTtl))
    assert "positive integer" in str(expiry_events_problem(BadDelay))
    registry = Registry(load_entry_points=False)
    with pytest.raises(ConfigError, match="does not implement take_expired"):
        registry._register(NoTake, "bad-plugin")

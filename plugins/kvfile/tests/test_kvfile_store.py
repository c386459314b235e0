"""The kv adapter in one process: threads, hostile names, listing, and its config options."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from iii_state_kvfile import KvFileStore, KvMemoryStore
from iii_state_kvfile.file_store import DB_FILE
from kv_helpers import file_config

from iii_state_core import ConfigError, StateError, StateStore, open_store
from iii_state_core.config import resolve
from iii_state_core.expiry import KEEP, now_ms
from iii_state_core.opening import adapter_config_for

HOSTILE = [
    "", "\x00", "a\x00b", "\n", "line\nbreak", "😀", "🎉🎉", "x" * 1024, "é" * 600,
    "a:b", "c", "a", "b:c", "a:b:c", "foo", "foobar", "%", "*", "{x}", "/", " ", "\uffff",
]  # fmt: skip


@pytest.fixture(params=["in_memory", "file_based"])
def any_store(request: pytest.FixtureRequest, store_dir: Path) -> Iterator[StateStore]:
    config = {"store_method": "in_memory"} if request.param == "in_memory" else file_config(store_dir)
    with open_store(adapter="kv", adapter_config=config) as store:
        yield store


def run_threads(count: int, target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(n: int) -> None:
        try:
            target(n)
        except BaseException as exc:  # surfaced below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors


# -- (d) threads -------------------------------------------------------------------------------


def test_threads_lose_no_update(any_store: StateStore) -> None:
    ops = [{"type": "increment", "path": "n", "by": 1}]
    seen: list[int] = []
    lock = threading.Lock()

    def work(_: int) -> None:
        for _ in range(250):
            n = any_store.update("t", "counter", ops).new_value["n"]
            with lock:
                seen.append(n)

    run_threads(8, work)
    assert any_store.get("t", "counter") == {"n": 2000}
    assert sorted(seen) == list(range(1, 2001))


def test_threads_compare_and_set_retry_loops_lose_nothing(any_store: StateStore) -> None:
    any_store.set("t", "cas", 0)

    def work(_: int) -> None:
        for _ in range(100):
            while True:
                current = any_store.get("t", "cas")
                if any_store.compare_and_set("t", "cas", current, current + 1).swapped:
                    break

    run_threads(6, work)
    assert any_store.get("t", "cas") == 600


def test_threads_set_returns_an_unbroken_chain(any_store: StateStore) -> None:
    olds: list[Any] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(200):
            old = any_store.set("t", "chain", [n, i]).old_value
            with lock:
                olds.append(old)

    run_threads(5, work)
    final = any_store.get("t", "chain")
    # every written value was replaced exactly once, except the final one; the first saw None
    written = {(n, i) for n in range(5) for i in range(200)}
    replaced = [tuple(o) for o in olds if o is not None]
    assert olds.count(None) == 1
    assert len(replaced) == len(set(replaced)) == 999
    assert set(replaced) | {tuple(final)} == written


def test_threads_mixed_writes_and_listing(any_store: StateStore) -> None:
    stable = {f"stable{i:03}": i for i in range(120)}
    for key, value in stable.items():
        any_store.set("mix", key, value)
    stop = threading.Event()

    def churn(n: int) -> None:
        rng = random.Random(n)
        while not stop.is_set():
            key = f"churn{rng.randrange(60):03}"
            if rng.random() < 0.5:
                any_store.set("mix", key, n)
            else:
                any_store.delete("mix", key)

    writers = [threading.Thread(target=churn, args=(n,)) for n in range(3)]
    for thread in writers:
        thread.start()
    try:
        for _ in range(5):
            seen: list[str] = []
            cursor = None
            while True:
                page = any_store.list_entries("mix", cursor=cursor, limit=7)
                seen.extend(k for k, _ in page.entries)
                if page.done:
                    break
                cursor = page.next_cursor
            stable_seen = [k for k in seen if k.startswith("stable")]
            # ordered listing: every key present for the whole walk exactly once
            assert sorted(stable_seen) == sorted(stable)
            assert len(seen) == len(set(seen))
    finally:
        stop.set()
        for thread in writers:
            thread.join(timeout=30)


# -- (e) hostile names -------------------------------------------------------------------------


def test_hostile_scopes_and_keys_are_all_distinct(any_store: StateStore) -> None:
    pairs = [(s, k) for s in HOSTILE for k in HOSTILE[::3]] + [("a:b", "c"), ("a", "b:c"), ("a", "b")]
    expected: dict[tuple[str, str], int] = {}
    for n, (scope, key) in enumerate(pairs):
        any_store.set(scope, key, n)
        expected[(scope, key)] = n
    for (scope, key), n in expected.items():
        assert any_store.get(scope, key) == n, (scope, key)
    assert any_store.list_groups() == sorted({s for s, _ in expected})
    for scope in HOSTILE:
        assert sorted(any_store.list_keys(scope)) == sorted(k for s, k in expected if s == scope), repr(scope)
        assert sorted(any_store.list(scope)) == sorted(n for (s, _), n in expected.items() if s == scope)
    assert any_store.get("a:b", "c") != any_store.get("a", "b:c")
    assert any_store.get("a", "\x00b") is None  # NUL is no separator: ("a\x00b", "") is another entry
    assert any_store.get("a\x00b", "") is not None


def test_hostile_names_survive_reopen(store_dir: Path) -> None:
    config = file_config(store_dir)
    with open_store(adapter="kv", adapter_config=config) as store:
        for n, name in enumerate(HOSTILE):
            store.set(name, name, n)
    with open_store(adapter="kv", adapter_config=config) as store:
        assert store.list_groups() == sorted(HOSTILE)
        for n, name in enumerate(HOSTILE):
            assert store.get(name, name) == n
            assert store.list_keys(name) == [name]


def test_hostile_names_paginate_in_code_point_order(any_store: StateStore) -> None:
    for name in HOSTILE:
        any_store.set("p", name, name)
    keys: list[str] = []
    cursor = None
    while True:
        page = any_store.list_entries("p", cursor=cursor, limit=4)
        keys.extend(k for k, _ in page.entries)
        if page.done:
            break
        cursor = page.next_cursor
    assert keys == sorted(HOSTILE)


# -- (f) list_groups skip-scan -----------------------------------------------------------------


def test_list_groups_matches_a_model_under_random_writes(any_store: StateStore) -> None:
    rng = random.Random(7)
    scopes = ["", "a", "a\x00", "a\x00b", "ab", "b", "😀", "\uffff", "\x7f", "é", "z" * 300]
    model: dict[str, set[str]] = {}
    for step in range(600):
        scope, key = rng.choice(scopes), str(rng.randrange(4))
        if rng.random() < 0.55:
            any_store.set(scope, key, step)
            model.setdefault(scope, set()).add(key)
        else:
            any_store.delete(scope, key)
            model.get(scope, set()).discard(key)
        if step % 50 == 0:
            assert any_store.list_groups() == sorted(s for s, keys in model.items() if keys)
    assert any_store.list_groups() == sorted(s for s, keys in model.items() if keys)


def test_list_groups_many_scopes_each_once(any_store: StateStore) -> None:
    for i in range(300):
        for key in range(3):
            any_store.set(f"scope{i:04}", str(key), key)
    assert any_store.list_groups() == [f"scope{i:04}" for i in range(300)]


def test_list_groups_drops_emptied_scope_on_disk(store_dir: Path) -> None:
    config = file_config(store_dir)
    with open_store(adapter="kv", adapter_config=config) as store:
        store.set("keep", "k", 1)
        store.set("gone", "k", 1)
        store.delete("gone", "k")
    with open_store(adapter="kv", adapter_config=config) as store:
        assert store.list_groups() == ["keep"]


# -- (g) config options ------------------------------------------------------------------------


def test_config_default_store_method_is_in_memory() -> None:
    with open_store(adapter="kv") as store:
        assert isinstance(store.adapter, KvMemoryStore)
        assert store.capabilities.durable is False and store.capabilities.shared is False


def test_config_file_based_uses_file_path(store_dir: Path) -> None:
    with open_store(adapter="kv", adapter_config=file_config(store_dir / "deep" / "er")) as store:
        assert isinstance(store.adapter, KvFileStore)
        assert store.capabilities.durable is True
        store.set("s", "k", 1)
        assert str(store_dir / "deep" / "er") in repr(store)
    assert (store_dir / "deep" / "er" / DB_FILE).is_file()


def test_config_in_memory_stores_are_separate() -> None:
    with open_store(adapter="kv") as a, open_store(adapter="kv") as b:
        a.set("s", "k", 1)
        assert b.get("s", "k") is None


@pytest.mark.parametrize("interval", [0, 1, 5000])
def test_config_save_interval_ms_accepted(store_dir: Path, interval: int) -> None:
    with open_store(adapter="kv", adapter_config=file_config(store_dir, save_interval_ms=interval)) as store:
        store.set("s", "k", 1)
    with open_store(adapter="kv", adapter_config={"store_method": "in_memory", "save_interval_ms": interval}):
        pass


def test_config_save_interval_from_state_block(store_dir: Path) -> None:
    block = {"adapter": {"name": "kv", "config": file_config(store_dir)}, "save_interval_ms": 100}
    settings = resolve(block)
    assert adapter_config_for(KvFileStore, settings)["save_interval_ms"] == 100  # kv declares it
    with open_store(block) as store:
        store.set("s", "k", 1)


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"store_method": "in_memory", "bogus": 1}, "bogus"),
        ({"store_method": "file_based", "filepath": "x"}, "filepath"),
        ({"store_method": "redis"}, "store_method"),
        ({"store_method": "file_based", "file_path": 5}, "file_path"),
        ({"save_interval_ms": -1}, "save_interval_ms"),
        ({"save_interval_ms": "fast"}, "save_interval_ms"),
        ({"fsync": "yes"}, "fsync"),
        ({"busy_timeout_ms": 1.5}, "busy_timeout_ms"),
    ],
)
def test_config_bad_option_is_rejected_naming_it(config: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        open_store(adapter="kv", adapter_config=config)


@pytest.mark.parametrize(("fsync", "level"), [(False, 1), (True, 2)])
def test_config_fsync_sets_synchronous_level(store_dir: Path, fsync: bool, level: int) -> None:
    with open_store(adapter="kv", adapter_config=file_config(store_dir, fsync=fsync)) as store:
        adapter = store.adapter
        assert isinstance(adapter, KvFileStore)
        db = adapter._db  # the adapter's own connection: the pragma is per connection
        assert db.execute("PRAGMA synchronous").fetchone()[0] == level  # NORMAL=1, FULL=2
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_config_busy_timeout(store_dir: Path) -> None:
    with open_store(adapter="kv", adapter_config=file_config(store_dir, busy_timeout_ms=1234)) as store:
        adapter = store.adapter
        assert isinstance(adapter, KvFileStore)
        assert adapter._db.execute("PRAGMA busy_timeout").fetchone()[0] == 1234


def test_config_from_yaml_file(tmp_path: Path) -> None:
    (tmp_path / "iii-config.yaml").write_text(
        "workers:\n"
        "  - name: iii-state\n"
        "    config:\n"
        "      adapter:\n"
        "        name: kv\n"
        "        config:\n"
        "          store_method: file_based\n"
        f"          file_path: {tmp_path / 'yaml-store'}\n"
        "          save_interval_ms: 500\n"
        "          fsync: true\n"
    )
    with open_store(tmp_path / "iii-config.yaml") as store:
        store.set("s", "k", [])
    assert (tmp_path / "yaml-store" / DB_FILE).is_file()


def test_file_path_without_store_method_is_a_file_store(tmp_path: Path) -> None:
    """Issue 12 #7: `file_path` alone kept everything in memory; the next process saw nothing.

    iii's `state` worker defaults to a file store; a path given means a file store."""
    directory = tmp_path / "mydata"
    with open_store(adapter="kv", adapter_config={"file_path": str(directory)}) as store:
        assert isinstance(store.adapter, KvFileStore)
        store.set("s", "k", 1)
    assert (directory / DB_FILE).is_file()
    with open_store(adapter="kv", adapter_config={"file_path": str(directory)}) as store:
        assert store.get("s", "k") == 1


@pytest.mark.parametrize(
    "extra", [{"file_path": "x"}, {"fsync": True}, {"busy_timeout_ms": 5}, {"file_path": "x", "fsync": False}]
)
def test_options_an_in_memory_store_would_ignore_are_errors(tmp_path: Path, extra: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="would be ignored by store_method: in_memory"):
        open_store(adapter="kv", adapter_config={"store_method": "in_memory", **extra})
    assert not (tmp_path / "x").exists()


def test_a_file_store_that_cannot_open_names_its_file(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(StateError) as info:
        open_store(adapter="kv", adapter_config={"file_path": str(blocker / "d")})
    assert str(blocker / "d" / DB_FILE) in str(info.value) and info.value.code == "OPEN_ERROR"
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / DB_FILE).write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError) as info:
        open_store(adapter="kv", adapter_config={"file_path": str(tmp_path / "db")})
    assert str(tmp_path / "db" / DB_FILE) in str(info.value)


def test_run_many_is_one_transaction_rolling_back_only_a_failing_call(tmp_path: Path) -> None:

    store = KvFileStore(str(tmp_path))
    store.write("s", "b", b"1")

    def broken(old: bytes | None) -> bytes:
        raise ValueError("no")

    answers = store.run_many(
        [("write", ("s", "a", b"2")), ("modify", ("s", "b", broken)), ("remove", ("s", "b")),
         ("read_versioned", ("s", "a")), ("write_if", ("s", "c", b"3", None)), ("no_such", ())]
    )  # fmt: skip
    assert answers[0] is None and isinstance(answers[1], ValueError) and answers[2] == b"1"
    assert answers[3] == (b"2", b"2") and answers[4] is True and isinstance(answers[5], NotImplementedError)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    assert store.run_many([("write", ("s", f"k{i}", b"0")) for i in range(5)]) == [None] * 5
    assert statements.count("BEGIN IMMEDIATE") == 1 and statements.count("COMMIT") == 1
    store.close()


@pytest.mark.parametrize("keep_expired", [False, True])
def test_a_round_of_reads_or_plain_writes_is_a_few_statements_with_the_one_by_one_answers(
    tmp_path: Path, keep_expired: bool
) -> None:
    store = KvFileStore(str(tmp_path), expiry_events=keep_expired)
    store.write("s", "old", b"1", 1)  # long past its deadline: missing, yet its row is there
    store.write("s", "é", b"2")
    store.write("t", "x", b"3", 2**52)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    reads = [("read", ("s", "old")), ("read", ("s", "é")), ("read_versioned", ("t", "x")),
             ("read", ("s", "none")), ("read", ("s", "é"))]  # fmt: skip
    assert store.run_many(reads) == [None, b"2", (b"3", b"3"), None, b"2"]
    assert sum("IN (" in s for s in statements) == 2  # one query per scope
    statements.clear()
    writes = [("write", ("s", "old", b"4")), ("write", ("s", "é", b"5")), ("write", ("t", "x", b"6")),
              ("write", ("s", "new", b"7"))]  # fmt: skip
    assert store.run_many(writes) == [None, b"2", b"3", None]
    assert sum("IN (" in s for s in statements) == 2
    # the rows there (live or expired) take an UPDATE, the missing one the upsert
    assert sum(s.startswith("UPDATE entries SET value") for s in statements) == 3
    assert sum(s.startswith("INSERT INTO entries") for s in statements) == 1
    assert not any("SAVEPOINT one_call" in s for s in statements)
    assert [store.read(*c[1][:2]) for c in writes] == [b"4", b"5", b"6", b"7"]
    assert store.read_expiry("t", "x") == (True, None)  # a set without ttl_ms clears the deadline
    kept = store.take_expired(10)
    assert [(e[0], e[1], e[2]) for e in kept] == ([("s", "old", b"1")] if keep_expired else [])
    twice = [("write", ("s", "d", b"8")), ("write", ("s", "d", b"9"))]
    assert store.run_many(twice) == [None, b"8"]  # an entry written twice: one by one, in order
    store.close()


@pytest.mark.parametrize("keep_expired", [False, True])
def test_a_round_of_writes_into_one_scope_is_two_statements_unless_a_row_holds_a_deadline(
    tmp_path: Path, keep_expired: bool
) -> None:
    store = KvFileStore(str(tmp_path), expiry_events=keep_expired)
    store.write("s", "there", b"1")
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    writes = [("write", ("s", "there", b"2")), ("write", ("s", 'q"b\\', b"3")), ("write", ("s", "new", b"4"))]
    assert store.run_many(writes) == [b"1", None, None]
    assert sum("json_each" in s for s in statements) == 1 and sum("INSERT INTO" in s for s in statements) == 1
    assert [store.read(*c[1][:2]) for c in writes] == [b"2", b"3", b"4"]
    store.write("s", "old", b"5", 1)  # past its deadline: missing, yet its row is there
    store.write("s", "later", b"6", 2**52)
    writes = [("write", ("s", "old", b"7")), ("write", ("s", "later", b"8")), ("write", ("s", "new", b"9"))]
    assert store.run_many(writes) == [None, b"6", b"4"]
    assert [store.read(*c[1][:2]) for c in writes] == [b"7", b"8", b"9"]
    assert store.read_expiry("s", "later") == (True, None)  # a set without ttl_ms clears the deadline
    kept = store.take_expired(10)
    assert [(e[0], e[1], e[2]) for e in kept] == ([("s", "old", b"5")] if keep_expired else [])
    store.close()


@pytest.mark.parametrize("keep_expired", [False, True])
def test_a_round_of_creates_is_one_executemany_and_a_key_that_is_there_sends_it_one_by_one(
    tmp_path: Path, keep_expired: bool
) -> None:
    """Import's writes: ``write_if`` with the missing token, as ``write_if`` answers each alone."""
    store = KvFileStore(str(tmp_path), expiry_events=keep_expired)
    store.write("s", "old", b"1", 1)  # expired: its row is there, the entry is missing
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    creates = [("write_if", ("s", "old", b"2", None)), ("write_if", ("s", "a", b"3", None, 2**52)),
               ("write_if", ("t", "b", b"4", None))]  # fmt: skip
    assert store.run_many(creates) == [True, True, True]
    assert not any("SAVEPOINT one_call" in s for s in statements) and "ROLLBACK TO bulk" not in statements
    assert [store.read(*c[1][:2]) for c in creates] == [b"2", b"3", b"4"]
    assert store.read_expiry("s", "a") == (True, 2**52) and store.read_expiry("s", "old") == (True, None)
    kept = store.take_expired(10)
    assert [(e[0], e[1], e[2]) for e in kept] == ([("s", "old", b"1")] if keep_expired else [])
    statements.clear()
    again = [("write_if", ("s", "c", b"5", None)), ("write_if", ("s", "a", b"6", None)),
             ("write_if", ("s", "d", b"7", None))]  # fmt: skip
    assert store.run_many(again) == [True, False, True]  # "a" is there: undone, then one by one
    assert "ROLLBACK TO bulk" in statements
    assert [store.read("s", k) for k in "acd"] == [b"3", b"5", b"7"]
    store.close()


def test_a_transaction_reads_checks_and_writes_in_one_sqlite_transaction(tmp_path: Path) -> None:
    """``modify_many``: no read transaction before the write one, so no race to lose and retry."""
    with open_store(adapter="kv", adapter_config=file_config(tmp_path)) as store:
        store.set("s", "a", 1)
        statements: list[str] = []
        store.adapter._db.set_trace_callback(statements.append)  # type: ignore[attr-defined]
        writes = [
            {"op": "set", "scope": "s", "key": "a", "value": 2},
            {"op": "delete", "scope": "s", "key": "b"},
            {"op": "update", "scope": "t", "key": "c", "ops": [{"type": "set", "path": "n", "value": 3}]},
        ]
        done = store.transact(writes, conditions=[{"scope": "s", "key": "a", "expected": 1}])
        assert done.committed and done.to_wire()["results"][0] == {"old_value": 1, "new_value": 2}
        assert statements.count("BEGIN IMMEDIATE") == 1 and "BEGIN" not in statements
        assert (store.get("s", "a"), store.get("t", "c")) == (2, {"n": 3})
        statements.clear()
        missed = store.transact(writes[:1], conditions=[{"scope": "s", "key": "a", "expected": 1}])
        assert (missed.committed, missed.failed_condition, missed.current) == (False, 0, 2)
        assert not any(s.startswith(("INSERT", "UPDATE", "DELETE")) for s in statements)


def _sweep_at(store: KvFileStore, key: str) -> Any:
    return store._db.execute("SELECT sweep_at FROM entries WHERE key = ?", (key.encode(),)).fetchone()[0]


def test_a_later_deadline_keeps_the_sweep_index_and_the_sweep_still_takes_each_row_on_time(
    tmp_path: Path,
) -> None:
    """A rewrite that moves a deadline later leaves ``sweep_at`` (no index update); the sweep then
    meets the row early, moves its ``sweep_at`` to the deadline and takes it only once it passed."""
    store = KvFileStore(str(tmp_path), expiry_events=True)
    try:
        start = now_ms()
        store.write("s", "k", b"1", start + 40)
        store.write("s", "k", b"2", start + 60_000)  # later: sweep_at stays at the first deadline
        assert _sweep_at(store, "k") == start + 40
        store.write("s", "plain", b"3", None)
        assert _sweep_at(store, "plain") is None
        time.sleep(0.06)
        assert store.take_expired(10) == []  # met early, not taken
        assert _sweep_at(store, "k") == start + 60_000
        assert store.set_expiry("s", "k", now_ms() + 20)  # earlier: sweep_at follows
        assert store.modify("s", "k", lambda old: b"4") == (b"2", b"4")  # keeps that deadline
        time.sleep(0.03)
        assert [(s, k, v) for s, k, v, _ in store.take_expired(10)] == [("s", "k", b"4")]
        assert store.read("s", "plain") == b"3"
    finally:
        store.close()


def test_a_store_from_before_sweep_at_gets_it_filled_and_its_expired_rows_swept(tmp_path: Path) -> None:
    db = sqlite3.connect(str(tmp_path / DB_FILE))
    db.execute(
        "CREATE TABLE entries (scope BLOB NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL, "
        "expires INTEGER, PRIMARY KEY (scope, key)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX entries_by_expiry ON entries (expires) WHERE expires IS NOT NULL")
    now = now_ms()
    rows = [(b"s", b"gone", b"1", now - 1000), (b"s", b"later", b"2", now + 60_000)]
    rows.append((b"s", b"kept", b"3", None))
    db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    store = KvFileStore(str(tmp_path), expiry_events=True)
    try:
        assert [(k, v) for _, k, v, _ in store.take_expired(10)] == [("gone", b"1")]
        assert (_sweep_at(store, "later"), _sweep_at(store, "kept")) == (now + 60_000, None)
        indexes = {r[0] for r in store._db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "entries_by_sweep" in indexes and "entries_by_expiry" not in indexes
        assert (store.read("s", "later"), store.read("s", "kept")) == (b"2", b"3")
    finally:
        store.close()


@pytest.mark.parametrize("keep_expired", [False, True])
def test_write_many_if_of_plain_sets_checks_every_token_and_keeps_replaced_expired_rows(
    tmp_path: Path, keep_expired: bool
) -> None:
    store = KvFileStore(str(tmp_path), expiry_events=keep_expired)
    store.write("s", "old", b"1", 1)  # expired
    store.write("s", "c", b"2")
    checks = [("s", "old", None), ("s", "new", None), ("s", "c", b"2")]
    assert not store.write_many_if([*checks[:2], ("s", "c", b"9")], [("s", "new", b"3", None)])
    assert store.read("s", "new") is None  # a stale token: nothing written
    assert store.write_many_if(checks, [("s", "old", b"4", None), ("s", "new", b"5", None)])
    assert [store.read("s", k) for k in ("old", "new", "c")] == [b"4", b"5", b"2"]
    kept = [(e[0], e[1], e[2]) for e in store.take_expired(10)]
    assert kept == ([("s", "old", b"1")] if keep_expired else [])
    store.close()


def test_with_expiry_events_a_claim_is_a_lease_taken_again_once_it_lapses_until_acknowledged(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweeper killed between claiming and acknowledging loses nothing: its lease lapses and
    another process claims the rows again; an acknowledged row is gone. The store's clock is
    moved past the leases instead of sleeping through them."""
    from iii_state_kvfile import file_store

    dead = KvFileStore(str(store_dir), expiry_events=True)
    alive = KvFileStore(str(store_dir), expiry_events=True)
    ahead = [0]
    monkeypatch.setattr(file_store, "now_ms", lambda: now_ms() + ahead[0])
    try:
        deadline = now_ms() - 1
        for key in ("a", "b", "kept"):
            dead.write("s", key, f'"{key}"'.encode(), deadline)
        assert dead.write("s", "kept", b'"new"') is None  # the expired row is kept for the sweep
        claimed = sorted(dead.take_expired(100))
        assert claimed == sorted(("s", k, f'"{k}"'.encode(), deadline) for k in ("a", "b", "kept"))
        assert alive.take_expired(100) == []  # leased to `dead`
        ahead[0] = 11_000  # `dead` never acknowledged: the lease (10 s) lapses
        again = sorted(alive.take_expired(100))
        assert again == claimed
        assert dead.take_expired(100) == []  # leased to `alive` now
        alive.ack_expired(again)
        alive.ack_expired(again)  # idempotent
        ahead[0] = 22_000
        assert dead.take_expired(100) == [] and alive.read("s", "kept") == b'"new"'
        db = sqlite3.connect(store_dir / DB_FILE)
        assert db.execute("SELECT count(*) FROM expired").fetchone()[0] == 0
        db.close()
    finally:
        dead.close()
        alive.close()


def test_one_acknowledgement_of_several_claims_and_hundreds_of_rows_deletes_exactly_those(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ack_expired`` deletes each claim's rows with one statement per lease end and 500 rows:
    the entries of two claims acknowledged together (one of 600 rows) are all deleted, except a
    row whose lease lapsed and that another store leased again since."""
    from iii_state_kvfile import file_store

    store = KvFileStore(str(store_dir), expiry_events=True)
    other = KvFileStore(str(store_dir), expiry_events=True)
    ahead = [0]
    monkeypatch.setattr(file_store, "now_ms", lambda: now_ms() + ahead[0])
    db = sqlite3.connect(store_dir / DB_FILE)
    try:
        deadline = now_ms() - 1
        for n in range(901):
            store.write("s", f"k{n}", b"1", deadline)
        first = store.take_expired(600)
        ahead[0] = 5_000  # the second claim's lease ends 5 s after the first's
        second = store.take_expired(600)
        assert len(first) == 600 and len(second) == 301
        ahead[0] = 11_000  # the first claim's lease (10 s) lapsed, not the second's
        [retaken] = other.take_expired(1)
        assert retaken in first
        store.ack_expired([*first, *second])
        assert db.execute("SELECT scope, key FROM expired").fetchall() == [(b"s", retaken[1].encode())]
        other.ack_expired([retaken])
        assert db.execute("SELECT count(*) FROM expired").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM entries").fetchone()[0] == 0
    finally:
        db.close()
        store.close()
        other.close()


@pytest.mark.parametrize("kept_rowid", [None, 2**63 - 1_000, 2**63 - 10])
def test_a_claim_reads_its_copies_back_wherever_the_rowids_stand(
    store_dir: Path, kept_rowid: int | None
) -> None:
    """A claim reads its copies back as the rows after the largest rowid ``expired`` held, or, when
    new rowids may pass SQLite's largest (and come at random), through ``RETURNING``: either way
    every due row once, in deadline order, and the acknowledgement leaves nothing."""
    store = KvFileStore(str(store_dir), expiry_events=True)
    db = sqlite3.connect(store_dir / DB_FILE)
    try:
        if kept_rowid is not None:  # a row leased for an hour, not claimed now
            with db:
                db.execute(
                    "INSERT INTO expired (rowid, scope, key, value, expires, leased_until) "
                    "VALUES (?, ?, ?, ?, 1, ?)",
                    (kept_rowid, b"s", b"held", b"1", now_ms() + 3_600_000),
                )
        deadline = now_ms() - 1_000
        for n in range(600):
            store.write("s", f"k{n}", f"{n}".encode(), deadline + n)
        claimed = store.take_expired(500)
        assert claimed == [("s", f"k{n}", f"{n}".encode(), deadline + n) for n in range(500)]
        assert [entry[1] for entry in store.take_expired(500)] == [f"k{n}" for n in range(500, 600)]
        assert db.execute("SELECT count(*) FROM entries").fetchone()[0] == 0
        store.ack_expired(claimed)
        assert db.execute("SELECT count(*) FROM expired").fetchone()[0] == 100 + (kept_rowid is not None)
    finally:
        db.close()
        store.close()


def test_an_acknowledgement_of_scattered_rows_deletes_exactly_those(store_dir: Path) -> None:
    """``ack_expired`` deletes a claim's rows by runs of consecutive rowids, 200 runs a statement:
    every other entry of a claim (350 runs of one), then a run with a kept row claimed apart from
    it, leave exactly the others."""
    from iii_state_kvfile.file_store import _runs

    assert _runs([3]) == [3, 3] and _runs([1, 2, 3, 7, 9, 10]) == [1, 3, 7, 7, 9, 10]
    store = KvFileStore(str(store_dir), expiry_events=True)
    db = sqlite3.connect(store_dir / DB_FILE)
    try:
        deadline = now_ms() - 1
        for n in range(700):
            store.write("s", f"k{n:03}", b"1", deadline)
        assert store.write("s", "k000", b"2") is None  # k000's expired row is kept apart
        claimed = store.take_expired(1000)
        assert len(claimed) == 700
        store.ack_expired(claimed[::2])
        left = {key.decode() for (key,) in db.execute("SELECT key FROM expired")}
        assert left == {entry[1] for entry in claimed[1::2]}
        store.ack_expired(claimed[1::2])
        assert db.execute("SELECT count(*) FROM expired").fetchone()[0] == 0
        assert store.read("s", "k000") == b"2"
    finally:
        db.close()
        store.close()


def test_an_acknowledgement_naming_an_entry_twice_leaves_the_rows_between(store_dir: Path) -> None:
    """A chunk whose rowids span exactly its length is acknowledged as one run; an entry named
    twice must not make a gap look like part of that run (the row in the gap, not delivered yet,
    would be deleted and its event lost), and an entry of no claim is ignored."""
    store = KvFileStore(str(store_dir), expiry_events=True)
    db = sqlite3.connect(store_dir / DB_FILE)
    try:
        deadline = now_ms() - 1
        for key in "abc":
            store.write("s", key, b"1", deadline)
        first, middle, last = store.take_expired(10)
        store.ack_expired([first, first, last, ("s", "never", b"1", 5)])
        assert [key.decode() for (key,) in db.execute("SELECT key FROM expired")] == [middle[1]]
        store.ack_expired([middle])
        assert db.execute("SELECT count(*) FROM expired").fetchone()[0] == 0
    finally:
        db.close()
        store.close()


def test_an_in_memory_round_of_reads_or_plain_writes_answers_as_one_by_one() -> None:
    """The in-memory store's bulk round (one scope, nothing with a deadline) against the same calls
    one at a time on another store: answers, values and the scope's key order."""
    bulk, alone = KvMemoryStore(), KvMemoryStore()
    for store in (bulk, alone):
        store.write("s", "b", b"1")
        store.write("s", "d", b"2")
    writes = [("write", ("s", k, f"v{k}".encode())) for k in "edcba"]
    reads = [("read", ("s", k)) for k in "abcdefz"]
    for calls in (writes, reads, [("read", ("none", "a"))] * 2):
        assert bulk.run_many(calls) == [alone.run_many([call])[0] for call in calls]
    assert bulk.scan("s", None, 10) == alone.scan("s", None, 10) == (
        [(k, f"v{k}".encode()) for k in "abcde"], None
    )
    twice = [("write", ("s", "x", b"1")), ("write", ("s", "x", b"2"))]  # in order, one by one
    assert bulk.run_many(twice) == [None, b"1"] and bulk.read("s", "x") == b"2"
    bulk.write("s", "t", b"0", 1)  # expired: a round now goes call by call, which drops it
    assert bulk.run_many([("write", ("s", "t", b"3")), ("read", ("s", "a"))]) == [None, b"va"]
    assert bulk.take_expired(10) == [("s", "t", b"0", 1)]


def test_a_claim_never_deletes_a_live_row_whatever_the_expired_table_holds(store_dir: Path) -> None:
    """The claim deletes the rows it copied into ``expired`` by the copies' rowids (those after
    every other); a kept row at the largest rowid SQLite has (so new rowids are picked at random,
    some below it) naming a live entry must not cost that entry its row."""
    store = KvFileStore(str(store_dir), expiry_events=True)
    try:
        store.write("s", "live", b'"here"')
        db = sqlite3.connect(store_dir / DB_FILE)
        with db:
            db.execute(
                "INSERT INTO expired (rowid, scope, key, value, expires, leased_until) "
                "VALUES (9223372036854775807, ?, ?, ?, 1, ?)",
                (b"s", b"live", b'"old"', now_ms() + 3_600_000),  # leased: not claimed now
            )
        db.close()
        store.write("s", "gone", b"1", now_ms() - 1)
        assert [(s, k) for s, k, _, _ in store.take_expired(10)] == [("s", "gone")]
        assert store.read("s", "live") == b'"here"'
    finally:
        store.close()


def test_an_in_memory_transaction_without_deadlines_reads_writes_and_lists_as_one_with_them() -> None:
    """``modify_many`` while nothing has a deadline (its look-up and write without one) against a
    store where an entry has one: the same old values, stored bytes and key order."""
    plain, timed = KvMemoryStore(), KvMemoryStore()
    for store in (plain, timed):
        store.write("s", "b", b"1")
    timed.write("other", "x", b"0", 2**52)  # a deadline somewhere: the usual way
    seen: dict[str, list[bytes | None]] = {}
    for name, store in (("plain", plain), ("timed", timed)):

        def change(live: list[bytes | None], name: str = name) -> list[Any]:
            seen[name] = live
            return [("s", "c", b"3", None), ("s", "a", b"2", None), ("s", "b", None, None),
                    ("t", "z", b"4", KEEP)]  # fmt: skip

        assert store.modify_many([("s", "a"), ("s", "b"), ("t", "z")], change)
    assert seen["plain"] == seen["timed"] == [None, b"1", None]
    assert plain.scan("s", None, 10) == timed.scan("s", None, 10) == ([("a", b"2"), ("c", b"3")], None)
    assert plain.read("t", "z") == timed.read("t", "z") == b"4"

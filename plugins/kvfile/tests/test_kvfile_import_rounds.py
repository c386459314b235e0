"""The primitives of import's big rounds: ``read_present`` and ``create_missing``, on both stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from iii_state_kvfile import KvFileStore, KvMemoryStore
from iii_state_kvfile.file_store import DB_FILE

from iii_state_core.adapter import Adapter
from iii_state_core.expiry import now_ms


@pytest.fixture(params=["in_memory", "file_based", "file_based_expiry_events"])
def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Adapter]:
    if request.param == "in_memory":
        store: Adapter = KvMemoryStore()
    else:
        store = KvFileStore(str(tmp_path), expiry_events=request.param.endswith("events"))
    yield store
    store.close()


def test_read_present_gives_only_live_keys_and_probes_the_range_first(adapter: Adapter) -> None:
    adapter.write("s", "b", b"2")
    adapter.write("s", "d", b"4")
    adapter.write("s", "gone", b"9", now_ms() - 1)  # expired: missing for every read
    adapter.write("t", "a", b"1")
    assert adapter.read_present("s", []) == {}
    assert adapter.read_present("s", ["a", "b", "c", "d", "gone", "e"]) == {"b": b"2", "d": b"4"}
    assert adapter.read_present("s", ["e", "f"]) == {}  # past every stored key: the probe finds none
    assert adapter.read_present("s", ["a"]) == {}  # before every stored key
    assert adapter.read_present("none", ["a", "b"]) == {}
    assert adapter.read_present("s", ["é", "😀", "b"]) == {"b": b"2"}  # byte order, not text order


def test_create_missing_writes_every_row_or_none(adapter: Adapter) -> None:
    assert adapter.create_missing([]) is True
    assert adapter.create_missing([("s", "a", b"1"), ("t", "a", b"2"), ("s", "é", b"3")]) is True
    assert (adapter.read("s", "a"), adapter.read("t", "a"), adapter.read("s", "é")) == (b"1", b"2", b"3")
    # one key holds a value: nothing of the round is written, the held value stays
    assert adapter.create_missing([("s", "new", b"1"), ("s", "a", b"other")]) is False
    assert (adapter.read("s", "new"), adapter.read("s", "a")) == (None, b"1")
    # one key twice: nothing written
    assert adapter.create_missing([("s", "x", b"1"), ("s", "y", b"1"), ("s", "x", b"1")]) is False
    assert (adapter.read("s", "x"), adapter.read("s", "y")) == (None, None)
    # names of every kind keep their exact bytes (the file store makes them in SQL)
    hostile = [("\x00", "a\x00b"), ("😀", "\uffff"), ("line\nbreak", "é" * 600)]
    assert adapter.create_missing([(s, k, b"1") for s, k in hostile]) is True
    assert all(adapter.read_present(s, [k]) == {k: b"1"} for s, k in hostile)
    assert [adapter.scan(s, None, 10)[0] for s, _ in hostile] == [[(k, b"1")] for _, k in hostile]
    # a created row has no deadline; an expired one left in place refuses the round (file) or
    # was dropped first (memory)
    adapter.write("s", "old", b"0", now_ms() - 1)
    created = adapter.create_missing([("s", "old", b"5"), ("s", "fresh", b"6")])
    assert created is isinstance(adapter, KvMemoryStore)
    assert adapter.read("s", "fresh") == (b"6" if created else None)
    assert adapter.read_expiry("s", "fresh") == ((True, None) if created else (False, None))


def test_with_expiry_events_an_expired_row_is_left_for_the_sweeper(tmp_path: Path) -> None:
    store = KvFileStore(str(tmp_path), expiry_events=True)
    try:
        deadline = now_ms() - 1
        store.write("s", "old", b"0", deadline)
        assert store.create_missing([("s", "old", b"5"), ("s", "new", b"6")]) is False
        assert [(e[0], e[1], e[2], e[3]) for e in store.take_expired(10)] == [("s", "old", b"0", deadline)]
        assert (store.read("s", "old"), store.read("s", "new")) == (None, None)
    finally:
        store.close()
    assert (tmp_path / DB_FILE).exists()

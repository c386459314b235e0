"""The file store's kept count (the `total` of a first page): answered again only while nothing
could have changed it, and fresh after a write by this store or another, or an expiry."""

from __future__ import annotations

from pathlib import Path

import pytest
from iii_state_kvfile import file_store as file_store_module

from iii_state_core import StateStore, open_store
from iii_state_core.expiry import now_ms


def _total(store: StateStore, scope: str) -> int | None:
    return store.list_entries(scope, None, 1).total


def test_a_kept_count_follows_writes_from_either_store_and_expiries(
    file_store: StateStore, store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        file_store.set("s", f"k{i}", i)
    assert _total(file_store, "s") == _total(file_store, "s") == 3  # the second is the kept count
    config = {"store_method": "file_based", "file_path": str(store_dir)}
    other = open_store(adapter="kv", adapter_config=config)
    try:
        other.set("s", "from-other", 1)  # another connection's commit: PRAGMA data_version
        assert _total(file_store, "s") == 4
        other.delete("s", "k0")
        assert _total(file_store, "s") == 3 and _total(other, "s") == 3
    finally:
        other.close()
    file_store.delete("s", "k1")  # this connection's own change: total_changes
    assert _total(file_store, "s") == 2
    file_store.set("s", "k1", "again")
    assert _total(file_store, "s") == 3
    file_store.set("t", "x", 1)
    file_store.set("t", "y", 1)
    file_store.set("s", "brief", 1, ttl_ms=60_000)
    # both counted while a row has a deadline not yet due, and no write after them
    assert (_total(file_store, "s"), _total(file_store, "t")) == (4, 2)
    later = now_ms() + 120_000
    monkeypatch.setattr(file_store_module, "now_ms", lambda: later)
    # only the clock passing the earliest sweep_at says the kept counts are stale
    assert (_total(file_store, "s"), _total(file_store, "t")) == (3, 2)

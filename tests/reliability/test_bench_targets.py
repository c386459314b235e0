"""The bench's kv targets open what their titles say: the file store and its raw sqlite3 side
with the same durability (a batch-over-single figure means nothing if only one side flushes)."""

from __future__ import annotations

import pytest

from bench.run.targets import TARGETS
from bench.run_all import DEFAULT_ADAPTERS

#: SQLite's numbers for PRAGMA synchronous.
NORMAL, FULL = 1, 2


@pytest.mark.parametrize(("name", "synchronous"), [("kv", NORMAL), ("kv-fsync", FULL)])
def test_kv_targets_flush_alike_on_both_sides(name: str, synchronous: int) -> None:
    with TARGETS[name].open() as session:
        store_db = session.store.adapter._db  # the file store's own connection
        assert store_db.execute("PRAGMA synchronous").fetchone()[0] == synchronous
        assert session.raw.db.execute("PRAGMA synchronous").fetchone()[0] == synchronous


def test_default_runs_leave_out_the_fsync_target() -> None:
    assert "kv-fsync" in TARGETS
    assert "kv-fsync" not in DEFAULT_ADAPTERS
    assert "kv" in DEFAULT_ADAPTERS

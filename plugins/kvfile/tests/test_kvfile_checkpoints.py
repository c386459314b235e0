"""The sweeper's checkpoints: with expiry events the sweeper's polls copy the WAL into the database
file on a connection of their own, so the application's commits do not (issue 16)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest
from iii_state_kvfile import KvFileStore, file_store
from iii_state_kvfile.file_store import DB_FILE

from iii_state_core.expiry import now_ms


def rows_in_the_database_file(store_dir: Path, tmp_path: Path) -> int:
    """The rows of ``entries`` in the database file alone, without its WAL: what checkpoints copied."""
    alone = tmp_path / "alone"
    alone.mkdir(exist_ok=True)
    shutil.copyfile(store_dir / DB_FILE, alone / DB_FILE)
    db = sqlite3.connect(alone / DB_FILE)
    try:
        return int(db.execute("SELECT count(*) FROM entries").fetchone()[0])
    except sqlite3.OperationalError:  # the table itself is still only in the WAL
        return 0
    finally:
        db.close()


def autocheckpoint(store: KvFileStore) -> int:
    return int(store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0])


@pytest.mark.parametrize("events", [True, False])
def test_with_expiry_events_a_poll_copies_the_wal_into_the_database_file(
    store_dir: Path, tmp_path: Path, events: bool
) -> None:
    """A poll finding nothing expired still checkpoints (the application's writes fill the WAL
    whether or not entries expire); without expiry events nothing changes: no second connection,
    SQLite's own autocheckpoint (1,000 pages, not reached by 100 small writes)."""
    store = KvFileStore(str(store_dir), expiry_events=events)
    try:
        for n in range(100):
            store.write("s", f"k{n}", b"1")
        assert rows_in_the_database_file(store_dir, tmp_path) == 0  # all still in the WAL
        assert store.take_expired(10) == []
        assert rows_in_the_database_file(store_dir, tmp_path) == (100 if events else 0)
        assert autocheckpoint(store) == (4000 if events else 1000)
    finally:
        store.close()


def test_closing_closes_the_sweepers_connection(store_dir: Path) -> None:
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")

    def open_files() -> list[str]:
        found = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:  # closed since listed
                continue
            if target.startswith(str(store_dir)):
                found.append(target)
        return found

    store = KvFileStore(str(store_dir), expiry_events=True)
    opened = len(open_files())
    store.write("s", "k", b"1")
    store.take_expired(10)
    assert store._checkpointer is not None
    assert len(open_files()) > opened  # the sweeper's connection: its own descriptors
    store.close()
    assert open_files() == []
    store._next_checkpoint = 0.0  # a poll racing the close never reopens it
    store._checkpoint()
    assert open_files() == []


def test_a_failing_checkpoint_stops_them_and_gives_the_commits_their_autocheckpoint_back(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error other than a busy file (here a statement SQLite refuses) stops the sweeper's
    checkpoints for good, the store's connection checkpoints at SQLite's default again, and the
    claim goes on as before."""
    store = KvFileStore(str(store_dir), expiry_events=True)
    try:
        store.take_expired(10)
        assert autocheckpoint(store) == 4000
        monkeypatch.setattr(file_store, "_CHECKPOINT", "SELECT * FROM no_such_table")
        store.write("s", "gone", b"1", now_ms() - 1)
        store._next_checkpoint = 0.0
        assert [(s, k) for s, k, _, _ in store.take_expired(10)] == [("s", "gone")]
        assert store._checkpointer is None and autocheckpoint(store) == 1000
    finally:
        store.close()


def test_a_busy_checkpoint_is_tried_again_at_the_next_poll(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = KvFileStore(str(store_dir), expiry_events=True)
    real = file_store._CHECKPOINT
    try:
        # a statement failing with "database is locked": an exclusive transaction of another
        # connection held while the sweeper's connection (timeout 0) tries to write
        other = sqlite3.connect(store_dir / DB_FILE, isolation_level=None)
        other.execute("CREATE TABLE IF NOT EXISTS probe (x)")
        other.execute("BEGIN EXCLUSIVE")
        monkeypatch.setattr(file_store, "_CHECKPOINT", "INSERT INTO probe VALUES (1)")
        store.take_expired(10)
        assert isinstance(store._checkpointer, sqlite3.Connection)  # kept for the next poll
        other.execute("ROLLBACK")
        other.close()
        monkeypatch.setattr(file_store, "_CHECKPOINT", real)
        store.write("s", "k", b"1")
        store._next_checkpoint = 0.0
        store.take_expired(10)
        assert store._checkpointer is not None
        busy, pages, copied = store._checkpointer.execute(real).fetchone()
        assert (busy, pages) == (0, copied)
        assert autocheckpoint(store) == 4000
    finally:
        store.close()


def test_writes_beside_the_sweepers_checkpoints_are_all_kept(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer thread and a sweeping thread checkpointing at every poll: every write is read back
    after reopening, the file passes SQLite's integrity check, every expired entry is claimed once."""
    monkeypatch.setattr(file_store, "_CHECKPOINT_EVERY_S", 0.0)
    store = KvFileStore(str(store_dir), expiry_events=True)
    done = threading.Event()
    claimed: list[str] = []
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            while not done.is_set():
                taken = store.take_expired(50)
                claimed.extend(key for _, key, _, _ in taken)
                store.ack_expired(taken)
            taken = store.take_expired(5000)
            claimed.extend(key for _, key, _, _ in taken)
            store.ack_expired(taken)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    try:
        for n in range(2000):
            store.write("s", f"k{n}", f'"{"x" * 200}{n}"'.encode())
            if n % 2:
                store.write("gone", f"g{n}", b"1", now_ms() - 1)
    finally:
        done.set()
        sweeper.join(60)
        store.close()
    assert not errors, errors
    assert sorted(claimed) == sorted(f"g{n}" for n in range(1, 2000, 2))
    store = KvFileStore(str(store_dir))
    try:
        assert all(store.read("s", f"k{n}") == f'"{"x" * 200}{n}"'.encode() for n in range(2000))
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert store._db.execute("SELECT count(*) FROM expired").fetchone()[0] == 0
    finally:
        store.close()

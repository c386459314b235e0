"""kv (file_based SQLite) get/set/update ops/s beside raw sqlite3 doing the same work, same run.

Run: python -m bench.bench_kv [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile

from bench.harness import Pair, measure, table
from iii_state_core import open_store


def raw_sqlite(directory: str) -> sqlite3.Connection:
    db = sqlite3.connect(os.path.join(directory, "raw.sqlite3"), isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS entries "
        "(scope BLOB, key BLOB, value BLOB, PRIMARY KEY (scope, key)) WITHOUT ROWID"
    )
    return db


def run(seconds: float) -> str:
    folder = tempfile.mkdtemp(prefix="bench-kv-")
    store = open_store(adapter="kv", adapter_config={"store_method": "file_based", "file_path": folder})
    db = raw_sqlite(folder)
    scope, bscope = "bench", b"bench"
    value = {"n": 1, "name": "alice", "tags": ["a", "b"]}
    for i in range(1000):
        store.set(scope, f"k{i}", value)
        db.execute(
            "INSERT OR REPLACE INTO entries VALUES (?, ?, ?)",
            (bscope, f"k{i}".encode(), json.dumps(value).encode()),
        )

    def raw_get(i: int) -> object:
        row = db.execute(
            "SELECT value FROM entries WHERE scope = ? AND key = ?", (bscope, f"k{i % 1000}".encode())
        ).fetchone()
        return json.loads(row[0])

    def raw_set(i: int) -> object:
        # the same atomic old-value set: read and replace in one write transaction
        key = f"k{i % 1000}".encode()
        db.execute("BEGIN IMMEDIATE")
        row = db.execute("SELECT value FROM entries WHERE scope = ? AND key = ?", (bscope, key)).fetchone()
        db.execute(
            "INSERT OR REPLACE INTO entries VALUES (?, ?, ?)",
            (bscope, key, json.dumps(value, separators=(",", ":")).encode()),
        )
        db.execute("COMMIT")
        return row

    def raw_update(i: int) -> object:
        key = f"k{i % 1000}".encode()
        db.execute("BEGIN IMMEDIATE")
        row = db.execute("SELECT value FROM entries WHERE scope = ? AND key = ?", (bscope, key)).fetchone()
        current = json.loads(row[0])
        current["n"] += 1
        db.execute(
            "INSERT OR REPLACE INTO entries VALUES (?, ?, ?)",
            (bscope, key, json.dumps(current, separators=(",", ":")).encode()),
        )
        db.execute("COMMIT")
        return current

    increment = [{"type": "increment", "path": "n", "by": 1}]
    pairs = [
        Pair(
            "get",
            measure("get", lambda i: store.get(scope, f"k{i % 1000}"), seconds=seconds),
            measure("raw get", raw_get, seconds=seconds),
        ),
        Pair(
            "set",
            measure("set", lambda i: store.set(scope, f"k{i % 1000}", value), seconds=seconds),
            measure("raw set", raw_set, seconds=seconds),
        ),
        Pair(
            "update (1 increment)",
            measure("update", lambda i: store.update(scope, f"k{i % 1000}", increment), seconds=seconds),
            measure("raw update", raw_update, seconds=seconds),
        ),
        Pair(
            "delete+set",
            measure(
                "delete",
                lambda i: (store.delete(scope, f"k{i % 1000}"), store.set(scope, f"k{i % 1000}", value)),
                seconds=seconds,
            ),
            None,
        ),
        Pair(
            "list_entries (page of 100)",
            measure("list_entries", lambda i: store.list_entries(scope, None, 100), seconds=seconds),
            None,
        ),
    ]
    store.close()
    db.close()
    return table("kv (file_based, SQLite WAL) vs raw sqlite3", pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    print(run(parser.parse_args().seconds))


if __name__ == "__main__":
    main()

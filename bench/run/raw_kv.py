"""Raw equivalents for ``kv``: sqlite3 on the same kind of file (file_based), a dict (in_memory)."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from typing import Any, ClassVar

from . import workload as w
from .raw import RawSide


def raw_sqlite(directory: str, fsync: bool = False) -> sqlite3.Connection:
    """The raw side's database, with the PRAGMAs the kv file store sets (``fsync``: its option)."""
    db = sqlite3.connect(os.path.join(directory, "raw.sqlite3"), isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {'FULL' if fsync else 'NORMAL'}")
    db.execute(
        "CREATE TABLE IF NOT EXISTS entries "
        "(scope BLOB, key BLOB, value BLOB, PRIMARY KEY (scope, key)) WITHOUT ROWID"
    )
    return db


SCOPE = b"raw"
LIST_SCOPE = b"raw-list"


class RawSqlite(RawSide):
    """The statements the kv file store runs, on a database of the same schema and PRAGMAs."""

    described: ClassVar[dict[str, str]] = {
        "get": "SELECT + json.loads",
        "set": "BEGIN IMMEDIATE; SELECT old; INSERT OR REPLACE; COMMIT + json.loads(old)",
        "delete": "DELETE … RETURNING value + json.loads",
        "update1": "BEGIN IMMEDIATE; SELECT; change in Python; INSERT OR REPLACE; COMMIT",
        "update10": "as update (1 op), ten changes in Python",
        "compare_and_set": "SELECT; compare; UPDATE … WHERE value = old",
        "list_entries": "SELECT key, value … ORDER BY key LIMIT 100 + json.loads each",
    }

    def __init__(self, directory: str, fsync: bool = False) -> None:
        self.db = raw_sqlite(directory, fsync)

    def _read(self, scope: bytes, key: str) -> bytes | None:
        row = self.db.execute(
            "SELECT value FROM entries WHERE scope = ? AND key = ?", (scope, key.encode())
        ).fetchone()
        return None if row is None else bytes(row[0])

    def _put(self, scope: bytes, key: str, data: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?)", (scope, key.encode(), data))

    def populate(self) -> None:
        with self.db:
            for i in range(w.KEYS):
                self._put(SCOPE, w.key(i), w.dumps(w.VALUE))
            for i in range(w.LISTED):
                self._put(LIST_SCOPE, f"e{i:04d}", w.dumps(w.VALUE))
            self._put(SCOPE, "cas", w.dumps({"v": 0}))

    def fill_deletes(self, start: int, count: int) -> None:
        self.db.execute("BEGIN")
        for j in range(start, start + count):
            self._put(SCOPE, f"d{j}", w.dumps(w.VALUE))
        self.db.execute("COMMIT")

    def get(self, i: int) -> Any:
        raw = self._read(SCOPE, w.key(i))
        return None if raw is None else json.loads(raw)

    def _change(self, key: str, change: Any) -> Any:
        self.db.execute("BEGIN IMMEDIATE")
        old = self._read(SCOPE, key)
        new = change(old)
        self._put(SCOPE, key, new)
        self.db.execute("COMMIT")
        return None if old is None else json.loads(old)

    def set(self, i: int) -> Any:
        data = w.dumps(w.VALUE)
        return self._change(w.key(i), lambda _old: data)

    def delete(self, j: int) -> Any:
        row = self.db.execute(
            "DELETE FROM entries WHERE scope = ? AND key = ? RETURNING value", (SCOPE, f"d{j}".encode())
        ).fetchone()
        return None if row is None else json.loads(row[0])

    def update1(self, i: int) -> Any:
        return self._change(w.key(i), lambda old: w.dumps(w.increment(json.loads(old))))

    def update10(self, i: int) -> Any:
        return self._change(w.key(i), lambda old: w.dumps(w.ten_changes(json.loads(old))))

    def compare_and_set(self, n: int) -> bool:
        old = self._read(SCOPE, "cas")
        if old is None or json.loads(old) != {"v": n}:
            return False
        cur = self.db.execute(
            "UPDATE entries SET value = ? WHERE scope = ? AND key = ? AND value = ?",
            (w.dumps({"v": n + 1}), SCOPE, b"cas", old),
        )
        return cur.rowcount == 1

    def list_entries(self) -> Any:
        rows = self.db.execute(
            "SELECT key, value FROM entries WHERE scope = ? AND key >= ? ORDER BY key LIMIT ?",
            (LIST_SCOPE, b"", w.PAGE),
        ).fetchall()
        return [(bytes(k).decode(), json.loads(v)) for k, v in rows]

    def close(self) -> None:
        self.db.close()


class RawDict(RawSide):
    """A locked dict of compact JSON bytes: what the in-memory store keeps, with no core around it."""

    described: ClassVar[dict[str, str]] = {
        "get": "dict lookup + json.loads",
        "set": "json.dumps; under a lock: swap in the dict; json.loads(old)",
        "delete": "under a lock: dict.pop; json.loads",
        "update1": "under a lock: json.loads, change, json.dumps, store",
        "update10": "as update (1 op), ten changes in Python",
        "compare_and_set": "under a lock: json.loads, compare, json.dumps, store",
        "list_entries": "sorted(keys)[:100] + json.loads each (the same cost model as the store)",
    }

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.listed: dict[str, bytes] = {}
        self.lock = threading.Lock()

    def populate(self) -> None:
        for i in range(w.KEYS):
            self.data[w.key(i)] = w.dumps(w.VALUE)
        for i in range(w.LISTED):
            self.listed[f"e{i:04d}"] = w.dumps(w.VALUE)
        self.data["cas"] = w.dumps({"v": 0})

    def fill_deletes(self, start: int, count: int) -> None:
        data = w.dumps(w.VALUE)
        for j in range(start, start + count):
            self.data[f"d{j}"] = data

    def get(self, i: int) -> Any:
        raw = self.data.get(w.key(i))
        return None if raw is None else json.loads(raw)

    def _change(self, key: str, change: Any) -> Any:
        with self.lock:
            old = self.data.get(key)
            self.data[key] = change(old)
        return None if old is None else json.loads(old)

    def set(self, i: int) -> Any:
        data = w.dumps(w.VALUE)
        return self._change(w.key(i), lambda _old: data)

    def delete(self, j: int) -> Any:
        with self.lock:
            old = self.data.pop(f"d{j}", None)
        return None if old is None else json.loads(old)

    def update1(self, i: int) -> Any:
        return self._change(w.key(i), lambda old: w.dumps(w.increment(json.loads(old))))

    def update10(self, i: int) -> Any:
        return self._change(w.key(i), lambda old: w.dumps(w.ten_changes(json.loads(old))))

    def compare_and_set(self, n: int) -> bool:
        with self.lock:
            if json.loads(self.data["cas"]) != {"v": n}:
                return False
            self.data["cas"] = w.dumps({"v": n + 1})
            return True

    def list_entries(self) -> Any:
        keys = sorted(self.listed)[: w.PAGE]
        return [(k, json.loads(self.listed[k])) for k in keys]


def sqlite_dir(base: str) -> str:
    path = os.path.join(base, "raw")
    os.makedirs(path, exist_ok=True)
    return path

"""Importing 100,000 entries over 50 scopes with ``iii-state import``'s code (``import_file``,
default policy ``fail``: a check pass reading every key, then the writes, both in batches of 500,
on kv in rounds of 10,000), beside the same import with batches of one entry (one call per entry,
as before batches), timed on a tenth of the entries and scaled (one call per entry on 100,000 takes
minutes on Redis). Same store, same run, fresh scopes each."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time

from iii_state_core import StateStore
from iii_state_core.transfer import importing, rounds
from iii_state_core.transfer.importing import import_file

from . import workload as w

ENTRIES = 100_000
SCOPES = 50
#: The one-call-per-entry run moves this share of the entries (its time is scaled up).
SINGLE_SHARE = 10


def _file(prefix: str, entries: int) -> str:
    handle, path = tempfile.mkstemp(prefix="iii-bench-import-", suffix=".jsonl")
    with os.fdopen(handle, "w") as out:
        for i in range(entries):
            scope = f"{prefix}-{i % SCOPES}"
            out.write(json.dumps({"scope": scope, "key": f"k{i:06d}", "value": w.VALUE}) + "\n")
    return path


def _timed_import(store: StateStore, prefix: str, entries: int) -> float:
    path = _file(prefix, entries)
    try:
        start = time.perf_counter()
        report = import_file(store, path, "fail")
        seconds = time.perf_counter() - start
    finally:
        os.unlink(path)
    if report.written != entries:
        raise AssertionError(f"import wrote {report.written} of {entries}")
    return seconds


def measure(store: StateStore, entries: int = ENTRIES) -> tuple[float, float]:
    """Seconds for the batched import of ``entries``, and for one call per entry (scaled): the
    same ``import_file`` (both passes, parsing included) with batches of one entry."""
    batched = _timed_import(store, f"imp-{secrets.token_hex(3)}", entries)
    few = entries // SINGLE_SHARE
    chunk, big_rounds = importing.CHUNK, rounds.available
    importing.CHUNK = 1  # type: ignore[misc]
    rounds.available = lambda adapter: False  # kv's big rounds too: one entry per call
    try:
        one_by_one = _timed_import(store, f"one-{secrets.token_hex(3)}", few) * entries / few
    finally:
        importing.CHUNK, rounds.available = chunk, big_rounds  # type: ignore[misc]
    return batched, one_by_one


def _seconds(seconds: float) -> str:
    """Three significant digits, so a fast machine's 0.0756 s is not shown as 0.08 (8 % off)."""
    return f"{seconds:.3f}" if seconds < 1 else f"{seconds:.2f}"


def table(title: str, store: StateStore, entries: int = ENTRIES) -> str:
    batched, one_by_one = measure(store, entries)
    return "\n".join([
        f"### Import: {title}",
        "",
        f"| entries ({SCOPES} scopes) | batched import, s | entries/s | one call per entry, s (scaled from "
        f"{entries // SINGLE_SHARE:,}) | speed-up |",
        "|---:|---:|---:|---:|---:|",
        f"| {entries:,} | {_seconds(batched)} | {entries / batched:,.0f} | {_seconds(one_by_one)} | "
        f"{one_by_one / batched:.1f}x |",
    ])  # fmt: skip

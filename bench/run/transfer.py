"""export / migrate / verify throughput through iii-state beside the adapter primitives doing the same work.

"Raw" is the adapter itself with no core in between: ``scan`` pages written out as lines
(export), ``scan`` + ``write`` into the target (migrate, overwrite), ``scan`` of both sides
compared as bytes (verify). The gap is what the core's checks, JSON decoding/encoding, the
conflict policy, the resume record and the digest cost. One "op" moves ``--entries`` entries.

A section of ``python -m bench``; with the redis adapter in the run it adds a kv -> redis row
against a private redis-server on a free port.
"""

from __future__ import annotations

import contextlib
import io
import json
import secrets
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from iii_state_core import StateStore, open_store
from iii_state_core.adapter import Adapter
from iii_state_core.transfer import export_entries, migrate, verify, write_jsonl

from .measuring import Budget, Measurement, Pair, best, measure, rows_table

Op = Callable[[int], object]
SCOPES = 10


def _kv(directory: Path) -> StateStore:
    config = {"store_method": "file_based", "file_path": str(directory)}
    return open_store(adapter="kv", adapter_config=config)


def _raw_pages(adapter: Adapter, scope: str) -> Iterator[list[tuple[str, bytes]]]:
    cursor = None
    while True:
        page, cursor = adapter.scan(scope, cursor, 500)
        yield page
        if cursor is None:
            return


def _raw_export(source: Adapter) -> int:
    out = io.BytesIO()
    for scope in source.list_scopes():
        prefix = b'{"scope":' + json.dumps(scope, ensure_ascii=False).encode() + b',"key":'
        for page in _raw_pages(source, scope):
            for key, raw in page:
                out.write(prefix + json.dumps(key, ensure_ascii=False).encode() + b',"value":' + raw + b"}\n")
    return out.tell()


def _raw_copy(source: Adapter, target: Adapter) -> None:
    for scope in source.list_scopes():
        for page in _raw_pages(source, scope):
            for key, raw in page:
                target.write(scope, key, raw)


def _raw_verify(source: Adapter, target: Adapter) -> bool:
    ok = True
    for scope in source.list_scopes():
        mine = {k: v for page in _raw_pages(source, scope) for k, v in page}
        theirs = {k: v for page in _raw_pages(target, scope) for k, v in page}
        ok = ok and mine == theirs
    return ok


def _pair(name: str, ours: Op, raw: Op, budget: Budget) -> Pair:
    mine: list[Measurement] = []
    theirs: list[Measurement] = []
    for _ in range(budget.rounds):  # alternate, so load from other processes skews both sides alike
        # one warm-up call: each call moves every entry
        mine.append(measure(name, ours, seconds=budget.seconds, warmup=1))
        theirs.append(measure(f"raw {name}", raw, seconds=budget.seconds, warmup=1))
    return Pair(name, best(mine), best(theirs))


def _rows(label: str, source: StateStore, target: StateStore, budget: Budget) -> list[Pair]:
    a, b = source.adapter, target.adapter

    def ours_export(i: int) -> object:
        return write_jsonl(export_entries(source), io.BytesIO())

    def ours_migrate(workers: int) -> Op:
        return lambda i: migrate(source, target, on_conflict="overwrite", verify_after=False, workers=workers)

    ops: list[tuple[str, Op, Op]] = [
        ("export", ours_export, lambda i: _raw_export(a)),
        ("migrate (1 writer)", ours_migrate(1), lambda i: _raw_copy(a, b)),
        ("migrate (4 writers)", ours_migrate(4), lambda i: _raw_copy(a, b)),
        ("verify", lambda i: verify(source, target), lambda i: _raw_verify(a, b)),
    ]
    return [_pair(f"{label}: {name}", ours, raw, budget) for name, ours, raw in ops]


def transfer_table(entries: int, budget: Budget, with_redis: bool) -> str:
    """The export / migrate / verify rows of ``entries`` entries (kv -> kv, and kv -> redis)."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        source = stack.enter_context(_kv(Path(tmp) / "source"))
        for i in range(entries):
            value = {"i": i, "name": "Zoë", "tags": ["a", "b"], "f": 1.5}
            source.set(f"scope-{i % SCOPES}", f"key-{i}", value)
        pairs = _rows("kv → kv", source, stack.enter_context(_kv(Path(tmp) / "target")), budget)
        if with_redis:
            from iii_state_testsupport import RedisServer

            server = stack.enter_context(RedisServer())
            config = {"redis_url": server.url, "key_prefix": f"bench{secrets.token_hex(3)}:"}
            redis = stack.enter_context(open_store(adapter="redis", adapter_config=config))
            pairs += _rows("kv → redis", source, redis, budget)
    title = f"transfer of {entries:,} entries in {SCOPES} scopes: ops/s, one op = all entries"
    return rows_table(title, pairs)

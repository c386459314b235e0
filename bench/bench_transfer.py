"""export / migrate / verify throughput through iii-state beside the adapter primitives doing the same work.

"Raw" is the adapter itself with no core in between: ``scan`` pages written out as lines
(export), ``scan`` + ``write`` into the target (migrate, overwrite), ``scan`` of both sides
compared as bytes (verify). The gap is what the core's checks, JSON decoding/encoding, the
conflict policy, the resume record and the digest cost. One "op" moves ``--entries`` entries.

Run: python -m bench.bench_transfer [--entries 5000] [--seconds 1] [--rounds 2] [--redis]
``--redis`` adds a kv -> redis row against a private redis-server on a free port.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import secrets
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.harness import Measurement, Pair, measure, table
from iii_state_core import StateStore, open_store
from iii_state_core.adapter import Adapter
from iii_state_core.transfer import export_entries, migrate, verify, write_jsonl

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


def _best(runs: list[Measurement]) -> Measurement:
    return max(runs, key=lambda m: m.ops_per_s)


def _pair(name: str, ours: Op, raw: Op, seconds: float, rounds: int) -> Pair:
    mine, theirs = [], []
    for _ in range(rounds):  # alternate, so load from other processes skews both sides alike
        mine.append(measure(name, ours, seconds=seconds, warmup=1))
        theirs.append(measure(f"raw {name}", raw, seconds=seconds, warmup=1))
    return Pair(name, _best(mine), _best(theirs))


def _rows(label: str, source: StateStore, target: StateStore, seconds: float, rounds: int) -> list[Pair]:
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
    return [_pair(f"{label}: {name}", ours, raw, seconds, rounds) for name, ours, raw in ops]


def run(entries: int, seconds: float, rounds: int, with_redis: bool) -> str:
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        source = stack.enter_context(_kv(Path(tmp) / "source"))
        for i in range(entries):
            value = {"i": i, "name": "Zoë", "tags": ["a", "b"], "f": 1.5}
            source.set(f"scope-{i % SCOPES}", f"key-{i}", value)
        pairs = _rows("kv → kv", source, stack.enter_context(_kv(Path(tmp) / "target")), seconds, rounds)
        if with_redis:
            from iii_state_testsupport import RedisServer

            server = stack.enter_context(RedisServer())
            config = {"redis_url": server.url, "key_prefix": f"bench{secrets.token_hex(3)}:"}
            redis = stack.enter_context(open_store(adapter="redis", adapter_config=config))
            pairs += _rows("kv → redis", source, redis, seconds, rounds)
    return table(f"transfer of {entries:,} entries in {SCOPES} scopes: ops/s, one op = all entries", pairs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=5000, help="entries per op")
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per operation")
    parser.add_argument("--redis", action="store_true", help="also measure kv -> redis")
    args = parser.parse_args()
    print(run(args.entries, args.seconds, args.rounds, args.redis))


if __name__ == "__main__":
    main()

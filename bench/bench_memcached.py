"""memcached get/set/update ops/s through iii-state beside raw pymemcache doing the same work.

Raw pymemcache, same connection settings (TCP_NODELAY, replies awaited):
- get: ``get`` + ``json.loads``;
- set: a confirmed ``set`` (it returns no old value; ours returns the replaced one and keeps
  the listing index);
- update: ``gets`` → decode → increment → encode → ``cas``, looped until it sticks.

Each operation alternates ours and raw for ``--rounds`` rounds and keeps each side's best
round, so load from other processes on the machine skews both sides alike.

Run: python -m bench.bench_memcached [--seconds 1.0] [--rounds 3] [--servers host:port,...]
Without ``--servers`` it starts a private memcached on a free loopback port (and stops it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
from collections.abc import Callable, Iterator

from pymemcache.client.base import Client  # type: ignore[import-untyped]

from bench.harness import Measurement, Pair, measure, table
from iii_state_core import open_store

KEYS = 1000


@contextlib.contextmanager
def _servers(given: str | None) -> Iterator[list[str]]:
    if given:
        yield [s for s in given.replace(",", " ").split() if s]
        return
    from iii_state_testsupport import memcached_server

    with memcached_server() as server:
        yield [server.address]


Op = Callable[[int], object]


def _best(runs: list[Measurement]) -> Measurement:
    return max(runs, key=lambda m: m.ops_per_s)


def _pair(name: str, ours: Op, raw: Op | None, seconds: float, rounds: int) -> Pair:
    mine: list[Measurement] = []
    theirs: list[Measurement] = []
    for _ in range(rounds):
        mine.append(measure(name, ours, seconds=seconds))
        if raw is not None:
            theirs.append(measure(f"raw {name}", raw, seconds=seconds))
    return Pair(name, _best(mine), _best(theirs) if theirs else None)


def run(servers: list[str], seconds: float, rounds: int) -> str:
    prefix = f"bench{secrets.token_hex(3)}:"
    store = open_store(adapter="memcached", adapter_config={"servers": servers, "key_prefix": prefix})
    host, _, port = servers[0].rpartition(":")
    raw = Client((host, int(port)), no_delay=True, default_noreply=False)
    scope = "bench"
    value = {"n": 1, "name": "alice", "tags": ["a", "b"]}
    encoded = json.dumps(value, separators=(",", ":")).encode()
    raw_keys = [f"{prefix}raw:{i}".encode() for i in range(KEYS)]
    for i in range(KEYS):
        store.set(scope, f"k{i}", value)
        raw.set(raw_keys[i], encoded)

    def raw_get(i: int) -> object:
        return json.loads(raw.get(raw_keys[i % KEYS]))

    def raw_set(i: int) -> object:
        return raw.set(raw_keys[i % KEYS], encoded)

    def raw_update(i: int) -> object:
        key = raw_keys[i % KEYS]
        while True:
            item, cas = raw.gets(key)
            current = json.loads(item)
            current["n"] += 1
            if raw.cas(key, json.dumps(current, separators=(",", ":")).encode(), cas):
                return current

    increment = [{"type": "increment", "path": "n", "by": 1}]

    def recreate(i: int) -> object:
        store.delete(scope, f"k{i % KEYS}")
        return store.set(scope, f"k{i % KEYS}", value)

    ops: list[tuple[str, Op, Op | None]] = [
        ("get", lambda i: store.get(scope, f"k{i % KEYS}"), raw_get),
        ("set", lambda i: store.set(scope, f"k{i % KEYS}", value), raw_set),
        ("update (1 increment)", lambda i: store.update(scope, f"k{i % KEYS}", increment), raw_update),
        ("delete + create", recreate, None),
        ("list_entries (page of 100)", lambda i: store.list_entries(scope, None, 100), None),
    ]
    pairs = [_pair(name, ours, theirs, seconds, rounds) for name, ours, theirs in ops]
    for i in range(KEYS):
        store.delete(scope, f"k{i}")
        raw.delete(raw_keys[i])
    store.close()
    raw.close()
    where = ", ".join(servers)
    title = f"memcached ({where}) via iii-state vs raw pymemcache"
    return f"{table(title, pairs)}\n\n{_medians(pairs)}"


def _medians(pairs: list[Pair]) -> str:
    """Median latencies side by side: steadier than throughput on a busy machine."""
    lines = ["| operation | iii-state p50 µs | raw p50 µs | raw/ours |", "|---|---:|---:|---:|"]
    for p in pairs:
        if p.raw is not None:
            ours, raw = p.ours.p50_us, p.raw.p50_us
            lines.append(f"| {p.operation} | {ours:,.1f} | {raw:,.1f} | {raw / ours:.2f}\u00d7 |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per operation")
    parser.add_argument("--servers", help="use these memcached servers instead of starting one")
    args = parser.parse_args()
    with _servers(args.servers) as servers:
        print(run(servers, args.seconds, args.rounds))


if __name__ == "__main__":
    main()

"""Redis get/set/delete/update/list_entries through iii-state beside raw redis-py doing the same
minimum work, against the same server, in the same run.

Raw redis-py (a plain ``redis.Redis(host, port)`` client), per operation:
- get: ``HGET`` + ``json.loads``;
- set: one script that returns the old value and sets the new (``HGET`` + ``HSET``, the
  engine's own set) + ``json.loads`` of the old value;
- delete: the same for ``HGET`` + ``HDEL``;
- update (one increment op): one script that reads, decodes, increments, encodes and writes in
  Lua (the engine's way, which loses ``[]`` and big integers) + ``json.loads`` of old and new;
- list_entries (100 entries): one ``HSCAN ... COUNT 100`` of a 1000-entry hash + ``json.loads``
  of each value.

Each operation alternates ours and raw for ``--rounds`` rounds and keeps each side's best round,
so load from other processes skews both sides alike.

Run: python -m bench.bench_redis [--url redis://host:port] [--seconds 1.0] [--rounds 3]
Without ``--url`` it starts its own redis-server on a free loopback port (the shared
``iii_state_testsupport`` module) and stops it after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
from collections.abc import Callable, Iterator
from typing import Any

import redis

from bench.harness import Measurement, Pair, measure, table
from iii_state_core import open_store

KEYS = 200
LISTED = 1000
PAGE = 100
Op = Callable[[int], object]

SET_SCRIPT = (
    "local o = redis.call('HGET', KEYS[1], ARGV[1]) redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return o"
)
DEL_SCRIPT = "local o = redis.call('HGET', KEYS[1], ARGV[1]) redis.call('HDEL', KEYS[1], ARGV[1]) return o"
INCR_SCRIPT = """
local o = redis.call('HGET', KEYS[1], ARGV[1])
local v = cjson.decode(o)
v[ARGV[2]] = v[ARGV[2]] + tonumber(ARGV[3])
local n = cjson.encode(v)
redis.call('HSET', KEYS[1], ARGV[1], n)
return {o, n}
"""


@contextlib.contextmanager
def _server(given: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    from iii_state_testsupport import redis_server

    with redis_server() as server:
        yield server.url


def _best(runs: list[Measurement]) -> Measurement:
    return max(runs, key=lambda m: m.ops_per_s)


def _pair(name: str, ours: Op, raw: Op, seconds: float, rounds: int) -> Pair:
    mine: list[Measurement] = []
    theirs: list[Measurement] = []
    for _ in range(rounds):
        mine.append(measure(name, ours, seconds=seconds))
        theirs.append(measure(f"raw {name}", raw, seconds=seconds))
    return Pair(name, _best(mine), _best(theirs))


class Raw:
    """The same work as the adapter, written directly against a redis-py client."""

    def __init__(self, client: Any, scope: str) -> None:
        self.client, self.name = client, f"state:{scope}"
        self.set_script = client.register_script(SET_SCRIPT)
        self.del_script = client.register_script(DEL_SCRIPT)
        self.incr_script = client.register_script(INCR_SCRIPT)

    def get(self, i: int) -> object:
        return json.loads(self.client.hget(self.name, f"k{i % KEYS}"))

    def set(self, i: int, value: Any) -> object:
        data = json.dumps(value, separators=(",", ":"))
        old = self.set_script(keys=[self.name], args=[f"k{i % KEYS}", data])
        return None if old is None else json.loads(old)

    def delete(self, i: int) -> object:
        old = self.del_script(keys=[self.name], args=[f"d{i}"])
        return None if old is None else json.loads(old)

    def update(self, i: int) -> object:
        old, new = self.incr_script(keys=[self.name], args=[f"k{i % KEYS}", "n", 1])
        return json.loads(old), json.loads(new)

    def list_entries(self, _: int) -> object:
        _, page = self.client.hscan(f"{self.name}-list", 0, count=PAGE)
        return [(k.decode(), json.loads(v)) for k, v in page.items()]


def run(url: str, seconds: float, rounds: int) -> str:
    store = open_store(adapter="redis", adapter_config={"redis_url": url})
    address = redis.connection.parse_url(url)
    # RESP2, as the adapter speaks (redis-py 8 defaults to RESP3, which parses slower)
    client = redis.Redis(host=address.get("host", "localhost"), port=address.get("port", 6379), protocol=2)
    scope = "iii-bench"
    raw = Raw(client, "iii-bench-raw")
    value = {"n": 1, "name": "alice", "tags": ["a", "b"]}
    for i in range(KEYS):
        store.set(scope, f"k{i}", value)
        raw.set(i, value)
    for i in range(LISTED):
        store.set(f"{scope}-list", f"e{i:04d}", value)
        client.hset(f"{raw.name}-list", f"e{i:04d}", json.dumps(value))
    increment = [{"type": "increment", "path": "n", "by": 1}]

    def our_delete(i: int) -> object:
        store.set(scope, f"d{i}", value)
        return store.delete(scope, f"d{i}")

    def raw_delete(i: int) -> object:
        # the same set first, so both sides delete a present key
        raw.set_script(keys=[raw.name], args=[f"d{i}", json.dumps(value, separators=(",", ":"))])
        return raw.delete(i)

    try:
        pairs = [
            _pair("get", lambda i: store.get(scope, f"k{i % KEYS}"), raw.get, seconds, rounds),
            _pair("set", lambda i: store.set(scope, f"k{i % KEYS}", value), lambda i: raw.set(i, value),
                  seconds, rounds),
            _pair("delete (after a set)", our_delete, raw_delete, seconds, rounds),
            _pair("update (1 increment)", lambda i: store.update(scope, f"k{i % KEYS}", increment),
                  raw.update, seconds, rounds),
            _pair(f"list_entries ({PAGE})", lambda i: store.list_entries(f"{scope}-list", None, PAGE),
                  raw.list_entries, seconds, rounds),
        ]  # fmt: skip
    finally:
        client.delete(f"state:{scope}", f"state:{scope}-list", raw.name, f"{raw.name}-list")
        client.close()
        store.close()
    machine = f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}"
    return table(f"redis adapter vs raw redis-py ({machine})", pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an existing server (default: start redis-server on a free port)")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per operation")
    args = parser.parse_args()
    with _server(args.url) as url:
        print(run(url, args.seconds, args.rounds))


if __name__ == "__main__":
    main()

"""Raw redis-py beside the redis adapter: ``bench.bench_redis.Raw`` plus the operations it lacks."""

from __future__ import annotations

import json
import secrets
from typing import Any, ClassVar

import redis

from bench.bench_redis import KEYS as RAW_KEYS
from bench.bench_redis import Raw

from . import workload as w
from .raw import RawSide

#: Write ARGV[3] only if the field still holds exactly ARGV[2]: the minimal optimistic write.
SWAP_IF = (
    "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then "
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) return 1 end return 0"
)
assert RAW_KEYS == w.KEYS, "bench_redis.Raw cycles through a different number of keys"


def server_version(client: Any) -> str:
    return str(client.info("server").get("redis_version", "?"))


class RawRedis(RawSide):
    described: ClassVar[dict[str, str]] = {
        "get": "HGET + json.loads (bench_redis.Raw)",
        "set": "one script HGET+HSET + json.loads(old) (bench_redis.Raw)",
        "delete": "one script HGET+HDEL + json.loads (bench_redis.Raw)",
        "update1": "one Lua script decoding, incrementing and encoding with cjson (bench_redis.Raw; "
        "loses [] and big integers, which is why the adapter does not do this)",
        "update10": "HGET; ten changes in Python; swap-if-unchanged script (2 round trips)",
        "compare_and_set": "HGET; compare; swap-if-unchanged script",
        "list_entries": "HSCAN COUNT 100 of a 1,000-field hash + json.loads each (bench_redis.Raw)",
    }

    def __init__(self, url: str) -> None:
        # RESP2, as the adapter speaks
        self.client: Any = redis.Redis.from_url(url, protocol=2)
        self.base = Raw(self.client, f"raw-{secrets.token_hex(3)}")
        self.swap_if = self.client.register_script(SWAP_IF)

    def populate(self) -> None:
        for i in range(w.KEYS):
            self.base.set(i, w.VALUE)
        self.client.hset(
            f"{self.base.name}-list", mapping={f"e{i:04d}": w.dumps(w.VALUE) for i in range(w.LISTED)}
        )
        self.client.hset(self.base.name, "cas", w.dumps({"v": 0}))

    def fill_deletes(self, start: int, count: int) -> None:
        data = w.dumps(w.VALUE)
        for first in range(start, start + count, 1000):
            chunk = {f"d{j}": data for j in range(first, min(first + 1000, start + count))}
            self.client.hset(self.base.name, mapping=chunk)

    def get(self, i: int) -> Any:
        return self.base.get(i)

    def set(self, i: int) -> Any:
        return self.base.set(i, w.VALUE)

    def delete(self, j: int) -> Any:
        return self.base.delete(j)

    def update1(self, i: int) -> Any:
        return self.base.update(i)

    def update10(self, i: int) -> Any:
        field = w.key(i)
        while True:
            old = self.client.hget(self.base.name, field)
            new = w.dumps(w.ten_changes(json.loads(old)))
            if self.swap_if(keys=[self.base.name], args=[field, old, new]) == 1:
                return json.loads(old)

    def compare_and_set(self, n: int) -> bool:
        old = self.client.hget(self.base.name, "cas")
        if old is None or json.loads(old) != {"v": n}:
            return False
        return bool(self.swap_if(keys=[self.base.name], args=["cas", old, w.dumps({"v": n + 1})]) == 1)

    def list_entries(self) -> Any:
        return self.base.list_entries(0)

    def close(self) -> None:
        self.client.close()

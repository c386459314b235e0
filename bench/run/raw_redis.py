"""Raw redis-py beside the redis adapter: the same minimum work, written directly against a client."""

from __future__ import annotations

import json
import secrets
from typing import Any, ClassVar

import redis

from . import workload as w
from .raw import RawSide

#: Write ARGV[3] only if the field still holds exactly ARGV[2]: the minimal optimistic write.
SWAP_IF = (
    "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then "
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) return 1 end return 0"
)

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


class RawCalls:
    """The same work as the adapter, written directly against a redis-py client."""

    def __init__(self, client: Any, scope: str) -> None:
        self.client, self.name = client, f"state:{scope}"
        self.set_script = client.register_script(SET_SCRIPT)
        self.del_script = client.register_script(DEL_SCRIPT)
        self.incr_script = client.register_script(INCR_SCRIPT)

    def get(self, i: int) -> object:
        return json.loads(self.client.hget(self.name, f"k{i % w.KEYS}"))

    def set(self, i: int, value: Any) -> object:
        data = json.dumps(value, separators=(",", ":"))
        old = self.set_script(keys=[self.name], args=[f"k{i % w.KEYS}", data])
        return None if old is None else json.loads(old)

    def delete(self, i: int) -> object:
        old = self.del_script(keys=[self.name], args=[f"d{i}"])
        return None if old is None else json.loads(old)

    def update(self, i: int) -> object:
        old, new = self.incr_script(keys=[self.name], args=[f"k{i % w.KEYS}", "n", 1])
        return json.loads(old), json.loads(new)

    def list_entries(self, _: int) -> object:
        _, page = self.client.hscan(f"{self.name}-list", 0, count=w.PAGE)
        return [(k.decode(), json.loads(v)) for k, v in page.items()]


def server_version(client: Any) -> str:
    return str(client.info("server").get("redis_version", "?"))


class RawRedis(RawSide):
    described: ClassVar[dict[str, str]] = {
        "get": "HGET + json.loads",
        "set": "one script HGET+HSET + json.loads(old)",
        "delete": "one script HGET+HDEL + json.loads",
        "update1": "one Lua script decoding, incrementing and encoding with cjson ("
        "loses [] and big integers, which is why the adapter does not do this)",
        "update10": "HGET; ten changes in Python; swap-if-unchanged script (2 round trips)",
        "compare_and_set": "HGET; compare; swap-if-unchanged script",
        "list_entries": "HSCAN COUNT 100 of a 1,000-field hash + json.loads each",
    }

    def __init__(self, url: str) -> None:
        # RESP2, as the adapter speaks
        self.client: Any = redis.Redis.from_url(url, protocol=2)
        self.base = RawCalls(self.client, f"raw-{secrets.token_hex(3)}")
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

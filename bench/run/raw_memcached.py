"""Raw pymemcache beside the memcached adapter, with the same connection settings (TCP_NODELAY,
replies awaited): ``get``, confirmed ``set``, and ``gets``/``cas`` loops for the updates."""

from __future__ import annotations

import json
import secrets
from typing import Any, ClassVar

from pymemcache.client.base import Client  # type: ignore[import-untyped]

from . import workload as w
from .raw import RawSide


class RawMemcached(RawSide):
    supported = ("get", "set", "delete", "update1", "update10", "compare_and_set")
    described: ClassVar[dict[str, str]] = {
        "get": "get + json.loads",
        "set": "gets; cas (add when missing), looped until it sticks + json.loads(old): the least "
        "that returns the replaced value atomically",
        "delete": "gets + delete + json.loads (not atomic: memcached's delete returns no value)",
        "update1": "gets; change in Python; cas, looped until it sticks",
        "update10": "as update (1 op), ten changes in Python",
        "compare_and_set": "gets; compare; cas",
    }

    def __init__(self, server: str) -> None:
        host, _, port = server.rpartition(":")
        self.client = Client((host, int(port)), no_delay=True, default_noreply=False)
        self.prefix = f"raw{secrets.token_hex(3)}:"

    def version(self) -> str:
        return str(self.client.version().decode())

    def _key(self, name: str) -> bytes:
        return f"{self.prefix}{name}".encode()

    def populate(self) -> None:
        for i in range(w.KEYS):
            self.client.set(self._key(w.key(i)), w.dumps(w.VALUE))
        self.client.set(self._key("cas"), w.dumps({"v": 0}))

    def fill_deletes(self, start: int, count: int) -> None:
        data = w.dumps(w.VALUE)
        for first in range(start, start + count, 500):
            chunk = {self._key(f"d{j}"): data for j in range(first, min(first + 500, start + count))}
            self.client.set_many(chunk)

    def get(self, i: int) -> Any:
        raw = self.client.get(self._key(w.key(i)))
        return None if raw is None else json.loads(raw)

    def _change(self, name: str, change: Any) -> Any:
        key = self._key(name)
        while True:
            old, cas = self.client.gets(key)
            if old is None:
                if self.client.add(key, change(None), noreply=False):
                    return None
            elif self.client.cas(key, change(old), cas):
                return json.loads(old)

    def set(self, i: int) -> Any:
        data = w.dumps(w.VALUE)
        return self._change(w.key(i), lambda _old: data)

    def delete(self, j: int) -> Any:
        key = self._key(f"d{j}")
        old = self.client.get(key)
        self.client.delete(key)
        return None if old is None else json.loads(old)

    def update1(self, i: int) -> Any:
        return self._change(w.key(i), lambda old: w.dumps(w.increment(json.loads(old))))

    def update10(self, i: int) -> Any:
        return self._change(w.key(i), lambda old: w.dumps(w.ten_changes(json.loads(old))))

    def compare_and_set(self, n: int) -> bool:
        key = self._key("cas")
        old, cas = self.client.gets(key)
        if old is None or json.loads(old) != {"v": n}:
            return False
        return bool(self.client.cas(key, w.dumps({"v": n + 1}), cas))

    def close(self) -> None:
        self.client.close()

"""One side of ``python -m bench.pages``, run as a script by it.

``page_rounds.py ADAPTER CONFIG_JSON SCOPE``: opens ``ADAPTER`` through the revision of
iii-state first on ``PYTHONPATH``, fills ``SCOPE`` with 1,000 entries, prints one JSON line
naming the core and plugin files it loaded, then answers each request line
``{"page": "first"|"next", "seconds": S, "deletes": bool}`` with
``{"pages_per_s": …, "cpu_us": …, "pages": …}``:

- ``first``: ``store.list_entries(SCOPE, None, 100)``, the first page of a walk;
- ``next``: ``store.list_entries(SCOPE, cursor, 100)`` with the ``next_cursor`` of one first
  page taken before the round: the second page of the same walk;
- ``deletes``: each page comes after one untimed ``store.delete`` through the same store of an
  entry of another scope (set beforehand, 500 at a time, also untimed).

Both revisions offer ``list_entries(scope, cursor, limit)`` with the same meaning; only what the
page holds differs (this tree's adds ``offset`` and ``total``). Pages are taken until ``S``
seconds of them are spent; pages/s counts only time spent in ``list_entries``, CPU time is this
process's (the client's side) per page over the whole round.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import iii_state_core
from iii_state_core import open_store

LISTED, PAGE, REFILL = 1000, 100, 500
VALUE = {"n": 1, "name": "alice", "tags": ["a", "b"]}


class Pager:
    def __init__(self, adapter: str, config: dict[str, Any], scope: str) -> None:
        self.store = open_store(adapter=adapter, adapter_config=config)
        self.scope = scope
        self.deleted = 0
        for i in range(LISTED):
            self.store.set(scope, f"e{i:04d}", VALUE)

    def page(self, cursor: str | None) -> Any:
        page = self.store.list_entries(self.scope, cursor, PAGE)
        if len(page.entries) != PAGE:
            raise SystemExit(f"a page held {len(page.entries)} entries, not {PAGE}")
        return page

    def _delete_one(self) -> None:
        if self.deleted % REFILL == 0:
            for j in range(self.deleted, self.deleted + REFILL):
                self.store.set(f"{self.scope}-deleted", f"d{j}", 1)
        if self.store.delete(f"{self.scope}-deleted", f"d{self.deleted}") is None:
            raise SystemExit(f"delete d{self.deleted} found nothing")
        self.deleted += 1

    def round(self, which: str, seconds: float, deletes: bool) -> dict[str, float]:
        cursor = None if which == "first" else self.page(None).next_cursor
        if which == "next" and cursor is None:
            raise SystemExit("a first page of the listed scope came back without a next_cursor")
        spent = 0.0
        pages = 0
        cpu_started = time.process_time()
        while spent < seconds or pages == 0:
            if deletes:
                self._delete_one()
            started = time.perf_counter()
            self.page(cursor)
            spent += time.perf_counter() - started
            pages += 1
        cpu = time.process_time() - cpu_started
        return {"pages_per_s": pages / spent, "cpu_us": cpu / pages * 1e6, "pages": pages}


def _plugin_file(adapter: str) -> str:
    package = {"kv": "iii_state_kvfile", "redis": "iii_state_redis", "memcached": "iii_state_memcached",
               "dynamodb": "iii_state_dynamodb"}[adapter]  # fmt: skip
    module = __import__(package)
    return str(module.__file__)


def main(adapter: str, config: str, scope: str) -> None:
    pager = Pager(adapter, json.loads(config), scope)
    for _ in range(20):  # warm up (caches, and memcached's first count's probe)
        pager.page(None)
    loaded = {"core": iii_state_core.__file__, "plugin": _plugin_file(adapter)}
    print(json.dumps(loaded), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("page") == "stop":
            break
        answer = pager.round(request["page"], float(request["seconds"]), bool(request["deletes"]))
        print(json.dumps(answer), flush=True)
    pager.store.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])

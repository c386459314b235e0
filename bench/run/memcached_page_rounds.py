"""One side of ``python -m bench.memcached_pages``, run as a script by it.

``memcached_page_rounds.py SERVER PREFIX MODE``: fills a 1,000-key scope through the revision
of iii-state first on ``PYTHONPATH``, then answers each ``N`` read from stdin with the seconds
that N first pages of 100 took (``MODE`` ``delete``: each page comes after one untimed delete
through the same store, in another scope). Prints ``ready <core's path>`` first.
"""

from __future__ import annotations

import sys
import time

import iii_state_core
from iii_state_core import open_store

LISTED, PAGE, REFILL = 1000, 100, 500
VALUE = {"n": 1, "name": "alice", "tags": ["a", "b"]}


def main(server: str, prefix: str, mode: str) -> None:
    store = open_store(adapter="memcached", adapter_config={"servers": [server], "key_prefix": prefix})
    for i in range(LISTED):
        store.set("listed", f"e{i:04d}", VALUE)
    deleted = 0
    for _ in range(20):  # warm up (and the first count's probe)
        store.list_entries("listed", None, PAGE)
    print("ready", iii_state_core.__file__, flush=True)
    for line in sys.stdin:
        spent = 0.0
        for _ in range(int(line)):
            if mode == "delete":
                if deleted % REFILL == 0:
                    for j in range(deleted, deleted + REFILL):
                        store.set("deleted", f"d{j}", 1)
                if store.delete("deleted", f"d{deleted}") is None:
                    raise SystemExit(f"delete d{deleted} found nothing")
                deleted += 1
            started = time.perf_counter()
            page = store.list_entries("listed", None, PAGE)
            spent += time.perf_counter() - started
            if len(page.entries) != PAGE:
                raise SystemExit(f"a first page held {len(page.entries)} entries")
        print(spent, flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])

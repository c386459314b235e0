"""Deletes racing sets and updates: every value is removed or replaced exactly once.

The suite races sets, increments and compare-and-set; these add ``delete`` to the mix, the
call the engine got wrong (read-then-delete). Each worker thread opens its own store, so each
has its own connections and its own remembered cas values, like separate processes.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from iii_state_core import StateStore

WORKERS = 6


def _run(workers: list[Callable[[], None]]) -> None:
    errors: list[BaseException] = []

    def guard(work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guard, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def test_deletes_racing_increments_lose_nothing(
    memcached_servers_pair: list[str], open_memcached: Callable[..., StateStore]
) -> None:
    first = open_memcached(memcached_servers_pair)
    prefix = first.adapter.describe().rsplit("'", 2)[-2]
    stores = [open_memcached(memcached_servers_pair, key_prefix=prefix) for _ in range(WORKERS)]
    added = [0] * WORKERS
    removed = [0] * WORKERS
    increment = [{"type": "increment", "path": "n", "by": 1}]

    def worker(me: int) -> Callable[[], None]:
        def work() -> None:
            rng = random.Random(me)
            for _ in range(150):
                if rng.random() < 0.8:
                    stores[me].update("race", "counter", increment)
                    added[me] += 1
                else:
                    gone: Any = stores[me].delete("race", "counter")
                    removed[me] += 0 if gone is None else gone["n"]

        return work

    _run([worker(me) for me in range(WORKERS)])
    final: Any = first.get("race", "counter")
    left = 0 if final is None else final["n"]
    assert sum(removed) + left == sum(added), "an increment was lost or counted twice around a delete"


def test_sets_and_deletes_form_one_unbroken_chain(
    memcached_servers: list[str], open_memcached: Callable[..., StateStore]
) -> None:
    first = open_memcached(memcached_servers)
    prefix = first.adapter.describe().rsplit("'", 2)[-2]
    stores = [open_memcached(memcached_servers, key_prefix=prefix) for _ in range(WORKERS)]
    written: list[list[str]] = [[] for _ in range(WORKERS)]
    returned: list[list[Any]] = [[] for _ in range(WORKERS)]

    def worker(me: int) -> Callable[[], None]:
        def work() -> None:
            rng = random.Random(100 + me)
            for i in range(120):
                if rng.random() < 0.75:
                    written[me].append(repr([me, i]))
                    returned[me].append(stores[me].set("chain", "k", [me, i]).old_value)
                else:
                    returned[me].append(stores[me].delete("chain", "k"))

        return work

    _run([worker(me) for me in range(WORKERS)])
    olds = Counter(repr(v) for values in returned for v in values if v is not None)
    twice = [v for v, n in olds.items() if n > 1]
    assert not twice, f"values replaced or removed twice: {twice[:3]}"
    final = first.get("chain", "k")
    expected = {v for values in written for v in values} - ({repr(final)} if final is not None else set())
    assert set(olds) == expected, "every value but the last is replaced or removed, exactly once"

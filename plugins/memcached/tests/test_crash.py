"""A writer process killed (SIGKILL) at random points leaves listings that match the values.

Whatever step the kill interrupts — indexing, storing, unindexing — afterwards every readable
value is listed and nothing is listed that cannot be read.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from iii_state_conformance import processes
from iii_state_conformance.processes import StoreSpec

from iii_state_core import StateStore

KEYS = [f"churn-{n:04d}" for n in range(300)]


def test_listings_match_the_values_after_writers_are_killed(
    memcached_servers: list[str], open_memcached: Callable[..., StateStore]
) -> None:
    store = open_memcached(memcached_servers)
    spec = StoreSpec.of(store)
    assert spec is not None
    ctx = processes.context()
    rng = random.Random(7)
    for _ in range(4):
        stop, started, queue = ctx.Event(), ctx.Event(), ctx.Queue()
        writer = ctx.Process(
            target=processes._child,
            args=(processes.churn, spec, queue, ("crash", "churn-", stop, started)),
            daemon=True,
        )
        writer.start()
        try:
            assert started.wait(60), "the writer process did not start"
            time.sleep(rng.uniform(0.05, 0.3))
        finally:
            writer.kill()
            writer.join(10)
        readable = {k for k in KEYS if store.get("crash", k) is not None}
        listed = set(store.list_keys("crash"))
        assert readable - listed == set(), "a stored value is missing from the listing"
        assert listed - readable == set(), "the listing shows a key without a value"
        assert {k for k, _ in _walk(store)} == readable
        assert ("crash" in store.list_groups()) == bool(readable)


def _walk(store: StateStore) -> list[tuple[str, object]]:
    entries: list[tuple[str, object]] = []
    page = store.list_entries("crash", None, 50)
    entries += page.entries
    while not page.done:
        page = store.list_entries("crash", page.next_cursor, 50)
        entries += page.entries
    return entries

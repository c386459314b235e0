"""Many processes creating keys in one scope at once: every key is then found by a walk.

Eight writers race on the same index leaves (and on their splits) of one scope; the walk that
follows must return each of the 20,000 keys exactly once, with its own value.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from iii_state_conformance import processes
from iii_state_conformance.processes import StoreSpec

from iii_state_core import StateStore

WRITERS = 8
PER_WRITER = 2500


def test_keys_created_by_eight_processes_at_once_are_all_walked(
    memcached_servers_pair: list[str], open_memcached: Callable[..., StateStore]
) -> None:
    store = open_memcached(memcached_servers_pair)
    spec = StoreSpec.of(store)
    assert spec is not None
    barrier = processes.context().Barrier(WRITERS)
    counts = processes.run_processes(
        spec,
        processes.create_keys,
        [("crowd", f"w{me}-", PER_WRITER, barrier) for me in range(WRITERS)],
        timeout=300,
    )
    assert counts == [PER_WRITER] * WRITERS
    walked: list[tuple[str, object]] = []
    page = store.list_entries("crowd", None, 500)
    walked += page.entries
    while not page.done:
        page = store.list_entries("crowd", page.next_cursor, 500)
        walked += page.entries
    expected = {f"w{me}-{i:05d}": i for me in range(WRITERS) for i in range(PER_WRITER)}
    seen = Counter(key for key, _ in walked)
    assert set(seen) == set(expected), f"missing {len(set(expected) - set(seen))} keys"
    assert max(seen.values()) == 1, "a key came twice"
    assert all(value == expected[key] for key, value in walked)
    assert store.list_groups() == ["crowd"]

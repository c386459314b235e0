"""compare-and-set over a remembered item: one cas store, and never a wrong answer when stale.

The raw client's compare-and-swap is ``gets`` + ``cas`` (two round trips). When this process
stored the entry last, the adapter already holds its item and cas, so the swap is one ``cas``
store; when another store changed the entry meanwhile, that store fails and the swap falls back
to reading and comparing, which must then answer from what the server holds.
"""

from __future__ import annotations

import secrets

from iii_state_core import StateStore, open_store


def _counts(store: StateStore) -> dict[bytes, int]:
    stats = store.adapter._cluster.nodes[0].stats()  # type: ignore[attr-defined]
    return {name: int(stats[name]) for name in (b"cmd_get", b"cas_hits", b"cas_misses", b"cmd_set")}


def test_a_swap_over_the_item_it_stored_is_one_cas_store_and_a_stale_one_reads(
    memcached_servers: list[str],
) -> None:
    config = {"servers": memcached_servers, "key_prefix": f"t{secrets.token_hex(4)}:"}
    with open_store(adapter="memcached", adapter_config=config) as ours, open_store(
        adapter="memcached", adapter_config=config
    ) as other:
        _swaps(ours, other)


def _swaps(ours: StateStore, other: StateStore) -> None:
    assert ours.limits.value_tokens
    ours.set("s", "k", {"v": 0})
    assert ours.compare_and_set("s", "k", {"v": 0}, {"v": 1}).swapped  # the item is known now

    before = _counts(ours)
    for n in range(1, 21):
        assert ours.compare_and_set("s", "k", {"v": n}, {"v": n + 1}).swapped
    after = _counts(ours)
    assert after[b"cmd_get"] == before[b"cmd_get"], "a swap over a known item read the entry"
    assert after[b"cas_hits"] - before[b"cas_hits"] == 20
    assert after[b"cas_misses"] == before[b"cas_misses"]

    # another client (its own remembered cas values) rewrites the entry: ours is stale now
    assert other.compare_and_set("s", "k", {"v": 21}, {"v": 100}).swapped
    missed = ours.compare_and_set("s", "k", {"v": 21}, {"v": 22})
    assert (missed.swapped, missed.current) == (False, {"v": 100})
    assert ours.get("s", "k") == {"v": 100}
    # the same bytes written again by the other client: the remembered cas is stale, the
    # bytes match; the swap must still apply (read, compare, cas)
    assert other.compare_and_set("s", "k", {"v": 100}, {"v": 21}).swapped
    assert ours.compare_and_set("s", "k", {"v": 21}, {"v": 22}).swapped
    assert other.get("s", "k") == {"v": 22}

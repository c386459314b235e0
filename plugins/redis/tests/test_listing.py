"""Listing: pages of at most ``limit`` over HSCAN, resumable inside a batch, safe across resizes.

The paging plan is checked against scripted HSCAN replies (so a table resize between two
calls can be staged exactly), then against real hashes in both encodings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis
from iii_state_redis.layout import Layout
from iii_state_redis.listing import MIN_COUNT, Run, ScanCursor, scan_plan
from iii_state_redis.scripts import SCAN_PAGE
from iii_state_testsupport import RedisServer
from redis_helpers import command_calls, unique

from iii_state_core import InvalidCursorError, StateStore, open_store
from iii_state_core.paging import local_cursor

LAYOUT = Layout.for_prefix("state:")


Replies = Callable[[int, int], tuple[int, dict[bytes, bytes]]]


def _drive(plan: Any, replies: Replies) -> tuple[Any, list[int]]:
    """Run a scan plan; ``replies(cursor, count)`` plays the server. Returns the page, cursors sent."""
    sent: list[int] = []
    request = next(plan)
    while True:
        assert isinstance(request, Run) and request.script is SCAN_PAGE
        cursor, count, _now = request.args
        assert isinstance(cursor, int) and isinstance(count, int)
        sent.append(cursor)
        try:
            request = plan.send(replies(cursor, count))
        except StopIteration as stop:
            return stop.value, sent


def _batch(*keys: str) -> dict[bytes, bytes]:
    return {k.encode(): b"1" for k in keys}


def test_a_batch_larger_than_the_limit_is_split_and_resumed_after_the_last_key() -> None:
    whole = _batch(*"gfedcba")  # a listpack hash: one call returns it all, cursor 0
    page, sent = _drive(scan_plan(LAYOUT, "s", None, 3), lambda c, n: (0, whole))
    assert [k for k, _ in page[0]] == ["a", "b", "c"] and sent == [0]
    assert ScanCursor.decode(page[1]) == ScanCursor(0, "c", 0)
    page, _ = _drive(scan_plan(LAYOUT, "s", page[1], 3), lambda c, n: (0, whole))
    assert [k for k, _ in page[0]] == ["d", "e", "f"]
    page, _ = _drive(scan_plan(LAYOUT, "s", page[1], 3), lambda c, n: (0, whole))
    assert [k for k, _ in page[0]] == ["g"] and page[1] is None


def test_small_batches_are_gathered_into_one_page() -> None:
    table = {0: (5, _batch("a")), 5: (3, _batch("b", "c")), 3: (0, _batch("d"))}
    page, sent = _drive(scan_plan(LAYOUT, "s", None, 10), lambda c, n: table[c])
    assert [k for k, _ in page[0]] == ["a", "b", "c", "d"] and page[1] is None and sent == [0, 5, 3]


def test_a_page_that_ends_on_a_batch_boundary_continues_at_the_next_cursor() -> None:
    table = {0: (5, _batch("a", "b")), 5: (0, _batch("c"))}
    page, _ = _drive(scan_plan(LAYOUT, "s", None, 2), lambda c, n: table[c])
    assert ScanCursor.decode(page[1]) == ScanCursor(5)
    page, sent = _drive(scan_plan(LAYOUT, "s", page[1], 2), lambda c, n: table[c])
    assert [k for k, _ in page[0]] == ["c"] and sent == [5]


def test_a_resized_table_returns_the_repeated_batch_whole() -> None:
    """HSCAN returned cursor 4 the first time; after a shrink the same call returns 2 and holds
    ``b`` (folded in from a bucket not yet visited). ``b`` sorts before the last key returned,
    so skipping by key would lose it: a changed cursor means no skipping."""
    first = scan_plan(LAYOUT, "s", None, 2)
    page, _ = _drive(first, lambda c, n: (4, _batch("a", "c", "e")))
    assert [k for k, _ in page[0]] == ["a", "c"]
    shrunk = _batch("a", "b", "c", "e")
    page, _ = _drive(scan_plan(LAYOUT, "s", page[1], 2), lambda c, n: (2, shrunk))
    assert [k for k, _ in page[0]] == ["a", "b"]  # repeats allowed, losses not
    page, _ = _drive(scan_plan(LAYOUT, "s", page[1], 2), lambda c, n: (2, shrunk) if c == 0 else (0, {}))
    assert [k for k, _ in page[0]] == ["c", "e"]


def test_an_unchanged_table_skips_what_was_returned() -> None:
    page, _ = _drive(scan_plan(LAYOUT, "s", None, 2), lambda c, n: (4, _batch("a", "c", "e")))
    again = _batch("a", "b", "c", "e")
    page, _ = _drive(scan_plan(LAYOUT, "s", page[1], 2), lambda c, n: (4, again) if c == 0 else (0, {}))
    assert [k for k, _ in page[0]] == ["e"]  # b arrived after the walk began: optional


def test_the_count_hint_follows_the_room_left_in_the_page() -> None:
    counts: list[int] = []

    def replies(cursor: int, count: int) -> tuple[int, dict[bytes, bytes]]:
        counts.append(count)
        return (7, _batch(f"k{cursor}")) if cursor < 3 else (0, {})

    _drive(scan_plan(LAYOUT, "s", None, 500), replies)
    assert counts[0] == 500 and counts[1] == 499
    counts.clear()
    _drive(scan_plan(LAYOUT, "s", None, 1), lambda c, n: (counts.append(n), (0, {}))[1])
    assert counts == [MIN_COUNT]


@pytest.mark.parametrize(
    "inner", ["", "garbage", "[1,2]", "[-1,null,null]", '[1,2,"a",4]', '[0,null,"x"]', "[true,null,null]"]
)
def test_a_forged_cursor_is_a_clear_error(redis_url: str, inner: str) -> None:
    with open_store(adapter="redis", adapter_config={"redis_url": redis_url}) as store:
        scope = unique("cursor")
        with pytest.raises(InvalidCursorError, match="redis adapter"):
            store.list_entries(scope, local_cursor(scope, inner))


def _walk(store: StateStore, scope: str, limit: int) -> list[str]:
    keys: list[str] = []
    cursor = None
    while True:
        page = store.list_entries(scope, cursor, limit)
        assert len(page.entries) <= limit
        keys += [k for k, _ in page.entries]
        if page.done:
            return keys
        cursor = page.next_cursor


@pytest.mark.parametrize(("entries", "encoding"), [(100, b"listpack"), (3000, b"hashtable")])
def test_real_hashes_page_within_the_limit(
    redis_server_factory: Callable[..., RedisServer], entries: int, encoding: bytes
) -> None:
    server = redis_server_factory()
    scope = unique("pages")
    with open_store(adapter="redis", adapter_config={"redis_url": server.url}) as store:
        raw = redis.Redis.from_url(server.url)
        raw.hset(f"state:{scope}", mapping={f"k{i:05d}": b"1" for i in range(entries)})
        assert raw.object("encoding", f"state:{scope}") == encoding
        raw.close()
        for limit in (1, 7, 100, 1000):
            keys = _walk(store, scope, limit)
            assert set(keys) == {f"k{i:05d}" for i in range(entries)}
            if encoding == b"listpack":  # one batch, skipped by key: no repeats at all
                assert not [k for k, n in Counter(keys).items() if n > 1]
        store.list_groups()
    # Listing never loads a whole hash or keyspace.
    assert command_calls(server, "hgetall") == 0 and command_calls(server, "keys") == 0
    assert command_calls(server, "hscan") > 0 and command_calls(server, "scan") > 0


def test_list_groups_covers_every_cluster_primary(redis_cluster_url: str) -> None:
    scopes = [unique(f"g{i}") for i in range(60)]
    with open_store(adapter="redis", adapter_config={"redis_url": redis_cluster_url}) as store:
        for scope in scopes:
            store.set(scope, "k", 1)
        try:
            holders = set()
            for scope in scopes:
                holders.add(store.adapter._client.get_node_from_key(f"state:{scope}").name)  # type: ignore[attr-defined]
            assert len(holders) == 3, "the scopes did not spread over the primaries"
            groups = store.list_groups()
            assert set(scopes) <= set(groups) and len(groups) == len(set(groups))
        finally:
            for scope in scopes:
                store.delete(scope, "k")

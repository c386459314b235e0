"""update = the core's op engine + one swap script, from remembered bytes when there are any.

A remembered value is a hint: when someone else changed the entry the swap fails, hands back
what is there, and the next swap starts from that.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest
from iii_state_redis.layout import Layout
from iii_state_redis.listing import Run
from iii_state_redis.updating import Pause, Recent, Swap, modify_plan, swap_result
from iii_state_testsupport import RedisServer
from redis_helpers import command_calls, reset_stats, unique

from iii_state_core import ConflictError, open_store
from iii_state_core.retry import MAX_ATTEMPTS

NAMES = Layout.for_prefix("").names("h")  # the hash is b"h", as the Recent entries below


def _run(plan: Generator[Any, Any, Any], server: Callable[[Any], Any]) -> tuple[Any, list[Any]]:
    """Drive ``plan``; ``server(request)`` plays Redis (SWAP replies as the script returns them)."""
    requests: list[Any] = []
    try:
        request = next(plan)
        while True:
            requests.append(request)
            reply = server(request)
            request = plan.send(swap_result(reply) if isinstance(request, Swap) else reply)
    except StopIteration as stop:
        return stop.value, requests


def _plus_one(raw: bytes | None) -> bytes:
    return str(int(raw or b"0") + 1).encode()


def test_an_unknown_entry_is_read_then_swapped() -> None:
    recent = Recent()
    replies = {Run: b"4", Swap: [1]}
    result, requests = _run(modify_plan(recent, NAMES, b"f", _plus_one), lambda r: replies[type(r)])
    assert result == (b"4", b"5")
    assert [type(r) for r in requests] == [Run, Swap] and requests[1].expected == b"4"


def test_a_remembered_entry_is_swapped_at_once_and_a_stale_one_costs_one_more_swap() -> None:
    recent = Recent()
    recent.put(b"h", b"f", b"1")
    result, requests = _run(modify_plan(recent, NAMES, b"f", _plus_one), lambda r: [1])
    assert result == (b"1", b"2") and [type(r) for r in requests] == [Swap]
    swaps = iter([[0, b"7"], [1]])  # someone wrote 7 meanwhile
    result, requests = _run(modify_plan(recent, NAMES, b"f", _plus_one), lambda r: next(swaps))
    assert result == (b"7", b"8") and [r.expected for r in requests] == [b"1", b"7"]


def test_a_remembered_missing_entry_expects_missing() -> None:
    recent = Recent()
    recent.put(b"h", b"f", None)
    result, requests = _run(modify_plan(recent, NAMES, b"f", _plus_one), lambda r: [1])
    assert result == (None, b"1") and requests[0].expected is None


def test_endless_races_give_up_with_a_conflict() -> None:
    counter = iter(range(10**6))

    def always_changed(request: Any) -> Any:
        return None if isinstance(request, Pause) else [0, str(next(counter)).encode()]

    recent = Recent()
    recent.put(b"h", b"f", b"0")
    with pytest.raises(ConflictError, match="gave up"):
        _run(modify_plan(recent, NAMES, b"f", _plus_one), always_changed)
    assert next(counter) == MAX_ATTEMPTS


def test_the_memory_of_recent_values_is_bounded() -> None:
    recent = Recent(max_entries=3, max_bytes=64 * 100)
    for i in range(5):
        recent.put(b"h", str(i).encode(), b"v")
    assert [recent.get(b"h", str(i).encode())[0] for i in range(5)] == [False, False, True, True, True]
    recent.put(b"h", b"big", b"x" * 101)  # above max_bytes / 64: not kept at all
    assert recent.get(b"h", b"big") == (False, None)
    recent.put(b"h", b"4", b"y" * 100)
    recent.put(b"h", b"5", b"y" * 100)
    recent.forget(b"h", b"5")
    assert recent.get(b"h", b"5") == (False, None) and recent.get(b"h", b"4") == (True, b"y" * 100)


def test_a_stale_hint_on_a_real_server(redis_server_factory: Callable[..., RedisServer]) -> None:
    server = redis_server_factory()
    scope = unique("stale")
    with open_store(adapter="redis", adapter_config={"redis_url": server.url}) as store:
        store.set(scope, "n", {"n": 0})
        reset_stats(server)
        assert store.update(scope, "n", [{"type": "increment", "path": "n", "by": 1}]).new_value == {"n": 1}
        assert (command_calls(server, "evalsha"), command_calls(server, "hget")) == (1, 1)  # one trip
        server.command("HSET", f"state:{scope}", "n", '{"n":41}')  # another writer
        reset_stats(server)
        result = store.update(scope, "n", [{"type": "increment", "path": "n", "by": 1}])
        assert (result.old_value, result.new_value) == ({"n": 41}, {"n": 42})
        assert command_calls(server, "evalsha") == 2  # the stale swap, then the right one
        store.delete(scope, "n")
        result = store.update(scope, "n", [])
        assert (result.old_value, result.new_value) == (None, {})

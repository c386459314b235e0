"""A ``state::batch`` round goes out as one pipeline (one per Cluster node), sync and async alike."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from iii_state_redis import AsyncRedisAdapter, RedisAdapter
from redis_helpers import unique

from iii_state_core import StateError, open_async_store, open_store

INC = [{"type": "increment", "path": "i", "by": 1}]


def _ops(scopes: list[str]) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = []
    for i, scope in enumerate(scopes):
        ops += [
            {"op": "set", "scope": scope, "key": "k", "value": {"i": i}},
            {"op": "compare-and-set", "scope": scope, "key": "c", "value": i},
            {"op": "get", "scope": scope, "key": "k"},
            {"op": "update", "scope": scope, "key": "k", "ops": INC},
            {"op": "delete", "scope": scope, "key": "c"},
        ]
    return ops


def _expected(scopes: list[str]) -> list[Any]:
    out: list[Any] = []
    for i, _ in enumerate(scopes):
        out += [{"old_value": None, "new_value": {"i": i}}, {"swapped": True}, {"i": i},
                {"old_value": {"i": i}, "new_value": {"i": i + 1}}, i]  # fmt: skip
    return out


def test_batch_rounds_are_pipelines_per_node_sync_and_async(
    redis_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[int] = []
    for cls in (RedisAdapter, AsyncRedisAdapter):
        real = cls._send

        def spy(self: Any, calls: Any, group: list[int], out: list[Any], real: Any = real) -> Any:
            sent.append(len(group))
            return real(self, calls, group, out)

        monkeypatch.setattr(cls, "_send", spy)
    scopes = [unique(f"batch{i}") for i in range(12)]
    with open_store(adapter="redis", adapter_config=redis_config) as store:
        answers = store.trigger({"function_id": "state::batch", "payload": {"ops": _ops(scopes)}})
        assert answers == _expected(scopes)
        nodes = 3 if redis_config["cluster"] else 1
        # set/cas/get/update/delete of one entry run one after another: rounds of distinct entries
        assert 1 <= len(sent) and max(sent) <= 24 and len(sent) <= 6 * nodes, sent
        assert store.get_many(scopes[0], ["k", "c"]) == {"k": {"i": 1}, "c": None}
        sent.clear()
        store.delete_many(scopes[1], ["k"])
        assert sent == [1]

    async def main() -> list[Any]:
        async with open_async_store(adapter="redis", adapter_config=redis_config) as store:
            assert isinstance(store.async_adapter, AsyncRedisAdapter)
            return await store.trigger({"function_id": "state::batch", "payload": {"ops": _ops(scopes[2:])}})

    sent.clear()
    with open_store(adapter="redis", adapter_config=redis_config) as store:
        store.delete_many(scopes[2], ["k"])
        for scope in scopes[3:]:
            store.delete(scope, "k")
    answers = asyncio.run(main())
    assert answers == _expected(scopes[2:])
    assert sent and max(sent) <= 20


def test_transactions_commit_in_one_slot_and_cross_slot_ones_are_refused_on_a_cluster(
    redis_config: dict[str, Any],
) -> None:
    tag = unique("t")
    one, two = f"{{{tag}}}a", f"{{{tag}}}b"  # one hash tag: one slot
    apart = [unique("x"), unique("y"), unique("z")]
    ops = [{"op": "set", "scope": s, "key": "k", "value": v} for s, v in ((one, 1), (two, 2))]

    async def main() -> Any:
        async with open_async_store(adapter="redis", adapter_config=redis_config) as store:
            return await store.trigger({"function_id": "state::transact", "payload": {"ops": ops}})

    assert asyncio.run(main())["committed"] is True
    with open_store(adapter="redis", adapter_config=redis_config) as store:
        assert (store.get(one, "k"), store.get(two, "k")) == (1, 2)
        spread = [{"op": "set", "scope": s, "key": "k", "value": 0} for s in apart]
        if redis_config["cluster"]:
            with pytest.raises(StateError) as info:
                store.transact(spread)
            assert info.value.code == "UNSUPPORTED" and "one slot" in str(info.value)
            assert [store.get(s, "k") for s in apart] == [None] * 3
        else:
            assert store.transact(spread).committed and [store.get(s, "k") for s in apart] == [0] * 3


def test_a_transaction_of_sets_and_deletes_is_one_script_and_a_respelled_condition_reads_first(
    redis_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No read round before the script unless a condition missed on bytes but holds as JSON."""
    sent: list[str] = []
    real = RedisAdapter._call

    def spy(self: Any, kind: Any, what: str, command: Any) -> Any:
        sent.append(what.split(" of ")[0])
        return real(self, kind, what, command)

    monkeypatch.setattr(RedisAdapter, "_call", spy)
    tag = unique("one")
    a, b = f"{{{tag}}}a", f"{{{tag}}}b"
    with open_store(adapter="redis", adapter_config=redis_config) as store:
        store.set(a, "k", {"y": 1, "x": 2})
        store.set(b, "gone", 5)
        sent.clear()
        ops = [{"op": "set", "scope": a, "key": "k", "value": 3}, {"op": "delete", "scope": b, "key": "gone"}]
        held = [{"scope": a, "key": "k", "expected": {"y": 1, "x": 2}}, {"scope": b, "key": "none"}]
        done = store.transact(ops, held).to_wire()
        assert done == {"committed": True, "results": [{"old_value": {"y": 1, "x": 2}, "new_value": 3}, 5]}
        assert sent == ["script transact"]
        sent.clear()
        respelled = [{"scope": a, "key": "k", "expected": 3.0}]  # 3.0 is not 3: a real miss, no read
        missed = store.transact(ops, respelled).to_wire()
        assert missed == {"committed": False, "failed_condition": 0, "current": 3}
        assert sent == ["script transact"]
        sent.clear()
        store.set(b, "n", None)
        sent.clear()
        absent = [{"scope": b, "key": "n"}]  # a stored null holds for "absent": read, then the script
        again = store.transact(ops, absent).to_wire()
        assert again == {"committed": True, "results": [{"old_value": 3, "new_value": 3}, None]}
        # the read round: one pipeline per node, again by source where the server lacked the script
        assert sent[0] == sent[-1] == "script transact" and set(sent[1:-1]) == {"pipeline"}, sent


def test_a_transaction_over_many_scopes_and_names_with_separators_answers_each_write(
    redis_config: dict[str, Any],
) -> None:
    """The script's writes travel as one argument (``<scope byte><lengths>:<expires>:`` then
    field and data) and its olds come back as one string: scope numbers that are the separator
    bytes (":" is 58, "-" is 45), names and values holding them, deletes, deadlines and writes
    that replaced nothing all read back as the single calls answer."""
    tag = unique("wire")
    scopes = [f"{{{tag}}}s{i}" for i in range(60)]
    keys = [f"k:{i}-:{'-' * (i % 3)}" for i in range(60)]
    with open_store(adapter="redis", adapter_config=redis_config) as store:
        for i in range(0, 60, 2):
            store.set(scopes[i], keys[i], f"old:{i}-" * (i % 4))
        ops: list[dict[str, Any]] = []
        for i, (scope, key) in enumerate(zip(scopes, keys, strict=True)):
            if i % 5 == 4:
                ops.append({"op": "delete", "scope": scope, "key": key})
            else:
                ops.append({"op": "set", "scope": scope, "key": key, "value": {"v": f"-:{i}:"}})
        ops[7]["ttl_ms"] = 60_000
        done = store.transact(ops)
        assert done.committed
        for i, result in enumerate(done.results):
            old = f"old:{i}-" * (i % 4) if i % 2 == 0 else None
            if i % 5 == 4:
                assert result == old, i
            else:
                assert (result.old_value, result.new_value) == (old, {"v": f"-:{i}:"}), i
        assert [store.get(s, k) for s, k in zip(scopes, keys, strict=True)] == [
            None if i % 5 == 4 else {"v": f"-:{i}:"} for i in range(60)
        ]
        assert store.ttl(scopes[7], keys[7]).ttl_ms is not None
        assert store.ttl(scopes[8], keys[8]).ttl_ms is None
        # one scope of plain sets (one HMGET, one HSET), then the same once the scope holds a deadline
        one = scopes[1]
        store.set(one, "had", "x:")
        sets = [{"op": "set", "scope": one, "key": k, "value": k} for k in ("had", "new:", keys[1])]
        assert [(r.old_value, r.new_value) for r in store.transact(sets).results] == [
            ("x:", "had"), (None, "new:"), ({"v": "-:1:"}, keys[1])
        ]
        store.set(one, "dated", 1, ttl_ms=1)
        time.sleep(0.01)  # expired: every write of the scope now reads its deadline
        sets.append({"op": "set", "scope": one, "key": "dated", "value": 2})
        assert [r.old_value for r in store.transact(sets).results] == ["had", "new:", keys[1], None]
        assert store.get_many(one, ["had", "new:", keys[1], "dated"]) == {
            "had": "had", "new:": "new:", keys[1]: keys[1], "dated": 2
        }


@pytest.mark.parametrize("expiry_events", [False, True])
def test_a_round_of_reads_plain_writes_or_swaps_is_one_script_per_scope_with_the_one_by_one_answers(
    redis_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch, expiry_events: bool
) -> None:
    from iii_state_redis import pipelining

    merged: list[int] = []
    real = pipelining.units

    def spy(*args: Any) -> Any:
        units = real(*args)
        merged.extend(len(places) for _, places, is_merged in units if is_merged)
        return units

    monkeypatch.setattr(pipelining, "units", spy)
    monkeypatch.setattr("iii_state_redis.adapter.units", spy)
    a, b = unique("ra"), unique("rb")
    adapter = RedisAdapter.open({**redis_config, "expiry_events": expiry_events})
    assert isinstance(adapter, RedisAdapter)
    try:
        adapter.write(a, "old", b"1", 1)  # long past its deadline: missing, yet stored
        adapter.write(a, "é", b"2")
        adapter.write(b, "x", b"3", 2**52)
        reads = [("read", (a, "old")), ("read", (a, "é")), ("read_versioned", (b, "x")),
                 ("read", (a, "none"))]  # fmt: skip
        assert adapter.run_many(reads) == [None, b"2", (b"3", b"3"), None]
        assert sorted(merged) == [1, 3]  # one script per scope
        merged.clear()
        writes = [("write", (a, "old", b"4")), ("write", (a, "é", b"5")), ("write", (b, "x", b"6")),
                  ("write", (a, "d", b"7")), ("write", (a, "d", b"8"))]  # fmt: skip
        assert adapter.run_many(writes) == [None, b"2", b"3", None, b"7"]  # in order within a scope
        assert sorted(merged) == [1, 4]
        stored = [adapter.read(s, k) for s, k in [(a, "old"), (a, "é"), (b, "x"), (a, "d")]]
        assert stored == [b"4", b"5", b"6", b"8"]
        assert adapter.read_expiry(b, "x") == (True, None)  # a plain write clears the deadline
        merged.clear()
        adapter.write(a, "past", b"0", 1)
        adapter.write(b, "timed", b"1", 2**52)
        swaps = [("write_if", (a, "old", b"9", None)), ("write_if", (a, "é", b"10", b"5")),
                 ("write_if", (b, "timed", b"11", b"1")), ("write_if", (a, "past", b"12", None)),
                 ("write_if", (a, "d", b"13", b"7"))]  # fmt: skip
        assert adapter.run_many(swaps) == [False, True, True, True, False]
        assert sorted(merged) == [1, 4]
        got = [adapter.read(s, k) for s, k in [(a, "old"), (a, "é"), (b, "timed"), (a, "past"), (a, "d")]]
        assert got == [b"4", b"10", b"11", b"12", b"8"]
        assert adapter.read_expiry(b, "timed") == (True, 2**52)  # a swap keeps the deadline
        assert adapter.read_expiry(a, "past") == (True, None)  # an expired one has none to keep
        kept = sorted(t for t in adapter.take_expired(100) if t[0] == a)
        was = [(a, "old", b"1"), (a, "past", b"0")] if expiry_events else []
        assert [(t[0], t[1], t[2]) for t in kept] == was
    finally:
        adapter.close()


def test_a_server_that_lost_its_scripts_gets_them_by_source_once(
    redis_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rounds go out as EVALSHA: after a SCRIPT FLUSH (as after a restart) a NOSCRIPT reply sends
    that command again by source, which loads the script for the following rounds."""
    import iii_state_redis.adapter as sync_module

    pipelines: list[int] = []
    real = sync_module.spread

    def spy(*args: Any) -> Any:
        pipelines.append(len(args[3]))
        return real(*args)

    monkeypatch.setattr(sync_module, "spread", spy)
    scope = unique("flushed")
    adapter = RedisAdapter.open(redis_config)
    assert isinstance(adapter, RedisAdapter)
    try:
        adapter.write(scope, "a", b"1")
        for round_, first, then in (
            ([("read", (scope, "a")), ("read", (scope, "b"))], [b"1", None], [b"1", None]),
            ([("write", (scope, "a", b"2")), ("write", (scope, "b", b"3"))], [b"1", None], [b"2", b"3"]),
            ([("remove", (scope, "a")), ("write_if", (scope, "c", b"4", None))], [b"2", True], [None, False]),
        ):
            adapter._connect().script_flush()
            pipelines.clear()
            assert adapter.run_many(round_) == first
            assert len(pipelines) == 2, pipelines  # EVALSHA, then by source
            pipelines.clear()
            assert adapter.run_many(round_) == then and len(pipelines) == 1
        assert [adapter.read(scope, k) for k in "abc"] == [None, b"3", b"4"]
    finally:
        adapter.close()


def test_an_import_of_missing_keys_is_one_swap_script_per_scope_and_reads_only_the_present_ones(
    redis_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from iii_state_redis import pipelining

    from iii_state_core.transfer import Entry, import_entries

    rounds: list[list[tuple[str, int]]] = []
    real = pipelining.units

    def spy(layout: Any, calls: Any, group: list[int], keep: Any) -> Any:
        units = real(layout, calls, group, keep)
        rounds.append(sorted((calls[places[0]][0], len(places)) for _, places, _ in units))
        return units

    monkeypatch.setattr("iii_state_redis.adapter.units", spy)
    tag = unique("imp")
    a, b = f"{{{tag}}}a", f"{{{tag}}}b"  # one slot: one pipeline per round on a Cluster too
    with open_store(adapter="redis", adapter_config=redis_config) as store:
        store.set(a, "k0", 0)  # the same value: unchanged
        store.set(b, "k1", "other")  # another value: skipped
        entries = [Entry(s, f"k{i}", i) for s in (a, b) for i in range(10)]
        report = import_entries(store, entries, "skip")
        assert report.to_dict() == {"written": 18, "unchanged": 1, "skipped": 1, "invalid": 0, "expired": 0}
        reads = [("read_versioned", 1)] * 2  # only the two present keys are read, after the swaps
        assert rounds == [[("write_if", 10)] * 2, reads], rounds
        assert store.get(b, "k1") == "other" and store.get(b, "k9") == 9

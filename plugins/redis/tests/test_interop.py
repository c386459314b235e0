"""The iii engine's layout, both ways: what plain HSET wrote, the adapter reads; and the reverse.

Scope ``s`` is the hash ``state:s``, key ``k`` its field, the value compact JSON. Each test
runs on one redis-server and on the Cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis_helpers import unique

from iii_state_core import StateError, StateStore, open_store

VALUE = {
    "list": [], "obj": {}, "big": 18446744073709551615, "neg": -9223372036854775808,
    "exact": 9007199254740993, "f": 1.0, "e": 1e-7, "s": "é 😀 \"q\" \\", "n": None, "t": True,
}  # fmt: skip
COMPACT = json.dumps(VALUE, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@pytest.fixture
def raw(redis_config: dict[str, Any]) -> Iterator[Any]:
    """A plain redis-py client on the same server or Cluster (what the engine would use)."""
    url = redis_config["redis_url"]
    client = redis.RedisCluster.from_url(url) if redis_config["cluster"] else redis.Redis.from_url(url)
    yield client
    client.close()


@pytest.fixture
def store(redis_config: dict[str, Any]) -> Iterator[StateStore]:
    with open_store(adapter="redis", adapter_config=redis_config) as s:
        yield s


def test_engine_written_entries_read_back_through_the_adapter(store: StateStore, raw: Any) -> None:
    scope = unique("engine-wrote")
    raw.hset(f"state:{scope}", mapping={"k": COMPACT, "spaced": b'{ "a" : [ 1 , 2 ] }', "": b"0"})
    assert store.get(scope, "k") == VALUE
    assert store.get(scope, "spaced") == {"a": [1, 2]}
    assert store.get(scope, "") == 0
    assert scope in store.list_groups()
    assert sorted(store.list_keys(scope)) == ["", "k", "spaced"]
    assert len(store.list(scope)) == 3
    page = store.list_entries(scope, limit=10)
    assert dict(page.entries)["k"] == VALUE and page.done
    result = store.update(scope, "k", [{"type": "increment", "path": "big", "by": 0}])
    assert result.old_value == VALUE and result.new_value == VALUE
    assert store.delete(scope, "spaced") == {"a": [1, 2]}
    assert raw.hexists(f"state:{scope}", "spaced") == 0
    raw.delete(f"state:{scope}")


def test_adapter_written_entries_are_compact_json_in_the_engine_layout(store: StateStore, raw: Any) -> None:
    scope = unique("adapter-wrote")
    store.set(scope, "k", VALUE)
    ops = [{"type": "increment", "path": "n", "by": 2**63 - 1}, {"type": "increment", "path": "n", "by": 1}]
    store.update(scope, "counter", ops)  # past i64: exact in u64, where Lua's cjson would round
    assert raw.hget(f"state:{scope}", "k") == COMPACT
    assert raw.hget(f"state:{scope}", "counter") == b'{"n":9223372036854775808}'
    assert raw.type(f"state:{scope}") == b"hash"
    assert sorted(raw.hkeys(f"state:{scope}")) == [b"counter", b"k"]
    store.delete(scope, "k")
    store.delete(scope, "counter")
    # An emptied scope is no hash at all, so the engine's list_groups no longer sees it either.
    assert raw.exists(f"state:{scope}") == 0


@pytest.mark.parametrize("name", ["", ":", "a:b", "{tag}", "*", "?[x]\\", "%", "😀", " "])
def test_hostile_scopes_and_keys_map_to_exact_names(store: StateStore, raw: Any, name: str) -> None:
    scope = unique("names") + name
    store.set(scope, name, [name])
    expected = json.dumps([name], ensure_ascii=False).encode()
    assert raw.hget(f"state:{scope}".encode(), name.encode()) == expected
    assert scope in store.list_groups()
    assert store.list_keys(scope) == [name]
    store.delete(scope, name)


def test_a_custom_prefix_with_glob_characters_lists_only_its_own_scopes(
    redis_config: dict[str, Any], raw: Any
) -> None:
    prefix = f"{unique('p')}*?[ab]\\:"
    config = {**redis_config, "key_prefix": prefix}
    decoys = [f"{prefix[:-6]}X?[ab]\\:decoy", f"{prefix[:-5]}a\\:decoy", f"{prefix[:-1]}decoy"]
    for decoy in decoys:  # each matches the prefix read as an unescaped glob
        raw.hset(decoy, "k", b"1")
    try:
        with open_store(adapter="redis", adapter_config=config) as store:
            store.set("mine", "k", 1)
            assert raw.hget(f"{prefix}mine", "k") == b"1"
            assert store.list_groups() == ["mine"]
            store.delete("mine", "k")
            assert store.list_groups() == []
    finally:
        for decoy in decoys:
            raw.delete(decoy)


def test_keys_under_the_prefix_that_are_not_hashes_are_not_scopes(store: StateStore, raw: Any) -> None:
    scope = unique("not-a-hash")
    raw.set(f"state:{scope}", b"a plain string")
    try:
        assert scope not in store.list_groups()
        with pytest.raises(StateError) as info:
            store.get(scope, "k")
        assert info.value.code == "GET_ERROR" and "WRONGTYPE" in str(info.value)
    finally:
        raw.delete(f"state:{scope}")


def test_fields_that_are_not_utf8_are_skipped_by_listing(store: StateStore, raw: Any) -> None:
    scope = unique("bytes")
    raw.hset(f"state:{scope}", mapping={b"\xff\xfe": b"1", b"ok": b"2"})
    try:
        assert store.list_entries(scope).entries == [("ok", 2)]
        assert store.list_keys(scope) == ["ok"]
    finally:
        raw.delete(f"state:{scope}")


@pytest.mark.parametrize("foreign", [b"not json", b"NaN", b"1e400", b"\xff\xfe"])
def test_set_and_delete_over_what_another_program_wrote_succeed_as_reported(
    store: StateStore, raw: Any, foreign: bytes
) -> None:
    """Issue 12 #1: set/delete reported a failure, yet HGET showed the write had happened."""
    scope = unique("foreign")
    raw.hset(f"state:{scope}", "bad", foreign)
    assert store.set(scope, "bad", "new").to_wire() == {"old_value": None, "new_value": "new"}
    assert raw.hget(f"state:{scope}", "bad") == b'"new"'
    raw.hset(f"state:{scope}", "bad", foreign)
    assert store.delete(scope, "bad") is None
    assert raw.hexists(f"state:{scope}", "bad") == 0


@pytest.mark.parametrize("foreign", [b"not json", b"NaN", b"1e400", b"[Infinity]", b"\xff\xfe"])
def test_reads_of_what_another_program_wrote_fail_as_the_store_s_fault(
    store: StateStore, raw: Any, foreign: bytes
) -> None:
    """Issue 12 #2: NaN/1e400 were printed as non-JSON; the error blamed the caller."""
    scope = unique("foreign")
    raw.hset(f"state:{scope}", "bad", foreign)
    try:
        codes = (("get", "GET_ERROR"), ("list", "LIST_ERROR"), ("list_entries", "LIST_ENTRIES_ERROR"))
        for function, code in codes:
            payload = {"scope": scope, "key": "bad", "_caller_worker_id": "test"}  # the engine stamps it
            with pytest.raises(StateError) as info:
                store.trigger({"function_id": f"state::{function}", "payload": payload})
            assert info.value.code == code, info.value
        with pytest.raises(StateError) as info:
            store.update(scope, "bad", [{"type": "set", "path": "", "value": 1}])
        assert info.value.code == "UPDATE_ERROR"
        assert raw.hget(f"state:{scope}", "bad") == foreign
    finally:
        raw.delete(f"state:{scope}")

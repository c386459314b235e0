"""Entry expiry on Redis: where deadlines live (beside the engine's hashes, in their Cluster slot),
one round trip per read, and ``take_expired`` handing each expired entry to exactly one taker.

The contract's expiry rules themselves are the conformance suite's "expiry" area (test_conformance).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from iii_state_redis import RedisAdapter, expiring, read_settings
from iii_state_redis.layout import SLOTS, Layout, key_slot, slot_tag
from iii_state_testsupport import RedisServer
from redis_helpers import command_calls, reset_stats, unique

from iii_state_core import open_store
from iii_state_core.expiry import MAX_TTL_MS, now_ms


def test_every_slot_has_a_tag_that_hashes_to_it() -> None:
    for slot in range(SLOTS):
        tag = slot_tag(slot)
        assert len(tag) == 4 and b"{" not in tag and b"}" not in tag, tag
        assert redis.crc.key_slot(b"{" + tag + b"}anything") == slot


@pytest.mark.parametrize(
    ("prefix", "scope"),
    [("state:", "orders"), ("state:", "a{b}c"), ("state:", "{}"), ("{app}:", "x"), ("p{", "q}r"), ("", "é")],
)
def test_the_deadline_keys_share_the_slot_of_the_scope_hash(prefix: str, scope: str) -> None:
    names = Layout.for_prefix(prefix).names(scope)
    assert names.hash == (prefix + scope).encode()
    assert key_slot(names.hash) == redis.crc.key_slot(names.hash)
    for companion in (names.deadlines, names.due):
        assert redis.crc.key_slot(companion) == redis.crc.key_slot(names.hash), companion
        assert not companion.startswith(names.hash)


@pytest.fixture
def adapter(redis_config: dict[str, Any]) -> Iterator[RedisAdapter]:
    a = RedisAdapter(read_settings(redis_config))
    try:
        yield a
    finally:
        a.close()


def test_deadlines_live_beside_the_engine_layout(adapter: RedisAdapter) -> None:
    scope = unique("layout")
    deadline = now_ms() + 60_000
    adapter.write(scope, "k", b'{"a":[]}', deadline)
    adapter.write(scope, "plain", b"1")
    client: Any = adapter._connect()
    names = adapter.layout.names(scope)
    # the engine's hash, unchanged: field = key, value = compact JSON, nothing else in it
    assert client.hgetall(names.hash) == {b"k": b'{"a":[]}', b"plain": b"1"}
    assert client.zscore(names.deadlines, b"k") == deadline
    assert client.zscore(names.deadlines, b"plain") is None
    assert client.zscore(names.due, scope.encode()) == deadline
    assert names.tag in client.smembers(adapter.layout.registry_key())
    assert adapter.read_expiry(scope, "k") == (True, deadline)
    # a set without ttl_ms drops the deadline; a delete drops it with the entry
    adapter.write(scope, "k", b"2")
    assert client.zscore(names.deadlines, b"k") is None and adapter.read_expiry(scope, "k") == (True, None)
    adapter.write(scope, "k", b"3", deadline)
    assert adapter.remove(scope, "k") == b"3"
    assert client.exists(names.deadlines) == 0
    # a deadline beyond 2^53 ms (a double's exact range) reads back within a millisecond or two
    far = now_ms() + MAX_TTL_MS
    assert adapter.set_expiry(scope, "plain", far)
    present, got = adapter.read_expiry(scope, "plain")
    assert present and got is not None and abs(got - far) <= 2


def test_a_get_of_an_entry_with_a_deadline_is_one_round_trip(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory()
    scope = unique("trip")
    with open_store(adapter="redis", adapter_config={"redis_url": server.url}) as store:
        store.set(scope, "timed", {"v": 1}, ttl_ms=60_000)
        store.set(scope, "plain", {"v": 2})
        reset_stats(server)
        assert store.get(scope, "timed") == {"v": 1} and store.get(scope, "plain") == {"v": 2}
        assert command_calls(server, "evalsha") == 2
        assert (command_calls(server, "hget"), command_calls(server, "zscore")) == (2, 2)  # inside them
        reset_stats(server)
        store.set(scope, "again", 1, ttl_ms=60_000)  # the slot is registered already: one trip
        assert command_calls(server, "evalsha") == 1 and command_calls(server, "sadd") == 0


def test_the_total_of_a_page_leaves_expired_entries_out(adapter: RedisAdapter) -> None:
    scope = unique("count")
    deadline = now_ms() + 500
    for i in range(5):
        adapter.write(scope, f"gone{i}", b"1", deadline)
    adapter.write(scope, "kept", b"1", now_ms() + 60_000)
    adapter.write(scope, "plain", b"1")
    assert adapter.count(scope) == 7
    time.sleep(max(0.0, (deadline - now_ms() + 5) / 1000))
    assert adapter.count(scope) == 2
    page, cursor = adapter.scan(scope, None, 100)
    assert sorted(k for k, _ in page) == ["kept", "plain"] and cursor is None


Written = dict[tuple[str, str], tuple[bytes, int]]


def _expiring(adapter: RedisAdapter, scopes: list[str], per_scope: int) -> Written:
    """Write ``per_scope`` entries that expire at once into each scope, plus one live entry each."""
    written: Written = {}
    deadline = now_ms() + 40
    for scope in scopes:
        for i in range(per_scope):
            value = f'{{"s":"{scope[-4:]}","i":{i}}}'.encode()
            adapter.write(scope, f"k{i}", value, deadline + i % 3)
            written[scope, f"k{i}"] = (value, deadline + i % 3)
        adapter.write(scope, "live", b"1", now_ms() + 60_000)
    time.sleep(0.06)
    return written


def test_concurrent_takers_get_disjoint_sets_whose_union_is_everything_expired(
    redis_config: dict[str, Any],
) -> None:
    # expiry_events: true, as a sweeper's store has it (else writes sweep what they meet)
    takers = [RedisAdapter(read_settings({**redis_config, "expiry_events": True})) for _ in range(4)]
    try:
        tag = unique("take")
        scopes = [f"{tag}-{n}" for n in range(12)]  # spread over slots (and nodes, on a Cluster)
        written = _expiring(takers[0], scopes, 15)
        start = threading.Barrier(len(takers))
        results: list[list[tuple[str, str, bytes, int]]] = [[] for _ in takers]

        def sweep(n: int) -> None:
            start.wait()
            while True:
                batch = takers[n].take_expired(limit=random.randint(3, 20))
                if not batch:
                    return
                results[n].extend(batch)

        threads = [threading.Thread(target=sweep, args=(n,)) for n in range(len(takers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        mine = [[entry for entry in r if entry[0] in scopes] for r in results]  # other tests' too
        taken = [(s, k) for r in mine for s, k, _, _ in r]
        assert len(taken) == len(set(taken)), "an entry was taken twice"
        assert set(taken) == set(written)
        assert sum(1 for r in mine if r) >= 2, "the takers did not run side by side"
        for r in mine:
            for scope, key, value, deadline in r:
                assert written[scope, key] == (value, deadline)
        assert not [e for e in takers[0].take_expired() if e[0] in scopes]
        for scope in scopes:  # the live entries stay, and nothing expired is left in Redis
            names = takers[0].layout.names(scope)
            client: Any = takers[0]._connect()
            assert client.hkeys(names.hash) == [b"live"]
            assert client.zrange(names.deadlines, 0, -1) == [b"live"]
    finally:
        for a in takers:
            a.close()


def test_a_scope_whose_entries_all_expired_is_gone_once_taken(adapter: RedisAdapter) -> None:
    scope = unique("emptied")
    adapter.write(scope, "a", b"1", now_ms() + 20)
    names = adapter.layout.names(scope)
    time.sleep(0.04)
    assert scope not in adapter.list_scopes()  # hidden before any sweep ...
    client: Any = adapter._connect()
    assert client.exists(names.hash) == 1
    taken = [e for e in adapter.take_expired(10_000) if e[0] == scope]
    assert [(s, k, v) for s, k, v, _ in taken] == [(scope, "a", b"1")]
    assert client.exists(names.hash) == 0 and client.exists(names.deadlines) == 0  # ... gone after
    assert client.zscore(names.due, scope.encode()) is None


def test_a_write_over_an_expired_field_replaces_it_and_its_deadline(adapter: RedisAdapter) -> None:
    scope = unique("over")
    adapter.write(scope, "k", b"1", now_ms() + 20)
    time.sleep(0.04)
    assert adapter.write(scope, "k", b"2") is None
    assert adapter.read_expiry(scope, "k") == (True, None)
    assert [e for e in adapter.take_expired(10_000) if e[0] == scope] == []


def test_the_async_twin_takes_what_the_sync_adapter_wrote(redis_config: dict[str, Any]) -> None:
    sync = RedisAdapter(read_settings({**redis_config, "expiry_events": True}))  # no sweeps from writes
    twin = sync.async_twin()
    scope = unique("async-take")
    try:

        async def main() -> tuple[Any, ...]:
            await twin.write(scope, "a", b"1", now_ms() + 20)  # type: ignore[call-arg]
            await twin.write(scope, "b", b"2", now_ms() + 60_000)  # type: ignore[call-arg]
            await asyncio.sleep(0.04)
            got = (await twin.read(scope, "a"), await twin.read_expiry(scope, "b"), await twin.count(scope))
            taken = [e for e in await twin.take_expired(10_000) if e[0] == scope]  # type: ignore[attr-defined]
            await twin.close()
            return (*got, taken)

        missing, expiry, count, taken = asyncio.run(main())
        assert missing is None and expiry[0] is True and count == 1
        assert [(s, k, v) for s, k, v, _ in taken] == [(scope, "a", b"1")]
        assert sync.read(scope, "b") == b"2"
    finally:
        sync.close()


def test_with_expiry_events_a_write_or_delete_keeps_the_expired_field_for_the_sweep(
    redis_config: dict[str, Any],
) -> None:
    adapter = RedisAdapter(read_settings({**redis_config, "expiry_events": True}))
    scope = unique("kept")
    try:
        deadline = now_ms() + 30
        keys = ("set", "delete", "swap", "update", "transact", "when", "alone")
        for key in keys:
            adapter.write(scope, key, f'"{key}"'.encode(), deadline)
        time.sleep(0.05)
        assert adapter.write(scope, "set", b"1") is None  # missing to the caller ...
        assert adapter.remove(scope, "delete") is None
        assert adapter.write_if(scope, "swap", b"2", None)
        assert adapter.modify(scope, "update", lambda old: b"3")[0] is None
        assert adapter.write_many_if([(scope, "transact", None)], [(scope, "transact", b"4", None)])
        assert adapter.write_many_when([(scope, "when", None)], [(scope, "when", None, None)]) == [None]
        taken = sorted(e for e in adapter.take_expired(10_000) if e[0] == scope)
        # ... and still taken once, with the value it held: its expiry event is not lost
        assert taken == sorted((scope, k, f'"{k}"'.encode(), deadline) for k in keys)
        assert [e for e in adapter.take_expired(10_000) if e[0] == scope] == []
        assert [adapter.read(scope, k) for k in keys[:6]] == [b"1", None, b"2", b"3", b"4", None]
        client: Any = adapter._connect()
        names = adapter.layout.names(scope)
        assert client.llen(names.kept) == 0
    finally:
        adapter.close()


def test_expiry_events_over_redis_deliver_a_field_a_write_met_first(redis_config: dict[str, Any]) -> None:
    seen: list[Any] = []
    scope = unique("events")
    block = {"adapter": {"name": "redis", "config": redis_config}, "expiry_events": True}
    with open_store(block) as store:
        store.on_change(lambda e: seen.append((e.event_type, e.key, e.old_value)), scope=scope)
        store.set(scope, "swept", {"v": 1}, ttl_ms=50)
        store.set(scope, "met", {"v": 2}, ttl_ms=50)
        time.sleep(0.07)
        store.set(scope, "met", {"v": 3})  # before the first sweep (one interval after opening)
        limit = time.monotonic() + 5
        while len([s for s in seen if s[0] == "state:expired"]) < 2 and time.monotonic() < limit:
            time.sleep(0.02)
        time.sleep(0.6)  # a later sweep must not deliver anything again
    expired = sorted(s for s in seen if s[0] == "state:expired")
    assert expired == [("state:expired", "met", {"v": 2}), ("state:expired", "swept", {"v": 1})]
    assert ("state:created", "met", None) in seen


def test_without_expiry_events_a_process_that_stores_deadlines_sweeps_from_its_writes(
    redis_config: dict[str, Any],
) -> None:
    adapter = RedisAdapter(read_settings(redis_config))
    scope = unique("self-sweep")
    try:
        adapter.write(scope, "gone", b"1", now_ms() + 20)
        time.sleep(0.04)
        adapter.write(scope, "other", b"2")  # the first write since this process stored a deadline
        client: Any = adapter._connect()
        names = adapter.layout.names(scope)
        assert client.hkeys(names.hash) == [b"other"] and client.exists(names.deadlines) == 0
    finally:
        adapter.close()


@contextlib.contextmanager
def _leasing(
    redis_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch, name: str
) -> Iterator[tuple[RedisAdapter, RedisAdapter, str, list[int]]]:
    """Two sweepers' adapters (expiry events on: claims are leases) on one server, a fresh scope,
    and the sweep's clock moved ``ahead[0]`` ms on, to lapse leases instead of sleeping."""
    config = {**redis_config, "expiry_events": True}
    one, two = RedisAdapter(read_settings(config)), RedisAdapter(read_settings(config))
    ahead = [0]
    monkeypatch.setattr(expiring, "now_ms", lambda: now_ms() + ahead[0])
    try:
        yield one, two, unique(name), ahead
    finally:
        one.close()
        two.close()


def test_with_expiry_events_a_claim_is_a_lease_taken_again_once_it_lapses_until_acknowledged(
    redis_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweeper that dies (or loses the reply) between claiming and acknowledging loses nothing:
    its lease lapses and the next take claims the entries again; an acknowledged one is gone.
    The sweep's clock is moved past the leases instead of sleeping through them."""
    with _leasing(redis_config, monkeypatch, "lease") as (dead, alive, scope, ahead):
        deadline = now_ms() + 20
        for key in ("a", "b", "kept"):
            dead.write(scope, key, f'"{key}"'.encode(), deadline)
        time.sleep(0.03)
        assert dead.remove(scope, "kept") is None  # a delete keeps the expired field: claimed too
        claimed = sorted(e for e in dead.take_expired(10_000) if e[0] == scope)
        assert claimed == sorted((scope, k, f'"{k}"'.encode(), deadline) for k in ("a", "b", "kept"))
        assert [e for e in alive.take_expired(10_000) if e[0] == scope] == []  # leased to `dead`
        assert alive.read(scope, "a") is None and alive.list_scopes().count(scope) == 0
        ahead[0] = 11_000  # `dead` never acknowledged: the lease (10 s) lapses
        again = sorted(e for e in alive.take_expired(10_000) if e[0] == scope)
        assert again == claimed
        assert [e for e in dead.take_expired(10_000) if e[0] == scope] == []  # leased to `alive` now
        alive.ack_expired(again)
        alive.ack_expired(again)  # idempotent
        ahead[0] = 22_000
        assert [e for e in dead.take_expired(10_000) if e[0] == scope] == []  # acknowledged: gone
        assert _leased(alive, scope) == []


def _leased(adapter: RedisAdapter, scope: str) -> list[str]:
    """The keys of ``scope`` still in its slot's lease set: in a leased batch or leased alone."""
    client: Any = adapter._connect()
    tag = adapter.layout.names(scope).tag
    keys: list[str] = []
    for member in client.zrange(adapter.layout.lease_key(tag), 0, -1):
        if bytes(member).startswith(expiring.BATCH_MARK):
            batch = client.hget(adapter.layout.batch_key(tag), member)
            assert batch is not None, f"batch {member!r} is leased without its entries"
            keys += [entry[1] for entry, _member in expiring.claimed_from(batch) if entry[0] == scope]
        elif (entry := expiring.parse_member(bytes(member))) is not None and entry[0] == scope:
            keys.append(entry[1])
    return sorted(keys)


def test_a_batch_acknowledged_in_part_keeps_the_rest_leased(
    redis_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A take's entries are leased as one batch (decision 0031); acknowledging some of them leaves
    exactly the others to be claimed again once the lease lapses, by whoever takes then."""
    with _leasing(redis_config, monkeypatch, "part") as (first, second, scope, ahead):
        deadline = now_ms() + 20
        for n in range(6):
            first.write(scope, f"k{n}", b"%d" % n, deadline)
        time.sleep(0.03)
        claimed = sorted(e for e in first.take_expired(10_000) if e[0] == scope)
        assert [e[1] for e in claimed] == [f"k{n}" for n in range(6)]
        first.ack_expired(claimed[:2])
        assert _leased(first, scope) == ["k2", "k3", "k4", "k5"]
        first.ack_expired(claimed[2:3])
        assert _leased(first, scope) == ["k3", "k4", "k5"]
        ahead[0] = 11_000  # the lease (10 s) lapses: the rest is claimed again, nothing acknowledged
        again = sorted(e for e in second.take_expired(10_000) if e[0] == scope)
        assert again == claimed[3:]
        first.ack_expired(claimed)  # late, for entries `second` holds now: removes nothing twice
        second.ack_expired(again)
        assert _leased(second, scope) == []
        ahead[0] = 22_000
        assert [e for e in first.take_expired(10_000) if e[0] == scope] == []


def test_an_entry_an_earlier_version_leased_alone_is_claimed_again_and_acknowledged(
    redis_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before decision 0031 each claimed entry was its own lease member: one left by a sweeper of
    that version that died is claimed again by this one, delivered once, and removed."""
    with _leasing(redis_config, monkeypatch, "old") as (adapter, _other, scope, ahead):
        client: Any = adapter._connect()
        names = adapter.layout.names(scope)
        deadline, lapsed = now_ms() - 50, now_ms() - 10
        member = b"%d:%s%d:%s%d:%s" % (len(names.scope), names.scope, 3, b"old", deadline, b'"v"')
        client.zadd(adapter.layout.lease_key(names.tag), {member: lapsed})
        client.zadd(names.due, {expiring.LEASE_MARKER: lapsed})
        client.sadd(adapter.layout.registry_key(), names.tag)
        taken = [e for e in adapter.take_expired(10_000) if e[0] == scope]
        assert taken == [(scope, "old", b'"v"', deadline)]
        assert _leased(adapter, scope) == ["old"]  # leased anew, alone as before
        adapter.ack_expired(taken)
        assert _leased(adapter, scope) == []
        ahead[0] = 11_000
        assert [e for e in adapter.take_expired(10_000) if e[0] == scope] == []

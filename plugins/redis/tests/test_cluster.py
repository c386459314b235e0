"""Redis Cluster: detection, redirections (MOVED, ASK) that are safe to follow, and failures
that are not: a dead primary fails writes plainly, a lost reply is an unknown outcome.

The redirection and failure tests reshape a private 3-primary Cluster of this module.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from iii_state_testsupport import RedisCluster, RedisServer, ServerUnavailable
from iii_state_testsupport.fixtures import server_unavailable
from redis.crc import key_slot
from redis_helpers import command_calls, reset_stats, unique

from iii_state_core import (
    BackendError,
    StateError,
    StateStore,
    UnknownOutcomeError,
    open_store,
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    handle = RedisCluster(3)
    try:
        handle.start()
    except ServerUnavailable as exc:
        server_unavailable(exc)
    try:
        yield handle
    finally:
        handle.stop()


def _open(cluster: RedisCluster, **config: Any) -> StateStore:
    return open_store(adapter="redis", adapter_config={"redis_url": cluster.url, **config})


Roles = tuple[bytes, RedisServer, list[RedisServer]]


def _roles(cluster: RedisCluster, store: StateStore, scope: str) -> Roles:
    """The scope's hash name, the node that owns its slot, and the other nodes."""
    name = f"state:{scope}".encode()
    port = store.adapter._client.get_node_from_key(name).port  # type: ignore[attr-defined]
    owner = next(node for node in cluster.nodes if node.port == port)
    return name, owner, [node for node in cluster.nodes if node is not owner]


def _node_id(node: RedisServer) -> bytes:
    reply = node.command("CLUSTER", "MYID")
    assert isinstance(reply, bytes)
    return reply


def test_cluster_auto_detection(redis_cluster_url: str) -> None:
    with open_store(adapter="redis", adapter_config={"redis_url": redis_cluster_url}) as store:
        scope = unique("auto")
        store.set(scope, "k", [])
        assert store.get(scope, "k") == []
        assert store.adapter.describe().startswith("redis cluster via")
        store.delete(scope, "k")


def test_auto_detection_refuses_a_db_a_cluster_does_not_have(redis_cluster_url: str) -> None:
    for cluster in ("auto", True, False):
        config = {"redis_url": f"{redis_cluster_url}/2", "cluster": cluster}
        with pytest.raises(StateError) as info:
            with open_store(adapter="redis", adapter_config=config) as store:
                store.get(unique("db"), "k")
        assert "only db 0" in str(info.value)
        assert info.value.code == ("CONFIG_ERROR" if cluster is True else "GET_ERROR")


def test_a_single_node_client_on_a_cluster_says_what_to_change(redis_cluster_url: str) -> None:
    config = {"redis_url": redis_cluster_url, "cluster": False}
    with open_store(adapter="redis", adapter_config=config) as store:
        messages = []
        for i in range(20):  # some of these scopes hash to slots on other nodes
            try:
                store.get(unique(f"plain{i}"), "k")
            except StateError as exc:
                messages.append(str(exc))
    assert messages and all("cluster: true" in m for m in messages)


def test_moved_is_followed_and_the_write_applied_once(cluster: RedisCluster) -> None:
    with _open(cluster) as store:
        scope = unique("moved")
        store.get(scope, "k")  # the client learns the slot map; the slot stays empty
        name, owner, (target, third) = _roles(cluster, store, scope)
        slot = key_slot(name)
        for node in (target, owner, third):
            node.command("CLUSTER", "SETSLOT", slot, "NODE", _node_id(target))
        for node in cluster.nodes:
            reset_stats(node)
        assert store.set(scope, "k", {"v": 1}).old_value is None  # sent to owner, MOVED to target
        assert command_calls(owner, "evalsha") == 0  # rejected with MOVED, never run
        assert command_calls(target, "evalsha") == 1
        assert target.command("HGET", name, "k") == b'{"v":1}'
        store.delete(scope, "k")


def test_a_write_during_a_slot_migration_waits_for_it_and_applies_once(cluster: RedisCluster) -> None:
    """A write's script names the scope's hash and its deadline keys (one slot). While the slot
    migrates, the owner sends it on (ASK) and the importing node answers TRYAGAIN, as Redis does
    for any multi-key command whose keys are not all there; that is retried as "not run" until
    the migration ends, and the write then runs once, on the new owner."""
    with _open(cluster, retries=30) as store:
        scope = unique("ask")
        store.get(scope, "k")
        name, owner, (target, third) = _roles(cluster, store, scope)
        slot = key_slot(name)
        target.command("CLUSTER", "SETSLOT", slot, "IMPORTING", _node_id(owner))
        owner.command("CLUSTER", "SETSLOT", slot, "MIGRATING", _node_id(target))
        for node in cluster.nodes:
            reset_stats(node)

        def finish() -> None:
            for node in (target, owner, third):
                node.command("CLUSTER", "SETSLOT", slot, "NODE", _node_id(target))

        timer = threading.Timer(0.5, finish)
        timer.start()
        try:
            assert store.set(scope, "k", 1).old_value is None
        finally:
            timer.join()
        assert command_calls(owner, "hset") == 0 and command_calls(target, "hset") == 1
        assert store.get(scope, "k") == 1
        store.delete(scope, "k")


def test_a_dead_primary_fails_writes_plainly_and_they_did_not_apply(cluster: RedisCluster) -> None:
    with _open(cluster, retries=2, connect_timeout=0.5) as store:
        scope = unique("dead")
        store.set(scope, "k", 0)
        _, owner, _ = _roles(cluster, store, scope)
        owner.kill()
        try:
            with pytest.raises(BackendError) as info:
                store.set(scope, "k", 1)
            assert not isinstance(info.value, UnknownOutcomeError)
            assert info.value.code == "SET_ERROR"
        finally:
            owner.start()  # same port and nodes.conf: the same slots
            cluster.wait_ok(30)
        assert store.set(scope, "k", 2).old_value is None  # (no AOF: the restart lost k=0)
        store.delete(scope, "k")


def test_a_lost_reply_from_a_cluster_node_is_an_unknown_outcome(cluster: RedisCluster) -> None:
    with _open(cluster, socket_timeout=0.5, retries=0) as store:
        scope = unique("lost")
        store.set(scope, "n", 0)
        _, owner, _ = _roles(cluster, store, scope)
        reset_stats(owner)
        owner.pause()
        try:
            with pytest.raises(UnknownOutcomeError) as info:
                store.set(scope, "n", 1)
        finally:
            owner.resume()
        assert info.value.code == "SET_ERROR"
        cluster.wait_ok(30)
        assert store.get(scope, "n") == 1  # it ran once the node woke up ...
        assert command_calls(owner, "hset") == 1  # ... and was not sent again
        store.delete(scope, "n")

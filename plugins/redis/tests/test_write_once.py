"""A write is applied at most once; a lost reply is reported as an unknown outcome.

Deterministic faults through a loopback proxy (a swallowed reply, refused connections) and a
paused server (a reply timeout), checked against the server's own command counters.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from iii_state_testsupport import RedisServer
from redis_helpers import command_calls, reset_stats, unique
from redis_proxy import TcpProxy, tcp_proxy

from iii_state_core import BackendError, StateError, StateStore, UnknownOutcomeError, open_store


@pytest.fixture
def server(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    return redis_server_factory()


@pytest.fixture
def proxy(server: RedisServer) -> Iterator[TcpProxy]:
    with tcp_proxy(server.info.host, server.port) as p:
        yield p


def _store(proxy: TcpProxy, **config: Any) -> StateStore:
    return open_store(adapter="redis", adapter_config={"redis_url": f"redis://{proxy.address}", **config})


def _raw(server: RedisServer, scope: str, key: str) -> Any:
    reply = server.command("HGET", f"state:{scope}", key)
    return None if reply is None else json.loads(reply)  # type: ignore[arg-type]


@pytest.fixture
def store(proxy: TcpProxy) -> Iterator[StateStore]:
    with _store(proxy, socket_timeout=5.0) as s:
        yield s


def _warm(store: StateStore, scope: str) -> None:
    """One connection, every script loaded: the next command is the one whose reply we swallow."""
    store.set(scope, "warm", 0)
    store.get(scope, "warm")  # the read script (compare-and-set may swap without reading)
    store.compare_and_set(scope, "warm", 0, 1)
    store.compare_and_set(scope, "warm", 5, 6)  # a miss: the read-and-compare path
    store.delete(scope, "warm")


@pytest.mark.parametrize(
    ("function", "call", "code", "write"),
    [
        ("set", lambda s, sc: s.set(sc, "k", {"v": 2}), "SET_ERROR", "hset"),
        ("delete", lambda s, sc: s.delete(sc, "k"), "DELETE_ERROR", "hdel"),
        (
            "compare-and-set",
            lambda s, sc: s.compare_and_set(sc, "k", {"v": 1}, {"v": 2}),
            "CAS_ERROR",
            "hset",
        ),
    ],
)
def test_a_lost_reply_of_a_write_is_an_unknown_outcome_and_sent_once(
    store: StateStore, proxy: TcpProxy, server: RedisServer, function: str, call: Any, code: str, write: str
) -> None:
    scope = unique(function)
    store.set(scope, "k", {"v": 1})
    _warm(store, scope)
    reset_stats(server)
    # compare-and-set offers the stored bytes of `expected` in one swap (no read first), so for
    # every function the first reply is the write's: swallow it.
    proxy.drop_next_reply()
    with pytest.raises(UnknownOutcomeError) as info:
        call(store, scope)
    assert info.value.code == code
    assert "may or may not have been applied" in str(info.value)
    assert proxy.dropped_replies == 1
    # (INFO commandstats counts the commands scripts run: the write's HSET or HDEL)
    assert command_calls(server, write) == 1, "the write was sent again"
    # It did run (the server got it); the store reconnects for the next call.
    expected = None if function == "delete" else {"v": 2}
    assert _raw(server, scope, "k") == expected
    assert store.get(scope, "k") == expected


@pytest.mark.parametrize("known", [True, False], ids=["remembered", "unknown-entry"])
def test_a_lost_reply_of_an_update_is_unknown_and_its_increment_applied_once(
    store: StateStore, proxy: TcpProxy, server: RedisServer, known: bool
) -> None:
    scope = unique("update")
    _warm(store, scope)
    if known:  # the store wrote it: update swaps from the remembered bytes, one round trip
        store.set(scope, "n", {"n": 0})
    else:  # someone else wrote it: update reads it first (the read script), then swaps
        server.command("HSET", f"state:{scope}", "n", '{"n":0}')
    reset_stats(server)
    proxy.drop_next_reply(skip=0 if known else 1)
    with pytest.raises(UnknownOutcomeError) as info:
        store.update(scope, "n", [{"type": "increment", "path": "n", "by": 1}])
    assert info.value.code == "UPDATE_ERROR"
    assert command_calls(server, "evalsha") == (1 if known else 2)
    assert command_calls(server, "hset") == 1  # the swap ran once
    assert store.get(scope, "n") == {"n": 1}


def test_a_lost_reply_of_a_first_update_is_unknown(
    store: StateStore, proxy: TcpProxy, server: RedisServer
) -> None:
    scope = unique("first")
    _warm(store, scope)
    reset_stats(server)
    proxy.drop_next_reply(skip=1)  # the read (missing) passes; the swap's reply is lost
    with pytest.raises(UnknownOutcomeError):
        store.update(scope, "fresh", [{"type": "set", "path": "a", "value": 1}])
    assert command_calls(server, "hset") == 1
    assert store.get(scope, "fresh") == {"a": 1}


def test_a_lost_reply_of_a_read_is_read_again(
    store: StateStore, proxy: TcpProxy, server: RedisServer
) -> None:
    scope = unique("read")
    store.set(scope, "k", [1, 2])
    _warm(store, scope)
    reset_stats(server)
    proxy.drop_next_reply()
    assert store.get(scope, "k") == [1, 2]
    assert command_calls(server, "hget") == 2
    # An update of an entry the store has not seen reads it; that read loses its reply, is
    # read again, and the swap runs once.
    server.command("HSET", f"state:{scope}", "n", '{"n":1}')
    reset_stats(server)
    proxy.drop_next_reply()
    assert store.update(scope, "n", [{"type": "increment", "path": "n", "by": 1}]).new_value == {"n": 2}
    # (INFO commandstats counts the HGET inside each script: the read twice, the swap once)
    assert (command_calls(server, "hget"), command_calls(server, "hset")) == (3, 1)
    assert store.get(scope, "n") == {"n": 2}


def test_a_write_that_could_not_be_sent_is_retried_and_applied_once(
    proxy: TcpProxy, server: RedisServer
) -> None:
    scope = unique("refused")
    with _store(proxy, retries=20) as store:
        store.set(scope, "k", 1)
        proxy.reset_all()
        reset_stats(server)
        proxy.refuse_for(0.3)
        assert store.set(scope, "k", 2).old_value == 1
        assert command_calls(server, "evalsha") == 1
        assert _raw(server, scope, "k") == 2


def test_a_write_that_can_never_be_sent_fails_plainly_and_changes_nothing(
    proxy: TcpProxy, server: RedisServer
) -> None:
    scope = unique("never")
    with _store(proxy, retries=2) as store:
        store.set(scope, "k", 1)
        proxy.reset_all()
        with proxy.refusing(), pytest.raises(StateError) as info:
            store.set(scope, "k", 2)
        assert info.value.code == "SET_ERROR"
        assert isinstance(info.value, BackendError) and not isinstance(info.value, UnknownOutcomeError)
        assert "after 3 attempts" in str(info.value)
        assert _raw(server, scope, "k") == 1


def test_a_reply_that_times_out_is_an_unknown_outcome(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory()
    scope = unique("timeout")
    config = {"redis_url": server.url, "socket_timeout": 0.3, "retries": 0}
    with open_store(adapter="redis", adapter_config=config) as store:
        store.set(scope, "k", 1)
        server.pause()
        try:
            with pytest.raises(UnknownOutcomeError) as info:
                store.set(scope, "k", 2)
        finally:
            server.resume()
        assert "timed out" in str(info.value)
        assert store.get(scope, "k") == 2  # queued in the socket, run once the server woke up


def test_control_plain_redis_py_applies_a_retried_increment_twice(
    proxy: TcpProxy, server: RedisServer
) -> None:
    """Why the adapter builds its own clients: redis-py's defaults resend after a lost reply.

    (``redis.Redis(host, port)`` retries 10 times by default; ``Redis.from_url`` happens not to.)
    """
    scope = unique("control")
    client = redis.Redis(host="127.0.0.1", port=proxy.port)
    try:
        client.hset(f"state:{scope}", "n", 0)
        proxy.drop_next_reply()
        client.hincrby(f"state:{scope}", "n", 1)  # "succeeds" ...
        assert int(client.hget(f"state:{scope}", "n") or 0) == 2  # ... and ran twice
    finally:
        client.close()

"""A batch round on memcached: reads as one multi-get per server, writes of existing entries as
cas stores pipelined per server, with every answer what the single call gives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from iii_state_memcached import records
from iii_state_memcached.nodes import Conn, Node, OutOfMemoryError, _fetch, _reply_lines
from pymemcache.exceptions import MemcacheServerError, MemcacheUnknownError  # type: ignore[import-untyped]

from iii_state_core import StateStore, open_store


def _counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Count the calls of ``Node.<name>`` (by how many keys or stores each carried)."""
    real = getattr(Node, name)
    seen: list[int] = []
    monkeypatch.setattr(Node, name, lambda self, batch: seen.append(len(batch)) or real(self, batch))
    return seen


def test_batch_reads_span_request_lines_and_large_values(
    memcached_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(adapter="memcached", adapter_config=memcached_config)
    try:
        big = "v" * 700_000  # many socket reads for one value
        stored = {f"k{i}": {"i": i, "s": "x" * (i % 7)} for i in range(230)}  # > 2 lines of 100 keys
        stored["big"] = big
        for key, value in stored.items():
            store.set("s", key, value)
        wanted = [*stored, *(f"missing{i}" for i in range(20))]
        multi = _counting(monkeypatch, "get_many")
        monkeypatch.setattr(Node, "get", lambda self, key: pytest.fail("a batch read went out alone"))
        assert store.get_many("s", wanted) == {k: stored.get(k) for k in wanted}
        assert len(multi) == len(memcached_config["servers"])  # one multi-get per server
    finally:
        store.close()


def test_batch_sets_are_pipelined_cas_stores_that_return_what_each_replaced(
    memcached_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(adapter="memcached", adapter_config=memcached_config)
    other = open_store(adapter="memcached", adapter_config=memcached_config)  # a second client
    try:
        keys = [f"k{i}" for i in range(40)]
        for i, key in enumerate(keys):
            store.set("s", key, i)
        for key in keys[:5]:  # their remembered cas is now stale: those stores lose and retry
            other.set("s", key, "theirs")
        pipelined = _counting(monkeypatch, "store_many")
        monkeypatch.setattr(Node, "store_on_epoch", lambda *a: pytest.fail("a remembered write went alone"))
        mapping = {key: f"new{i}" for i, key in enumerate(keys)} | {"fresh": 1}
        results = store.set_many("s", mapping)
        assert {k: r.old_value for k, r in results.items()} == (
            {k: ("theirs" if i < 5 else i) for i, k in enumerate(keys)} | {"fresh": None}
        )
        assert {k: r.new_value for k, r in results.items()} == mapping
        assert len(pipelined) == len(memcached_config["servers"])  # one pipeline per server
        assert other.get_many("s", [*keys, "fresh"]) == mapping
        assert sorted(other.list_keys("s")) == sorted(mapping)
        # a fresh client remembers nothing: it reads every item in one gets per server, then pipelines
        assert other.set_many("s", {k: "again" for k in keys})["k7"].old_value == "new7"
        # a deadline rides along (the plans' write with expires_at); the entry is written with it
        assert store.batch([{"op": "set", "scope": "s", "key": "k9", "value": 9, "ttl_ms": 60_000}])[0].ok
        assert store.get("s", "k9") == 9 and store.ttl("s", "k9") is not None
    finally:
        store.close()
        other.close()


def test_batch_sets_over_remembered_items_give_what_single_sets_give(
    memcached_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plain swap (a remembered item of the pair alone, no deadline) and the items it leaves
    to the record path (a deadline on either side) answer and store alike."""
    store = open_store(adapter="memcached", adapter_config=memcached_config)
    try:
        store.set("s", "plain", 1)
        store.set("s", "dated", 2, ttl_ms=60_000)
        store.set("s", "café", 3)
        store.set("s", "later", 4)
        assert store.batch([{"op": "get", "scope": "s", "key": "plain"}])[0].result == 1
        pipelined = _counting(monkeypatch, "store_many")
        monkeypatch.setattr(Node, "gets_many", lambda *a: pytest.fail("a remembered item was read again"))
        swap, swapped = records.swap_plain, list[bytes]()

        def seen_swap(item: bytes, scope: bytes, key: bytes, value: bytes) -> tuple[bytes, bytes] | None:
            if (done := swap(item, scope, key, value)) is not None:
                swapped.append(key)
            return done

        monkeypatch.setattr(records, "swap_plain", seen_swap)
        ops = [
            {"op": "set", "scope": "s", "key": "plain", "value": {"n": 1}},
            {"op": "set", "scope": "s", "key": "dated", "value": "x"},  # drops its deadline
            {"op": "set", "scope": "s", "key": "café", "value": ["é"]},
            {"op": "set", "scope": "s", "key": "later", "value": 5, "ttl_ms": 60_000},  # gains one
        ]
        results = [item.result for item in store.batch(ops)]
        assert [(r.old_value, r.new_value) for r in results] == [(1, {"n": 1}), (2, "x"), (3, ["é"]), (4, 5)]
        assert sum(pipelined) == 4  # each a pipelined cas store, none alone
        assert sorted(swapped) == ["café".encode(), b"plain"]  # cut from their bytes
        assert store.ttl("s", "dated").ttl_ms is None and store.ttl("s", "later").ttl_ms is not None
        monkeypatch.undo()
        again = store.set_many("s", {"plain": 2, "dated": "y", "café": 4})
        assert {k: r.old_value for k, r in again.items()} == {"plain": {"n": 1}, "dated": "x", "café": ["é"]}
        assert store.get_many("s", ["plain", "dated", "café", "later"]) == {
            "plain": 2, "dated": "y", "café": 4, "later": 5,
        }  # fmt: skip
    finally:
        store.close()


def test_batch_updates_read_in_one_gets_and_swap_in_one_pipeline_retrying_lost_races(
    memcached_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(adapter="memcached", adapter_config=memcached_config)
    other = open_store(adapter="memcached", adapter_config=memcached_config)
    try:
        keys = [f"k{i}" for i in range(30)]
        store.set_many("s", {k: i for i, k in enumerate(keys)})
        real_gets, real = Node.gets, Node.store_many
        reads = _counting(monkeypatch, "gets_many")
        swaps = _counting(monkeypatch, "store_many")
        monkeypatch.setattr(Node, "gets", lambda self, key: pytest.fail("a batch read went out alone"))
        k0 = store.adapter._codec.data_key("s", "k0")
        interfered: list[bool] = []

        def another_writer_first(self: Node, stores: list[Any]) -> list[Any]:
            if not interfered:  # k0 changes between the round's read and its swap: k0's swap loses
                interfered.append(True)
                node = store.adapter._cluster.node(k0)
                item, cas, _ = real_gets(node, k0)
                own = records.find(item, k0, b"s", b"k0")
                assert node.store(k0, records.replaced(item, k0, own._replace(value=b"100")), cas).ok
            return real(self, stores)

        monkeypatch.setattr(Node, "store_many", another_writer_first)
        inc = [{"type": "increment", "path": "", "by": 1}]
        ops = [{"op": "update", "scope": "s", "key": k, "ops": inc} for k in keys]
        ops.append({"op": "compare-and-set", "scope": "s", "key": "k1", "expected": 9, "value": 0})
        items = store.batch(ops)
        assert all(item.ok for item in items)
        assert [item.result.new_value for item in items[:30]] == [101, *range(2, 31)]
        assert items[-1].result.swapped is False
        servers = len(memcached_config["servers"])
        # the first round: one gets and one pipeline per server; then k0 alone, read and swapped again
        assert len(reads) <= 2 * servers and len(swaps) <= 2 * servers
        monkeypatch.undo()
        assert other.get_many("s", keys) == {"k0": 101} | {k: i + 1 for i, k in enumerate(keys) if i}
    finally:
        store.close()
        other.close()


def test_a_store_refused_for_memory_fails_alone_and_the_others_apply(
    memcached_servers: list[str], open_memcached: Callable[..., StateStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_memcached(memcached_servers)
    store.set_many("s", {"a": 1, "b": 2, "c": 3})
    victim = store.adapter._codec.data_key("s", "b")
    real = Node.store_many

    def refuse_b(self: Node, stores: list[Any]) -> list[Any]:
        kept = [s for s in stores if s.key != victim]
        replies = iter(real(self, kept))
        return [OutOfMemoryError("out of memory") if s.key == victim else next(replies) for s in stores]

    monkeypatch.setattr(Node, "store_many", refuse_b)
    items = store.batch([{"op": "set", "scope": "s", "key": k, "value": 10} for k in "abc"])
    assert [i.ok for i in items] == [True, False, True]
    assert "out of memory" in str(items[1].error)
    assert items[0].result.old_value == 1 and items[2].result.old_value == 3
    monkeypatch.undo()
    assert store.get_many("s", ["a", "b", "c"]) == {"a": 10, "b": 2, "c": 10}


class _Socket:
    """A socket that hands out a fixed reply in small pieces and remembers what was sent."""

    def __init__(self, reply: bytes, piece: int = 3) -> None:
        self.pieces = [reply[i : i + piece] for i in range(0, len(reply), piece)]
        self.sent = b""

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def recv(self, _size: int) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""

    def close(self) -> None:
        pass


def _conn(reply: bytes, piece: int = 3) -> Conn:
    conn = Conn(("127.0.0.1", 1))
    conn.sock = _Socket(reply, piece)
    return conn


def test_the_multi_get_reader_parses_split_replies_and_refuses_broken_ones() -> None:
    reply = b"VALUE a 0 5 11\r\nEN\r\nD\r\nVALUE b 0 0 12\r\n\r\nEND\r\n"  # a value holding CRLF
    conn = _conn(reply, piece=2)
    assert _fetch(conn, b"gets", [b"a", b"b"]) == {b"a": (b"EN\r\nD", b"11"), b"b": (b"", b"12")}
    assert conn.sock.sent == b"gets a b\r\n"
    many = [b"k%d" % i for i in range(150)]  # two request lines, two END replies
    assert _fetch(_conn(b"VALUE k149 0 1\r\nx\r\nEND\r\nEND\r\n"), b"get", many) == {b"k149": b"x"}
    for broken, error in [
        (b"SERVER_ERROR busy\r\n", MemcacheServerError),
        (b"VALUE a 0 5\r\nabcdefg\r\nEND\r\n", MemcacheUnknownError),  # value longer than announced
        (b"END\r\nEND\r\n", MemcacheUnknownError),  # more replies than requests
        (b"VALUE a 0 5\r\nab", Exception),  # the server closed the connection mid-value
    ]:
        conn = _conn(broken)
        with pytest.raises(error):
            _fetch(conn, b"get", [b"a"])
        assert conn.sock is None  # never reused after a reply out of step


def test_pipelined_store_replies_stop_at_the_first_one_out_of_step() -> None:
    conn = _conn(b"HD c5\r\nNS\r\nSERVER_ERROR out of memory\r\nVALUE x\r\nHD\r\n")
    assert _reply_lines(conn, 5) == [b"HD c5", b"NS", b"SERVER_ERROR out of memory", b"VALUE x"]
    assert conn.sock is None
    conn = _conn(b"HD c5\r\nEX\r\n")
    assert _reply_lines(conn, 2) == [b"HD c5", b"EX"] and conn.sock is not None
    conn = _conn(b"HD c5\r\n")
    assert _reply_lines(conn, 2) == [b"HD c5"] and conn.sock is None  # closed before the second

"""Key encoding, item formats and config parsing: the parts that need no server."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from iii_state_conformance.suite.names import HOSTILE
from iii_state_memcached import records
from iii_state_memcached.keys import MAX_KEY_BYTES, KeyCodec
from iii_state_memcached.records import Record
from iii_state_memcached.settings import parse_server, read_settings

from iii_state_core import BackendError, ConfigError

PREFIX = b"iii-state:"


def _valid(mc_key: bytes) -> bool:
    return len(mc_key) <= MAX_KEY_BYTES and all(0x20 < b < 0x7F for b in mc_key)


def test_every_hostile_pair_gets_a_valid_distinct_memcached_key() -> None:
    codec = KeyCodec(PREFIX, 16)
    names = [*HOSTILE, "x" * 250, "é" * 100]
    seen: dict[bytes, tuple[str, str]] = {}
    for pair in itertools.product(names, names):
        mc_key = codec.data_key(*pair)
        assert _valid(mc_key), (pair, mc_key)
        assert seen.setdefault(mc_key, pair) == pair, f"{pair} and {seen[mc_key]} share {mc_key!r}"


def test_short_pairs_are_encoded_readably_and_long_ones_hashed() -> None:
    codec = KeyCodec(PREFIX, 16)
    assert codec.data_key("users", "alice") == b"iii-state:dusers:alice"
    assert codec.data_key("a:b", "c") == b"iii-state:da%3Ab:c"
    assert codec.data_key("a", "b:c") == b"iii-state:da:b%3Ac"
    long_key = codec.data_key("s", "k" * 300)
    assert long_key.startswith(b"iii-state:D") and _valid(long_key)
    assert codec.is_hashed(long_key) and not codec.is_hashed(codec.data_key("s", "k"))


def test_index_node_keys_are_valid_and_distinct_per_scope_and_place() -> None:
    codec = KeyCodec(PREFIX, 16)
    places = [(0, 0), (1, 0), (1, 1), (11, 0), (11, 2047), (64, 2**64 - 1)]
    all_keys = [codec.node_key(scope, d, p) for scope in [*HOSTILE, "s" * 400] for d, p in places]
    assert len(set(all_keys)) == len(all_keys)
    assert all(_valid(k) for k in all_keys)
    assert codec.nodes_hashed("s" * 400) and not codec.nodes_hashed("users")


@given(st.text(), st.text())
def test_data_keys_are_always_valid(scope: str, key: str) -> None:
    try:
        scope.encode("utf-8"), key.encode("utf-8")
    except UnicodeEncodeError:
        return  # the core rejects lone surrogates before any adapter sees them
    assert _valid(KeyCodec(PREFIX, 16).data_key(scope, key))


def test_a_digest_of_the_wrong_size_is_refused() -> None:
    codec = KeyCodec(PREFIX, 16, digest=lambda data: b"short")
    with pytest.raises(ValueError):
        codec.data_key("s", "k" * 300)


def test_records_round_trip_and_find_their_own_pair() -> None:
    a = Record(b"s", b"a", 1, b'{"v":1}')
    b = Record(b"s", b"b", 2, b"[]")
    item = records.pack([a, b])
    assert list(records.iter_records(item, b"x")) == [a, b]
    assert records.find(item, b"x", b"s", b"b") == b
    assert records.find(item, b"x", b"s", b"c") is None
    assert records.find(records.pack([a]), b"x", b"s", b"a") == a
    assert records.find(records.pack([a]), b"x", b"s", b"b") is None
    swapped = records.replaced(item, b"x", a._replace(value=b"2"))
    assert records.find(swapped, b"x", b"s", b"a") == a._replace(value=b"2")
    assert records.find(swapped, b"x", b"s", b"b") == b
    assert records.without(item, b"x", b"s", b"a") == records.pack([b])
    assert records.without(records.pack([a]), b"x", b"s", b"a") is None


def test_a_plain_swap_builds_what_replaced_builds_and_only_for_a_plain_item_of_the_pair_alone() -> None:
    own = Record("sé".encode(), "ké".encode(), 7, b'{"v":1}')
    for value in (b"2", b"", b'"' + b"x" * 70_000 + b'"'):
        assert records.swap_plain(records.pack([own]), own.scope, own.key, value) == (
            records.replaced(records.pack([own]), b"x", own._replace(value=value)),
            own.value,
        )
    other = Record(b"s", b"b", 2, b"[]")
    refused = [
        records.pack([own._replace(deadline=5)]),  # a deadline: the write works out its lifetime
        records.pack([own, other]),  # colliding pairs share the item
        records.pack([other, own]),
        records.pack([other]),  # another pair's record alone
        records.pack([own._replace(key=own.key + b"x")]),
        records.pack([Record(own.scope + own.key[:1], own.key[1:], 7, b"1")]),  # same bytes, other split
        records.pack([own])[:-1],  # truncated
        b"",
        b"plain text",
    ]
    for item in refused:
        assert records.swap_plain(item, own.scope, own.key, b"2") is None, item
    for short in (b"", b"\xa1", b"\xa1\x00\x00\x00"):  # shorter than a head: no error, no swap
        assert records.swap_plain(short, b"", b"", b"2") is None


TRUNCATED = records.pack([Record(b"s", b"k", 1, b"v")])[:-1]


@pytest.mark.parametrize("item", [b"", b"plain text", b"\xa1\x00\x00", TRUNCATED])
def test_an_item_in_another_format_is_a_clear_error(item: bytes) -> None:
    with pytest.raises(BackendError, match="not in the iii-state format"):
        records.find(item, b"iii-state:dx:y", b"x", b"y")


def test_index_items_round_trip_and_drop_empty_sections() -> None:
    sections = {"s": {"b": 2, "a": 1}, "empty": {}}
    raw = records.dump_bucket(sections)
    assert raw is not None and raw.index(b'"a"') < raw.index(b'"b"')  # stored sorted
    assert records.load_bucket(raw, b"k") == {"s": {"a": 1, "b": 2}}
    assert records.dump_bucket({"s": {}}) is None
    assert records.load_shard(records.dump_shard({"x", "y"}), b"k") == {"x", "y"}
    assert records.dump_shard(set()) is None
    with pytest.raises(BackendError):
        records.load_bucket(b'{"f":99}', b"k")


@pytest.mark.parametrize(
    ("text", "name"),
    [("127.0.0.1:11311", "127.0.0.1:11311"), ("cache", "cache:11211"), ("[::1]:99", "[::1]:99"),
     ("unix:/run/mc.sock", "unix:/run/mc.sock")],
)
def test_server_entries_parse(text: str, name: str) -> None:
    assert parse_server(text).name == name


@pytest.mark.parametrize("text", ["", "host:0", "host:x", "::1", "[::1", "unix:relative", "a b:1"])
def test_bad_server_entries_are_clear_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="server"):
        parse_server(text)


@pytest.mark.parametrize(
    "config",
    [{"servrs": "a:1"}, {"key_prefix": "has space"}, {"key_prefix": "é"}, {"key_prefix": "x" * 101},
     {"timeout": "1"}, {"index_buckets": 0}, {"servers": []}, {"servers": ["a:1", "a:1"]},
     {"tls_ca_file": "/x"}],
)
def test_bad_configs_are_refused(config: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        read_settings(config)


def test_one_server_string_and_defaults() -> None:
    settings = read_settings({"servers": "cache-host:11211"})
    assert [s.name for s in settings.servers] == ["cache-host:11211"]
    assert settings.key_prefix == b"iii-state:" and settings.tls is None

"""Stores written by layout 1 (16 JSON index buckets per scope) keep working under layout 2.

``Layout1Writer`` is a minimal copy of what the old adapter wrote: the layout record, the scope
shards, one JSON bucket per ``blake2b(key) mod 16`` and data items (whose format did not
change). The new adapter opens such a store, converts each scope's buckets into its index tree
when it first touches the scope, and reads, writes and lists everything through it.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
from typing import Any

from iii_state_memcached import records
from iii_state_memcached.keys import KeyCodec
from iii_state_memcached.nodes import Cluster
from iii_state_memcached.settings import read_settings

from iii_state_core import open_store

BUCKETS = 16
#: Keys in the large old scope: several leaves' worth once converted.
BIG = 1200


class Layout1Writer:
    def __init__(self, config: dict[str, Any]) -> None:
        settings = read_settings(config)
        self.cluster = Cluster(settings)
        self.codec = KeyCodec(settings.key_prefix, 16)
        self.prefix = settings.key_prefix
        self.buckets: dict[bytes, dict[str, dict[str, int]]] = {}
        self.shards: dict[bytes, set[str]] = {}

    def put(self, scope: str, key: str, value: Any) -> None:
        generation = random.getrandbits(63)
        data_key = self.codec.data_key(scope, key)
        record = records.Record(scope.encode(), key.encode(), generation, json.dumps(value).encode())
        item = records.pack([record])
        assert self.cluster.node(data_key).store(data_key, item, None).ok
        spread = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % BUCKETS
        bucket = self.codec.legacy_bucket_keys(scope, BUCKETS)[spread]
        self.buckets.setdefault(bucket, {}).setdefault(scope, {})[key] = generation
        self.shards.setdefault(self.codec.scope_shard_key(scope), set()).add(scope)

    def flush(self) -> None:
        """Write the index items and the layout record as layout 1 did."""
        for bucket, sections in self.buckets.items():
            text = json.dumps({"f": 1, "s": sections}, separators=(",", ":"), sort_keys=True)
            assert self.cluster.node(bucket).store(bucket, text.encode(), None).ok
        for shard, scopes in self.shards.items():
            text = json.dumps({"f": 1, "s": sorted(scopes)}, separators=(",", ":"), sort_keys=True)
            assert self.cluster.node(shard).store(shard, text.encode(), None).ok
        meta = json.dumps({"f": 1, "index_buckets": BUCKETS, "scope_shards": 16}, sort_keys=True)
        assert self.cluster.node(self.codec.meta_key).store(self.codec.meta_key, meta.encode(), None).ok

    def bucket_items(self, scope: str) -> dict[bytes, bytes]:
        return self.cluster.get_many(self.codec.legacy_bucket_keys(scope, BUCKETS))

    def layout(self) -> Any:
        return json.loads(self.cluster.node(self.codec.meta_key).get(self.codec.meta_key) or b"null")


def test_a_layout_1_store_is_read_written_and_listed_by_the_new_index(
    memcached_config: dict[str, Any],
) -> None:
    config = {**memcached_config, "key_prefix": f"t{secrets.token_hex(4)}:"}
    old = Layout1Writer(config)
    for i in range(BIG):
        old.put("big", f"k{i:05d}", {"i": i})
    for i in range(5):
        old.put("small", f"s{i}", i)
    old.flush()
    assert len(old.bucket_items("big")) == BUCKETS

    store = open_store(adapter="memcached", adapter_config=config)
    try:
        assert old.layout() == {"f": 2, "legacy_buckets": 16, "scope_shards": 16}, "old clients now refused"
        assert store.list_groups() == ["big", "small"]
        assert old.bucket_items("big") == {} and old.bucket_items("small") == {}, "converted on touch"
        walked: list[tuple[str, Any]] = []
        page = store.list_entries("big", None, 250)
        walked += page.entries
        while not page.done:
            page = store.list_entries("big", page.next_cursor, 250)
            walked += page.entries
        assert sorted(walked) == [(f"k{i:05d}", {"i": i}) for i in range(BIG)]
        # every operation works on the converted entries
        assert store.get("big", "k00007") == {"i": 7}
        assert store.set("big", "k00007", "new").old_value == {"i": 7}
        assert store.delete("big", "k00008") == {"i": 8}
        store.set("big", "fresh", 1)
        keys = set(store.list_keys("big"))
        assert len(keys) == BIG and "fresh" in keys and "k00008" not in keys
        assert sorted(store.list("small")) == [0, 1, 2, 3, 4]
        for i in range(5):
            store.delete("small", f"s{i}")
        assert store.list_groups() == ["big"]
    finally:
        store.close()
    # a client that opens the converted store later sees the same
    again = open_store(adapter="memcached", adapter_config=config)
    try:
        assert len(again.list_keys("big")) == BIG
    finally:
        again.close()


def test_a_scope_is_converted_by_the_first_write_too(memcached_config: dict[str, Any]) -> None:
    config = {**memcached_config, "key_prefix": f"t{secrets.token_hex(4)}:"}
    old = Layout1Writer(config)
    for i in range(50):
        old.put("s", f"k{i}", i)
    old.flush()
    store = open_store(adapter="memcached", adapter_config=config)
    try:
        store.set("s", "k-new", 50)  # the first touch of the scope is a create
        assert old.bucket_items("s") == {}
        assert sorted(store.list("s")) == list(range(51))
        assert store.delete("s", "k3") == 3 and len(store.list_keys("s")) == 50
    finally:
        store.close()

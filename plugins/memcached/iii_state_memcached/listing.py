"""Walking the listing index: ``scan`` pages of a scope and ``list_scopes``.

A scope's keys have a fixed order — bucket number, then key in code-point order — so a walk
with a cursor ``(bucket, last key)`` returns every key present for the whole walk exactly
once (ordered listing). Index entries whose value is gone are skipped and pruned.
"""

from __future__ import annotations

import json
from bisect import bisect_right

from iii_state_core import InvalidCursorError
from iii_state_core.adapter import Page

from . import records
from .index import Index, quietly
from .keys import KeyCodec
from .nodes import Cluster

#: Values fetched per request while looking for one live key of a scope.
_PROBE = 16
#: Scopes whose buckets ``list_scopes`` fetches together.
_SCOPE_BATCH = 16


class Listing:
    def __init__(self, cluster: Cluster, codec: KeyCodec, index: Index) -> None:
        self.cluster = cluster
        self.codec = codec
        self.index = index

    # -- cursors -----------------------------------------------------------------------------------
    def _decode_cursor(self, cursor: str | None) -> tuple[int, str | None]:
        if cursor is None:
            return 0, None
        try:
            bucket, after = json.loads(cursor)
        except (ValueError, TypeError):
            bucket = after = None
        if (
            isinstance(bucket, bool)
            or not isinstance(bucket, int)
            or not 0 <= bucket < self.codec.buckets
            or not isinstance(after, str)
        ):
            raise InvalidCursorError(
                "cursor does not belong to this memcached store's listing; start the walk again without it"
            )
        return bucket, after

    @staticmethod
    def _encode_cursor(bucket: int, key: str) -> str:
        return json.dumps([bucket, key], ensure_ascii=False, separators=(",", ":"))

    # -- scan ----------------------------------------------------------------------------------------
    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        """Up to ``limit`` live entries of ``scope`` after ``cursor``, and the next cursor."""
        start, after = self._decode_cursor(cursor)
        bucket_keys = self.codec.bucket_keys(scope)[start:]
        loaded = self.cluster.get_many(bucket_keys)
        chosen: list[tuple[int, str, int]] = []
        more = False
        for offset, bucket_key in enumerate(bucket_keys):
            item = loaded.get(bucket_key)
            if item is None:
                continue
            section = records.load_bucket(item, bucket_key).get(scope)
            if not section:
                continue
            keys = sorted(section)
            if offset == 0 and after is not None:
                keys = keys[bisect_right(keys, after) :]
            for key in keys:
                if len(chosen) == limit:
                    more = True
                    break
                chosen.append((start + offset, key, section[key]))
            if more:
                break
        page, ghosts = self._values(scope, [(key, generation) for _, key, generation in chosen])
        if ghosts:
            quietly("pruning the listing index", lambda: self.index.prune(scope, ghosts))
        next_cursor = self._encode_cursor(chosen[-1][0], chosen[-1][1]) if more else None
        return page, next_cursor

    def _values(
        self, scope: str, entries: list[tuple[str, int]]
    ) -> tuple[list[tuple[str, bytes]], dict[str, int]]:
        """The live ``(key, value)`` pairs among ``entries``, and the ghosts (key -> generation)."""
        scope_raw = scope.encode("utf-8")
        data_keys = [self.codec.data_key(scope, key) for key, _ in entries]
        items = self.cluster.get_many(data_keys)
        page: list[tuple[str, bytes]] = []
        ghosts: dict[str, int] = {}
        for (key, generation), data_key in zip(entries, data_keys, strict=True):
            item = items.get(data_key)
            record = None if item is None else records.find(item, data_key, scope_raw, key.encode("utf-8"))
            if record is None:
                ghosts[key] = generation
            else:
                page.append((key, record.value))
        return page, ghosts

    # -- scopes --------------------------------------------------------------------------------------
    def list_scopes(self) -> list[str]:
        """Every scope with at least one live key; scopes found empty are pruned on the way."""
        shards = self.cluster.get_many(self.codec.shard_keys)
        known: set[str] = set()
        for shard_key, item in shards.items():
            known |= records.load_shard(item, shard_key)
        ordered = sorted(known)
        live: list[str] = []
        for at in range(0, len(ordered), _SCOPE_BATCH):
            batch = ordered[at : at + _SCOPE_BATCH]
            wanted = [k for scope in batch for k in self.codec.bucket_keys(scope)]
            buckets = self.cluster.get_many(wanted)
            for scope in batch:
                entries: dict[str, int] = {}
                for bucket_key in self.codec.bucket_keys(scope):
                    bucket = buckets.get(bucket_key)
                    if bucket is not None:
                        entries.update(records.load_bucket(bucket, bucket_key).get(scope, {}))
                if self._holds_a_live_key(scope, entries):
                    live.append(scope)
        return live

    def _holds_a_live_key(self, scope: str, entries: dict[str, int]) -> bool:
        pending = sorted(entries.items())
        ghosts: dict[str, int] = {}
        for at in range(0, len(pending), _PROBE):
            page, dead = self._values(scope, pending[at : at + _PROBE])
            ghosts.update(dead)
            if page:
                if ghosts:
                    quietly("pruning the listing index", lambda: self.index.prune(scope, ghosts))
                return True

        def drop() -> None:
            self.index.prune(scope, ghosts)
            self.index.drop_scope_if_empty(scope)

        quietly("pruning the scope index", drop)
        return False

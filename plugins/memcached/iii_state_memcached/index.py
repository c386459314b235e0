"""The listing index: per-scope key buckets and a sharded scope index, kept with gets/cas.

memcached cannot list its keys, so each scope has ``index_buckets`` bucket items mapping its
keys to their generation, and ``scope_shards`` shard items list the scopes. Rules that keep
every stored value reachable by listing:

- a key is added to its bucket *before* its value is first stored, and removed only *after*
  the value is deleted, and only if the bucket still names the deleted value's generation;
- both sides that could race re-check after writing (the classic store-then-load pattern):
  a creator reads the bucket and the scope shard again after storing its value and repairs
  them; a pruner re-reads the values after dropping their index entries and puts back any that
  reappeared. Whichever of the two acts last sees the other's write, so no interleaving leaves
  a live value unlisted.

A crash between steps can leave an index entry without a value (a "ghost"); listing skips and
prunes ghosts, so it never shows one, and ``list_scopes`` prunes scopes whose keys are all gone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Final

from iii_state_core import BackendError, UnknownOutcomeError
from iii_state_core.retry import LOST, Lost, retry

from . import records
from .keys import KeyCodec
from .nodes import Cluster, OutOfMemoryError

log = logging.getLogger("iii_state.memcached")

NO_CHANGE: Final = b"\x00no-change"
Change = Callable[[bytes | None], bytes | None]
#: Puts entries of a dropped index item back into what the key holds now.
Merge = Callable[[bytes | None, bytes], bytes | None]


def _merged(merge: Merge, current: bytes | None, *, lost: bytes) -> bytes | None:
    return merge(current, lost)


def merge_buckets(mc_key: bytes) -> Merge:
    def merge(current: bytes | None, lost: bytes) -> bytes | None:
        sections = records.load_bucket(current, mc_key)
        for scope, entries in records.load_bucket(lost, mc_key).items():
            section = sections.setdefault(scope, {})
            for key, generation in entries.items():
                section.setdefault(key, generation)
        return records.dump_bucket(sections)

    return merge


def merge_shards(mc_key: bytes) -> Merge:
    def merge(current: bytes | None, lost: bytes) -> bytes | None:
        return records.dump_shard(records.load_shard(current, mc_key) | records.load_shard(lost, mc_key))

    return merge


class Index:
    def __init__(self, cluster: Cluster, codec: KeyCodec, max_attempts: int, item_limit: int) -> None:
        self.cluster = cluster
        self.codec = codec
        self.max_attempts = max_attempts
        #: Largest item the servers take (index items included).
        self.item_limit = item_limit

    # -- the one cas loop every index change goes through -----------------------------------------
    def _update(self, mc_key: bytes, change: Change, what: str, merge: Merge) -> None:
        """Apply ``change`` to the item at ``mc_key`` atomically (gets, then cas/add/delete).

        ``change`` gets the current item (``None``: missing) and returns the new one, ``None``
        to delete it, or :data:`NO_CHANGE`. ``merge`` puts the old item's entries back when
        memcached dropped it on an out-of-memory store (entries too many are harmless ghosts;
        entries too few would hide live values).

        :raises BackendError: when the item would outgrow the server's item size, when the
            retry budget runs out, or when the server fails.
        """
        node = self.cluster.node(mc_key)

        def attempt() -> Lost | None:
            item, cas, _ = node.gets(mc_key)
            new = change(item)
            if new is NO_CHANGE:
                return None
            if new is not None and len(new) > self.item_limit:
                raise BackendError(
                    f"{what} is full: it would need {len(new)} bytes and memcached items hold at most "
                    f"{self.item_limit}; raise the adapter's index_buckets (for every client) or the "
                    f"server's item size (-I)"
                )
            try:
                if item is None:
                    done = new is None or node.store(mc_key, new, None).ok
                elif new is None:
                    done = cas is not None and node.delete(mc_key, cas) is True
                else:
                    done = node.store(mc_key, new, cas).ok
            except UnknownOutcomeError as exc:
                # Only the index was in flight, never the entry's value: a plain failure for callers.
                raise BackendError(f"{exc} (while updating {what})") from None
            except OutOfMemoryError:
                if item is not None and not node.put_back(mc_key, item):
                    self._update(mc_key, partial(_merged, merge, lost=item), what, merge)
                raise
            return None if done else LOST

        retry(attempt, attempts=self.max_attempts)

    def _bucket_key(self, scope: str, key: str) -> bytes:
        return self.codec.bucket_keys(scope)[self.codec.bucket_of(key)]

    # -- scopes ------------------------------------------------------------------------------------
    def ensure_scope(self, scope: str) -> None:
        """List ``scope`` in its shard of the scope index (writes only when it is absent)."""
        shard = self.codec.scope_shard_key(scope)

        def change(item: bytes | None) -> bytes | None:
            scopes = records.load_shard(item, shard)
            if scope in scopes:
                return NO_CHANGE
            scopes.add(scope)
            return records.dump_shard(scopes)

        self._update(shard, change, "the scope index", merge_shards(shard))

    def drop_scope_if_empty(self, scope: str) -> bool:
        """Remove ``scope`` from the scope index, then put it back if a key appeared meanwhile.

        The caller has found no live key and pruned the ghosts. :returns: ``True`` when dropped.
        """
        shard = self.codec.scope_shard_key(scope)

        def change(item: bytes | None) -> bytes | None:
            scopes = records.load_shard(item, shard)
            if scope not in scopes:
                return NO_CHANGE
            scopes.discard(scope)
            return records.dump_shard(scopes)

        self._update(shard, change, "the scope index", merge_shards(shard))
        # Re-check after the write: a creator that indexed a key before our removal is seen here;
        # one that indexes after it sees the scope missing in its own re-check and adds it back.
        if self.scope_has_entries(scope):
            self.ensure_scope(scope)
            return False
        return True

    def scope_has_entries(self, scope: str) -> bool:
        keys = self.codec.bucket_keys(scope)
        for mc_key, item in self.cluster.get_many(keys).items():
            if records.load_bucket(item, mc_key).get(scope):
                return True
        return False

    # -- key entries -------------------------------------------------------------------------------
    def put_entry(self, scope: str, key: str, generation: int) -> None:
        """Point ``key``'s index entry at ``generation`` (adding the entry when missing)."""
        bucket = self._bucket_key(scope, key)

        def change(item: bytes | None) -> bytes | None:
            sections = records.load_bucket(item, bucket)
            section = sections.setdefault(scope, {})
            if section.get(key) == generation:
                return NO_CHANGE
            section[key] = generation
            return records.dump_bucket(sections)

        self._update(bucket, change, f"the listing index of scope {scope[:80]!r}", merge_buckets(bucket))

    def drop_entries(self, scope: str, entries: dict[str, int]) -> None:
        """Remove the entries of ``entries`` (key -> generation) that still name that generation."""
        by_bucket: dict[bytes, dict[str, int]] = {}
        for key, generation in entries.items():
            by_bucket.setdefault(self._bucket_key(scope, key), {})[key] = generation
        for bucket, doomed in by_bucket.items():

            def change(
                item: bytes | None, bucket: bytes = bucket, doomed: dict[str, int] = doomed
            ) -> bytes | None:
                sections = records.load_bucket(item, bucket)
                section = sections.get(scope, {})
                gone = [k for k, g in doomed.items() if section.get(k) == g]
                if not gone:
                    return NO_CHANGE
                for k in gone:
                    del section[k]
                return records.dump_bucket(sections)

            self._update(bucket, change, f"the listing index of scope {scope[:80]!r}", merge_buckets(bucket))

    def after_create(self, scope: str, key: str, generation: int) -> None:
        """The creator's re-check: its entry and its scope must still be indexed."""
        bucket = self._bucket_key(scope, key)
        item = self.cluster.node(bucket).get(bucket)
        if records.load_bucket(item, bucket).get(scope, {}).get(key) != generation:
            # A racing delete or pruner touched the entry: point it at whatever record is live now.
            self.resync(scope, [key])
        shard = self.codec.scope_shard_key(scope)
        if scope not in records.load_shard(self.cluster.node(shard).get(shard), shard):
            self.ensure_scope(scope)

    def resync(self, scope: str, keys: list[str]) -> None:
        """Re-index those ``keys`` whose value is live now (after a prune, or a racing delete)."""
        scope_raw = scope.encode("utf-8")
        wanted = {self.codec.data_key(scope, key): key for key in keys}
        for mc_key, item in self.cluster.get_many(list(wanted)).items():
            key = wanted[mc_key]
            record = records.find(item, mc_key, scope_raw, key.encode("utf-8"))
            if record is not None:
                self.ensure_scope(scope)
                self.put_entry(scope, key, record.generation)

    def prune(self, scope: str, ghosts: dict[str, int]) -> None:
        """Drop index entries whose value is gone (evicted, deleted by a crashed client, …)."""
        if not ghosts:
            return
        self.drop_entries(scope, ghosts)
        # The pruner's re-check after its write (see the module docstring).
        self.resync(scope, list(ghosts))


def quietly(what: str, step: Callable[[], object]) -> None:
    """Run index housekeeping after the entry's own write already happened.

    The write is done and must be reported as done; a failure here leaves at worst an index
    entry without a value, which listing skips and prunes.
    """
    try:
        step()
    except Exception as exc:  # see the docstring: the write itself already happened
        log.warning("memcached adapter: %s failed after the write succeeded: %s", what, exc)

"""The listing index: per-scope trees of bounded leaves, and a sharded scope index, kept with cas.

memcached cannot list its keys, so each scope has a tree of index nodes over the 64-bit hash of
its keys (``keys.key_hash``). The node at depth ``d`` and path ``p`` covers the hashes whose
first ``d`` bits are ``p``. A node is a leaf (a log of entry records: key -> generation) until
it outgrows ``leaf_bytes``; then it is split once and for all: sealed (frozen), its entries
copied into its two children at depth ``d + 1``, and turned into a split marker. Adding an entry
is appending one record to one small leaf, whatever the scope's size; a leaf this process wrote
last is stored straight away with its remembered cas (one round trip, no read).

``scope_shards`` shard items list the scopes. Rules that keep every stored value reachable:

- an entry is put in its leaf and its scope in its shard *before* the value is first stored;
  an entry is dropped only *after* its value is deleted, and only if it still names the
  deleted value's generation (a ``DROP`` record carries it);
- both sides that could race re-check after writing (store, then load): a creator reads its
  leaf and scope shard again after storing its value — in the same round trip when they share
  a server — and repairs them; a pruner re-reads the values after dropping their entries and
  puts back any that reappeared. Whichever acts last sees the other's write;
- a split copies a frozen leaf: a writer that meets a sealed leaf finishes the split first, so
  no entry is written where the copy would miss it.

A crash between steps can leave an entry without a value (a "ghost"); listing skips and prunes
ghosts, and ``list_scopes`` prunes scopes whose keys are all gone. A split marker that memcached
evicts is stepped over (its children are found on the path below it); an evicted leaf takes its
entries out of listings, as any evicted index item does.

Stores written by layout 1 (16 JSON buckets per scope) are converted scope by scope on first
touch: the bucket's entries are put in the tree before the bucket is removed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Final, NamedTuple

from iii_state_core import BackendError, UnknownOutcomeError
from iii_state_core.retry import LOST, Lost, retry

from . import records
from .cas_cache import CasCache, Known
from .keys import MAX_DEPTH, KeyCodec, key_hash
from .nodes import CasStore, Cluster, Node, OutOfMemoryError, Stored
from .pace import breathe

log = logging.getLogger("iii_state.memcached")

NO_CHANGE: Final = b"\x00no-change"
Change = Callable[[bytes | None], bytes | None]
#: A leaf is split (or compacted) once appending would take it past this many bytes.
LEAF_BYTES = 8192
#: Path nodes read beyond the deepest one known, when a path turns out deeper.
_READ_AHEAD = 6
#: Leaves read ahead, in the same request, by a walk (``Index.leaves``).
_PREFETCH = 8
#: A cas no probe ever returns: "not known", forcing the full re-check.
_UNKNOWN: Final = b"?"
_TOP = 1 << 64
#: Largest run of entry records appended to a leaf (``_append_known``); more is stored whole.
_APPEND_BYTES = 1024


def path_of(h: int, depth: int) -> int:
    return h >> (64 - depth) if depth else 0


class Located(NamedTuple):
    """A scope's leaf for some hash: its node key, place, and the item as read (``None``: the
    leaf is empty and has no item yet)."""

    key: bytes
    depth: int
    path: int
    item: bytes | None
    cas: bytes | None
    epoch: int

    @property
    def low(self) -> int:
        return self.path << (64 - self.depth) if self.depth else 0

    @property
    def high(self) -> int:
        """One past the last hash the leaf covers."""
        return (self.path + 1) << (64 - self.depth) if self.depth else _TOP


class Receipt(NamedTuple):
    """Where a new entry was written, and the cas its leaf and scope shard had right after."""

    leaf: bytes
    leaf_cas: bytes
    shard: bytes
    shard_cas: bytes | None
    epoch: int


class Index:
    def __init__(
        self,
        cluster: Cluster,
        codec: KeyCodec,
        max_attempts: int,
        item_limit: int,
        legacy_buckets: int | None = None,
        cache_entries: int = 4096,
        cache_bytes: int = 16 * 1024 * 1024,
        grace: int = 300,
    ) -> None:
        self.cluster = cluster
        #: Seconds expired values outlive their deadline in memcached (``expired_grace_s``).
        self.grace = grace
        self.codec = codec
        self.max_attempts = max_attempts
        #: Largest item the servers take (index items included).
        self.item_limit = item_limit
        self.leaf_bytes = min(LEAF_BYTES, item_limit // 2)
        #: Layout 1's buckets per scope, when the store may still hold some; ``None``: it cannot.
        self.legacy_buckets = legacy_buckets
        self._converted: set[str] = set()
        #: Leaves this process wrote or read with their cas: a hint, always checked by the cas.
        self._leaves = CasCache(cache_entries, cache_bytes)
        #: scope -> deepest node seen, where path reads and the leaf hint start.
        self._depth: dict[str, int] = {}
        #: shard key -> (epoch, cas, scopes) as last read.
        self._shards: dict[bytes, tuple[int, bytes, frozenset[str]]] = {}

    # -- where things live ---------------------------------------------------------------------------
    def home(self, scope: str) -> Node:
        """The server of every index item of ``scope``: its scope shard's server, so that writing
        an entry and reading the shard can share one round trip."""
        return self.cluster.node(self.codec.scope_shard_key(scope))

    def _hashed_scope(self, scope: str) -> bytes:
        """The scope as entry records name it: only in hashed (shareable) nodes."""
        return scope.encode("utf-8") if self.codec.nodes_hashed(scope) else b""

    def _saw_depth(self, scope: str, depth: int) -> None:
        if depth > self._depth.get(scope, 0):
            if len(self._depth) >= 4096:
                self._depth.clear()
            self._depth[scope] = depth

    # -- finding leaves ------------------------------------------------------------------------------
    def locate(self, scope: str, h: int, *, versioned: bool = False) -> Located:
        """The leaf covering hash ``h``: one read of the nodes on its path (more if deeper).

        The leaf is the shallowest leaf on the path; split markers (and missing nodes, which an
        evicted marker leaves) are stepped over. With none, it is the empty child of the deepest
        split marker, or the root.
        """
        node = self.home(scope)
        first, last = 0, self._depth.get(scope, 0) + 1
        deepest_split = -1
        while True:
            wanted = [(d, path_of(h, d)) for d in range(first, min(last, MAX_DEPTH) + 1)]
            keys = [self.codec.node_key(scope, d, p) for d, p in wanted]
            if versioned:
                found, epoch = node.gets_many(keys)
            else:
                found, epoch = {k: (v, b"") for k, v in node.get_many(keys).items()}, 0
            for (depth, path), key in zip(wanted, keys, strict=True):
                hit = found.get(key)
                if hit is None:
                    continue
                item, cas = hit
                if records.node_kind(item, key) == records.SPLIT:
                    deepest_split = depth
                    continue
                self._saw_depth(scope, depth)
                if versioned and item[0] == records.LEAF:
                    self._leaves.put(key, epoch, cas, item)
                return Located(key, depth, path, item, cas if versioned else None, epoch)
            if deepest_split == wanted[-1][0] and deepest_split < MAX_DEPTH:
                first, last = deepest_split + 1, deepest_split + _READ_AHEAD
                continue
            depth = deepest_split + 1
            self._saw_depth(scope, depth)
            path = path_of(h, depth)
            return Located(self.codec.node_key(scope, depth, path), depth, path, None, None, epoch)

    def _known_leaf(self, scope: str, h: int) -> tuple[bytes, int, Known] | None:
        """A leaf covering ``h`` that this process remembers (it may have changed since)."""
        for depth in range(self._depth.get(scope, 0), -1, -1):
            key = self.codec.node_key(scope, depth, path_of(h, depth))
            known = self._leaves.get(key)
            if known is not None:
                return (key, depth, known) if known.item[0] == records.LEAF and known.epoch else None
        return None

    def leaves(
        self,
        scope: str,
        start: int = 0,
        liveness: list[tuple[object, ...]] | None = None,
        batch: dict[bytes, bytes | None] | None = None,
    ) -> Callable[[], Located | None]:
        """Reads the scope's leaves in hash order from the one covering ``start``, one per call.

        A read fetches the path of the next leaf and, in the same multi-get, the paths of the
        ``_PREFETCH`` leaves after it at the scope's known depth, so a walk over many small or
        emptied leaves takes one round trip per batch of leaves, not per leaf. Only the last
        batch is kept: memory stays bounded by a batch of leaves. With ``liveness``, the first
        read (made by the first call) appends the home server's ``Node.liveness``, read before
        the leaves in the same request. ``batch``: where the last batch is kept (node key ->
        item, ``None`` if missing); nodes already in it are not read again.
        """
        at: list[int | None] = [start]
        last_depth: list[int | None] = [None]
        batch = {} if batch is None else batch
        node = self.home(scope)

        def fetch(h: int) -> None:
            window = min(self._depth.get(scope, 0) + 1, MAX_DEPTH)
            # the next positions one leaf apart if the leaves ahead are as deep as the last one
            # (a guess: a deeper leaf is read again on its own, a shallower one read twice)
            grid = min(last_depth[0], window) if last_depth[0] is not None else max(window - 1, 0)
            first = path_of(h, grid)
            ahead = [(first + j) << (64 - grid) for j in range(1, _PREFETCH + 1) if first + j < 1 << grid]
            positions = [h, *ahead]
            keys = list(dict.fromkeys(
                self.codec.node_key(scope, d, path_of(p, d)) for p in positions for d in range(window + 1)
            ))  # fmt: skip
            if liveness is not None and not liveness:
                found, read = node.get_many_after_liveness(keys)
                liveness.append(read)
            else:
                found = node.get_many(keys)
            batch.clear()
            batch.update({key: found.get(key) for key in keys})

        def step() -> Located | None:
            h = at[0]
            if h is None:
                return None
            leaf = self._resolve(scope, h, batch)
            if leaf is None:
                fetch(h)
                leaf = self._resolve(scope, h, batch)
            if leaf is None:  # deeper than the batch reached
                leaf = self.locate(scope, h)
            last_depth[0] = leaf.depth
            at[0] = leaf.high if leaf.high < _TOP else None
            return leaf

        return step

    def _resolve(self, scope: str, h: int, batch: dict[bytes, bytes | None]) -> Located | None:
        """:meth:`locate` answered from nodes read in one batch (``None``: a node it needs was
        not read). Same rules: the shallowest leaf on the path, split markers and missing nodes
        stepped over, else the empty child of the deepest split marker."""
        deepest_split = -1
        window = self._depth.get(scope, 0) + 1
        depth = 0
        while depth <= MAX_DEPTH:
            key = self.codec.node_key(scope, depth, path_of(h, depth))
            if key not in batch:
                return None
            item = batch[key]
            if item is not None:
                if records.node_kind(item, key) == records.SPLIT:
                    deepest_split = depth
                else:
                    self._saw_depth(scope, depth)
                    return Located(key, depth, path_of(h, depth), item, None, 0)
            if depth >= window and deepest_split < depth:
                break  # locate's window ended here without a split marker at its last depth
            depth += 1
        depth = deepest_split + 1
        self._saw_depth(scope, depth)
        path = path_of(h, depth)
        return Located(self.codec.node_key(scope, depth, path), depth, path, None, None, 0)

    def entries_of(self, scope: str, leaf: Located) -> dict[str, int]:
        return records.scope_entries(leaf.item, leaf.key, self._hashed_scope(scope) or None)

    # -- writing leaves ------------------------------------------------------------------------------
    def _write(self, node: Node, key: bytes, new: bytes, cas: bytes | None, old: bytes | None) -> Stored:
        """Store an index item if unchanged since read; after an out-of-memory refusal (which
        makes memcached drop the old item) put the old one back."""
        try:
            return node.store(key, new, cas)
        except UnknownOutcomeError as exc:
            # Only the index was in flight, never the entry's value: a plain failure for callers.
            raise BackendError(f"{exc} (while updating the listing index)") from None
        except OutOfMemoryError:
            if old is not None and not node.put_back(key, old):
                log.warning("memcached adapter: an index item was lost to an out-of-memory store")
            raise

    def _too_big(self, scope: str, size: int) -> BackendError:
        return BackendError(
            f"the listing index of scope {scope[:80]!r} is full: one of its leaves would need {size} "
            f"bytes and memcached items hold at most {self.item_limit}; raise the server's item "
            f"size (-I)"
        )

    def _append(self, scope: str, pending: list[tuple[int, bytes]]) -> tuple[bytes, Stored]:
        """Append entry records (``(hash, record)``, sorted by hash) to the leaves covering them,
        splitting leaves that outgrow ``leaf_bytes``. :returns: the last leaf written and its reply.

        :raises BackendError: when a server fails or the retry budget runs out.
        """
        node = self.home(scope)
        last: tuple[bytes, Stored] | None = None
        while pending:
            attempt = partial(self._append_batch, node, scope, pending)
            key, stored, count = retry(attempt, attempts=self.max_attempts)
            pending = pending[count:]
            last = (key, stored)
        assert last is not None
        return last

    def _append_batch(
        self, node: Node, scope: str, pending: list[tuple[int, bytes]]
    ) -> tuple[bytes, Stored, int] | Lost:
        """One attempt at appending the leading records of ``pending`` to the leaf covering them.

        :returns: the leaf, the store's reply and how many records went in; :data:`LOST` when
            another writer changed the leaf first.
        """
        known = self._known_leaf(scope, pending[0][0])
        if known is not None:
            key, depth, remembered = known
            batch = self._batch(pending, path_of(pending[0][0], depth), depth)
            new = remembered.item + b"".join(record for _, record in batch)
            if len(new) <= self.leaf_bytes:
                stored = node.store_on_epoch(key, new, remembered.cas, remembered.epoch)
                if stored is not None and stored.ok:
                    self._leaves.put(key, stored.epoch, stored.cas, new)
                    return key, stored, len(batch)
            self._leaves.drop(key)  # a stale hint, not a lost race: read the leaf now
        for _ in range(2 * MAX_DEPTH):  # a split just done sends the records one level down
            leaf = self.locate(scope, pending[0][0], versioned=True)
            if leaf.item is not None and leaf.item[0] == records.SEALED:
                self._finish_split(node, scope, leaf)
                continue
            batch = self._batch(pending, leaf.path, leaf.depth)
            added = b"".join(record for _, record in batch)
            new = (leaf.item if leaf.item is not None else records.EMPTY_LEAF) + added
            if len(new) > self.leaf_bytes and leaf.item is not None:
                entries = records.replay(leaf.item, leaf.key)
                compact = records.leaf_item(entries)
                if len(compact) + len(added) > self.leaf_bytes * 3 // 4 and len(entries) > 1:
                    if leaf.depth < MAX_DEPTH:
                        if not self._split(node, scope, leaf, entries):
                            return LOST
                        continue
                new = compact + added
                if len(new) > self.item_limit:
                    raise self._too_big(scope, len(new))
            stored = self._write(node, leaf.key, new, leaf.cas, leaf.item)
            if not stored.ok:
                self._leaves.drop(leaf.key)
                return LOST
            self._leaves.put(leaf.key, stored.epoch, stored.cas, new)
            return leaf.key, stored, len(batch)
        return LOST

    def _batch(self, pending: list[tuple[int, bytes]], path: int, depth: int) -> list[tuple[int, bytes]]:
        """The leading records of ``pending`` the leaf at (depth, path) covers, within leaf_bytes."""
        batch: list[tuple[int, bytes]] = []
        size = 0
        for h, record in pending:
            if path_of(h, depth) != path or (batch and size + len(record) > self.leaf_bytes // 2):
                break
            batch.append((h, record))
            size += len(record)
        return batch

    def _split(self, node: Node, scope: str, leaf: Located, entries: dict[records.EntryId, int]) -> bool:
        """Seal ``leaf`` (frozen from now on), then copy its ``entries`` into its children.

        :returns: ``False`` when the leaf changed before it could be sealed.
        """
        assert leaf.item is not None
        sealed = bytes((records.SEALED,)) + leaf.item[1:]
        stored = self._write(node, leaf.key, sealed, leaf.cas, leaf.item)
        self._leaves.drop(leaf.key)
        if stored.ok:
            self._finish_split(node, scope, leaf._replace(item=sealed, cas=stored.cas), entries)
        return stored.ok

    def _finish_split(
        self, node: Node, scope: str, leaf: Located, entries: dict[records.EntryId, int] | None = None
    ) -> None:
        """Add the two children of a sealed leaf, then turn it into a split marker.

        The sealed leaf cannot change, so every writer that finishes the split adds the same
        children: an add that finds its child already there lost only to an identical copy.
        """
        assert leaf.item is not None
        depth, bit = leaf.depth + 1, 63 - leaf.depth
        halves: tuple[dict[records.EntryId, int], dict[records.EntryId, int]] = ({}, {})
        if entries is None:
            entries = records.replay(leaf.item, leaf.key)
        for entry, generation in entries.items():
            halves[(key_hash(entry[1].decode("utf-8")) >> bit) & 1][entry] = generation
        for side, half in enumerate(halves):
            child, item = self.codec.node_key(scope, depth, leaf.path * 2 + side), records.leaf_item(half)
            stored = self._write(node, child, item, None, None)
            if stored.ok:
                self._leaves.put(child, stored.epoch, stored.cas, item)
        self._write(node, leaf.key, records.SPLIT_ITEM, leaf.cas, leaf.item)
        self._saw_depth(scope, depth)

    # -- key entries ---------------------------------------------------------------------------------
    def put_entry(self, scope: str, key: str, generation: int) -> Receipt:
        """Point ``key``'s entry at ``generation`` and make sure the scope is listed.

        :returns: where it was written, for the creator's re-check (:meth:`confirm`).
        """
        self.convert(scope)
        receipt = self._put_known(scope, key, generation, new_only=False)
        if receipt is not None:
            return receipt
        shard = self.codec.scope_shard_key(scope)
        record = records.entry_record(records.PUT, generation, self._hashed_scope(scope), key.encode("utf-8"))
        leaf, stored = self._append(scope, [(key_hash(key), record)])
        known_shard: bytes | None = _UNKNOWN
        if self.scope_listed(scope):
            known_shard = self._shards[shard][1] if shard in self._shards else _UNKNOWN
        else:
            self.ensure_scope(scope)
        return Receipt(leaf, stored.cas, shard, known_shard, stored.epoch)

    def put_new(self, scope: str, key: str, generation: int) -> Receipt | None:
        """:meth:`put_entry` for a key this process can tell has no value, without reading it.

        It can when it remembers the key's leaf and the leaf does not name the key: every stored
        value is indexed first and unindexed last, so a leaf still unchanged when the new entry
        is stored over it (the cas proves it) had no value for the key. ``None``: cannot tell,
        or the leaf changed; nothing was written.
        """
        if self.legacy_buckets is not None and scope not in self._converted:
            return None
        return self._put_known(scope, key, generation, new_only=True)

    def _put_known(self, scope: str, key: str, generation: int, *, new_only: bool) -> Receipt | None:
        """Append the entry to a leaf this process remembers, if it is unchanged, and read the
        scope shard's cas after it, in one round trip."""
        known = self._known_leaf(scope, key_hash(key))
        if known is None:
            return None
        leaf, _, remembered = known
        owner, key_raw = self._hashed_scope(scope), key.encode("utf-8")
        if new_only and (owner or records.names_key(remembered.item, key_raw)):
            return None
        record = records.entry_record(records.PUT, generation, owner, key_raw)
        new = remembered.item + record
        if len(new) > self.leaf_bytes:
            return None
        node, shard = self.home(scope), self.codec.scope_shard_key(scope)
        try:
            # appended only if the leaf is still at the remembered cas: only the record is sent
            reply = node.store_probing(leaf, record, remembered.cas, [shard], remembered.epoch, append=True)
        except OutOfMemoryError:
            self._leaves.drop(leaf)
            if not node.put_back(leaf, remembered.item):  # memcached may drop what it could not extend
                log.warning("memcached adapter: an index item was lost to an out-of-memory store")
            raise
        if reply is None or not reply[0].ok:
            self._leaves.drop(leaf)
            return None
        stored, (shard_cas,) = reply
        self._leaves.put(leaf, stored.epoch, stored.cas, new)
        if not self._lists(scope, shard, shard_cas, stored.epoch):
            self.ensure_scope(scope)
            shard_cas = _UNKNOWN
        return Receipt(leaf, stored.cas, shard, shard_cas, stored.epoch)

    def store_value(
        self, node: Node, mc_key: bytes, item: bytes, receipt: Receipt, ttl: int = 0
    ) -> tuple[Stored, list[bytes | None] | None]:
        """Add a new entry's value (to live ``ttl`` seconds, 0: no limit); on the index's own
        server, probe its leaf and shard after it in the same round trip (the creator's re-check)."""
        if node is self.cluster.node(receipt.shard):
            reply = node.store_probing(mc_key, item, None, [receipt.leaf, receipt.shard], ttl=ttl)
            assert reply is not None
            stored, probes = reply
            return stored, (probes if stored.epoch == receipt.epoch else None)
        return node.store(mc_key, item, None, ttl), None

    def confirm(self, scope: str, key: str, generation: int, receipt: Receipt,
                probes: list[bytes | None] | None) -> None:  # fmt: skip
        """The creator's re-check after storing its value: its entry and its scope are still
        indexed. Unchanged cas on both (read after the store) proves it without reading them."""
        if probes is None:
            probes, epoch = self.home(scope).probe([receipt.leaf, receipt.shard])
            if epoch != receipt.epoch:
                probes = None
        if probes == [receipt.leaf_cas, receipt.shard_cas]:
            return
        leaf = self.locate(scope, key_hash(key))
        if self.entries_of(scope, leaf).get(key) != generation:
            # A racing delete or pruner touched the entry: point it at whatever record is live now.
            self.resync(scope, [key])
        if not self.scope_listed(scope):
            self.ensure_scope(scope)

    def drop_entries(self, scope: str, entries: dict[str, int]) -> None:
        """Remove the entries of ``entries`` (key -> generation) that still name that generation."""
        if not entries:
            return
        self.convert(scope)
        owner = self._hashed_scope(scope)
        pending: list[tuple[int, bytes]] = []
        for key, generation in entries.items():
            record = records.entry_record(records.DROP, generation, owner, key.encode("utf-8"))
            pending.append((key_hash(key), record))
            breathe()
        pending.sort()
        if len(pending) > 1:
            # many leaves at once (the sweeper's chunks): appended in one request to the leaves
            # this process knows, then to the ones one multi-get reads; only what is left (a
            # leaf that changed again, is sealed or missing, or would outgrow leaf_bytes) takes
            # the one-leaf-at-a-time path
            pending = self._append_known(scope, pending)
            if pending:
                self._read_leaves(scope, [h for h, _ in pending])
                pending = self._append_known(scope, pending)
        if pending:
            self._append(scope, pending)

    def _append_known(self, scope: str, pending: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        """Append entry records (``(hash, record)``, sorted by hash) to the leaves this process
        remembers, all in one request to the scope's server: each leaf's records appended only if
        the leaf is still at its remembered cas (``ms … MA C<cas>``), so a leaf nobody changed is
        extended exactly as :meth:`_append_batch` would store it (the same bytes; a leaf split or
        sealed meanwhile has another cas; a run over ``_APPEND_BYTES`` is sent with the leaf's
        bytes, stored whole under the same cas). A leaf the records would take past ``leaf_bytes`` is
        compacted as :meth:`_append_batch` compacts it, from the remembered bytes, and stored
        whole under the same cas; one that would then have to split is left to that method.
        :returns: the records not appended, sorted.

        :raises BackendError: when a server failed (an unknown outcome included: appending a
            ``DROP`` twice changes nothing, but callers learn that the index may lag).
        """
        node = self.home(scope)
        # leaf -> (as remembered, what is sent, whether it is appended, the records)
        groups: dict[bytes, tuple[Known, bytes, bool, list[tuple[int, bytes]]]] = {}
        rest: list[tuple[int, bytes]] = []
        at, end = 0, len(pending)
        while at < end:
            breathe()
            h = pending[at][0]
            known = self._known_leaf(scope, h)
            if known is None:
                rest.append(pending[at])
                at += 1
                continue
            key, depth, remembered = known
            path = path_of(h, depth)
            stop = at + 1
            while stop < end and path_of(pending[stop][0], depth) == path:
                stop += 1
            group = pending[at:stop]
            at = stop
            added = b"".join([record for _, record in group])
            if key in groups or remembered.item[0] != records.LEAF:
                rest += group
            elif len(remembered.item) + len(added) <= self.leaf_bytes:
                # memcached reads an append's bytes into an item of their own first: a large one
                # could evict a value of that size under memory pressure, so that one is stored
                # whole (as _append_batch stores it), only the usual few records appended
                if len(added) <= _APPEND_BYTES:
                    groups[key] = (remembered, added, True, group)
                else:
                    groups[key] = (remembered, remembered.item + added, False, group)
            else:
                # compacted as _append_batch compacts it, from the remembered bytes (the cas
                # proves them current); a leaf that must split takes the one-leaf path
                entries = records.replay(remembered.item, key)
                compact = records.leaf_item(entries)
                size = len(compact) + len(added)
                if (size > self.leaf_bytes * 3 // 4 and len(entries) > 1) or size > self.item_limit:
                    rest += group
                else:
                    groups[key] = (remembered, compact + added, False, group)
        if not groups:
            return rest
        stores = [CasStore(key, sent, was.cas, 0, was.epoch) for key, (was, sent, *_) in groups.items()]
        appends = [appended for _, _, appended, _ in groups.values()]
        failure: Exception | None = None
        for (key, (was, sent, appended, group)), reply in zip(
            groups.items(), node.store_many(stores, append=appends), strict=True
        ):
            if type(reply) is Stored and reply.ok:
                self._leaves.put(key, reply.epoch, reply.cas, was.item + sent if appended else sent)
                continue
            self._leaves.drop(key)
            rest += group
            if isinstance(reply, OutOfMemoryError):
                # memcached drops the item a refused store would have replaced: put it back
                if not node.put_back(key, was.item):
                    log.warning("memcached adapter: an index item was lost to an out-of-memory store")
                failure = failure or reply
            elif isinstance(reply, UnknownOutcomeError):
                failure = failure or BackendError(f"{reply} (while updating the listing index)")
            elif isinstance(reply, Exception):
                failure = failure or reply
        if failure is not None:
            raise failure
        rest.sort()
        return rest

    def _read_leaves(self, scope: str, hashes: list[int]) -> None:
        """Read, in one multi-get, the path nodes of each hash down to the scope's known depth
        (and one more), and remember with its cas each leaf found there, as :meth:`locate` finds
        it (the shallowest node on the path that is not a split marker). A path deeper than
        that is left to :meth:`locate`."""
        window = min(self._depth.get(scope, 0) + 1, MAX_DEPTH)
        paths = sorted({path_of(h, window) for h in hashes})
        keys = list(dict.fromkeys(
            self.codec.node_key(scope, d, p >> (window - d)) for p in paths for d in range(window + 1)
        ))  # fmt: skip
        found, epoch = self.home(scope).gets_many(keys)
        for p in paths:
            for d in range(window + 1):
                key = self.codec.node_key(scope, d, p >> (window - d))
                hit = found.get(key)
                if hit is None:
                    continue  # missing (an evicted split marker): its children are below
                item, cas = hit
                kind = records.node_kind(item, key)
                if kind == records.SPLIT:
                    continue
                if kind == records.LEAF:
                    self._saw_depth(scope, d)
                    self._leaves.put(key, epoch, cas, item)
                break  # a leaf (or a sealed one, whose split the one-leaf path finishes)

    def resync(self, scope: str, keys: list[str]) -> None:
        """Re-index those ``keys`` whose value is live now (after a prune, or a racing delete)."""
        scope_raw = scope.encode("utf-8")
        wanted = {self.codec.data_key(scope, key): key for key in keys}
        for mc_key, item in self.cluster.get_many(list(wanted)).items():
            key = wanted[mc_key]
            record = records.find(item, mc_key, scope_raw, key.encode("utf-8"))
            if record is not None:
                self.put_entry(scope, key, record.generation)

    def prune(self, scope: str, ghosts: dict[str, int]) -> None:
        """Drop index entries whose value is gone (evicted, deleted by a crashed client, …)."""
        if not ghosts:
            return
        self.drop_entries(scope, ghosts)
        # The pruner's re-check after its write (see the module docstring).
        self.resync(scope, list(ghosts))

    # -- scopes --------------------------------------------------------------------------------------
    def _update(self, mc_key: bytes, change: Change, what: str) -> None:
        """Apply ``change`` to the item at ``mc_key`` atomically (gets, then cas/add/delete).

        ``change`` gets the current item (``None``: missing) and returns the new one, ``None``
        to delete it, or :data:`NO_CHANGE`.
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
                    f"{self.item_limit}; raise the adapter's scope_shards (for every client) or the "
                    f"server's item size (-I)"
                )
            if item is None:
                done = new is None or self._write(node, mc_key, new, None, None).ok
            elif new is None:
                done = cas is not None and node.delete_counted(mc_key, cas)
            else:
                done = self._write(node, mc_key, new, cas, item).ok
            return None if done else LOST

        retry(attempt, attempts=self.max_attempts)

    def _lists(self, scope: str, shard: bytes, cas: bytes | None, epoch: int) -> bool:
        """Whether the shard, whose cas was just probed, lists ``scope`` (reads it only when it
        changed since this process last read it)."""
        seen = self._shards.get(shard)
        if cas is not None and seen is not None and seen[0] == epoch and seen[1] == cas:
            return scope in seen[2]
        return self.scope_listed(scope)

    def scope_listed(self, scope: str) -> bool:
        shard = self.codec.scope_shard_key(scope)
        item, cas, epoch = self.cluster.node(shard).gets(shard)
        scopes = frozenset(records.load_shard(item, shard))
        if cas is not None:
            if len(self._shards) >= 1024:
                self._shards.clear()
            self._shards[shard] = (epoch, cas, scopes)
        return scope in scopes

    def ensure_scope(self, scope: str) -> None:
        """List ``scope`` in its shard of the scope index (writes only when it is absent)."""
        shard = self.codec.scope_shard_key(scope)

        def change(item: bytes | None) -> bytes | None:
            scopes = records.load_shard(item, shard)
            if scope in scopes:
                return NO_CHANGE
            scopes.add(scope)
            return records.dump_shard(scopes)

        self._update(shard, change, "the scope index")

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

        self._update(shard, change, "the scope index")
        # Re-check after the write: a creator that indexed a key before our removal is seen here;
        # one that indexes after it sees the scope missing in its own re-check and adds it back.
        if self.scope_has_entries(scope):
            self.ensure_scope(scope)
            return False
        return True

    def scope_has_entries(self, scope: str) -> bool:
        self.convert(scope)
        step = self.leaves(scope)
        while (leaf := step()) is not None:
            if self.entries_of(scope, leaf):
                return True
        return False

    # -- layout 1 ------------------------------------------------------------------------------------
    def convert(self, scope: str) -> None:
        """Move ``scope``'s entries out of layout 1's buckets into its tree (once per process).

        Each bucket is removed (or rewritten without the scope, when colliding scopes share it)
        only after its entries are in the tree, and only if nobody changed it meanwhile.
        """
        if self.legacy_buckets is None or scope in self._converted:
            return
        owner = self._hashed_scope(scope)
        for bucket in self.cluster.get_many(self.codec.legacy_bucket_keys(scope, self.legacy_buckets)):
            retry(partial(self._convert_bucket, scope, owner, bucket), attempts=self.max_attempts)
        if len(self._converted) >= 65536:
            self._converted.clear()
        self._converted.add(scope)


    def _convert_bucket(self, scope: str, owner: bytes, bucket: bytes) -> Lost | None:
        node = self.cluster.node(bucket)
        item, cas, _ = node.gets(bucket)
        sections = records.load_bucket(item, bucket)
        mine = sections.pop(scope, None)
        if item is None or cas is None or not mine:
            return None
        self._append(scope, sorted(
            (key_hash(k), records.entry_record(records.PUT, g, owner, k.encode("utf-8")))
            for k, g in mine.items()
        ))  # fmt: skip
        rest = records.dump_bucket(sections)
        if rest is None:
            return None if node.delete_counted(bucket, cas) else LOST
        return None if self._write(node, bucket, rest, cas, item).ok else LOST

def quietly(what: str, step: Callable[[], object]) -> None:
    """Run index housekeeping after the entry's own write already happened.

    The write is done and must be reported as done; a failure here leaves at worst an index
    entry without a value, which listing skips and prunes.
    """
    try:
        step()
    except Exception as exc:  # see the docstring: the write itself already happened
        log.warning("memcached adapter: %s failed after the write succeeded: %s", what, exc)

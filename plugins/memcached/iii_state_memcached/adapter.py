"""The ``memcached`` adapter: atomic primitives from gets/cas and meta commands.

Every write is a conditional store on the entry's cas (or an add when it is missing), retried
by the core's optimistic-write helper while other writers win, so the value a write returns is exactly the one
it replaced. A delete is ``md <key> C<cas>``: it removes the item only if it is still the
version whose value we return.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, NamedTuple

from iii_state_core import Adapter, BackendError, ConfigError, ValueTooLargeError
from iii_state_core.adapter import Page, Token
from iii_state_core.expiry import KEEP, ExpiresAt, now_ms
from iii_state_core.retry import LOST, Lost, retry

from . import records
from .cas_cache import CasCache, Known
from .index import Index, quietly
from .keys import Digest, KeyCodec, sha256_digest
from .listing import Listing
from .nodes import CasStore, Cluster, Node, OutOfMemoryError, Stored
from .pace import breathe
from .plugin import CAPABILITIES, MemcachedDeclaration
from .records import Record
from .schedule import DELIVERED, STASH, Candidate, Schedule
from .settings import Settings, read_settings
from .sizes import DEFAULT_ITEM_SIZE_MAX, NAME_ALLOWANCE, item_limit, value_limit

log = logging.getLogger("iii_state.memcached")

#: The layout this code writes: per-scope index trees (1 was 16 JSON buckets per scope).
LAYOUT = 2

__all__ = ["LAYOUT", "NAME_ALLOWANCE", "MemcachedAdapter", "item_limit", "value_limit"]


@dataclass(frozen=True, slots=True)
class Version:
    """``read_versioned``'s token: the item as read, its cas, and this pair's record in it."""

    item: bytes | None
    cas: bytes | None
    own: Record | None
    #: When it was read: ``own`` is judged expired or not at this instant, once.
    now: int


class _Pending(NamedTuple):
    """A batch write about to be stored: its item as read (or remembered) and that item's cas."""

    mc_key: bytes
    own: Record
    item: bytes
    cas: bytes
    #: The connection the cas was remembered on (``None``: read just now).
    epoch: int | None


Calls = Sequence[tuple[str, tuple[Any, ...]]]


def _own(item: bytes, mc_key: bytes, scope: str, key: str) -> Record | None:
    """The pair's record in ``item``; ``None`` also for a foreign item (``write`` reports it)."""
    try:
        return records.find(item, mc_key, scope.encode("utf-8"), key.encode("utf-8"))
    except BackendError:
        return None


#: Builds a named tuple from its fields without its Python-level ``__new__`` (one per store of a
#: batch round: the class call cost as much as cutting the item).
_new: Any = tuple.__new__


def _deadline(value: object) -> bool:
    """``write``'s ``expires_at``: a deadline in epoch ms or ``None``."""
    return value is None or (type(value) is int)


class MemcachedAdapter(Adapter):
    """State in memcached; see the package README for the guarantees and their limits."""

    name = MemcachedDeclaration.name
    path_options = MemcachedDeclaration.path_options
    state_options = MemcachedDeclaration.state_options
    distribution = MemcachedDeclaration.distribution
    capabilities = CAPABILITIES
    value_tokens = True
    _sized: ClassVar[dict[int, type[MemcachedAdapter]]] = {}

    @classmethod
    def open(cls, config: Mapping[str, Any], *, digest: Digest | None = None) -> MemcachedAdapter:
        """Connect, read the servers' item size limit and check the store's recorded layout.

        :param digest: the hash for long names; only tests replace it (to force collisions).
        :raises ConfigError: for a bad config, or a layout that differs from the one on the server.
        :raises BackendError: when a server cannot be reached or lacks the meta protocol.
        """
        settings = read_settings(config)
        cluster = Cluster(settings)
        try:
            item_size_max = min(_item_size_max(node) for node in cluster.nodes)
            codec = KeyCodec(settings.key_prefix, settings.scope_shards, digest or sha256_digest)
            legacy_buckets = _check_layout(cluster, codec, settings)
            for node in cluster.nodes:  # each server counts this store's deletes made on it
                node.counters = (codec.removes_key, codec.hits_key)
        except BaseException:
            cluster.close()
            raise
        return cls._for_item_size(item_size_max)(settings, cluster, codec, item_size_max, legacy_buckets)

    @classmethod
    def _for_item_size(cls, item_size_max: int) -> type[MemcachedAdapter]:
        """A subclass declaring this server's limit: the core reads capabilities off the class."""
        if item_size_max == DEFAULT_ITEM_SIZE_MAX:
            return cls
        found = cls._sized.get(item_size_max)
        if found is None:
            caps = replace(cls.capabilities, max_value_bytes=value_limit(item_size_max))
            found = type(cls.__name__, (cls,), {"capabilities": caps, "__module__": cls.__module__})
            cls._sized[item_size_max] = found
        return found

    def __init__(
        self,
        settings: Settings,
        cluster: Cluster,
        codec: KeyCodec,
        item_size_max: int,
        legacy_buckets: int | None = None,
    ) -> None:
        self._settings = settings
        self._cluster = cluster
        self._codec = codec
        self._item_limit = item_limit(item_size_max)
        self._attempts = settings.max_attempts
        self._cache = CasCache(settings.cas_cache_entries, settings.cas_cache_bytes)
        self._index = Index(
            cluster, codec, settings.max_attempts, self._item_limit, legacy_buckets,
            settings.cas_cache_entries, settings.cas_cache_bytes, settings.expired_grace_s,
        )  # fmt: skip
        self._listing = Listing(cluster, codec, self._index)
        #: With expiry events on (state option ``expiry_events``): where ``take_expired`` looks.
        self._schedule = (
            Schedule(cluster, codec, settings.expired_grace_s, settings.max_attempts)
            if settings.expiry_events
            else None
        )
        #: entries ``take_expired`` leased: their stash numbers (for ``ack_expired``)
        self._leases: dict[tuple[str, str, bytes, int], int] = {}
        self._leases_lock = threading.Lock()

    def describe(self) -> str:
        return f"{self._cluster.describe()}, key prefix {self._settings.key_prefix.decode()!r}"

    def close(self) -> None:
        self._cluster.close()
        self._cache.clear()

    # -- helpers -----------------------------------------------------------------------------------
    def _locate(self, scope: str, key: str) -> tuple[bytes, Node]:
        mc_key = self._codec.data_key(scope, key)
        return mc_key, self._cluster.node(mc_key)

    def _fit(self, item: bytes, data: bytes) -> bytes:
        if len(item) > self._item_limit:
            raise ValueTooLargeError(
                f"value of {len(data)} bytes does not fit one memcached item together with its scope "
                f"and key: the item would be {len(item)} bytes and the servers hold at most "
                f"{self._item_limit}"
            )
        return item

    def _ttl(self, mc_key: bytes, item: bytes) -> int:
        """memcached's lifetime for ``item`` (0: none): past every deadline, plus the grace."""
        return records.lifetime(item, mc_key, now_ms(), self._settings.expired_grace_s)

    def _replace(
        self, node: Node, mc_key: bytes, new: bytes, cas: bytes, old: bytes, epoch: int | None = None
    ) -> Stored | None:
        """Store ``new`` over ``old`` if the item is still at ``cas`` (on connection ``epoch``).

        :returns: the store's reply; ``None`` when ``epoch`` named another connection.
        :raises OutOfMemoryError: after putting ``old`` back, which memcached dropped.
        """
        ttl = self._ttl(mc_key, new)
        try:
            if epoch is None:
                return node.store(mc_key, new, cas, ttl)
            return node.store_on_epoch(mc_key, new, cas, epoch, ttl)
        except OutOfMemoryError as exc:
            raise self._put_back(node, mc_key, old, exc) from None

    def _put_back(self, node: Node, mc_key: bytes, old: bytes, exc: OutOfMemoryError) -> OutOfMemoryError:
        """After a store refused for memory (memcached dropped ``old`` with it): put ``old``
        back, and the error saying whether that worked."""
        self._cache.drop(mc_key)
        if node.put_back(mc_key, old, self._ttl(mc_key, old)):
            return OutOfMemoryError(f"{exc}; the entry keeps its previous value")
        return OutOfMemoryError(
            f"{exc}; memcached dropped the entry's previous value with it and it could not be put back"
        )

    # -- reads -------------------------------------------------------------------------------------
    def read(self, scope: str, key: str) -> bytes | None:
        mc_key = self._codec.data_key(scope, key)
        item = self._cluster.node(mc_key).get(mc_key)
        if item is None:
            return None
        record = records.find(item, mc_key, scope.encode("utf-8"), key.encode("utf-8"))
        return None if record is None or record.expired(now_ms()) else record.value

    def run_many(self, calls: Calls) -> list[Any]:
        """A batch round: its reads as one multi-get per server, its writes of entries that exist
        as cas stores pipelined per server (:meth:`_write_many`); every other call alone."""
        out: list[Any] = [None] * len(calls)
        reads: dict[int, bytes] = {}
        versioned: dict[int, bytes] = {}
        writes: list[int] = []
        swaps: list[int] = []
        for i, (name, args) in enumerate(calls):
            try:
                if name == "read" and len(args) == 2:
                    reads[i] = self._codec.data_key(*args)
                elif name == "read_versioned" and len(args) == 2:
                    versioned[i] = self._codec.data_key(*args)
                elif name == "write" and (len(args) == 3 or (len(args) == 4 and _deadline(args[3]))):
                    writes.append(i)
                elif name == "write_if" and len(args) in (4, 5) and isinstance(args[3], Version):
                    swaps.append(i)
                else:
                    out[i] = getattr(self, name)(*args)
            except Exception as exc:
                out[i] = exc
        if reads:
            self._read_many(calls, reads, out)
        if versioned:
            self._read_versioned_many(calls, versioned, out)
        if writes:
            self._write_many(calls, writes, out)
        if swaps:
            self._write_if_many(calls, swaps, out)
        return out

    def _read_many(self, calls: Calls, keys: dict[int, bytes], out: list[Any]) -> None:
        try:
            found = self._cluster.get_many(dict.fromkeys(keys.values()))
        except Exception as exc:  # each read of the round reports it
            for i in keys:
                out[i] = exc
            return
        now = now_ms()  # the replies are all in: every read is judged at this one instant
        for i, mc_key in keys.items():
            item = found.get(mc_key)
            if item is not None:
                scope, key = calls[i][1]
                try:
                    record = records.find(item, mc_key, scope.encode("utf-8"), key.encode("utf-8"))
                except Exception as exc:  # a foreign item fails that read alone
                    out[i] = exc
                    continue
                out[i] = None if record is None or record.expired(now) else record.value

    def _read_versioned_many(self, calls: Calls, keys: dict[int, bytes], out: list[Any]) -> None:
        """``read_versioned`` of each, from one ``gets`` per server."""
        try:
            found = self._cluster.gets_many(list(dict.fromkeys(keys.values())))
        except Exception as exc:
            for i in keys:
                out[i] = exc
            return
        now = now_ms()
        for i, mc_key in keys.items():
            scope, key = calls[i][1]
            item, cas = found.get(mc_key, (None, None))
            try:
                own = None if item is None else records.find(item, mc_key, scope.encode(), key.encode())
            except Exception as exc:
                out[i] = exc
                continue
            value = None if own is None or own.expired(now) else own.value
            out[i] = (value, Version(item, cas, own, now))

    def _write_many(self, calls: Calls, indices: list[int], out: list[Any]) -> None:
        """Writes of a round: what ``write`` does, the round trips shared.

        Entries whose item and cas are remembered (``CasCache``) or read in one ``gets`` per
        server for the rest are stored with one pipelined cas store each, every store to a
        server sent in one write. Each store is still conditional on its own item's cas, so each
        write is atomic on its own and returns exactly the value it replaced. A store that loses
        its race, a new entry (it needs the listing index) and a slot holding only another
        pair's record go through ``write`` itself.

        The usual write, a remembered plain item of this pair alone and no deadline either side,
        is cut from the item's bytes (``records.swap_plain``): no record decoded, no lifetime or
        expiry schedule to work out, the replaced value known before the store.
        """
        stores: dict[int, CasStore] = {}
        olds: dict[int, bytes] = {}  # each store's item as it was (put back if memory runs out)
        swapped: dict[int, bytes] = {}  # the value each plain swap replaces
        pending: dict[int, _Pending] = {}
        unread: dict[int, bytes] = {}
        alone: list[int] = []
        data_key, cached, limit = self._codec.data_key, self._cache.get, self._item_limit
        for i in indices:
            args = calls[i][1]
            scope, key = args[0], args[1]
            mc_key = data_key(scope, key)
            known = cached(mc_key)
            if known is not None and (len(args) == 3 or args[3] is None):
                swap = records.swap_plain(known.item, scope.encode("utf-8"), key.encode("utf-8"), args[2])
                if swap is not None and len(swap[0]) <= limit:
                    stores[i] = _new(CasStore, (mc_key, swap[0], known.cas, 0, known.epoch))
                    olds[i] = known.item
                    swapped[i] = swap[1]
                    continue
            own = None if known is None else _own(known.item, mc_key, scope, key)
            if known is not None and own is None:
                self._cache.drop(mc_key)
            if known is not None and own is not None:
                pending[i] = _Pending(mc_key, own, known.item, known.cas, known.epoch)
            else:
                unread[i] = mc_key
        if unread:
            try:
                found = self._cluster.gets_many(list(unread.values()))
            except Exception:
                found = {}  # each write reads again on its own, and reports what it meets
            for i, mc_key in unread.items():
                scope, key = calls[i][1][0], calls[i][1][1]
                item, cas = found.get(mc_key, (None, None))
                own = None if item is None else _own(item, mc_key, scope, key)
                if own is None or item is None or cas is None:
                    alone.append(i)
                else:
                    pending[i] = _Pending(mc_key, own, item, cas, None)
        for i, p in pending.items():
            scope, key, data = calls[i][1][:3]
            deadline = calls[i][1][3] if len(calls[i][1]) == 4 else None
            record = Record(p.own.scope, p.own.key, p.own.generation, data, deadline)
            try:
                new = self._fit(records.replaced(p.item, p.mc_key, record), data)
                self._expiring(scope, key, p.own, deadline)
            except Exception as exc:
                out[i] = exc
                continue
            stores[i] = CasStore(p.mc_key, new, p.cas, self._ttl(p.mc_key, new), p.epoch)
            olds[i] = p.item
        now = now_ms()
        for i, reply in self._pipelined(stores, olds).items():
            if type(reply) is Stored and reply.ok:
                out[i] = swapped[i] if i in swapped else self._replaced(pending[i].own, now)
            elif reply is None or isinstance(reply, Stored):  # not sent, or another writer won
                alone.append(i)
            else:
                out[i] = reply
        _each_alone(self.write, calls, alone, out)

    def _write_if_many(self, calls: Calls, indices: list[int], out: list[Any]) -> None:
        """``write_if`` of each: the stores over an item read (``token.own``) pipelined per
        server, each conditional on that item's cas; creates go through ``write_if`` itself."""
        stores: dict[int, CasStore] = {}
        olds: dict[int, bytes] = {}
        owns: dict[int, tuple[Record, int]] = {}
        alone: list[int] = []
        for i in indices:
            scope, key, data, token = calls[i][1][:4]
            expires_at = calls[i][1][4] if len(calls[i][1]) == 5 else KEEP
            own = token.own
            if own is None:
                alone.append(i)
                continue
            mc_key = self._codec.data_key(scope, key)
            if expires_at is KEEP:
                deadline = None if own.expired(token.now) else own.deadline
            else:
                deadline = expires_at if isinstance(expires_at, int) else None
            record = own._replace(value=data, deadline=deadline)
            try:
                new = self._fit(records.replaced(token.item, mc_key, record), data)
                self._expiring(scope, key, own, deadline)
            except Exception as exc:
                out[i] = exc
                continue
            stores[i] = CasStore(mc_key, new, token.cas, self._ttl(mc_key, new), None)
            olds[i] = token.item
            owns[i] = (own, token.now)
        for i, reply in self._pipelined(stores, olds).items():
            if isinstance(reply, Stored):
                if reply.ok:
                    self._replaced(*owns[i])
                out[i] = reply.ok
            elif reply is None:
                alone.append(i)
            else:
                out[i] = reply
        _each_alone(self.write_if, calls, alone, out)

    def _pipelined(
        self, stores: dict[int, CasStore], olds: dict[int, bytes]
    ) -> dict[int, Stored | Exception | None]:
        """Send the cas stores, every one to a server in one write (``Node.store_many``).

        The cas cache learns each stored item and forgets each other; a store refused for memory
        is answered after putting its old item (``olds``) back (as :meth:`_replace` does).
        """
        answers: dict[int, Stored | Exception | None] = {}
        for node, indices in self._cluster.by_node_of(stores, lambda i: stores[i].key):
            sent = [stores[i] for i in indices]
            learnt: list[tuple[bytes, Known]] = []
            for i, s, reply in zip(indices, sent, node.store_many(sent), strict=True):
                if type(reply) is Stored and reply.ok:
                    learnt.append((s.key, _new(Known, (reply.epoch, reply.cas, s.item))))
                else:
                    self._cache.drop(s.key)
                    if isinstance(reply, OutOfMemoryError):
                        reply = self._put_back(node, s.key, olds[i], reply)
                answers[i] = reply
            self._cache.put_many(learnt)
        return answers

    def read_versioned(self, scope: str, key: str) -> tuple[bytes | None, Token]:
        mc_key, node = self._locate(scope, key)
        item, cas, _ = node.gets(mc_key)
        own = None if item is None else records.find(item, mc_key, scope.encode("utf-8"), key.encode("utf-8"))
        now = now_ms()
        return (None if own is None or own.expired(now) else own.value), Version(item, cas, own, now)

    def read_expiry(self, scope: str, key: str) -> tuple[bool, int | None]:
        mc_key, node = self._locate(scope, key)
        item = node.get(mc_key)
        own = None if item is None else records.find(item, mc_key, scope.encode("utf-8"), key.encode("utf-8"))
        if own is None or own.expired(now_ms()):
            return False, None
        return True, own.deadline

    def set_expiry(self, scope: str, key: str, expires_at: int | None) -> bool:
        mc_key, node = self._locate(scope, key)
        scope_raw, key_raw = scope.encode("utf-8"), key.encode("utf-8")

        def attempt() -> bool | Lost:
            item, cas, _ = node.gets(mc_key)
            own = None if item is None else records.find(item, mc_key, scope_raw, key_raw)
            if own is None or own.expired(now_ms()):
                return False
            assert item is not None and cas is not None
            new = records.replaced(item, mc_key, own._replace(deadline=expires_at))
            self._expiring(scope, key, own, expires_at)
            stored = self._replace(node, mc_key, self._fit(new, own.value), cas, item)
            if stored is None or not stored.ok:
                return LOST
            self._cache.put(mc_key, stored.epoch, stored.cas, new)
            return True

        return retry(attempt, attempts=self._attempts)

    def _expiring(self, scope: str, key: str, old: Record, deadline: int | None) -> None:
        """Before storing ``deadline`` over ``old``: schedule the sweeper's look at the entry,
        when expiry events are on and the deadline is new. A record that had no deadline is
        signalled first: a listing count may have found it lasting (``Listing.count``).

        :raises BackendError: when the signal failed (nothing is written then).
        """
        if deadline is None:
            return
        if old.deadline is None:
            self._cluster.node(self._codec.data_key(scope, key)).signal(self._codec.signal_key)
        if self._schedule is not None and old.deadline != deadline:
            self._schedule.note(scope, key, old.generation, deadline)

    # -- writes ------------------------------------------------------------------------------------
    def write(self, scope: str, key: str, data: bytes, expires_at: int | None = None) -> bytes | None:
        mc_key, node = self._locate(scope, key)
        scope_raw, key_raw = scope.encode("utf-8"), key.encode("utf-8")
        known = self._cache.get(mc_key)
        if known is not None:
            # One round trip: the store succeeds only if the item is still the one we know.
            own = records.find(known.item, mc_key, scope_raw, key_raw)
            if own is not None:
                record = Record(scope_raw, key_raw, own.generation, data, expires_at)
                new = records.replaced(known.item, mc_key, record)
                self._expiring(scope, key, own, expires_at)
                now = now_ms()
                stored = self._replace(node, mc_key, self._fit(new, data), known.cas, known.item, known.epoch)
                if stored is not None and stored.ok:
                    self._cache.put(mc_key, stored.epoch, stored.cas, new)
                    return self._replaced(own, now)
            self._cache.drop(mc_key)
        elif self._create(scope, key, data, None, None, new_only=True, deadline=expires_at):
            return None  # the index showed the key had no value: created without reading it

        def attempt() -> bytes | Lost | None:
            item, cas, _ = node.gets(mc_key)
            own = None if item is None else records.find(item, mc_key, scope_raw, key_raw)
            if own is not None:
                assert item is not None and cas is not None
                record = Record(scope_raw, key_raw, own.generation, data, expires_at)
                new = records.replaced(item, mc_key, record)
                self._expiring(scope, key, own, expires_at)
                now = now_ms()
                stored = self._replace(node, mc_key, self._fit(new, data), cas, item)
                if stored is not None and stored.ok:
                    self._cache.put(mc_key, stored.epoch, stored.cas, new)
                    return self._replaced(own, now)
                return LOST
            return None if self._create(scope, key, data, item, cas, deadline=expires_at) else LOST

        return retry(attempt, attempts=self._attempts)

    def _replaced(self, old: Record, now: int) -> bytes | None:
        """What a write that replaced ``old`` returns: nothing when ``old`` had expired by ``now``
        (judged once, before the store; its generation, still indexed, is kept: the write is a
        create for everyone else).

        The write's cas store beat every sweeper to an expired record: with expiry events on,
        it stashes the record for one of them to report (see ``schedule``).
        """
        if old.expired(now):
            if self._schedule is not None:
                schedule = self._schedule
                quietly("keeping an expired entry for its event", lambda: schedule.stash(old, now))
            return None
        return old.value

    def write_if(self, scope: str, key: str, data: bytes, token: Token, expires_at: ExpiresAt = KEEP) -> bool:
        if isinstance(token, bytes):
            return self._write_if_known(scope, key, data, token, expires_at)
        if not isinstance(token, Version):
            raise TypeError("write_if needs the token read_versioned returned, or the stored bytes")
        own = token.own
        if own is None:
            # a missing entry has no deadline to keep
            deadline = expires_at if isinstance(expires_at, int) else None
            return self._create(scope, key, data, token.item, token.cas, deadline=deadline)
        mc_key, node = self._locate(scope, key)
        # an item that holds our record was read, with its cas
        assert token.item is not None and token.cas is not None
        stored = self._store_over(
            scope, key, node, mc_key, data, own, token.item, token.cas, token.now, expires_at
        )  # fmt: skip
        return stored is not None and stored.ok

    def _write_if_known(self, scope: str, key: str, data: bytes, value: bytes, expires_at: ExpiresAt) -> bool:
        """``write_if`` offered the bytes the entry should hold (``value_tokens``): one cas store
        over the item this process last stored, when its record holds exactly ``value``.

        ``False`` when that item is unknown here, holds other bytes, has expired, or changed on
        the server since (the cas store fails): the core then reads and compares, as without a
        bytes token, so this never costs more than the read it saves.
        """
        mc_key, node = self._locate(scope, key)
        known = self._cache.get(mc_key)
        if known is None:
            return False
        own = records.find(known.item, mc_key, scope.encode("utf-8"), key.encode("utf-8"))
        now = now_ms()
        if own is None or own.value != value or own.expired(now):
            return False
        stored = self._store_over(
            scope, key, node, mc_key, data, own, known.item, known.cas, now, expires_at, known.epoch
        )  # fmt: skip
        if stored is None or not stored.ok:
            self._cache.drop(mc_key)
            return False
        return True

    def _store_over(
        self,
        scope: str,
        key: str,
        node: Node,
        mc_key: bytes,
        data: bytes,
        own: Record,
        item: bytes,
        cas: bytes,
        now: int,
        expires_at: ExpiresAt,
        epoch: int | None = None,
    ) -> Stored | None:
        """Store ``data`` as ``own``'s value in ``item`` if the item is still at ``cas``; with
        :data:`KEEP` the record keeps its deadline (none if it expired by ``now``)."""
        if expires_at is KEEP:
            deadline = None if own.expired(now) else own.deadline
        else:
            deadline = expires_at if isinstance(expires_at, int) else None
        new = records.replaced(item, mc_key, own._replace(value=data, deadline=deadline))
        self._expiring(scope, key, own, deadline)
        stored = self._replace(node, mc_key, self._fit(new, data), cas, item, epoch)
        if stored is not None and stored.ok:
            self._cache.put(mc_key, stored.epoch, stored.cas, new)
            self._replaced(own, now)
        return stored

    def modify(
        self, scope: str, key: str, change: Callable[[bytes | None], bytes], expires_at: ExpiresAt = KEEP
    ) -> tuple[bytes | None, bytes] | None:
        return None  # emulated: the core loops over read_versioned and write_if (with expires_at)

    def _create(
        self,
        scope: str,
        key: str,
        data: bytes,
        item: bytes | None,
        cas: bytes | None,
        new_only: bool = False,
        deadline: int | None = None,
    ) -> bool:
        """Add the pair's first record: index it first, store it, then re-check the index.

        ``item``/``cas``: what the slot holds now (``None``: empty; else other pairs' records
        after a hash collision). ``new_only``: the slot was not read; go ahead only if the
        index shows the key has no value (``Index.put_new``). :returns: ``False`` when another
        writer changed the slot first, or (``new_only``) the index could not tell.
        """
        mc_key, node = self._locate(scope, key)
        generation = random.getrandbits(63)
        if deadline is not None and self._schedule is not None:
            self._schedule.note(scope, key, generation, deadline)
        own = Record(scope.encode("utf-8"), key.encode("utf-8"), generation, data, deadline)
        new = self._fit(records.replaced(item, mc_key, own), data)
        # Index before storing: a crash in between leaves an entry without a value (skipped),
        # never a value that listing cannot reach.
        if new_only:
            fast = self._index.put_new(scope, key, generation)
            if fast is None:
                return False
            receipt = fast
        else:
            receipt = self._index.put_entry(scope, key, generation)
        probes: list[bytes | None] | None = None
        try:
            if item is None or cas is None:
                stored: Stored | None
                stored, probes = self._index.store_value(node, mc_key, new, receipt, self._ttl(mc_key, new))
            else:  # other pairs' records share this hashed key: keep them if memory runs out
                stored = self._replace(node, mc_key, new, cas, item)
        except OutOfMemoryError:
            # Nothing was stored: take the entry out again rather than leave a ghost to prune.
            entry = {key: generation}
            quietly("unindexing a refused key", lambda: self._index.drop_entries(scope, entry))
            raise
        if stored is None or not stored.ok:
            # Another writer stored the key first: its entry may now name our generation. Point
            # it at the live record (else a later delete could not unindex it).
            quietly("re-indexing after a lost race", lambda: self._index.resync(scope, [key]))
            return False
        self._cache.put(mc_key, stored.epoch, stored.cas, new)
        quietly(
            "re-checking the listing index",
            lambda: self._index.confirm(scope, key, generation, receipt, probes),
        )
        return True

    def remove(self, scope: str, key: str) -> bytes | None:
        mc_key, node = self._locate(scope, key)
        scope_raw, key_raw = scope.encode("utf-8"), key.encode("utf-8")
        known = self._cache.get(mc_key)
        if known is not None:
            self._cache.drop(mc_key)
            own = records.find(known.item, mc_key, scope_raw, key_raw)
            if own is not None and not own.expired(now_ms()):
                if self._take(node, mc_key, known.item, known.cas, own, known.epoch):
                    return own.value

        def attempt() -> bytes | Lost | None:
            item, cas, _ = node.gets(mc_key)
            own = None if item is None else records.find(item, mc_key, scope_raw, key_raw)
            if own is None or own.expired(now_ms()):
                return None  # an expired entry is already missing: left for the sweeper
            assert item is not None and cas is not None
            if self._take(node, mc_key, item, cas, own, None):
                return own.value
            return LOST

        return retry(attempt, attempts=self._attempts)

    def _take(
        self, node: Node, mc_key: bytes, item: bytes, cas: bytes, own: Record, epoch: int | None
    ) -> bool:
        """Remove ``own`` from the item only if the item is still at ``cas``, and unindex it.

        Deleting the whole item is a tracked delete (decision 0022): it is ended only after
        the index entry is dropped, so a count never trusts a leaf still listing a value that a
        tracked delete removed — a crash in between leaves the delete begun, and counts probe.
        """
        rest = records.without(item, mc_key, own.scope, own.key)
        if rest is None:
            deleted = node.delete_tracked(mc_key, cas, epoch)
            if deleted is None:
                return False
            unindexed = deleted and self._unindex(own)
            node.end_tracked(reflected=unindexed)
            return deleted
        stored = self._replace(node, mc_key, rest, cas, item, epoch)
        if stored is None or not stored.ok:
            return False
        self._unindex(own)
        return True

    def _unindex(self, own: Record) -> bool:
        """Drop the deleted record's index entry; ``False`` if that failed. The value is gone:
        unindexing it is housekeeping (a failure leaves a ghost, pruned later)."""
        scope, key = own.scope.decode("utf-8"), own.key.decode("utf-8")
        try:
            self._index.drop_entries(scope, {key: own.generation})
        except Exception as exc:  # the delete itself happened and is reported as done
            log.warning("memcached adapter: unindexing a deleted key failed after the delete: %s", exc)
            return False
        return True

    # -- expiry events -------------------------------------------------------------------------------
    def take_expired(self, limit: int) -> list[tuple[str, str, bytes, int]]:
        """Lease up to ``limit`` expired entries from the expiry schedule (``schedule``): each
        waits in a leased stash until :meth:`ack_expired`, and is leased again once its lease
        ends unacknowledged (its sweeper died, or the reply was lost).

        Only entries written with expiry events on are scheduled; an entry memcached dropped
        before a sweeper claimed it (more than ``expired_grace_s`` past its deadline, or evicted)
        has no event.
        """
        if self._schedule is None:
            return []
        started, lease = now_ms(), self._settings.expiry_lease_ms
        until = started + lease
        held: dict[Candidate, tuple[int, int]] = {}  # candidate -> (stash number, deadline)
        with self._leases_lock:  # this process's own leases: never claimed again by it
            mine = set(self._leases.values())

        def claim(candidates: list[Candidate]) -> list[bytes | None]:
            skip = [c.kind == STASH and c.number in mine for c in candidates]
            # an unacknowledged lease of this process (its batch still being delivered): the
            # candidate comes up again one lease later, when it may be acknowledged
            self._schedule_defer([c for c, own in zip(candidates, skip, strict=True) if own], until)
            got = iter(
                self._lease_many([c for c, own in zip(candidates, skip, strict=True) if not own], until)
            )
            out: list[bytes | None] = []
            for candidate, own in zip(candidates, skip, strict=True):
                leased = None if own else next(got)
                if leased is None:
                    out.append(None)
                    continue
                value, number, deadline = leased
                held[candidate] = (number, deadline)
                mine.add(number)
                out.append(value)
            return out

        # stop after a quarter of the lease, so the batch is delivered and acknowledged long
        # before its first lease ends (another sweeper would claim it again)
        taken = self._schedule.sweep(claim, limit, started + lease // 4)
        out: list[tuple[str, str, bytes, int]] = []
        numbers: list[int] = []
        for c, value in taken:
            number, deadline = held[c]
            out.append((c.scope, c.key, value, deadline))
            numbers.append(number)
            breathe()
        with self._leases_lock:
            self._leases.update(zip(out, numbers, strict=True))
        return out

    def _schedule_defer(self, candidates: list[Candidate], until: int) -> None:
        if candidates:
            assert self._schedule is not None
            self._schedule.defer(candidates, until)

    def ack_expired(self, taken: Sequence[tuple[str, str, bytes, int]]) -> None:
        """Mark the leased stashes of delivered entries delivered (``Schedule.delivered``: one
        pipelined request per server, so the window in which a kill delivers twice is short)."""
        if self._schedule is None:
            return
        with self._leases_lock:
            numbers = [self._leases[entry] for entry in taken if entry in self._leases]
        if numbers:
            self._schedule.delivered(numbers)
        with self._leases_lock:
            for entry in taken:
                self._leases.pop(entry, None)

    def _lease_many(self, candidates: list[Candidate], until: int) -> list[tuple[bytes, int, int] | None]:
        """Lease the expiries ``candidates`` name: per candidate ``(value, stash number,
        deadline)`` if this call got it, else ``None``. Pipelined, each step one request per
        server for the whole batch, in the order one claim needs them: the entries' items read
        (``gets``); the leased stashes' ``STASH`` candidates appended (one append), then the
        stashes added; then the items taken (tracked deletes, decision 0022); then their index
        entries dropped (one change per scope), and only then the deletes ended. A take that
        loses its cas race (a writer came first) goes on alone, as :meth:`_lease` does it."""
        assert self._schedule is not None
        schedule = self._schedule
        out: list[tuple[bytes, int, int] | None] = [None] * len(candidates)
        stashed = [i for i, c in enumerate(candidates) if c.kind == STASH]
        if stashed:
            read = schedule.stashes([candidates[i] for i in stashed])
            for i in stashed:
                c = candidates[i]
                item, cas = read.get(self._codec.stash_key(c.number), (None, None))
                if item is None or item[:1] == DELIVERED:
                    continue  # delivered, or dropped: nothing to lease (saves the round trips)
                record = schedule.lease_stash(c, until, (item, cas))
                if record is not None:
                    out[i] = (record.value, c.number, record.deadline or c.deadline)
        # entries: one claim per item in the batch. A second candidate of the same pair (its key
        # rewritten with another deadline, or created again after a lost race, with another
        # generation) names a record the item may hold instead: the batch's read tells which
        # one, if any, is the item's (an item holds one record per pair). A candidate of another
        # pair sharing the item (a colliding name) goes alone after the batch.
        batch: list[tuple[int, bytes, Node]] = []
        alone: list[int] = []
        seen: dict[bytes, int] = {}
        same: dict[int, list[int]] = {}
        # the keys of each scope encoded in bulk, past the cache of hot keys (``listed_data_key``:
        # a sweep's keys are each claimed once, and would only push the application's out of it)
        by_scope: dict[str, list[int]] = {}
        for i, c in enumerate(candidates):
            if c.kind != STASH:
                by_scope.setdefault(c.scope, []).append(i)
        keys: dict[int, bytes] = {}
        for scope, indices in by_scope.items():
            encoded = self._codec.listed_data_keys(scope, [candidates[i].key for i in indices])
            keys.update(zip(indices, encoded, strict=True))
        node_of = self._cluster.node
        for i, c in enumerate(candidates):
            if c.kind == STASH:
                continue
            breathe()
            mc_key = keys[i]
            node = node_of(mc_key)
            first = seen.get(mc_key)
            if first is None:
                seen[mc_key] = i
                batch.append((i, mc_key, node))
            elif (candidates[first].scope, candidates[first].key) == (c.scope, c.key):
                same.setdefault(first, []).append(i)
            else:
                alone.append(i)
        if batch:
            self._lease_entries(candidates, batch, until, out, same)
        for i in alone:
            out[i] = self._lease(candidates[i], until)
        return out

    def _lease_entries(
        self,
        candidates: list[Candidate],
        batch: list[tuple[int, bytes, Node]],
        until: int,
        out: list[tuple[bytes, int, int] | None],
        same: dict[int, list[int]],
    ) -> None:
        """:meth:`_lease_many` of the candidates ``batch`` names (index, item key, server), one
        per item; ``same``: by index in ``batch``, the other candidates of that pair."""
        assert self._schedule is not None
        found = self._cluster.gets_many([mc_key for _, mc_key, _ in batch])
        now = now_ms()
        due: list[tuple[int, bytes, Node, bytes, bytes, Record]] = []
        packed: list[bytes | None] = []  # per due entry: its item when it holds that record alone
        alone = records.alone
        for i, mc_key, node in batch:
            breathe()
            hit = found.get(mc_key)
            if hit is None:
                continue
            item, cas = hit
            c = candidates[i]
            own = alone(item, c.scope.encode("utf-8"), c.key.encode("utf-8"))
            single = own is not None
            if own is None:
                own = _own(item, mc_key, c.scope, c.key)
            if own is None:
                continue
            if own.generation != c.number or own.deadline != c.deadline:
                i = next((j for j in same.get(i, ()) if (candidates[j].number, candidates[j].deadline)
                          == (own.generation, own.deadline)), -1)  # fmt: skip
                if i < 0:
                    continue  # no candidate names the record the item holds: none is due
            if own.deadline is None or own.deadline > now:
                continue
            due.append((i, mc_key, node, item, cas, own))
            packed.append(item if single else None)
        if not due:
            return
        numbers = self._schedule.lease_records([own for *_, own in due], until, packed)  # before any take
        again: list[int] = []  # index in due: the take lost its race; retried alone
        deletes: list[tuple[int, bytes, Node, bytes]] = []  # (index in due, mc_key, node, cas)
        for n, (_i, mc_key, node, item, cas, own) in enumerate(due):
            if packed[n] is not None or records.without(item, mc_key, own.scope, own.key) is None:
                deletes.append((n, mc_key, node, cas))
            elif self._take(node, mc_key, item, cas, own, None):  # other records share the item
                self._cache.drop(mc_key)
            else:
                again.append(n)
        taken: list[int] = [n for n, *_ in deletes]
        done: dict[int, bool] = {}
        try:
            for node, mine in self._cluster.by_node_of(deletes, lambda d: d[1]):
                done.update(
                    zip(
                        (n for n, *_ in mine),
                        node.delete_tracked_many([(k, cas) for _, k, _, cas in mine]),
                        strict=True,
                    )
                )
        finally:
            # whatever was deleted is unindexed, then every delete sent is ended (decision 0022)
            gone: dict[str, dict[str, int]] = {}
            for n in taken:
                breathe()
                if done.get(n):
                    own = due[n][5]
                    gone.setdefault(own.scope.decode("utf-8"), {})[own.key.decode("utf-8")] = own.generation
                    self._cache.drop(due[n][1])
            unindexed = {scope: self._drop_entries(scope, entries) for scope, entries in gone.items()}
            for node, mine in self._cluster.by_node_of([d for d in deletes if d[0] in done], lambda d: d[1]):
                reflected = []
                for n, *_ in mine:
                    own = due[n][5]
                    reflected.append(done[n] and unindexed[own.scope.decode("utf-8")])
                node.end_tracked_many(reflected)
        again += [n for n in taken if not done[n]]
        for n in sorted(again):
            i = due[n][0]
            self._retake(candidates[i], due[n][1], due[n][2])
        for n, number in enumerate(numbers):
            if number is not None:
                own = due[n][5]
                assert own.deadline is not None
                out[due[n][0]] = (own.value, number, own.deadline)

    def _drop_entries(self, scope: str, entries: dict[str, int]) -> bool:
        """:meth:`_unindex` of several deleted records of one scope, in one index change."""
        try:
            self._index.drop_entries(scope, entries)
        except Exception as exc:  # the deletes themselves happened and are reported as done
            log.warning("memcached adapter: unindexing deleted keys failed after the deletes: %s", exc)
            return False
        return True

    def _retake(self, candidate: Candidate, mc_key: bytes, node: Node) -> None:
        """Take the expired record ``candidate`` names whose stash was already attempted (a take
        lost its cas race): read again and take it while it is still there."""
        scope_raw, key_raw = candidate.scope.encode("utf-8"), candidate.key.encode("utf-8")

        def attempt() -> Lost | None:
            item, cas, _ = node.gets(mc_key)
            own = None if item is None else records.find(item, mc_key, scope_raw, key_raw)
            if own is None or own.generation != candidate.number or own.deadline != candidate.deadline:
                return None  # replaced (its writer found the stash) or taken by another sweeper
            assert item is not None and cas is not None
            if not self._take(node, mc_key, item, cas, own, None):
                return LOST
            self._cache.drop(mc_key)
            return None

        retry(attempt, attempts=self._attempts)

    def _lease(self, candidate: Candidate, until: int) -> tuple[bytes, int, int] | None:
        """Lease the expiry a candidate names: ``(value, stash number, deadline)`` if this call
        got it. An entry's record is stashed leased first, then taken from its item (cas-checked;
        a write that replaced it meanwhile found the stash and left it alone)."""
        assert self._schedule is not None
        schedule = self._schedule
        if candidate.kind == STASH:
            record = schedule.lease_stash(candidate, until)
            if record is None:
                return None
            return record.value, candidate.number, record.deadline or candidate.deadline
        scope, key = candidate.scope, candidate.key
        mc_key, node = self._locate(scope, key)
        scope_raw, key_raw = scope.encode("utf-8"), key.encode("utf-8")
        leased: list[tuple[bytes, int, int]] = []
        tried: list[bool] = []

        def attempt() -> Lost | None:
            item, cas, _ = node.gets(mc_key)
            own = None if item is None else records.find(item, mc_key, scope_raw, key_raw)
            if (
                own is None
                or own.generation != candidate.number
                or own.deadline != candidate.deadline
                or not own.expired(now_ms())
            ):
                return None
            assert item is not None and cas is not None and own.deadline is not None
            if not tried:  # once: a second try finds the stash this one added
                tried.append(True)
                number = schedule.lease_record(own, until)
                if number is not None:
                    leased.append((own.value, number, own.deadline))
            if not self._take(node, mc_key, item, cas, own, None):
                return LOST
            self._cache.drop(mc_key)
            return None

        retry(attempt, attempts=self._attempts)
        return leased[0] if leased else None

    # -- listing -----------------------------------------------------------------------------------
    def list_scopes(self) -> list[str]:
        return self._listing.list_scopes()

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        return self._listing.scan(scope, cursor, limit)

    def count(self, scope: str) -> int | None:
        return self._listing.count(scope)


def _item_size_max(node: Node) -> int:
    value = node.stats("settings").get(b"item_size_max")
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return DEFAULT_ITEM_SIZE_MAX


def _check_layout(cluster: Cluster, codec: KeyCodec, settings: Settings) -> int | None:
    """Record the store's layout on first use; refuse a client whose layout differs.

    Two clients with different ``scope_shards`` would look for the same scopes in different
    shards, so listing would silently miss them. A store of layout 1 is taken over: its record
    is rewritten (so a client of that layout opened later is refused) and its index buckets are
    converted scope by scope as they are touched.

    :returns: layout 1's buckets per scope when the store may still hold some, else ``None``.
    """
    node = cluster.node(codec.meta_key)
    prefix = settings.key_prefix.decode()

    def attempt() -> int | Lost | None:
        layout: dict[str, Any] = {"f": LAYOUT, "scope_shards": settings.scope_shards}
        raw = json.dumps(layout, sort_keys=True).encode()
        if node.store(codec.meta_key, raw, None).ok:
            # A store whose record was evicted looks new: if it lists scopes, it may be layout 1's.
            if not cluster.get_many(codec.shard_keys):
                return None
            layout["legacy_buckets"] = settings.index_buckets
            _rewrite_layout(node, codec, layout)
            return settings.index_buckets
        found, cas, _ = node.gets(codec.meta_key)
        if found is None or cas is None:
            return LOST  # evicted meanwhile
        try:
            recorded = json.loads(found)
        except ValueError:
            recorded = None
        if not isinstance(recorded, dict) or recorded.get("f") not in (records.FORMAT, LAYOUT):
            raise ConfigError(
                f"adapter 'memcached': the key prefix {prefix!r} is used by something else on "
                f"{node.name}; choose another key_prefix"
            )
        if recorded.get("scope_shards") != settings.scope_shards:
            raise ConfigError(
                f"adapter 'memcached': the store under key prefix {prefix!r} was set up with "
                f"scope_shards={recorded.get('scope_shards')}; this config says "
                f"{settings.scope_shards}. Use the recorded value"
            )
        if recorded["f"] == LAYOUT:
            legacy = recorded.get("legacy_buckets")
            return legacy if isinstance(legacy, int) and not isinstance(legacy, bool) else None
        buckets = recorded.get("index_buckets")
        if isinstance(buckets, bool) or not isinstance(buckets, int) or not 1 <= buckets <= 1024:
            raise ConfigError(
                f"adapter 'memcached': the layout record under key prefix {prefix!r} is damaged; "
                f"choose another key_prefix"
            )
        layout["legacy_buckets"] = buckets
        raw = json.dumps(layout, sort_keys=True).encode()
        return buckets if node.store(codec.meta_key, raw, cas).ok else LOST

    return retry(attempt, attempts=settings.max_attempts)


def _rewrite_layout(node: Node, codec: KeyCodec, layout: dict[str, Any]) -> None:
    raw = json.dumps(layout, sort_keys=True).encode()
    for _ in range(8):
        found, cas, _ = node.gets(codec.meta_key)
        if found is None or cas is None:
            if node.store(codec.meta_key, raw, None).ok:
                return
        elif node.store(codec.meta_key, raw, cas).ok:
            return


def _each_alone(primitive: Callable[..., Any], calls: Calls, indices: list[int], out: list[Any]) -> None:
    """Run the calls a pipelined round left out through the primitive itself, an error as a value."""
    for i in indices:
        try:
            out[i] = primitive(*calls[i][1])
        except Exception as exc:
            out[i] = exc

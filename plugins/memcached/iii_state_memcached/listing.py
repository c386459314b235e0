"""Walking the listing index: ``scan`` pages of a scope and ``list_scopes``.

A scope's keys have a fixed order — the 64-bit hash of the key, then the key in code-point
order — that does not depend on how the index happens to be split into leaves. A walk with a
cursor ``(hash, last key)`` therefore returns every key present for the whole walk exactly once
(ordered listing), however leaves split meanwhile. A page reads the leaves it needs, one at a
time, and the page's values: its memory is bounded by the page and the leaf size, never by the
scope. Index entries whose value is gone are skipped and pruned.

A leaf's parse (its entries in walk order, and their data keys) is kept by the leaf's content,
for the last ``_PARSED_LEAVES`` leaves read: a leaf changes only when a key of its scope is
created or deleted, so pages and counts of a scope at rest parse nothing again. The same bytes
always parse the same, so a kept parse is never stale.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict

from iii_state_core import InvalidCursorError
from iii_state_core.adapter import Page
from iii_state_core.expiry import now_ms

from . import records
from .index import Index, Located, quietly
from .keys import KeyCodec, key_hash
from .nodes import Cluster

#: Values fetched per request while looking for one live key of a scope.
_PROBE = 16
#: Keys whose presence ``count`` probes in one request.
_COUNT_BATCH = 1000
_TOP = 1 << 64
#: Parsed leaves kept (a leaf is at most 8 KiB; its parse a few times that).
_PARSED_LEAVES = 32
#: Seconds a first page's counters and leaves may serve the count that follows it.
_HANDOFF_S = 1.0
#: Scopes whose last first page is kept for its count.
_HANDOFFS = 16


#: Each server's ``Node.liveness``, in the order the servers are listed.
Liveness = tuple[tuple[object, ...], ...]
#: What ``count`` learnt of a leaf: the servers' liveness read before probing it, how many of
#: its entries were found lasting, and the positions of the others (probed again each count).
Lasting = tuple[Liveness, int, list[int]]
#: A probe's kind of entry that exists with no lifetime (``0``: no live value, ``1``: live).
_LASTING = 2


class _Parsed:
    """One leaf's entries of one scope: ``(position, key, generation)`` in walk order, the
    keys' data keys in the same order, and what the last count learnt (``count``)."""

    __slots__ = ("data_keys", "lasting", "ordered")

    def __init__(self, ordered: list[tuple[int, str, int]], data_keys: list[bytes]) -> None:
        self.ordered = ordered
        self.data_keys = data_keys
        self.lasting: Lasting | None = None


class Listing:
    def __init__(self, cluster: Cluster, codec: KeyCodec, index: Index) -> None:
        self.cluster = cluster
        self.codec = codec
        self.index = index
        self._parsed: OrderedDict[tuple[str, bytes, bytes], _Parsed] = OrderedDict()
        self._parsed_lock = threading.Lock()
        #: scope -> its latest first page's (liveness, leaves read, when), for ``count``.
        self._handoffs: OrderedDict[str, tuple[Liveness, dict[bytes, bytes | None], float]] = OrderedDict()

    def _parse(self, scope: str, leaf: Located) -> _Parsed:
        """The leaf's entries of ``scope`` in walk order, parsed once per content."""
        if leaf.item is None:
            return _Parsed([], [])
        kept = (scope, leaf.key, leaf.item)
        with self._parsed_lock:
            parsed = self._parsed.get(kept)
            if parsed is not None:
                self._parsed.move_to_end(kept)
                return parsed
        ordered = sorted((key_hash(k), k, g) for k, g in self.index.entries_of(scope, leaf).items())
        data_keys = self.codec.listed_data_keys(scope, [k for _, k, _ in ordered])
        parsed = _Parsed(ordered, data_keys)
        with self._parsed_lock:
            self._parsed[kept] = parsed
            while len(self._parsed) > _PARSED_LEAVES:
                self._parsed.popitem(last=False)
        return parsed

    # -- cursors -----------------------------------------------------------------------------------
    @staticmethod
    def _decode_cursor(cursor: str | None) -> tuple[int, str | None]:
        if cursor is None:
            return 0, None
        try:
            position, after = json.loads(cursor)
        except (ValueError, TypeError):
            position = after = None
        if (
            isinstance(position, bool)
            or not isinstance(position, int)
            or not 0 <= position < _TOP
            or not isinstance(after, str)
        ):
            raise InvalidCursorError(
                "cursor does not belong to this memcached store's listing; start the walk again without it"
            )
        return position, after

    @staticmethod
    def _encode_cursor(position: int, key: str) -> str:
        return json.dumps([position, key], ensure_ascii=False, separators=(",", ":"))

    # -- scan ----------------------------------------------------------------------------------------
    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        """Up to ``limit`` live entries of ``scope`` after ``cursor``, and the next cursor."""
        start, after = self._decode_cursor(cursor)
        self.index.convert(scope)
        # A first page on one server reads the server's counters with its leaves, for the count
        # the core asks for next when the scope goes on past the page (``count``).
        first = cursor is None and len(self.cluster.nodes) == 1
        read: list[tuple[object, ...]] = []
        seen: dict[bytes, bytes | None] = {}
        step = self.index.leaves(scope, start, liveness=read if first else None, batch=seen)
        chosen: list[tuple[int, str, int]] = []
        more = False
        data_keys: list[bytes] = []
        while not more and (leaf := step()) is not None:
            parsed = self._parse(scope, leaf)
            for entry, data_key in zip(parsed.ordered, parsed.data_keys, strict=True):
                if after is not None and entry[:2] <= (start, after):
                    continue
                if len(chosen) == limit:
                    more = True
                    break
                chosen.append(entry)
                data_keys.append(data_key)
        page, ghosts, _ = self._values(scope, [(key, generation) for _, key, generation in chosen], data_keys)
        if ghosts:
            quietly("pruning the listing index", lambda: self.index.prune(scope, ghosts))
        next_cursor = self._encode_cursor(chosen[-1][0], chosen[-1][1]) if more else None
        if more and read:
            with self._parsed_lock:
                self._handoffs[scope] = ((read[0],), seen, time.monotonic())
                self._handoffs.move_to_end(scope)
                while len(self._handoffs) > _HANDOFFS:
                    self._handoffs.popitem(last=False)
        return page, next_cursor

    def _values(
        self, scope: str, entries: list[tuple[str, int]], data_keys: list[bytes] | None = None
    ) -> tuple[list[tuple[str, bytes]], dict[str, int], int]:
        """The live ``(key, value)`` pairs among ``entries``, the ghosts (key -> generation), and
        how many are expired (hidden; left indexed for the sweeper or memcached to remove).
        ``data_keys``: the entries' data keys when known."""
        scope_raw = scope.encode("utf-8")
        if data_keys is None:
            data_keys = self.codec.listed_data_keys(scope, [key for key, _ in entries])
        items = self.cluster.get_many(data_keys)
        now = now_ms()
        page: list[tuple[str, bytes]] = []
        ghosts: dict[str, int] = {}
        expired = 0
        for (key, generation), data_key in zip(entries, data_keys, strict=True):
            item = items.get(data_key)
            record = None if item is None else records.find(item, data_key, scope_raw, key.encode("utf-8"))
            if record is None:
                ghosts[key] = generation
            elif record.expired(now):
                expired += 1
            else:
                page.append((key, record.value))
        return page, ghosts, expired

    # -- count ---------------------------------------------------------------------------------------
    def count(self, scope: str) -> int:
        """How many of the scope's indexed keys have a value.

        Reads the scope's leaves; the keys are probed (``mg <key> t``, values not read) one
        pipelined request per server per ``_COUNT_BATCH`` keys — except those a probe of the same
        leaf content found lasting (a plain key whose item exists with no lifetime) while every
        server's :meth:`Node.liveness` reads as now. Such an item can stop existing, or gain a
        lifetime, only in a way those counters show (``nodes._LIVENESS``; the adapter signals
        before giving a lasting record a deadline), and an entry added or dropped changes the
        leaf: so the count is what probing every key would give. The counters are read before
        the leaves, so anything that happens after them shows in the next count's reading.
        """
        self.index.convert(scope)
        with self._parsed_lock:
            handed = self._handoffs.pop(scope, None)
        if handed is not None and time.monotonic() - handed[2] < _HANDOFF_S:
            # The scope's latest first page read the counters, then the leaves: count from
            # there, as if this count had run then. The core counts right after a first page's
            # scan, so that page is this walk's own or a later one, never an earlier one.
            liveness: Liveness = handed[0]
            step = self.index.leaves(scope, batch=dict(handed[1]))
            leaf = step()
        else:
            # every server's counters before the leaves: the home server's in the leaves' request
            home = self.index.home(scope)
            others = [node.liveness() if node is not home else None for node in self.cluster.nodes]
            read: list[tuple[object, ...]] = []
            step = self.index.leaves(scope, liveness=read)
            leaf = step()
            if not read:  # not read before the leaves: trust nothing kept (compares unequal)
                read.append(("unknown", object()))
            liveness = tuple(read[0] if mine is None else mine for mine in others)
        total = 0
        work: list[tuple[_Parsed, int, list[int]]] = []
        queued = 0
        while leaf is not None:
            parsed = self._parse(scope, leaf)
            known = parsed.lasting
            if known is not None and known[0] == liveness:
                total += known[1]
                chosen = known[2]  # probe again only what was not lasting
                if chosen:
                    work.append((parsed, known[1], chosen))
            else:
                chosen = list(range(len(parsed.ordered)))
                work.append((parsed, 0, chosen))
            queued += len(chosen)
            if queued >= _COUNT_BATCH:
                total += self._settle(scope, work, liveness)
                work, queued = [], 0
            leaf = step()
        return total + (self._settle(scope, work, liveness) if work else 0)

    def _settle(self, scope: str, work: list[tuple[_Parsed, int, list[int]]], liveness: Liveness) -> int:
        """Probe the chosen entries of each leaf in ``work`` (leaf, its lasting entries known
        already, the entries to probe) and record, per leaf, what the probe found lasting.

        :returns: how many of the probed entries are live.
        """
        entries = [parsed.ordered[i] for parsed, _, chosen in work for i in chosen]
        data_keys = [parsed.data_keys[i] for parsed, _, chosen in work for i in chosen]
        kinds = iter(self._classify(scope, entries, data_keys))
        live = 0
        for parsed, lasting, chosen in work:
            unsure: list[int] = []
            for i in chosen:
                kind = next(kinds)
                if kind == _LASTING:
                    lasting += 1
                    live += 1
                else:
                    live += kind
                    unsure.append(i)
            parsed.lasting = (liveness, lasting, unsure)
        return live

    def _classify(self, scope: str, entries: list[tuple[int, str, int]], data_keys: list[bytes]) -> list[int]:
        """Per entry: ``_LASTING`` (a plain key whose item exists with no lifetime), ``1`` (live
        otherwise) or ``0`` (no live value)."""
        kinds = [0] * len(entries)
        unsure: list[int] = []  # read the values of these
        plain = [i for i, data_key in enumerate(data_keys) if not self.codec.is_hashed(data_key)]
        # A hashed data key may hold only another pair's record: always read those values.
        if len(plain) < len(data_keys):
            taken = set(plain)
            unsure = [i for i in range(len(entries)) if i not in taken]
        lifetimes = self.cluster.remaining([data_keys[i] for i in plain])
        # An item memcached will drop may hold an expired record; the others exist and do not
        # expire within ``sure`` seconds (their lifetime minus the grace being seconds away).
        sure = self.index.grace + 3
        for i, left in zip(plain, lifetimes, strict=True):
            if left == -1:
                kinds[i] = _LASTING
            elif left is not None:
                if left < sure:
                    unsure.append(i)
                else:
                    kinds[i] = 1
        if unsure:
            page = self._values(scope, [entries[i][1:] for i in unsure], [data_keys[i] for i in unsure])[0]
            alive = {key for key, _ in page}
            for i in unsure:
                kinds[i] = 1 if entries[i][1] in alive else 0
        return kinds

    # -- scopes --------------------------------------------------------------------------------------
    def list_scopes(self) -> list[str]:
        """Every scope with at least one live key; scopes found empty are pruned on the way."""
        shards = self.cluster.get_many(self.codec.shard_keys)
        known: set[str] = set()
        for shard_key, item in shards.items():
            known |= records.load_shard(item, shard_key)
        return [scope for scope in sorted(known) if self._holds_a_live_key(scope)]

    def _holds_a_live_key(self, scope: str) -> bool:
        """Reads the scope's leaves in order until one lists a live key."""
        self.index.convert(scope)
        ghosts: dict[str, int] = {}
        expired = 0
        step = self.index.leaves(scope)
        while (leaf := step()) is not None:
            pending = sorted(self.index.entries_of(scope, leaf).items())
            for at in range(0, len(pending), _PROBE):
                page, dead, gone = self._values(scope, pending[at : at + _PROBE])
                ghosts.update(dead)
                expired += gone
                if page:
                    if ghosts:
                        quietly("pruning the listing index", lambda: self.index.prune(scope, ghosts))
                    return True

        def drop() -> None:
            self.index.prune(scope, ghosts)
            if not expired:  # expired entries stay indexed until taken or dropped by memcached
                self.index.drop_scope_if_empty(scope)

        quietly("pruning the scope index", drop)
        return False

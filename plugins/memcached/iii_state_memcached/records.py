"""The bytes of the items this adapter stores.

A data item holds one record per (scope, key) that owns its memcached key; normally one, more
only when two hashed pairs collide (they then share the item, each finding its own record):

    0xA1, then per record: >IIQI (scope length, key length, generation, value length),
    scope UTF-8, key UTF-8, value bytes — the value exactly as the core gave it;
    0xA2 (an item where some record has a deadline): >IIQQI, the fourth field the deadline
    in epoch milliseconds (0: none), the rest as above.

The generation is a random number fixed when the entry is created and kept by every later
write; the listing index records it so that a delete removes only its own index entry.

A scope's index is a tree of nodes (see ``index``). A node item is one kind byte — ``LEAF``,
``SEALED`` (a leaf being split: frozen) or ``SPLIT`` (its entries live in its two children) —
then, for leaves, a log of entry records, each ``>BQII`` (operation, generation, scope length,
key length), scope UTF-8, key UTF-8. ``PUT`` points the key at the generation; ``DROP`` removes
it only if it still names that generation. The scope is written only in nodes whose name is
hashed (and may be shared by colliding scopes); elsewhere the node's name says it. A new record
is appended to the bytes already there, so adding an entry never decodes the leaf.

Scope-index shards are compact JSON (read whole and rewritten whole under cas): a shard lists
scope names. Layout 1 kept JSON index buckets (scope -> {key: generation}); they are read only
to convert them.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any, NamedTuple

from iii_state_core import BackendError

MAGIC = 0xA1
#: Items holding a deadline (contract § Expiry); others keep 0xA1, readable by older clients.
MAGIC_EXPIRING = 0xA2
_HEAD = struct.Struct(">IIQI")
_HEAD_EXPIRING = struct.Struct(">IIQQI")
#: Bytes an item needs beyond its records' names and values.
ITEM_OVERHEAD = 1
RECORD_OVERHEAD = _HEAD_EXPIRING.size
#: The ``f`` of shard items (and of layout 1's buckets).
FORMAT = 1


class Record(NamedTuple):
    scope: bytes
    key: bytes
    generation: int
    value: bytes
    #: Epoch milliseconds from which the entry is missing; ``None``: it never expires.
    deadline: int | None = None

    def expired(self, now: int) -> bool:
        return self.deadline is not None and self.deadline <= now


def _foreign(mc_key: bytes) -> BackendError:
    shown = mc_key.decode("ascii", "replace")
    return BackendError(
        f"memcached item {shown!r} is not in the iii-state format: another program writes under "
        f"this key_prefix; give iii-state a key_prefix of its own"
    )


def _head(item: bytes, mc_key: bytes) -> struct.Struct:
    if item and item[0] == MAGIC:
        return _HEAD
    if item and item[0] == MAGIC_EXPIRING:
        return _HEAD_EXPIRING
    raise _foreign(mc_key)


def _unpack(head: struct.Struct, item: bytes, at: int) -> tuple[int, int, int, int | None, int]:
    """(scope length, key length, generation, deadline, value length) of the record at ``at``."""
    if head is _HEAD:
        scope_len, key_len, generation, value_len = head.unpack_from(item, at)
        return scope_len, key_len, generation, None, value_len
    scope_len, key_len, generation, deadline, value_len = head.unpack_from(item, at)
    return scope_len, key_len, generation, deadline or None, value_len


def iter_records(item: bytes, mc_key: bytes) -> Iterator[Record]:
    """:raises BackendError: when the item was not written by this adapter."""
    head = _head(item, mc_key)
    at, end = 1, len(item)
    while at < end:
        if at + head.size > end:
            raise _foreign(mc_key)
        scope_len, key_len, generation, deadline, value_len = _unpack(head, item, at)
        at += head.size
        stop = at + scope_len + key_len + value_len
        if stop > end:
            raise _foreign(mc_key)
        key_at = at + scope_len
        value_at = key_at + key_len
        yield Record(item[at:key_at], item[key_at:value_at], generation, item[value_at:stop], deadline)
        at = stop


def find(item: bytes, mc_key: bytes, scope: bytes, key: bytes) -> Record | None:
    """The record of (scope, key) in ``item``, or ``None`` when the item holds only others."""
    # The common case, one record: check it in place without building the others.
    head = _head(item, mc_key)
    if len(item) >= 1 + head.size:
        scope_len, key_len, generation, deadline, value_len = _unpack(head, item, 1)
        at = 1 + head.size
        if at + scope_len + key_len + value_len == len(item):
            key_at = at + scope_len
            value_at = key_at + key_len
            if item[at:key_at] == scope and item[key_at:value_at] == key:
                return Record(scope, key, generation, item[value_at:], deadline)
            return None
    for record in iter_records(item, mc_key):
        if record.scope == scope and record.key == key:
            return record
    return None


def alone(item: bytes, scope: bytes, key: bytes) -> Record | None:
    """The pair's record when ``item`` is an item with a deadline holding exactly that one
    record (what the sweeper claims, nearly always); ``None`` for any other item. Then
    ``pack([record]) == item``, and the item without it is empty."""
    if item[:1] != _EXPIRING or len(item) < 1 + _HEAD_EXPIRING.size:
        return None
    scope_len, key_len, generation, deadline, value_len = _HEAD_EXPIRING.unpack_from(item, 1)
    at = 1 + _HEAD_EXPIRING.size
    key_at = at + scope_len
    value_at = key_at + key_len
    if value_at + value_len != len(item) or item[at:key_at] != scope or item[key_at:value_at] != key:
        return None
    record: Record = _new_record(Record, (scope, key, generation, item[value_at:], deadline or None))
    return record


_EXPIRING = bytes((MAGIC_EXPIRING,))
#: Builds a Record without its Python-level ``__new__`` (per claimed entry).
_new_record: Any = tuple.__new__


def _only(item: bytes, new: Record) -> bool:
    """True when ``item`` holds exactly one record, of ``new``'s pair (the common case)."""
    if not item or item[0] not in (MAGIC, MAGIC_EXPIRING):
        return False
    head = _HEAD if item[0] == MAGIC else _HEAD_EXPIRING
    if len(item) < 1 + head.size:
        return False
    scope_len, key_len, _, _, value_len = _unpack(head, item, 1)
    at = 1 + head.size
    return (
        at + scope_len + key_len + value_len == len(item)
        and item[at : at + scope_len] == new.scope
        and item[at + scope_len : at + scope_len + key_len] == new.key
    )


def pack(records: list[Record]) -> bytes:
    if all(r.deadline is None for r in records):
        parts = [bytes((MAGIC,))]
        for r in records:
            head = _HEAD.pack(len(r.scope), len(r.key), r.generation, len(r.value))
            parts += [head, r.scope, r.key, r.value]
        return b"".join(parts)
    parts = [bytes((MAGIC_EXPIRING,))]
    for r in records:
        head = _HEAD_EXPIRING.pack(len(r.scope), len(r.key), r.generation, r.deadline or 0, len(r.value))
        parts += [head, r.scope, r.key, r.value]
    return b"".join(parts)


def lifetime(item: bytes, mc_key: bytes, now: int, grace: int) -> int:
    """The native lifetime (memcached's ``T``, seconds; 0: none) of an item: the latest deadline
    of its records plus ``grace`` seconds, so memcached drops it only after every record expired
    and a sweeper had ``grace`` to take it; 0 when some record never expires."""
    if item[0] == MAGIC:
        return 0
    latest = 0
    for record in iter_records(item, mc_key):
        if record.deadline is None:
            return 0
        latest = max(latest, record.deadline)
    return max(1, -(-(latest - now) // 1000)) + grace


def replaced(item: bytes | None, mc_key: bytes, new: Record) -> bytes:
    """``item`` with the record of ``new``'s pair replaced by (or extended with) ``new``."""
    if item is None or _only(item, new):
        return pack([new])
    others = [r for r in iter_records(item, mc_key) if (r.scope, r.key) != (new.scope, new.key)]
    return pack([*others, new])


def swap_plain(item: bytes, scope: bytes, key: bytes, value: bytes) -> tuple[bytes, bytes] | None:
    """``(new item, old value)`` when ``item`` is a plain item (no deadline) holding exactly the
    pair's record: that record with ``value`` instead, its generation kept — the bytes
    ``replaced`` builds for it, cut from the item without decoding it (a batch of writes does
    this per entry). ``None`` for any other item.
    """
    # 0xA1, then the head >IIQI at 1: the lengths at 1:9, the generation at 9:17, the value
    # length at 17:21; the names from 21, the value after them to the end.
    names = scope + key
    end = 21 + len(names)
    if (
        item[21:end] != names
        or item[:1] != _PLAIN
        or int.from_bytes(item[17:21], "big") != len(item) - end  # also: at least the head is there
        or _NAMED.unpack_from(item, 1) != (len(scope), len(key))
    ):
        return None
    return b"%s%s%s%s" % (item[:17], len(value).to_bytes(4, "big"), names, value), item[end:]


_PLAIN = bytes((MAGIC,))


def without(item: bytes, mc_key: bytes, scope: bytes, key: bytes) -> bytes | None:
    """``item`` minus the pair's record; ``None`` when nothing else is left."""
    others = [r for r in iter_records(item, mc_key) if (r.scope, r.key) != (scope, key)]
    return pack(others) if others else None


# -- index items -------------------------------------------------------------------------------

Sections = dict[str, dict[str, int]]


def _load(item: bytes | None, mc_key: bytes) -> dict[str, object]:
    if item is None:
        return {}
    try:
        doc = json.loads(item)
    except ValueError:
        raise _foreign(mc_key) from None
    if not isinstance(doc, dict) or doc.get("f") != FORMAT:
        raise _foreign(mc_key)
    return doc


def _dump(doc: object) -> bytes:
    # sort_keys: a bucket's keys come back in code-point order, which ordered listing walks
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return text.encode("utf-8")


def load_bucket(item: bytes | None, mc_key: bytes) -> Sections:
    """scope -> {key: generation}; a hashed bucket key can serve several colliding scopes."""
    sections = _load(item, mc_key).get("s", {})
    if not isinstance(sections, dict):
        raise _foreign(mc_key)
    return sections


def dump_bucket(sections: Sections) -> bytes | None:
    """The item for ``sections``; ``None`` when it lists nothing (the item is deleted)."""
    live = {scope: keys for scope, keys in sections.items() if keys}
    return _dump({"f": FORMAT, "s": live}) if live else None


def load_shard(item: bytes | None, mc_key: bytes) -> set[str]:
    scopes = _load(item, mc_key).get("s", [])
    if not isinstance(scopes, list):
        raise _foreign(mc_key)
    return set(scopes)


def dump_shard(scopes: set[str]) -> bytes | None:
    return _dump({"f": FORMAT, "s": sorted(scopes)}) if scopes else None


# -- index nodes (layout 2) ---------------------------------------------------------------------

LEAF, SEALED, SPLIT = 0xB1, 0xB2, 0xB3
PUT, DROP = 1, 2
_ENTRY = struct.Struct(">BQII")
EMPTY_LEAF = bytes((LEAF,))
SPLIT_ITEM = bytes((SPLIT,))
#: (scope, key) as bytes; the scope is ``b""`` in nodes whose name already says it.
EntryId = tuple[bytes, bytes]


def entry_record(op: int, generation: int, scope: bytes, key: bytes) -> bytes:
    return _ENTRY.pack(op, generation, len(scope), len(key)) + scope + key


def node_kind(item: bytes, mc_key: bytes) -> int:
    """:raises BackendError: when the item is not an index node of this adapter."""
    if not item or item[0] not in (LEAF, SEALED, SPLIT):
        raise _foreign(mc_key)
    return item[0]


def replay(item: bytes, mc_key: bytes) -> dict[EntryId, int]:
    """The entries a leaf's log leaves: (scope, key) -> generation, in no particular order."""
    node_kind(item, mc_key)
    entries: dict[EntryId, int] = {}
    at, end, head = 1, len(item), _ENTRY.size
    unpack = _ENTRY.unpack_from
    while at < end:
        if at + head > end:
            raise _foreign(mc_key)
        op, generation, scope_len, key_len = unpack(item, at)
        at += head
        stop = at + scope_len + key_len
        if stop > end:
            raise _foreign(mc_key)
        entry = (item[at : at + scope_len], item[at + scope_len : stop])
        at = stop
        if op == PUT:
            entries[entry] = generation
        elif op == DROP:
            if entries.get(entry) == generation:
                del entries[entry]
        else:
            raise _foreign(mc_key)
    return entries


def names_key(item: bytes, key: bytes) -> bool:
    """Whether a leaf of an unhashed node may hold a record of ``key`` (a byte search: it can
    say yes wrongly, when another key contains this one's record, never no wrongly)."""
    return _NAMED.pack(0, len(key)) + key in item


_NAMED = struct.Struct(">II")


def leaf_item(entries: dict[EntryId, int], kind: int = LEAF) -> bytes:
    """A compacted leaf: one ``PUT`` per entry."""
    parts = [bytes((kind,))]
    for (scope, key), generation in entries.items():
        parts.append(_ENTRY.pack(PUT, generation, len(scope), len(key)) + scope + key)
    return b"".join(parts)


def scope_entries(item: bytes | None, mc_key: bytes, scope: bytes | None) -> dict[str, int]:
    """key -> generation of one scope in a leaf; ``scope=None``: every record (unhashed node)."""
    if item is None or item[0] == SPLIT:
        return {}
    return {
        key.decode("utf-8"): generation
        for (owner, key), generation in replay(item, mc_key).items()
        if scope is None or owner == scope
    }

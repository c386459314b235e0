"""The table layout: attribute names, the scope/key encoding, versions and the size limits.

One item per entry::

    pk   (S, partition key)  "#" + scope
    sk   (S, sort key)       "#" + key
    val  (S)                 the compact JSON bytes the core produced, as UTF-8 text
    ver  (N)                 a random 63-bit version, new on every write
    exp  (N, optional)       the entry's deadline in epoch milliseconds: from then on it is
                             missing for every read and write, whenever it is really deleted
    ttl  (N, optional)       the same deadline in epoch seconds, rounded up: the attribute to
                             enable DynamoDB's own TimeToLive on, so the table deletes it (late)

The one-character prefix makes ``""`` a legal key attribute (DynamoDB refuses empty key
strings) and keeps the encoding injective. DynamoDB orders sort keys by their UTF-8 bytes and a
shared prefix does not change that order, so a Query walks a scope in key order.
"""

from __future__ import annotations

import os
import random
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from iii_state_core import BackendError, KeyTooLargeError, ValueTooLargeError

#: An item as the low-level client reads and writes it: attribute name -> ``{type: value}``.
Item = dict[str, dict[str, Any]]

PK: Final = "pk"
SK: Final = "sk"
VALUE: Final = "val"
VERSION: Final = "ver"
DEADLINE: Final = "exp"
#: The attribute DynamoDB's TimeToLive must be enabled on (a reserved word in expressions).
TTL: Final = "ttl"
#: Where an expired entry that a write replaced waits for ``take_expired`` (expiry events on):
#: partition ``!expired`` (no ``#``, so never a scope), a sort key derived from the entry's item
#: and version (``sweep.stash_id``: one stash per expiry, however many try), and the entry's
#: scope and key in ``xs`` / ``xk`` beside its ``val``, ``ver``, ``exp`` and ``ttl``. A sweeper's
#: claims are leased stashes too; a delivered one stays as a marker without ``val``/``exp``.
STASH_PARTITION: Final = "!expired"
#: The sparse index ``take_expired`` queries: only items with a deadline carry ``xsh`` (a shard
#: number below ``SHARDS``, so the index's writes spread over that many partitions), sorted by
#: ``exp``. Query ``xsh = n AND exp <= now`` per shard reads only expired items (decision 0013).
EXPIRY_INDEX: Final = "iii-expiry"
SHARD: Final = "xsh"
SHARDS: Final = 4
#: The shard numbers as the ``N`` text a request carries.
SHARD_TEXT: Final = tuple(str(shard) for shard in range(SHARDS))
STASH_SCOPE: Final = "xs"
STASH_KEY: Final = "xk"
#: A stash's entry deadline once a sweeper leased it (its ``exp`` is then when the lease lapses,
#: so the sparse index lists it again only then; see ``sweep``).
STASH_DEADLINE: Final = "xd"
PREFIX: Final = "#"

#: DynamoDB's own limits on key attributes (UTF-8 bytes) and on a whole item.
PARTITION_KEY_LIMIT: Final = 2048
SORT_KEY_LIMIT: Final = 1024
#: The item budget we plan for. AWS documents "400 KB" and accepts 409,600 bytes; moto refuses
#: items over 405,000. 400,000 fits under every reading, so what we declare works everywhere.
ITEM_BUDGET: Final = 400_000
#: A DynamoDB number costs at most 21 bytes (1 + one per two significant digits, 38 digits max).
NUMBER_WORST: Final = 21

MAX_SCOPE_BYTES: Final = PARTITION_KEY_LIMIT - len(PREFIX)
MAX_KEY_BYTES: Final = SORT_KEY_LIMIT - len(PREFIX)
#: Item size = attribute names + values. Take every other attribute at its largest so a value of
#: this size fits whatever the scope and key are.
ITEM_OVERHEAD: Final = (
    len(PK) + PARTITION_KEY_LIMIT + len(SK) + SORT_KEY_LIMIT + len(VALUE) + len(VERSION) + NUMBER_WORST
)
MAX_VALUE_BYTES: Final = ITEM_BUDGET - ITEM_OVERHEAD
#: What a deadline adds to an item (two numbers). It is not taken from the value limit, so every
#: value that could be stored before entries could expire still can: it comes out of the margin
#: between the budget and the smallest item limit of the three (moto refuses items over 405,000).
EXPIRY_OVERHEAD: Final = len(DEADLINE) + NUMBER_WORST + len(TTL) + NUMBER_WORST + len(SHARD) + NUMBER_WORST
SMALLEST_ITEM_LIMIT: Final = 405_000


def encode_name(what: str, text: str, limit: int) -> str:
    """The key attribute for a scope or key.

    :raises KeyTooLargeError: when ``text`` is longer than ``limit`` UTF-8 bytes, before any call.
    """
    size = len(text.encode("utf-8"))
    if size > limit:
        raise KeyTooLargeError(f"{what} is {size} bytes; the dynamodb adapter holds at most {limit} bytes")
    return PREFIX + text


def item_key(scope: str, key: str) -> dict[str, dict[str, str]]:
    """The primary key of the item holding ``scope``/``key``."""
    return {
        PK: {"S": encode_name("scope", scope, MAX_SCOPE_BYTES)},
        SK: {"S": encode_name("key", key, MAX_KEY_BYTES)},
    }


def decode_name(attribute: str) -> str | None:
    """The scope or key an attribute holds, or ``None`` for an item that is not ours."""
    return attribute[1:] if attribute.startswith(PREFIX) else None


def value_text(data: bytes) -> str:
    """The ``val`` attribute for ``data`` (compact UTF-8 JSON from the core).

    :raises ValueTooLargeError: when the item could not fit DynamoDB's item limit.
    """
    if len(data) > MAX_VALUE_BYTES:
        raise ValueTooLargeError(
            f"value of {len(data)} bytes exceeds the dynamodb adapter's limit of {MAX_VALUE_BYTES}"
        )
    return data.decode("utf-8")


def new_version() -> str:
    """A fresh version for the ``ver`` attribute.

    Random rather than a counter: a counter restarts when a key is deleted and created again, so
    a stale token could match the new item (ABA). Every write, conditional or not, draws a new
    one; two equal draws among the writes one reader races with have odds of about 2^-63.
    ``os.urandom`` rather than ``random``: it cannot repeat across forked processes.
    """
    return str(int.from_bytes(os.urandom(8), "big") >> 1)


def expiry_attributes(deadline: int | None) -> dict[str, dict[str, str]]:
    """The ``exp``, ``ttl`` and index shard (``xsh``) attributes of an entry with ``deadline``
    (none without one). The shard is drawn at random: any spread over ``SHARDS`` will do, so
    ``random`` (reseeded in a forked child) rather than ``secrets``, whose system call was most
    of what a deadline cost this process per write."""
    if deadline is None:
        return {}
    return {
        DEADLINE: {"N": str(deadline)},
        TTL: {"N": str(-(-deadline // 1000))},  # ttl_seconds, inline: once per write with a deadline
        SHARD: {"N": SHARD_TEXT[random.randrange(SHARDS)]},
    }


def ttl_seconds(deadline: int) -> int:
    """The native TTL attribute for a deadline in milliseconds: seconds, rounded up, so
    DynamoDB never deletes an entry before its deadline."""
    return -(-deadline // 1000)


def deadline_of(item: Item) -> int | None:
    """The item's ``exp`` deadline (epoch ms), ``None`` without one."""
    attribute = item.get(DEADLINE)
    if attribute is None or "N" not in attribute:
        return None
    text = attribute["N"]
    try:
        return int(text)  # what the adapter writes; other tools may write "1.7E12" or "5.0"
    except ValueError:
        pass
    try:
        return int(Decimal(text))
    except (InvalidOperation, ValueError):
        return None


def is_live(item: Item, now: int) -> bool:
    """The item has no deadline, or one after ``now`` (epoch ms)."""
    deadline = deadline_of(item)
    return deadline is None or deadline > now


def text_of(item: Item, scope: str, key: str) -> str:
    """The stored value text of an item.

    :raises BackendError: when it has no string ``val`` (another tool wrote it).
    """
    attribute = item.get(VALUE)
    if attribute is None or "S" not in attribute:
        raise BackendError(
            f"the item for scope {scope!r}, key {key!r} has no string attribute {VALUE!r}: "
            "it was not written by iii-state"
        )
    text: str = attribute["S"]
    return text

"""The table layout: attribute names, the scope/key encoding, versions and the size limits.

One item per entry::

    pk   (S, partition key)  "#" + scope
    sk   (S, sort key)       "#" + key
    val  (S)                 the compact JSON bytes the core produced, as UTF-8 text
    ver  (N)                 a random 63-bit version, new on every write

The one-character prefix makes ``""`` a legal key attribute (DynamoDB refuses empty key
strings) and keeps the encoding injective. DynamoDB orders sort keys by their UTF-8 bytes and a
shared prefix does not change that order, so a Query walks a scope in key order.
"""

from __future__ import annotations

import os
from typing import Final

from iii_state_core import KeyTooLargeError, ValueTooLargeError

PK: Final = "pk"
SK: Final = "sk"
VALUE: Final = "val"
VERSION: Final = "ver"
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

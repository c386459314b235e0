"""Map scopes and keys of any content onto valid memcached keys.

Every memcached key this adapter sends is built here and is printable ASCII without spaces,
at most 250 bytes. A (scope, key) pair is percent-encoded when the result fits: percent
encoding is injective and never yields ``:`` or a space, so ``d<scope>:<key>`` cannot be read
two ways. A pair too long for that is hashed instead (``D<digest>``); the item then holds the
real scope and key, and every read checks them (see ``records``).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Callable
from functools import lru_cache
from urllib.parse import quote

#: memcached's own limit on a key.
MAX_KEY_BYTES = 250
#: The hash of long names: 24 bytes of SHA-256 (192 bits; a collision is still handled safely).
Digest = Callable[[bytes], bytes]


def sha256_digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:24]


#: The bytes quote() leaves as they are with safe="".
_UNQUOTED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"


def _encode(text: str) -> bytes:
    # quote() keeps only [A-Za-z0-9_.~-] with safe="": no ':', '%', space or control byte survives
    if text.isascii():
        raw = text.encode("ascii")
        if not raw.translate(None, _UNQUOTED):  # nothing to quote: the common case, without quote()
            return raw
    return quote(text, safe="", encoding="utf-8", errors="strict").encode("ascii")


def _b64(digest: bytes) -> bytes:
    return base64.urlsafe_b64encode(digest).rstrip(b"=")


def _spread(text: str, modulo: int) -> int:
    """A stable bucket number for ``text`` (independent of the injectable digest)."""
    return key_hash(text) % modulo


def key_hash(text: str) -> int:
    """A key's 64-bit position in its scope's index (independent of the injectable digest)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


#: Deepest node of a scope's index: a node at depth ``d`` covers the keys whose hash starts
#: with its ``d`` bits.
MAX_DEPTH = 64


class KeyCodec:
    """Builds the memcached keys of one store (one ``key_prefix``).

    Kinds, after the prefix: ``d``/``D`` an entry's data item, ``n``/``N`` a node of a scope's
    index, ``s`` a shard of the scope index, ``m`` the store's layout record; ``x`` a slot of the
    expiry schedule, ``y`` a stashed expired record, ``z`` the sweep's cursor, ``l`` the key of
    the lifetime signal (never stored; see ``Node.signal``); ``r`` and ``h`` the counters of
    tracked deletes on each server (``Node.delete_tracked``); ``b``/``B`` the
    index buckets of layout 1, read only to convert them.

    :param digest: hash used for names too long to encode; tests inject a colliding one.
    """

    def __init__(self, prefix: bytes, shards: int, digest: Digest = sha256_digest) -> None:
        self.prefix = prefix
        self.shards = shards
        self._digest = digest
        self.meta_key = prefix + b"m"
        self.sweep_cursor_key = prefix + b"z"
        self.signal_key = prefix + b"l"
        self.removes_key = prefix + b"r"
        self.hits_key = prefix + b"h"
        self.shard_keys = [prefix + b"s%d" % j for j in range(shards)]
        # The hot paths (get, set) encode the same pairs over and over. A listing walk touches
        # each key once: it uses ``listed_data_key``, so a walk neither evicts the hot pairs nor
        # grows the process's memory with the scope.
        self.data_key: Callable[[str, str], bytes] = lru_cache(maxsize=16384)(self._data_key)
        self.listed_data_key: Callable[[str, str], bytes] = self._data_key
        self._node_base: Callable[[str], tuple[bytes, bool]] = lru_cache(maxsize=4096)(self._node_base_of)

    def _hashed(self, kind: bytes, material: bytes) -> bytes:
        digest = self._digest(material)
        if not 8 <= len(digest) <= 48:
            raise ValueError("the key digest must return 8 to 48 bytes")
        return self.prefix + kind + _b64(digest)

    def _data_key(self, scope: str, key: str) -> bytes:
        plain = self.prefix + b"d" + _encode(scope) + b":" + _encode(key)
        if len(plain) <= MAX_KEY_BYTES:
            return plain
        scope_raw = scope.encode("utf-8")
        material = struct.pack(">I", len(scope_raw)) + scope_raw + key.encode("utf-8")
        return self._hashed(b"D", material)

    def listed_data_keys(self, scope: str, keys: list[str]) -> list[bytes]:
        """``listed_data_key`` of many keys of one scope (the scope encoded once)."""
        base = self.prefix + b"d" + _encode(scope) + b":"
        # The common case in bulk: every key ASCII with nothing to quote ('/' needs quoting, so
        # it can join them) and short enough to stay unhashed. Checked in one pass over the join.
        joined = "/".join(keys)
        if joined.isascii() and len(base) + max(map(len, keys), default=0) <= MAX_KEY_BYTES:
            raw = joined.encode("ascii")
            if raw.translate(None, _UNQUOTED) == b"/" * (len(keys) - 1):
                return [base + key for key in raw.split(b"/")] if keys else []
        out = []
        for key in keys:
            plain = base + _encode(key)
            out.append(plain if len(plain) <= MAX_KEY_BYTES else self._data_key(scope, key))
        return out

    def _node_base_of(self, scope: str) -> tuple[bytes, bool]:
        encoded = _encode(scope)
        # the longest node name: depth 64 and 16 hex digits of path
        if len(self.prefix) + len(b"n64.ffffffffffffffff:") + len(encoded) <= MAX_KEY_BYTES:
            return encoded, False
        return self._hashed(b"N", scope.encode("utf-8"))[len(self.prefix) + 1 :], True

    def node_key(self, scope: str, depth: int, path: int) -> bytes:
        """The index node of ``scope`` at ``depth`` covering the hashes that start with ``path``."""
        base, hashed = self._node_base(scope)
        return self.prefix + (b"N" if hashed else b"n") + b"%d.%x:" % (depth, path) + base

    def nodes_hashed(self, scope: str) -> bool:
        """True when the scope's node names are hashed, so its nodes may be shared with other
        scopes and their records name the scope."""
        return self._node_base(scope)[1]

    def legacy_bucket_keys(self, scope: str, buckets: int) -> tuple[bytes, ...]:
        """The index buckets layout 1 kept for ``scope`` (``buckets`` of them)."""
        encoded = _encode(scope)
        longest = self.prefix + b"b%d:" % (buckets - 1) + encoded
        if len(longest) <= MAX_KEY_BYTES:
            return tuple(self.prefix + b"b%d:" % i + encoded for i in range(buckets))
        base = self._hashed(b"B", scope.encode("utf-8"))[len(self.prefix) + 1 :]
        return tuple(self.prefix + b"B%d:" % i + base for i in range(buckets))

    def slot_key(self, slot: int) -> bytes:
        """The expiry schedule's item for the deadlines of one slot of time (``schedule``)."""
        return self.prefix + b"x%d" % slot

    def stash_key(self, number: int) -> bytes:
        """An expired record a write replaced, kept for the sweeper."""
        return self.prefix + b"y%x" % number

    def shard_of(self, scope: str) -> int:
        """Which shard of the scope index lists ``scope``."""
        return _spread(scope, self.shards)

    def scope_shard_key(self, scope: str) -> bytes:
        return self.shard_keys[self.shard_of(scope)]

    def is_hashed(self, mc_key: bytes) -> bool:
        return mc_key[len(self.prefix) : len(self.prefix) + 1] in (b"D", b"B", b"N")

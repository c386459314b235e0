"""Where entries live in Redis (the iii engine's layout) and where their deadlines live.

Scope ``s`` is the hash ``<key_prefix>s`` (``state:s`` by default), key ``k`` its field ``k``,
the value the compact JSON bytes the core produced. That layout is the engine's and stays as
it is. Entry deadlines (contract § Expiry) live beside it, outside the prefix so the engine
never lists them as scopes:

- ``{T}iii-ttl:<prefix><scope>``: a sorted set, member = field, score = deadline (epoch ms);
- ``{T}iii-ttl-due:<prefix>``: per Cluster slot, member = scope, score = a deadline no later
  than that scope's earliest (a hint for the sweeper, see ``scripts.TAKE``);
- ``{T}iii-ttl-kept:<prefix>``: per Cluster slot, a list of (scope, field, value, deadline)
  quadruples: expired fields a write or delete met before a sweep took them, kept for the
  sweep when expiry events are on;
- ``{T}iii-ttl-lease:<prefix>``: per Cluster slot, a sorted set of the batches of expired entries
  sweepers claimed and have not yet acknowledged, member = a batch id (``#`` and 16 hex digits;
  before decision 0031, one entry packed, ``scripts._CLAIMED``), score = when the lease lapses
  (then a sweep claims it again);
- ``{T}iii-ttl-batch:<prefix>``: per Cluster slot, a hash: batch id -> its entries, packed;
- ``iii-ttl-slots:<prefix>``: the set of tags ``T`` whose slot holds deadlines.

``T`` is a 4-character hash tag whose CRC16 slot equals the slot of the scope's hash, so one
script reads a value and its deadline and stays Cluster-safe without renaming the engine's keys.
"""

from __future__ import annotations

import functools
from binascii import crc_hqx
from dataclasses import dataclass
from typing import Final

#: Bytes with a meaning in Redis glob patterns (``SCAN MATCH``); a backslash escapes one.
_GLOB_SPECIAL: Final = frozenset(b"*?[]\\")
SLOTS: Final = 16384
DEADLINES_STEM: Final = b"iii-ttl:"
DUE_STEM: Final = b"iii-ttl-due:"
KEPT_STEM: Final = b"iii-ttl-kept:"
#: The due index member saying "this slot's kept list is not empty": not UTF-8, so no scope.
KEPT_MARKER: Final = b"\xff"
LEASE_STEM: Final = b"iii-ttl-lease:"
BATCH_STEM: Final = b"iii-ttl-batch:"
#: The due index member saying "this slot has leases", scored with the earliest lease deadline.
LEASE_MARKER: Final = b"\xfe"
REGISTRY_STEM: Final = b"iii-ttl-slots:"


def glob_escape(text: bytes) -> bytes:
    """``text`` as a Redis glob that matches exactly itself."""
    out = bytearray()
    for byte in text:
        if byte in _GLOB_SPECIAL:
            out.append(0x5C)
        out.append(byte)
    return bytes(out)


def key_slot(name: bytes) -> int:
    """The Cluster slot of a key: CRC16 (XMODEM) of its hash tag, or of the whole name."""
    start = name.find(b"{")
    if start >= 0:
        end = name.find(b"}", start + 1)
        if end > start + 1:
            name = name[start + 1 : end]
    return crc_hqx(name, 0) % SLOTS


# A tag is 4 bytes 0x40|n (``@``, ``A`` … ``O``): no braces, printable. CRC16 with init 0 is
# linear over XOR, so the CRC of a tag is the CRC of ``@@@@`` XOR the CRCs of its set low bits;
# finding the tag of a slot is solving that 16-bit linear system, not a search.
_TAG_BASE: Final = b"@@@@"


def _xor_basis() -> list[tuple[int, int]]:
    """(CRC image, tag bits) pairs with distinct leading bits, largest first."""
    basis: list[tuple[int, int]] = []
    for bit in range(16):
        unit = bytearray(4)
        unit[bit // 4] = 1 << (bit % 4)
        image, combo = crc_hqx(bytes(unit), 0), 1 << bit
        for b_image, b_combo in basis:
            if image ^ b_image < image:
                image, combo = image ^ b_image, combo ^ b_combo
        if image:
            basis.append((image, combo))
            basis.sort(reverse=True)
    return basis


_BASIS: Final = _xor_basis()
_BASE_CRC: Final = crc_hqx(_TAG_BASE, 0)


@functools.lru_cache(maxsize=SLOTS)
def slot_tag(slot: int) -> bytes:
    """A 4-byte hash tag whose key slot is ``slot``."""
    for high in range(4):  # any CRC whose low 14 bits are the slot will do
        want, bits = (slot | high << 14) ^ _BASE_CRC, 0
        for image, combo in _BASIS:
            if want ^ image < want:
                want, bits = want ^ image, bits ^ combo
        if want == 0:
            return bytes(0x40 | (bits >> (4 * i) & 15) for i in range(4))
    raise AssertionError(f"no hash tag for slot {slot}")  # checked for every slot by the tests


@dataclass(frozen=True)
class Names:
    """The Redis keys of one scope: its hash, its deadlines, its slot's due index, kept list, tag."""

    scope: bytes
    hash: bytes
    deadlines: bytes
    due: bytes
    kept: bytes
    tag: bytes

    def writing(self) -> tuple[bytes, bytes, bytes, bytes]:
        """The keys of a script that writes: hash, deadlines, due index, kept list."""
        return self.hash, self.deadlines, self.due, self.kept


@dataclass(frozen=True)
class Layout:
    """Maps scopes and keys to Redis names for one ``key_prefix``."""

    prefix: bytes

    @classmethod
    def for_prefix(cls, key_prefix: str) -> Layout:
        return cls(key_prefix.encode("utf-8"))

    def hash_key(self, scope: str) -> bytes:
        return self.prefix + scope.encode("utf-8")

    def names(self, scope: str) -> Names:
        encoded = scope.encode("utf-8")
        name = self.prefix + encoded
        tag = slot_tag(key_slot(name))
        deadlines = b"{" + tag + b"}" + DEADLINES_STEM + name
        return Names(encoded, name, deadlines, self.due_key(tag), self.kept_key(tag), tag)

    def due_key(self, tag: bytes) -> bytes:
        return b"{" + tag + b"}" + DUE_STEM + self.prefix

    def kept_key(self, tag: bytes) -> bytes:
        return b"{" + tag + b"}" + KEPT_STEM + self.prefix

    def lease_key(self, tag: bytes) -> bytes:
        return b"{" + tag + b"}" + LEASE_STEM + self.prefix

    def batch_key(self, tag: bytes) -> bytes:
        return b"{" + tag + b"}" + BATCH_STEM + self.prefix

    def registry_key(self) -> bytes:
        return REGISTRY_STEM + self.prefix

    @staticmethod
    def field(key: str) -> bytes:
        return key.encode("utf-8")

    def scope_pattern(self) -> bytes:
        """The ``SCAN MATCH`` pattern of every scope hash (the prefix, escaped, then ``*``)."""
        return glob_escape(self.prefix) + b"*"

    def scope_of(self, name: bytes) -> str | None:
        """The scope a Redis key holds, or ``None`` for a key that is not ours."""
        if not name.startswith(self.prefix):
            return None
        try:
            return name[len(self.prefix) :].decode("utf-8")
        except UnicodeDecodeError:
            return None  # not written through the state API, which only has Unicode names

"""Where entries live in Redis (the iii engine's layout) and the scripts that change them.

Scope ``s`` is the hash ``<key_prefix>s`` (``state:s`` by default), key ``k`` its field ``k``,
the value the compact JSON bytes the core produced. Each script touches that one hash
only, so it runs on any Cluster node that owns the scope's slot.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

#: Bytes with a meaning in Redis glob patterns (``SCAN MATCH``); a backslash escapes one.
_GLOB_SPECIAL: Final = frozenset(b"*?[]\\")


@dataclass(frozen=True)
class Script:
    """A Lua script, run by ``EVALSHA`` and, when the server lacks it (``NOSCRIPT``), ``EVAL``."""

    name: str
    source: str

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode("utf-8")).hexdigest()


# Each returns the bytes it replaced, so set and delete give the old value atomically in one
# round trip (the engine's delete was a read-then-delete). No JSON is decoded in Lua: cjson
# would turn [] into {} and round integers past 2^53.
WRITE: Final = Script(
    "write",
    "local old = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
    "return old\n",
)
REMOVE: Final = Script(
    "remove",
    "local old = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if old then redis.call('HDEL', KEYS[1], ARGV[1]) end\n"
    "return old\n",
)
#: Compare-and-swap on the exact stored bytes. ARGV: field, "1" and the expected bytes (or
#: "0" and "" for "expect missing"), the new bytes. Returns {1} when stored, else {0, current}
#: ({0} when missing), so a lost race needs no extra read.
SWAP: Final = Script(
    "swap",
    "local cur = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if (ARGV[2] == '0' and not cur) or (ARGV[2] == '1' and cur == ARGV[3]) then\n"
    "  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])\n"
    "  return {1}\n"
    "end\n"
    "if cur then return {0, cur} end\n"
    "return {0}\n",
)


def glob_escape(text: bytes) -> bytes:
    """``text`` as a Redis glob that matches exactly itself."""
    out = bytearray()
    for byte in text:
        if byte in _GLOB_SPECIAL:
            out.append(0x5C)
        out.append(byte)
    return bytes(out)


@dataclass(frozen=True)
class Layout:
    """Maps scopes and keys to Redis names for one ``key_prefix``."""

    prefix: bytes

    @classmethod
    def for_prefix(cls, key_prefix: str) -> Layout:
        return cls(key_prefix.encode("utf-8"))

    def hash_key(self, scope: str) -> bytes:
        return self.prefix + scope.encode("utf-8")

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

"""``state::transact`` on Redis: one Lua script checks every entry, then writes them all.

A script runs atomically on one server, so the transaction is all or nothing. On a Cluster a
script may only touch keys of one hash slot: the scopes of a transaction must hash to one slot
(hash tags, ``{account}a`` and ``{account}b``), else it is refused before anything is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from redis.crc import key_slot

from iii_state_core.adapter import PlannedWrite, Token
from iii_state_core.errors import UnsupportedError
from iii_state_core.expiry import now_ms

from .expiring import expires_arg
from .layout import Layout
from .scripts import _DEADLINE, Script

#: ARGV: now, keep ("1": expiry events on), the check count, then per check (hash index,
#: deadlines index, field, "1"+token | "0" for missing); the write count, then per write (hash,
#: deadlines, due index and kept list indexes, scope, field, what, expires): what is "d" (delete)
#: or "s"+data, expires as every write script takes it ("" none, "k" keep a live deadline, else
#: the new deadline). A field whose deadline is ``<= now`` counts as missing, as in every script,
#: and with keep "1" a write that meets one saves it for ``take_expired`` first
#: (``scripts.WRITE``). Returns 1 when applied, 0 when an entry changed (nothing applied).
TRANSACT: Final = Script(
    "transact",
    _DEADLINE
    + "local now, p = tonumber(ARGV[1]), 4\n"
    "local function live(h, z, f)\n"
    "  local cur = redis.call('HGET', h, f)\n"
    "  local d = redis.call('ZSCORE', z, f)\n"
    "  if cur and d and tonumber(d) <= now then return false, d, cur end\n"
    "  return cur, d, cur\n"
    "end\n"
    "for i = 1, tonumber(ARGV[3]) do\n"
    "  local cur = live(KEYS[tonumber(ARGV[p])], KEYS[tonumber(ARGV[p + 1])], ARGV[p + 2])\n"
    "  local want = ARGV[p + 3]\n"
    "  if want == '0' then\n"
    "    if cur then return 0 end\n"
    "  elseif cur ~= string.sub(want, 2) then return 0 end\n"
    "  p = p + 4\n"
    "end\n"
    "local m = tonumber(ARGV[p])\n"
    "p = p + 1\n"
    "for i = 1, m do\n"
    "  local h, z, f, what = KEYS[tonumber(ARGV[p])], KEYS[tonumber(ARGV[p + 1])], ARGV[p + 5], ARGV[p + 6]\n"
    "  local due, scope, expires = KEYS[tonumber(ARGV[p + 2])], ARGV[p + 4], ARGV[p + 7]\n"
    "  local cur, d, raw = live(h, z, f)\n"
    "  if raw and not cur and ARGV[2] == '1' then\n"
    "    redis.call('RPUSH', KEYS[tonumber(ARGV[p + 3])], scope, f, raw, d)\n"
    "    redis.call('ZADD', due, 0, '\\255')\n"
    "  end\n"
    "  if string.sub(what, 1, 1) == 'd' then\n"
    "    redis.call('HDEL', h, f)\n"
    "    if d then redis.call('ZREM', z, f) end\n"
    "  else\n"
    "    redis.call('HSET', h, f, string.sub(what, 2))\n"
    "    if expires ~= 'k' then deadline(z, due, f, scope, expires, d)\n"
    "    elseif d and not cur then redis.call('ZREM', z, f) end\n"
    "  end\n"
    "  p = p + 8\n"
    "end\n"
    "return 1\n",
)


def script_args(
    layout: Layout,
    checks: Sequence[tuple[str, str, Token]],
    writes: Sequence[PlannedWrite],
    cluster: bool,
    keep_expired: bytes = b"0",
) -> tuple[list[bytes], list[Any]]:
    """``(KEYS, ARGV)`` of :data:`TRANSACT`.

    :raises UnsupportedError: on a Cluster when the scopes hash to more than one slot.
    """
    keys: dict[bytes, int] = {}
    hashes: set[bytes] = set()

    def where(scope: str, *, writing: bool = False) -> list[bytes]:
        names = layout.names(scope)
        hashes.add(names.hash)
        named = names.writing() if writing else (names.hash, names.deadlines)
        found = [str(keys.setdefault(name, len(keys) + 1)).encode() for name in named]
        return [*found, names.scope] if writing else found

    argv: list[Any] = [now_ms(), keep_expired, str(len(checks)).encode()]
    for scope, key, token in checks:
        if token is not None and not isinstance(token, bytes):
            raise TypeError(f"write_many_if token must be the bytes read_versioned returned, got {token!r}")
        argv += [*where(scope), layout.field(key), b"0" if token is None else b"1" + token]
    argv.append(str(len(writes)).encode())
    for scope, key, data, expires_at in writes:
        what = b"d" if data is None else b"s" + data
        argv += [*where(scope, writing=True), layout.field(key), what, expires_arg(expires_at)]
    if cluster and len({key_slot(h) for h in hashes}) > 1:
        raise UnsupportedError(
            "state::transact on Redis Cluster: the scopes of one transaction must hash to one slot "
            "(give them a common hash tag, e.g. `{accounts}a` and `{accounts}b`); nothing was written"
        )
    return list(keys), argv

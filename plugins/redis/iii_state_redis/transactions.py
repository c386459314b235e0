"""``state::transact`` on Redis: one Lua script checks every condition, then writes them all.

A script runs atomically on one server, so the transaction is all or nothing, and it answers
with the bytes each write replaced, so a transaction of sets and deletes is one round trip
(``write_many_when``); ``write_many_if`` is the same script with a check on every entry. On a
Cluster a script may only touch keys of one hash slot: the scopes of a transaction must hash to
one slot (hash tags, ``{account}a`` and ``{account}b``), else it is refused before anything is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from redis.crc import key_slot

from iii_state_core.adapter import ByteCondition, Missed, PlannedWrite, Token
from iii_state_core.errors import UnsupportedError
from iii_state_core.expiry import now_ms

from .expiring import expires_arg
from .layout import Layout
from .scripts import _DEADLINE, Script

#: KEYS: per scope of the transaction, its hash, deadlines, due index and kept list (scope ``s``
#: is ``KEYS[4s-3 .. 4s]``). ARGV: now, keep ("1": expiry events on), the scope count S, the S
#: scope names; the check count, then per check (scope number, field, "1" and the bytes expected,
#: or "0" and "" for missing); the write count, then per write (scope number, field, data,
#: expires): expires as every write script takes it ("" none, "k" keep a live deadline, else the
#: new deadline) or "d" to delete. A field whose deadline is ``<= now`` counts as missing, as in
#: every script, and with keep "1" a write that meets one saves it for ``take_expired`` first
#: (``scripts.WRITE``). Returns ``{1, old…}`` (the live bytes each write replaced, nil: none) when
#: applied, ``{0, i, found}`` when check ``i`` (1-based) did not hold: nothing applied.
TRANSACT: Final = Script(
    "transact",
    _DEADLINE
    + "local now, timed = tonumber(ARGV[1]), {}\n"
    "local function live(s, f)\n"
    "  local z = KEYS[4 * s - 2]\n"
    "  local raw = redis.call('HGET', KEYS[4 * s - 3], f)\n"
    "  if timed[s] == nil then timed[s] = redis.call('ZCARD', z) > 0 end\n"
    "  local d = false\n"
    "  if timed[s] then d = redis.call('ZSCORE', z, f) end\n"
    "  if raw and d and tonumber(d) <= now then return false, d, raw end\n"
    "  return raw, d, raw\n"
    "end\n"
    "local p = 4 + tonumber(ARGV[3])\n"
    "for i = 1, tonumber(ARGV[p]) do\n"
    "  local cur = live(tonumber(ARGV[p + 1]), ARGV[p + 2])\n"
    "  if ARGV[p + 3] == '0' then\n"
    "    if cur then return {0, i, cur} end\n"
    "  elseif cur ~= ARGV[p + 4] then return {0, i, cur} end\n"
    "  p = p + 4\n"
    "end\n"
    "local olds = {1}\n"
    "for i = 1, tonumber(ARGV[p + 1]) do\n"
    "  local s, f, data, expires = tonumber(ARGV[p + 2]), ARGV[p + 3], ARGV[p + 4], ARGV[p + 5]\n"
    "  local h, z, due, scope = KEYS[4 * s - 3], KEYS[4 * s - 2], KEYS[4 * s - 1], ARGV[3 + s]\n"
    "  local cur, d, raw = live(s, f)\n"
    "  if raw and not cur and ARGV[2] == '1' then\n"
    "    redis.call('RPUSH', KEYS[4 * s], scope, f, raw, d)\n"
    "    redis.call('ZADD', due, 0, '\\255')\n"
    "  end\n"
    "  if expires == 'd' then\n"
    "    if raw then redis.call('HDEL', h, f) end\n"
    "    if d then redis.call('ZREM', z, f) end\n"
    "  else\n"
    "    redis.call('HSET', h, f, data)\n"
    "    if expires ~= 'k' then deadline(z, due, f, scope, expires, d)\n"
    "    elseif d and not cur then redis.call('ZREM', z, f) end\n"
    "  end\n"
    "  olds[i + 1] = cur\n"
    "  p = p + 4\n"
    "end\n"
    "return olds\n",
)


def script_args(
    layout: Layout,
    conditions: Sequence[ByteCondition],
    writes: Sequence[PlannedWrite],
    cluster: bool,
    keep_expired: bytes = b"0",
) -> tuple[list[bytes], list[Any]]:
    """``(KEYS, ARGV)`` of :data:`TRANSACT`.

    :raises UnsupportedError: on a Cluster when the scopes hash to more than one slot.
    """
    numbers: dict[str, bytes] = {}
    keys: list[bytes] = []
    scopes: list[bytes] = []
    slots: set[int] = set()

    def number(scope: str) -> bytes:
        found = numbers.get(scope)
        if found is None:
            names = layout.names(scope)
            keys.extend(names.writing())
            scopes.append(names.scope)
            if cluster:
                slots.add(key_slot(names.hash))
            found = numbers[scope] = str(len(numbers) + 1).encode()
        return found

    checked: list[Any] = [str(len(conditions)).encode()]
    for scope, key, want in conditions:
        checked += [number(scope), key.encode(), *((b"0", b"") if want is None else (b"1", want))]
    written: list[Any] = [str(len(writes)).encode()]
    for scope, key, data, expires_at in writes:
        expires = b"d" if data is None else expires_arg(expires_at)
        written += [number(scope), key.encode(), data or b"", expires]
    if len(slots) > 1:
        raise UnsupportedError(
            "state::transact on Redis Cluster: the scopes of one transaction must hash to one slot "
            "(give them a common hash tag, e.g. `{accounts}a` and `{accounts}b`); nothing was written"
        )
    return keys, [now_ms(), keep_expired, str(len(scopes)).encode(), *scopes, *checked, *written]


def checked_tokens(checks: Sequence[tuple[str, str, Token]]) -> list[ByteCondition]:
    """``write_many_if``'s checks as the script's conditions (the tokens are the bytes read)."""
    for _scope, _key, token in checks:
        if token is not None and not isinstance(token, bytes):
            raise TypeError(f"write_many_if token must be the bytes read_versioned returned, got {token!r}")
    return checks  # type: ignore[return-value]


def outcome(reply: Sequence[Any]) -> list[bytes | None] | Missed:
    """The script's reply as ``write_many_when`` answers it."""
    if int(reply[0]):
        return list(reply[1:])
    return Missed(int(reply[1]) - 1, reply[2] if len(reply) > 2 else None)

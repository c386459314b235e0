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
#: scope names; the checks' scope numbers (one byte each), then per check (field, "1" and the
#: bytes expected, or "0" and "" for missing); then the writes as ONE argument, per write as
#: ``struct.pack('>BI4c0I4c0Bc0')`` (Lua's struct: each string after its length) of the scope
#: number, field, data and expires, expires as every write script takes it ("" none, "k" keep a
#: live deadline, else the new deadline) or "d" to delete (one argument, not three per write:
#: redis-py encodes and the server parses each argument on its own, which cost more than the
#: script's work; one struct.unpack per write, not Lua string searches). A field whose deadline is
#: ``<= now`` counts as missing, as in every script, and with keep "1" a write that meets one
#: saves it for ``take_expired`` first (``scripts.WRITE``). Returns, when applied, one string:
#: "1" then per write the live bytes it replaced as ``<length>:<bytes>``, or "-" for none (one
#: reply to parse, not one per write); ``{0, i, found}`` when check ``i`` (1-based) did not
#: hold: nothing applied. A transaction of sets without deadlines in one scope that holds none
#: reads the old values with one HMGET and writes with one HSET.
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
    "local map = ARGV[p]\n"
    "for i = 1, #map do\n"
    "  local cur = live(string.byte(map, i), ARGV[p + 1])\n"
    "  if ARGV[p + 2] == '0' then\n"
    "    if cur then return {0, i, cur} end\n"
    "  elseif cur ~= ARGV[p + 3] then return {0, i, cur} end\n"
    "  p = p + 3\n"
    "end\n"
    "local w, at, n, olds = ARGV[p + 1], 1, 0, {'1'}\n"
    "local S, F, D, E, plain = {}, {}, {}, {}, ARGV[3] == '1'\n"
    "while at <= #w do\n"
    "  n = n + 1\n"
    "  S[n], F[n], D[n], E[n], at = struct.unpack('>BI4c0I4c0Bc0', w, at)\n"
    "  if E[n] ~= '' then plain = false end\n"
    "end\n"
    "if plain and n > 0 then\n"
    "  if timed[1] == nil then timed[1] = redis.call('ZCARD', KEYS[2]) > 0 end\n"
    "  plain = not timed[1]\n"
    "end\n"
    "if plain and n > 0 then\n"
    # one scope holding no deadline, only sets without one: nothing can be expired, so one HMGET
    # for the old values and one HSET (each redis.call costs more than the command it runs)
    "  local found, both = redis.call('HMGET', KEYS[1], unpack(F)), {}\n"
    "  for i = 1, n do\n"
    "    both[2 * i - 1], both[2 * i] = F[i], D[i]\n"
    "    local cur = found[i]\n"
    "    if cur then olds[i + 1] = #cur .. ':' .. cur else olds[i + 1] = '-' end\n"
    "  end\n"
    "  redis.call('HSET', KEYS[1], unpack(both))\n"
    "  return table.concat(olds)\n"
    "end\n"
    "for i = 1, n do\n"
    "  local s, f, data, expires = S[i], F[i], D[i], E[i]\n"
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
    "  if cur then olds[i + 1] = #cur .. ':' .. cur else olds[i + 1] = '-' end\n"
    "end\n"
    "return table.concat(olds)\n",
)
#: Scopes one script takes: their numbers travel as one byte each.
MOST_SCOPES: Final = 255


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
    numbers: dict[str, int] = {}
    keys: list[bytes] = []
    scopes: list[bytes] = []

    def number(scope: str) -> int:
        found = numbers.get(scope)
        if found is None:
            names = layout.names(scope)
            keys.extend(names.writing())
            scopes.append(names.scope)
            found = numbers[scope] = len(numbers) + 1
        return found

    checked_in = [number(scope) for scope, _, _ in conditions]
    written_in = [numbers.get(scope) or number(scope) for scope, _, _, _ in writes]
    if len(scopes) > MOST_SCOPES:
        raise UnsupportedError(
            f"state::transact on Redis takes at most {MOST_SCOPES} scopes, got {len(scopes)}; "
            "nothing was written"
        )
    checked: list[Any] = [bytes(checked_in)]
    for _, key, want in conditions:
        checked += (key.encode(), b"0", b"") if want is None else (key.encode(), b"1", want)
    parts: list[bytes] = []
    for n, (_, key, data, expires_at) in zip(written_in, writes, strict=True):
        field = key.encode()
        if data is None:
            parts.append(b"%c%s%s\0\0\0\0\1d" % (n, len(field).to_bytes(4, "big"), field))
        else:
            expires = b"" if expires_at is None else expires_arg(expires_at)
            sizes = len(field).to_bytes(4, "big"), len(data).to_bytes(4, "big")
            parts.append(b"%c%s%s%s%s%c%s" % (n, sizes[0], field, sizes[1], data, len(expires), expires))
    written = b"".join(parts)
    if cluster and len({key_slot(keys[i]) for i in range(0, len(keys), 4)}) > 1:
        raise UnsupportedError(
            "state::transact on Redis Cluster: the scopes of one transaction must hash to one slot "
            "(give them a common hash tag, e.g. `{accounts}a` and `{accounts}b`); nothing was written"
        )
    return keys, [now_ms(), keep_expired, str(len(scopes)).encode(), *scopes, *checked, written]


def checked_tokens(checks: Sequence[tuple[str, str, Token]]) -> list[ByteCondition]:
    """``write_many_if``'s checks as the script's conditions (the tokens are the bytes read)."""
    for _scope, _key, token in checks:
        if token is not None and not isinstance(token, bytes):
            raise TypeError(f"write_many_if token must be the bytes read_versioned returned, got {token!r}")
    return checks  # type: ignore[return-value]


def outcome(reply: Any) -> list[bytes | None] | Missed:
    """The script's reply as ``write_many_when`` answers it."""
    if isinstance(reply, bytes):
        return _replaced(reply)
    return Missed(int(reply[1]) - 1, reply[2] if len(reply) > 2 else None)


def _replaced(reply: bytes) -> list[bytes | None]:
    """The bytes each write replaced, from the applied reply ``1(<length>:<bytes> | -)*``."""
    if reply[:1] != b"1":
        raise ValueError(f"unexpected transact reply {reply[:20]!r}")
    olds: list[bytes | None] = []
    at, end = 1, len(reply)
    while at < end:
        if reply[at] == 45:  # "-": the write replaced nothing
            olds.append(None)
            at += 1
            continue
        colon = reply.index(b":", at)
        start = colon + 1
        at = start + int(reply[at:colon])
        olds.append(reply[start:at])
    return olds

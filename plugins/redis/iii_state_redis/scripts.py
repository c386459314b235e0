"""The Lua scripts behind every primitive: a value and its deadline in one atomic round trip.

Every script gets the scope's hash as ``KEYS[1]`` and its deadlines sorted set as ``KEYS[2]``
(``KEYS[3]``: the slot's due index, ``KEYS[4]``: its kept list, for scripts that write); all
share one Cluster slot (see ``layout``). ``now`` is the caller's clock (``iii_state_core.expiry.now_ms``),
the clock the core computed the deadline with. A field whose deadline is ``<= now`` is missing
to every script: reads skip it, writes replace it as if it were not there. No JSON is decoded in
Lua: cjson would turn ``[]`` into ``{}`` and round integers past 2^53.

The ``expires`` argument of a write: ``""`` = no deadline, ``"k"`` = keep the entry's (a missing
or expired entry has none to keep), else the deadline in epoch milliseconds. The ``keep``
argument (``"1"`` with expiry events on): an expired field the write replaces or deletes is
first appended to the slot's kept list, so ``take_expired`` still returns it (its event is not
lost), and the due index gets the kept marker.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Script:
    """A Lua script, run by ``EVALSHA`` and, when the server lacks it (``NOSCRIPT``), ``EVAL``."""

    name: str
    source: str

    @functools.cached_property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode("utf-8")).hexdigest()


# deadline(z, due, field, scope, expires, had): store ``expires`` ("" or a deadline) for the
# field; ``had`` is the deadline it had (false: none). A new deadline also lowers the scope's
# score in the due index when it comes first, so the sweeper finds it (scores only go down
# here; TAKE raises them).
_DEADLINE = """
local function deadline(z, due, f, scope, expires, had)
  if expires == '' then
    if had then redis.call('ZREM', z, f) end
    return
  end
  redis.call('ZADD', z, expires, f)
  local first = redis.call('ZSCORE', due, scope)
  if not first or tonumber(first) > tonumber(expires) then redis.call('ZADD', due, expires, scope) end
end
"""

# keep(kept, due, scope, field, value, deadline): save an expired field a write is about to
# replace or delete, for take_expired (``TAKE_KEPT``).
_KEEP = """
local function keep(kept, due, scope, f, v, d)
  redis.call('RPUSH', kept, scope, f, v, d)
  redis.call('ZADD', due, 0, '\\255')
end
"""

#: ARGV: field, now. The value, or nil when missing or expired. Read-only.
READ: Final = Script(
    "read",
    "local v = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if v then\n"
    "  local d = redis.call('ZSCORE', KEYS[2], ARGV[1])\n"
    "  if d and tonumber(d) <= tonumber(ARGV[2]) then return false end\n"
    "end\n"
    "return v\n",
)

#: A batch round's reads of one scope. ARGV: now, then the fields. One value (nil: missing or
#: expired) per field, in order. Read-only; ZCARD first, so a scope without deadlines pays no ZSCOREs.
READ_MANY: Final = Script(
    "read_many",
    "local vs = redis.call('HMGET', KEYS[1], unpack(ARGV, 2))\n"
    "if redis.call('ZCARD', KEYS[2]) > 0 then\n"
    "  local now = tonumber(ARGV[1])\n"
    "  for i = 2, #ARGV do\n"
    "    if vs[i - 1] then\n"
    "      local d = redis.call('ZSCORE', KEYS[2], ARGV[i])\n"
    "      if d and tonumber(d) <= now then vs[i - 1] = false end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return vs\n",
)

#: ARGV: field, now. ``{}`` missing or expired, ``{1}`` no deadline, ``{1, deadline}``. Read-only.
READ_EXPIRY: Final = Script(
    "read_expiry",
    "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {} end\n"
    "local d = redis.call('ZSCORE', KEYS[2], ARGV[1])\n"
    "if not d then return {1} end\n"
    "if tonumber(d) <= tonumber(ARGV[2]) then return {} end\n"
    "return {1, d}\n",
)

#: ARGV: field, data, now, expires ("" or a deadline), scope, keep. Returns the live bytes replaced.
WRITE: Final = Script(
    "write",
    _DEADLINE
    + _KEEP
    + "local old = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "local d = redis.call('ZSCORE', KEYS[2], ARGV[1])\n"
    "if old and d and tonumber(d) <= tonumber(ARGV[3]) then\n"
    "  if ARGV[6] == '1' then keep(KEYS[4], KEYS[3], ARGV[5], ARGV[1], old, d) end\n"
    "  old = false\n"
    "end\n"
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
    "deadline(KEYS[2], KEYS[3], ARGV[1], ARGV[5], ARGV[4], d)\n"
    "return old\n",
)

#: A batch round's plain writes (no deadline: each clears the entry's) of one scope, in order, as
#: WRITE does each. ARGV: now, scope, keep, then field and data pairs. Returns the live bytes
#: each replaced (nil: none).
WRITE_MANY: Final = Script(
    "write_many",
    _KEEP
    + "local now = tonumber(ARGV[1])\n"
    "local timed = redis.call('ZCARD', KEYS[2]) > 0\n"
    "local olds = {}\n"
    "for i = 4, #ARGV, 2 do\n"
    "  local f = ARGV[i]\n"
    "  local old = redis.call('HGET', KEYS[1], f)\n"
    "  if timed then\n"
    "    local d = redis.call('ZSCORE', KEYS[2], f)\n"
    "    if d then\n"
    "      if old and tonumber(d) <= now then\n"
    "        if ARGV[3] == '1' then keep(KEYS[4], KEYS[3], ARGV[2], f, old, d) end\n"
    "        old = false\n"
    "      end\n"
    "      redis.call('ZREM', KEYS[2], f)\n"
    "    end\n"
    "  end\n"
    "  redis.call('HSET', KEYS[1], f, ARGV[i + 1])\n"
    "  olds[#olds + 1] = old\n"
    "end\n"
    "return olds\n",
)

#: ARGV: field, now, scope, keep. Deletes the field and its deadline; returns the live bytes removed.
REMOVE: Final = Script(
    "remove",
    _KEEP
    + "local old = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if old then redis.call('HDEL', KEYS[1], ARGV[1]) end\n"
    "local d = redis.call('ZSCORE', KEYS[2], ARGV[1])\n"
    "if d then\n"
    "  redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "  if tonumber(d) <= tonumber(ARGV[2]) then\n"
    "    if old and ARGV[4] == '1' then keep(KEYS[4], KEYS[3], ARGV[3], ARGV[1], old, d) end\n"
    "    old = false\n"
    "  end\n"
    "end\n"
    "return old\n",
)

#: Compare-and-swap on the exact stored bytes. ARGV: field, "1" and the expected bytes (or "0"
#: and "" for "expect missing"), the new bytes, now, expires ("k", "" or a deadline), scope,
#: keep. Returns {1} when stored, else {0, current} ({0} when missing), so a lost race needs no
#: extra read.
SWAP: Final = Script(
    "swap",
    _DEADLINE
    + _KEEP
    + "local raw = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "local d = redis.call('ZSCORE', KEYS[2], ARGV[1])\n"
    "local cur = raw\n"
    "if raw and d and tonumber(d) <= tonumber(ARGV[5]) then cur = false end\n"
    "if (ARGV[2] == '0' and not cur) or (ARGV[2] == '1' and cur == ARGV[3]) then\n"
    "  if raw and not cur and ARGV[8] == '1' then keep(KEYS[4], KEYS[3], ARGV[7], ARGV[1], raw, d) end\n"
    "  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])\n"
    "  if ARGV[6] ~= 'k' then\n"
    "    deadline(KEYS[2], KEYS[3], ARGV[1], ARGV[7], ARGV[6], d)\n"
    "  elseif d and not cur then\n"
    "    redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "  end\n"
    "  return {1}\n"
    "end\n"
    "if cur then return {0, cur} end\n"
    "return {0}\n",
)

#: A batch round's compare-and-swaps of one scope (an import's create-only writes), each as SWAP
#: does it, keeping the entry's deadline. ARGV: now, scope, keep, then either "c" and per call
#: (field, new bytes), each expecting the field missing (create-only), or "s" and per call (field,
#: "1" and the expected bytes or "0" and "", new bytes). Returns SWAP's reply per call.
SWAP_MANY: Final = Script(
    "swap_many",
    _KEEP
    + "local now, create = tonumber(ARGV[1]), ARGV[4] == 'c'\n"
    "local timed = redis.call('ZCARD', KEYS[2]) > 0\n"
    "local out, step = {}, 4\n"
    "if create then step = 2 end\n"
    "for i = 5, #ARGV, step do\n"
    "  local f, data, want = ARGV[i], ARGV[i + step - 1], false\n"
    "  if not create and ARGV[i + 1] == '1' then want = ARGV[i + 2] end\n"
    "  local raw = redis.call('HGET', KEYS[1], f)\n"
    "  local d = false\n"
    "  if timed then d = redis.call('ZSCORE', KEYS[2], f) end\n"
    "  local cur = raw\n"
    "  if raw and d and tonumber(d) <= now then cur = false end\n"
    "  if cur == want then\n"
    "    if raw and not cur and ARGV[3] == '1' then keep(KEYS[4], KEYS[3], ARGV[2], f, raw, d) end\n"
    "    redis.call('HSET', KEYS[1], f, data)\n"
    "    if d and not cur then redis.call('ZREM', KEYS[2], f) end\n"
    "    out[#out + 1] = {1}\n"
    "  elseif cur then out[#out + 1] = {0, cur}\n"
    "  else out[#out + 1] = {0} end\n"
    "end\n"
    "return out\n",
)

#: ARGV: field, now, expires ("" or a deadline), scope. 1 when the entry was live, else 0.
SET_EXPIRY: Final = Script(
    "set_expiry",
    _DEADLINE
    + "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end\n"
    "local d = redis.call('ZSCORE', KEYS[2], ARGV[1])\n"
    "if d and tonumber(d) <= tonumber(ARGV[2]) then return 0 end\n"
    "deadline(KEYS[2], KEYS[3], ARGV[1], ARGV[4], ARGV[3], d)\n"
    "return 1\n",
)


def _live_count(now: str) -> str:
    """Lua setting ``n`` to how many fields of the scope are live: HLEN less the expired ones
    still there (deadline at or before ``now``, an ARGV reference)."""
    return (
        "local n = redis.call('HLEN', KEYS[1])\n"
        "if n > 0 then\n"
        f"  for _, f in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', {now})) do\n"
        "    n = n - redis.call('HEXISTS', KEYS[1], f)\n"
        "  end\n"
        "end\n"
    )


def _scan_page(also: str) -> str:
    """Lua returning HSCAN's reply ``{cursor, {field, value, …}}`` (ARGV: cursor, COUNT hint,
    now) without the expired fields (checked only when the scope has deadlines at all), with
    ``also`` (``", n"`` or nothing) appended to the reply."""
    whole = f"{{reply[1], reply[2]{also}}}" if also else "reply"
    return (
        "local reply = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])\n"
        f"if redis.call('ZCARD', KEYS[2]) == 0 then return {whole} end\n"
        "local now, items, kept = tonumber(ARGV[3]), reply[2], {}\n"
        "for i = 1, #items, 2 do\n"
        "  local d = redis.call('ZSCORE', KEYS[2], items[i])\n"
        "  if not d or tonumber(d) > now then\n"
        "    kept[#kept + 1] = items[i]\n"
        "    kept[#kept + 1] = items[i + 1]\n"
        "  end\n"
        "end\n"
        f"return {{reply[1], kept{also}}}\n"
    )


#: ARGV: now. How many fields are live: HLEN less the expired ones still there. Read-only.
COUNT: Final = Script("count", _live_count("ARGV[1]") + "return n\n")

#: ARGV: HSCAN cursor, COUNT hint, now. HSCAN's reply ``{cursor, {field, value, …}}`` without
#: the expired fields (checked only when the scope has deadlines at all). Read-only.
SCAN_PAGE: Final = Script("scan_page", _scan_page(""))

#: A walk's first page with the scope's count (``COUNT``'s rule) in the same round trip:
#: ``SCAN_PAGE``'s ARGV and reply, plus the count as a third element. Read-only.
SCAN_COUNTED: Final = Script("scan_counted", _live_count("ARGV[3]") + _scan_page(", n"))

# A take's claims are leased as one batch (decision 0031): the slot's lease set gets one member,
# the batch id the client chose (``#`` and 16 hex digits), and the slot's batch hash that id's
# entries, packed as the take answers them; the acknowledgement removes both. A lease member per
# entry (what earlier versions wrote; RETAKE still re-leases and ACK removes those) cost the
# server a ZADD and a ZREM per event, about a third of its time per event.
# member(scope, field, value, deadline, out): one claimed entry appended to ``out``, packed as
# ``<length>:<member>`` with the member ``<len>:<scope><len>:<field><deadline>:<value>`` (see
# ``expiring.parse_member``; the take scripts answer one string, which the client parses in a
# fraction of the time a reply of one bulk string per member takes). leased(lease_key,
# batch_key, lease, id, out): the batch leased until ``lease`` (nothing without a lease or a
# claim); returns the reply. marked(due, lease, out): the due index's lease marker no later than
# the new lease, so a sweep finds it once it lapses.
_CLAIMED = """
local function member(scope, f, v, d, out)
  local m = string.len(scope) .. ':' .. scope .. string.len(f) .. ':' .. f .. d .. ':' .. v
  out[#out + 1] = string.len(m) .. ':' .. m
end
local function leased(lease_key, batch_key, lease, id, out)
  local reply = table.concat(out)
  if lease ~= '' and reply ~= '' then
    redis.call('ZADD', lease_key, lease, id)
    redis.call('HSET', batch_key, id, reply)
  end
  return reply
end
local function marked(due, lease, out)
  if lease == '' or #out == 0 then return end
  local first = redis.call('ZSCORE', due, '\\254')
  if not first or tonumber(first) > tonumber(lease) then redis.call('ZADD', due, lease, '\\254') end
end
"""

#: KEYS: hash, deadlines, the slot's due index, its lease set, its batch hash. ARGV: now, limit,
#: scope, lease deadline ("": remove without a lease), batch id. Claims up to ``limit`` fields
#: whose deadline passed: removes them from the hash (and deadlines) and returns them packed
#: (``_CLAIMED``), leased as one batch until the lease deadline when one is given. Then re-scores
#: the scope in the due index.
TAKE: Final = Script(
    "take_batch",
    _CLAIMED
    + "local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[2])\n"
    "local out, n = {}, #due / 2\n"
    "if n > 0 then\n"
    # one command per step for the whole claim, not four per field: a take of 500 held the
    # server (and every client's command behind it) about four times as long field by field
    "  local fields, gone = {}, {}\n"
    "  for i = 1, n do fields[i] = due[2 * i - 1] end\n"
    # the n lowest ranks are the n fields just read: ZRANGEBYSCORE from -inf lists by rank
    "  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - 1)\n"
    "  local values = {}\n"
    "  for at = 1, n, 1000 do\n"
    "    local part = redis.call('HMGET', KEYS[1], unpack(fields, at, math.min(n, at + 999)))\n"
    "    for j = 1, #part do values[at + j - 1] = part[j] end\n"
    "  end\n"
    # member() for each, its pieces put in ``out`` for one table.concat, not joined per entry:
    # the scope's part once, a field length's ``<len>:`` once per length
    "  local head = ':' .. string.len(ARGV[3]) .. ':' .. ARGV[3]\n"
    "  local fixed, lens, k = #head - 1, {}, 0\n"
    "  for i = 1, n do\n"
    "    local v = values[i]\n"
    "    if v then\n"
    "      local f, d = fields[i], due[2 * i]\n"
    "      local fl = string.len(f)\n"
    "      local lf = lens[fl]\n"
    "      if not lf then lf = fl .. ':'; lens[fl] = lf end\n"
    "      gone[#gone + 1] = f\n"
    "      out[k + 1], out[k + 2], out[k + 3], out[k + 4] = fixed + #lf + fl + #d + 1 + #v, head, lf, f\n"
    "      out[k + 5], out[k + 6], out[k + 7], k = d, ':', v, k + 7\n"
    "    end\n"
    "  end\n"
    "  for at = 1, #gone, 1000 do\n"
    "    redis.call('HDEL', KEYS[1], unpack(gone, at, math.min(#gone, at + 999)))\n"
    "  end\n"
    "end\n"
    "local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')\n"
    "if first[2] then redis.call('ZADD', KEYS[3], first[2], ARGV[3])\n"
    "else redis.call('ZREM', KEYS[3], ARGV[3]) end\n"
    "marked(KEYS[3], ARGV[4], out)\n"
    "return leased(KEYS[4], KEYS[5], ARGV[4], ARGV[5], out)\n",
)

#: KEYS: the slot's kept list, its due index, its lease set, its batch hash. ARGV: limit, lease
#: deadline ("": none), batch id. Pops up to ``limit`` kept entries, packed (``_CLAIMED``) and
#: leased as one batch, and drops the kept marker once the list is empty.
TAKE_KEPT: Final = Script(
    "take_kept_batch",
    _CLAIMED + "local out = {}\n"
    "for i = 1, tonumber(ARGV[1]) do\n"
    "  local scope = redis.call('LPOP', KEYS[1])\n"
    "  if not scope then break end\n"
    "  local f = redis.call('LPOP', KEYS[1])\n"
    "  local v = redis.call('LPOP', KEYS[1])\n"
    "  local d = redis.call('LPOP', KEYS[1])\n"
    "  member(scope, f, v, d, out)\n"
    "end\n"
    "if redis.call('LLEN', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], '\\255') end\n"
    "marked(KEYS[2], ARGV[2], out)\n"
    "return leased(KEYS[3], KEYS[4], ARGV[2], ARGV[3], out)\n",
)

#: KEYS: the slot's lease set, its due index, its batch hash. ARGV: now, limit, new lease
#: deadline. Claims again up to ``limit`` leases that lapsed (their holder died or lost the
#: reply): leased anew until the new deadline and returned packed as ``_CLAIMED`` packs them, a
#: batch as ``<id>:<its entries packed>``, an entry an earlier version leased alone as its member;
#: the due index's lease marker gets the earliest lease.
RETAKE: Final = Script(
    "retake_batch",
    "local m = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])\n"
    "local out = {}\n"
    "for i = 1, #m do\n"
    "  local item = m[i]\n"
    "  if string.sub(item, 1, 1) == '#' then\n"
    "    local batch = redis.call('HGET', KEYS[3], item)\n"
    "    if batch then item = item .. ':' .. batch else item = nil end\n"
    "  end\n"
    "  if item then\n"
    "    redis.call('ZADD', KEYS[1], ARGV[3], m[i])\n"
    "    out[#out + 1] = string.len(item) .. ':' .. item\n"
    "  else\n"
    "    redis.call('ZREM', KEYS[1], m[i])\n"
    "  end\n"
    "end\n"
    "local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')\n"
    "if first[2] then redis.call('ZADD', KEYS[2], first[2], '\\254')\n"
    "else redis.call('ZREM', KEYS[2], '\\254') end\n"
    "return table.concat(out)\n",
)

#: KEYS: the slot's lease set, its due index, its batch hash. ARGV[1]: the lease members (batch
#: ids, and entries an earlier version leased alone) whose events were delivered, packed (each
#: ``<length>:<member>``, ``expiring.packed``), so the client sends one argument, not one per
#: member (redis-py encodes each argument on its own: about a third of the sweeper's client CPU
#: per event went into acknowledging per-entry members). Removes them and their batches
#: (idempotent) and the due index's lease marker once the set is empty.
ACK: Final = Script(
    "ack_batch",
    "local packed, at, members = ARGV[1], 1, {}\n"
    "while at <= #packed do\n"
    "  local colon = string.find(packed, ':', at, true)\n"
    "  local stop = colon + tonumber(string.sub(packed, at, colon - 1))\n"
    "  members[#members + 1] = string.sub(packed, colon + 1, stop)\n"
    "  at = stop + 1\n"
    "end\n"
    "if #members > 0 then\n"
    "  redis.call('ZREM', KEYS[1], unpack(members))\n"
    "  redis.call('HDEL', KEYS[3], unpack(members))\n"
    "end\n"
    "if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], '\\254') end\n"
    "return 1\n",
)

#: KEYS: the slot's lease set, its batch hash. ARGV: a batch id, the entries that stay in it
#: (some were acknowledged, decision 0031), packed. Only while the batch is still leased (its
#: acknowledgement may have removed it already).
RELEASE: Final = Script(
    "release_part",
    "if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end\n"
    "redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])\n"
    "return 1\n",
)

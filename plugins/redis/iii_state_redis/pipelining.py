"""A ``state::batch`` round as pipelines: the commands, and what their replies mean.

The sync and async adapters share this; they only send. Reads and writes are the same scripts as
the single primitives (each names the scope's hash and its deadline keys), or one script per scope
for a round of only reads or only plain writes; sent as ``EVALSHA``, a ``NOSCRIPT`` reply running
that call again alone, unless two calls name one entry (then ``EVAL``: a retry after later commands
ran would reorder them). On a Cluster
the round is split by node, one pipeline each, so a node that cannot be reached only fails (and
may only retry) its own commands: a retry never resends a write another node applied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from redis.exceptions import AskError, ClusterDownError, MovedError, NoScriptError, TryAgainError

from iii_state_core import BackendError
from iii_state_core.expiry import now_ms

from .layout import Layout
from .outcomes import Kind, explain
from .scripts import READ, READ_MANY, REMOVE, SWAP, SWAP_MANY, WRITE, WRITE_MANY, Script
from .updating import Recent, Swap, swap_args, swap_result

#: The primitives sent in a pipeline, with the argument count of their plain form (a call with
#: more, such as one giving a deadline, runs alone through the primitive itself: a deadline may
#: first register its slot, see ``expiring``). ``write`` without one clears the entry's, and
#: ``write_if`` keeps it, as the primitives do.
PIPELINED: Final = {"read": 2, "read_versioned": 2, "write": 3, "remove": 2, "write_if": 4}
_WRITES: Final = frozenset({"write", "remove", "write_if"})
#: Replies meaning the command did not run where it was sent: it runs again alone.
REDIRECTED: Final = (MovedError, AskError, TryAgainError, ClusterDownError)

Call = tuple[str, tuple[Any, ...]]
_SCRIPTS: Final = (READ, READ_MANY, REMOVE, SWAP, SWAP_MANY, WRITE, WRITE_MANY)
_BY_SHA: Final = {script.sha: script for script in _SCRIPTS}
#: Fields per merged script (Lua's ``unpack`` and one script's run time stay small).
MERGED_MOST: Final = 500
#: One command of a round, the calls (indices) its reply answers, and whether it is a merged
#: script (its reply: one answer per call) rather than one call's own command.
Unit = tuple[tuple[Any, ...], list[int], bool]


def pipelined(call: Call) -> bool:
    name, args = call
    if PIPELINED.get(name) != len(args):
        return False
    return name != "write_if" or args[3] is None or isinstance(args[3], bytes)


def kind_of(calls: Sequence[Call]) -> Kind:
    """``write`` when any call writes: a lost reply then makes the outcome unknown, not retried."""
    return "write" if any(name in _WRITES for name, _ in calls) else "read"


def _eval(script: Script, keys: tuple[bytes, ...], *args: Any) -> tuple[Any, ...]:
    """The script's command; :func:`units` makes it ``EVALSHA`` or ``EVAL``."""
    return (script, len(keys), *keys, *args)


def _sent_as(command: tuple[Any, ...], by_sha: bool) -> tuple[Any, ...]:
    script: Script = command[0]
    return ("EVALSHA", script.sha, *command[1:]) if by_sha else ("EVAL", script.source, *command[1:])


def command(layout: Layout, call: Call, keep: bytes) -> tuple[Any, ...]:
    """The command of one call; ``keep``: the write scripts' argument (see ``scripts``)."""
    name, args = call
    names, field = layout.names(args[0]), layout.field(args[1])
    if name in ("read", "read_versioned"):
        return _eval(READ, (names.hash, names.deadlines), field, now_ms())
    if name == "write":
        return _eval(WRITE, names.writing(), field, args[2], now_ms(), b"", names.scope, keep)
    if name == "remove":
        return _eval(REMOVE, names.writing(), field, now_ms(), names.scope, keep)
    request = Swap(names, field, args[3], args[2])
    return _eval(SWAP, request.keys(), *swap_args(request, keep))


def units(layout: Layout, calls: Sequence[Call], group: list[int], keep: bytes) -> list[Unit]:
    """The commands of a round. A round of only reads, or only plain writes, sends one script per
    scope (``READ_MANY``: one HMGET; ``WRITE_MANY``: the WRITEs in order) instead of one per call:
    a pipeline entry costs the client more than the server's work for it."""
    # EVALSHA spares sending (and the server hashing) each script's source per command. A
    # NOSCRIPT reply (a restarted server) means that command did not run: it runs again alone,
    # after the others, which is only the same when no two calls name one entry.
    by_sha = len({calls[i][1][:2] for i in group}) == len(group)
    planned = _units(layout, calls, group, keep)
    return [(_sent_as(command, by_sha), places, merged) for command, places, merged in planned]


def _units(layout: Layout, calls: Sequence[Call], group: list[int], keep: bytes) -> list[Unit]:
    kinds = {calls[i][0] for i in group}
    if not (kinds <= {"read", "read_versioned"} or kinds == {"write"} or kinds == {"write_if"}):
        return [(command(layout, calls[i], keep), [i], False) for i in group]
    by_scope: dict[str, list[int]] = {}
    for i in group:
        by_scope.setdefault(calls[i][1][0], []).append(i)
    now, field, out = now_ms(), layout.field, list[Unit]()
    for scope, places in by_scope.items():
        names = layout.names(scope)
        for start in range(0, len(places), MERGED_MOST):
            part = places[start : start + MERGED_MOST]
            if "write" in kinds:
                pairs = [x for i in part for x in (field(calls[i][1][1]), calls[i][1][2])]
                out.append((_eval(WRITE_MANY, names.writing(), now, names.scope, keep, *pairs), part, True))
            elif "write_if" in kinds:
                swaps = _swaps(field, [calls[i][1] for i in part])
                out.append((_eval(SWAP_MANY, names.writing(), now, names.scope, keep, *swaps), part, True))
            else:
                fields = [field(calls[i][1][1]) for i in part]
                out.append((_eval(READ_MANY, (names.hash, names.deadlines), now, *fields), part, True))
    return out


def _swaps(field: Callable[[str], bytes], calls: list[tuple[Any, ...]]) -> list[bytes]:
    """SWAP_MANY's mode and per-call arguments: the short create-only form when every call
    expects its entry missing (an import), else the expected bytes too."""
    if all(args[3] is None for args in calls):
        return [b"c", *(x for args in calls for x in (field(args[1]), args[2]))]
    out = [b"s"]
    for _, key, data, expected in calls:
        out += (field(key), b"0", b"", data) if expected is None else (field(key), b"1", expected, data)
    return out


def spread(
    layout: Layout,
    recent: Recent,
    calls: Sequence[Call],
    sent: list[Unit],
    replies: list[Any],
    out: list[Any],
) -> tuple[list[int], list[Unit]]:
    """Each call's answer from its unit's reply into ``out``. Returns the calls to run again alone
    (redirected: they did not run), and the units to send again by source (``NOSCRIPT``: they did
    not run; the source loads the script for the next rounds)."""
    again: list[int] = []
    reload: list[Unit] = []
    for (command, places, merged), reply in zip(sent, replies, strict=True):
        if isinstance(reply, NoScriptError) and command[0] == "EVALSHA":
            reload.append((("EVAL", _BY_SHA[command[1]].source, *command[2:]), places, merged))
        elif isinstance(reply, REDIRECTED):
            again += places
        elif merged and not isinstance(reply, Exception):
            _merged(layout, recent, calls, places, reply, out)
        else:
            for i in places:
                out[i] = answer(layout, recent, calls[i], reply)
    return again, reload


def _merged(
    layout: Layout, recent: Recent, calls: Sequence[Call], places: list[int], reply: Any, out: list[Any]
) -> None:
    """:func:`answer` for each call of one merged script (its calls are of one kind and one scope),
    with what was written remembered under one lock."""
    name, (scope, *_) = calls[places[0]]
    if name in ("read", "read_versioned"):
        for i, value in zip(places, reply, strict=True):
            out[i] = value if calls[i][0] == "read" else (value, value)
        return
    hash_key, seen = layout.hash_key(scope), []
    for i, value in zip(places, reply, strict=True):
        args = calls[i][1]
        if name == "write":
            out[i], data = value, args[2]
        else:
            out[i], current = swap_result(value)
            data = args[2] if out[i] else current
        seen.append((hash_key, args[1].encode(), data))
    recent.put_many(seen)


def fail_units(sent: list[Unit], out: list[Any], exc: Exception) -> None:
    """Every call of the units a failed pipeline carried gets that failure as its answer."""
    for _, places, _ in sent:
        for i in places:
            out[i] = exc


def answer(layout: Layout, recent: Recent, call: Call, reply: Any) -> Any:
    """What the primitive returns for ``reply`` (a failure as a value), remembering what was written."""
    name, args = call
    if isinstance(reply, Exception):
        return BackendError(f"{call[0]} in a pipeline failed: {explain(reply)}")
    key, field = layout.hash_key(args[0]), layout.field(args[1])
    if name == "read":
        return reply
    if name == "read_versioned":
        return reply, reply
    if name == "write":
        recent.put(key, field, args[2])
        return reply
    if name == "remove":
        recent.put(key, field, None)
        return reply
    stored, current = swap_result(reply)
    recent.put(key, field, args[2] if stored else current)
    return stored


def by_node(client: Any, layout: Layout, calls: Sequence[Call], indices: list[int]) -> list[list[int]]:
    """``indices`` split by the Cluster node that serves each call's hash (one group otherwise)."""
    groups: dict[str, list[int]] = {}
    for i in indices:
        try:
            node = client.get_node_from_key(layout.hash_key(calls[i][1][0])).name
        except Exception:  # no slot map yet: let the cluster pipeline route it
            node = ""
        groups.setdefault(node, []).append(i)
    return list(groups.values())

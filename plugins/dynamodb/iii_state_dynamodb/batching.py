"""Reads of a ``state::batch`` round as ``BatchGetItem`` requests (100 keys each).

Consecutive ``read`` / ``read_versioned`` calls go together; every other call runs alone, in
order, so a round means what the same calls made one by one mean. Keys DynamoDB leaves
unprocessed (throttling) are asked again after a back-off until none is left or the attempts run
out, and then each of them fails alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from iii_state_core import BackendError

from .calls import Caller
from .layout import PK, SK, item_key

#: DynamoDB's own limit of keys in one BatchGetItem.
MAX_GET_KEYS: Final = 100
READS: Final = frozenset({"read", "read_versioned"})

Item = dict[str, dict[str, Any]]
Call = tuple[str, tuple[Any, ...]]


def run_calls(
    calls: Sequence[Call],
    one: Callable[[str, tuple[Any, ...]], Any],
    get_many: Callable[[list[Item]], dict[tuple[str, str], Item]],
    answer: Callable[[str, tuple[Any, ...], Item | None], Any],
) -> list[Any]:
    """Each call's result (or exception), reads fetched ``MAX_GET_KEYS`` at a time.

    :param one: runs a call alone; :param get_many: fetches items by primary key;
    :param answer: turns a read call and its item into what the primitive returns.
    """
    out: list[Any] = [None] * len(calls)
    i = 0
    while i < len(calls):
        if calls[i][0] not in READS:
            out[i] = _alone(one, *calls[i])
            i += 1
            continue
        run = i
        while run < len(calls) and calls[run][0] in READS and run - i < MAX_GET_KEYS:
            run += 1
        _read_chunk(calls, range(i, run), out, get_many, answer)
        i = run
    return out


def _alone(one: Callable[[str, tuple[Any, ...]], Any], name: str, args: tuple[Any, ...]) -> Any:
    try:
        return one(name, args)
    except Exception as exc:
        return exc


def _read_chunk(
    calls: Sequence[Call],
    indices: range,
    out: list[Any],
    get_many: Callable[[list[Item]], dict[tuple[str, str], Item]],
    answer: Callable[[str, tuple[Any, ...], Item | None], Any],
) -> None:
    keys: dict[tuple[str, str], Item] = {}
    for i in indices:
        name, args = calls[i]
        try:
            key = item_key(args[0], args[1])
        except Exception as exc:  # too long a name: that call alone fails
            out[i] = exc
            continue
        keys[(key[PK]["S"], key[SK]["S"])] = key  # BatchGetItem refuses a key given twice
    try:
        found = get_many(list(keys.values())) if keys else {}
    except Exception as exc:
        for i in indices:
            out[i] = out[i] if isinstance(out[i], Exception) else exc
        return
    for i in indices:
        if isinstance(out[i], Exception):
            continue
        name, args = calls[i]
        key = item_key(args[0], args[1])
        try:
            out[i] = answer(name, args, found.get((key[PK]["S"], key[SK]["S"])))
        except Exception as exc:
            out[i] = exc


def batch_get(client: Any, call: Caller, table: str, keys: list[Item]) -> dict[tuple[str, str], Item]:
    """The items of ``keys`` (at most ``MAX_GET_KEYS``, no repeats) by ``(pk, sk)``; missing ones absent.

    :raises BackendError: when DynamoDB still leaves keys unprocessed after ``call``'s attempts.
    """
    found: dict[tuple[str, str], Item] = {}
    pending: dict[str, Any] = {"Keys": keys, "ConsistentRead": True}
    for _ in call.tries():
        reply = call("BatchGetItem", client.batch_get_item, write=False, RequestItems={table: pending})
        for item in reply.get("Responses", {}).get(table, []):
            found[(item[PK]["S"], item[SK]["S"])] = item
        left = reply.get("UnprocessedKeys", {}).get(table)
        if not left or not left.get("Keys"):
            return found
        pending = {"Keys": left["Keys"], "ConsistentRead": True}
    raise BackendError(
        f"DynamoDB BatchGetItem on table {table!r}: {len(pending['Keys'])} keys still unprocessed after "
        f"{call.max_attempts} attempts (throttled); `max_attempts` sets the number of tries"
    )

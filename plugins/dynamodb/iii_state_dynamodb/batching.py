"""A ``state::batch`` round: its reads as ``BatchGetItem`` requests (100 keys each), its other
calls sent concurrently, each as its own request.

The core never puts two calls on one entry in a round, so they may run in any order or together.
Reads go first, chunk by chunk. Keys DynamoDB leaves unprocessed (throttling) are asked again
after a back-off until none is left or the attempts run out, and then each of them fails alone.
Writes stay one (conditional) request each, ``ReturnValues=ALL_OLD`` giving each its replaced
value atomically (decision 0012 says why not ``BatchWriteItem``); what the round shares is the
waiting: they are in flight together, on a small bounded pool of threads over the one client.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Final

from iii_state_core import BackendError

from .calls import Caller
from .layout import PK, SK, item_key

#: DynamoDB's own limit of keys in one BatchGetItem.
MAX_GET_KEYS: Final = 100
READS: Final = frozenset({"read", "read_versioned"})

Item = dict[str, dict[str, Any]]
Call = tuple[str, tuple[Any, ...]]
#: Runs thunks concurrently and returns their results in order (they never raise).
Together = Callable[[list[Callable[[], Any]]], list[Any]]


def run_calls(
    calls: Sequence[Call],
    one: Callable[[str, tuple[Any, ...]], Any],
    get_many: Callable[[list[Item]], dict[tuple[str, str], Item]],
    answer: Callable[[str, tuple[Any, ...], Item | None], Any],
    together: Together | None = None,
) -> list[Any]:
    """Each call's result (or exception), reads fetched ``MAX_GET_KEYS`` at a time.

    :param one: runs a call alone; :param get_many: fetches items by primary key;
    :param answer: turns a read call and its item into what the primitive returns;
    :param together: runs the other calls concurrently (``None``: one after another).
    """
    out: list[Any] = [None] * len(calls)
    reads = [i for i, (name, _) in enumerate(calls) if name in READS]
    for at in range(0, len(reads), MAX_GET_KEYS):
        _read_chunk(calls, reads[at : at + MAX_GET_KEYS], out, get_many, answer)
    others = [i for i, (name, _) in enumerate(calls) if name not in READS]
    if together is not None and len(others) > 1:
        done = together([partial(_alone, one, *calls[i]) for i in others])
    else:
        done = [_alone(one, *calls[i]) for i in others]
    for i, result in zip(others, done, strict=True):
        out[i] = result
    return out


def _alone(one: Callable[[str, tuple[Any, ...]], Any], name: str, args: tuple[Any, ...]) -> Any:
    try:
        return one(name, args)
    except Exception as exc:
        return exc


def _read_chunk(
    calls: Sequence[Call],
    indices: list[int],
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

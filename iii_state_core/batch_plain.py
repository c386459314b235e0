"""A batch's plain gets, sets and deletes: one round, no plan per operation.

Most batches are many gets or many sets of distinct entries. Each such operation is exactly one
primitive call, so the batch checks it as its single function does, sends every call in one
``RUN_MANY`` and builds each result and event as that function would, without a generator, a
field walk and a round-queue per operation (together they cost more than the store's own work).
Anything else (another function, a ``ttl_ms``, the ``data`` alias, an entry named twice, a scope,
key or value the checks refuse) goes through the plans, which give the same answer and its exact
error: this path only takes operations it would run without an error of its own.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, NamedTuple

from .driver import RUN_MANY
from .errors import StateError
from .operations import Call, Limits, _decode, _replaced, _written
from .results import SetResult, StateEvent


class PlainOp(NamedTuple):
    at: int  # its place in the batch
    function: str  # get, set or delete
    scope: str
    key: str
    value: Any
    call: Call


def split(limits: Limits, ops: list[Any]) -> tuple[list[PlainOp], list[int]]:
    """The operations that run plain, and the indices of the others (in order)."""
    caps = limits.capabilities
    most_scope, most_key = caps.max_scope_bytes or 1 << 62, caps.max_key_bytes or 1 << 62
    plain: list[PlainOp] = []
    rest: list[int] = []
    named: set[tuple[str, str]] = set()
    twice: set[tuple[str, str]] = set()
    for i, op in enumerate(ops):
        if type(op) is not dict:
            rest.append(i)
            continue
        name, scope, key = op.get("op"), op.get("scope"), op.get("key")
        if type(scope) is not str or type(key) is not str:
            rest.append(i)
            continue
        entry = (scope, key)
        if entry in named:
            twice.add(entry)
        named.add(entry)
        found = None
        # ASCII within the limits passes check_entry; anything else is checked (or refused) by it
        if (scope.isascii() and key.isascii() and len(scope) <= most_scope and len(key) <= most_key) or (
            _entry_ok(limits, scope, key)
        ):
            found = _plain(limits, i, name, scope, key, op)
        if found is None:
            rest.append(i)
        else:
            plain.append(found)
    if twice:  # an entry's operations run one after another, in order: through the plans
        rest += [p.at for p in plain if (p.scope, p.key) in twice]
        plain = [p for p in plain if (p.scope, p.key) not in twice]
        rest.sort()
    return plain, rest


def _entry_ok(limits: Limits, scope: str, key: str) -> bool:
    try:
        limits.check_entry(scope, key)
    except StateError:
        return False  # its plan reports it, worded as the single function words it
    return True


def _plain(
    limits: Limits, at: int, name: object, scope: str, key: str, op: dict[str, Any]
) -> PlainOp | None:
    """The operation as its one primitive call, or ``None`` when only its plan may run it."""
    if name == "get":
        return PlainOp(at, name, scope, key, None, Call("read", (scope, key)))
    if name == "set":
        if "value" not in op or "data" in op or op.get("ttl_ms") is not None:
            return None
        value = op["value"]
        try:
            data = limits.encode(value)
        except StateError:
            return None
        return PlainOp(at, name, scope, key, value, Call("write", (scope, key, data)))
    if name == "delete":
        return PlainOp(at, name, scope, key, None, Call("remove", (scope, key)))
    return None


def run_plain(
    plain: list[PlainOp], located: Any
) -> Generator[Call, Any, tuple[list[tuple[int, str, Any, StateError | None]], dict[int, StateEvent]]]:
    """One round for every plain operation: ``(index, function, result, error)`` each, and events.

    :param located: ``located(index, function, error)`` names the operation in an error's message.
    """
    answers = yield Call(RUN_MANY, ([p.call for p in plain], [p.function for p in plain]))
    done: list[tuple[int, str, Any, StateError | None]] = []
    events: dict[int, StateEvent] = {}
    for p, raw in zip(plain, answers, strict=True):
        if isinstance(raw, StateError):
            done.append((p.at, p.function, None, located(p.at, p.function, raw)))
        elif p.function == "get":
            try:
                done.append((p.at, "get", _decode("get", p.scope, p.key, raw), None))
            except StateError as exc:
                done.append((p.at, "get", None, located(p.at, "get", exc)))
        elif p.function == "set":
            old = _replaced("set", p.scope, p.key, raw)
            done.append((p.at, "set", SetResult(old, p.value), None))
            events[p.at] = _written(p.scope, p.key, raw, old, p.value)
        else:
            old = _replaced("delete", p.scope, p.key, raw)
            done.append((p.at, "delete", old, None))
            events[p.at] = StateEvent("state:deleted", p.scope, p.key, old, None)
    return done, events

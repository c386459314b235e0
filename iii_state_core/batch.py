"""``state::batch``: many single-entry calls in one request, each atomic on its own.

The batch runs the single functions' own plans side by side. Each round it collects the primitive
call every unfinished plan waits for and asks the driver for all of them at once (one
``run_many`` call: an adapter with a batch primitive sends them in one round trip, the default
makes one call each), then sends each answer back into its plan. So an operation gives exactly
the result, error and event of the single call; a failing operation ends only itself. Operations
on the same entry run one after the other, in the order given.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from . import batch_plain
from .driver import RUN_MANY, _after_write, _applies, _reports_a_lost_write
from .errors import BackendError, DeserializationError, StateError
from .operations import Call, Limits, Plan
from .results import StateEvent
from .table import TABLE
from .values import json_type

#: The functions a batch operation may name (``op``); each takes that function's own fields.
BATCH_FUNCTIONS: Final = ("get", "set", "delete", "update", "compare-and-set")


class BatchItem(NamedTuple):
    """One operation's outcome: the single function's typed result, or the error it failed with.

    A named tuple: a batch builds one per operation, and a frozen dataclass's ``__init__`` cost
    more than the store's own work for a read.
    """

    op: str
    result: Any = None
    error: StateError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_wire(self) -> Any:
        if self.error is not None:
            return {"error": {"code": self.error.code, "message": self.error.message}}
        return TABLE[self.op].to_wire(self.result)


def items_to_wire(items: list[BatchItem]) -> list[Any]:
    return [item.to_wire() for item in items]


# -- the typed helpers (``get_many`` …): one function over many keys of one scope -----------------
def many_ops(
    function: str, scope: str, keys: Iterable[str], values: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    if values is not None:
        return [{"op": function, "scope": scope, "key": k, "value": v} for k, v in values.items()]
    return [{"op": function, "scope": scope, "key": k} for k in keys]


def by_key(ops: list[dict[str, Any]], items: list[BatchItem]) -> dict[str, Any]:
    """``{key: result}``; the first failed operation is raised (the others ran: a batch is not atomic)."""
    for item in items:
        if item.error is not None:
            raise item.error
    return {op["key"]: item.result for op, item in zip(ops, items, strict=True)}


def check_ops(limits: Limits, ops: object) -> list[Any]:
    """The batch as a whole: a list of at most the adapter's ``max_batch_ops`` operations.

    :raises DeserializationError: otherwise (nothing runs).
    """
    if not isinstance(ops, list):
        raise DeserializationError(f"field `ops` must be an array of operations, got {json_type(ops)}")
    most = limits.capabilities.max_batch_ops
    if len(ops) > most:
        raise DeserializationError(
            f"state::batch takes at most {most} operations on the {limits.adapter_name} adapter, got "
            f"{len(ops)}; nothing was run: split it"
        )
    return ops


def scopes_of(payload: Mapping[str, Any]) -> Iterator[tuple[str, object]]:
    """``(where, scope)`` of each operation, for the wire's reserved-scope check."""
    ops = payload.get("ops")
    if isinstance(ops, list):
        for i, op in enumerate(ops):
            if isinstance(op, Mapping):
                yield f"ops[{i}]: ", op.get("scope")


@dataclass
class _Running:
    index: int
    function: str
    plan: Plan
    entry: tuple[str, str]
    applied: bool = False
    call: Call | None = None


def _decode_op(limits: Limits, index: int, op: object) -> _Running:
    """The plan of one operation, decoded by its function's own fields (from the table)."""
    if not isinstance(op, Mapping):
        raise DeserializationError(f"ops[{index}] must be an object, got {json_type(op)}")
    name = op.get("op")
    if name not in BATCH_FUNCTIONS:
        shown = json.dumps(name) if isinstance(name, str) else json_type(name)
        raise DeserializationError(
            f"ops[{index}]: `op` must be one of {', '.join(BATCH_FUNCTIONS)}, got {shown}"
        )
    function = TABLE[name]
    try:
        plan = function.decode(limits, op)  # its fields read their own names: `op` is not one
    except StateError as exc:
        raise located(index, name, exc) from None
    return _Running(index, name, plan, _hashable(op.get("scope"), op.get("key")))


def located(index: int, function: str, exc: StateError) -> StateError:
    """The same error, its message naming the operation."""
    try:
        return type(exc)(f"ops[{index}] ({function}): {exc.message}", code=exc.code)
    except TypeError:  # an error class with an __init__ of its own
        return StateError(f"ops[{index}] ({function}): {exc.message}", code=exc.code)


def _failure(running: _Running, exc: Exception) -> StateError:
    if running.applied and _reports_a_lost_write(True, exc):
        exc = _after_write(running.function, exc)
    if not isinstance(exc, StateError):  # a bug in a plan: report it, do not stop the others
        declared = TABLE[running.function]
        exc = BackendError(f"{declared.failure_text}: {type(exc).__name__}: {exc}", code=declared.error_code)
    return located(running.index, running.function, exc)


def batch(limits: Limits, ops: list[dict[str, Any]]) -> Plan:
    """Run each operation ``{op, scope, key, …}`` as its single function; one outcome per operation.

    Plain gets, sets and deletes of entries named once run in one round without plans
    (:mod:`batch_plain`); the others run their plans side by side.
    """
    outcomes: list[BatchItem | None] = [None] * len(check_ops(limits, ops))
    if limits.joined_reads:
        gets = batch_plain.joined_gets(limits, ops)
        if gets is not None:
            got = yield from batch_plain.read_joined(*gets)
            if got is not None:
                return got, []
    plain, rest = batch_plain.split(limits, ops)
    events: dict[int, StateEvent] = {}
    if plain.at:
        done, emitted = yield from batch_plain.run_plain(plain, located, limits.listening)
        if not rest:  # every operation ran plain, in order
            return done, [event for _, event in emitted]
        for index, item in zip(plain.at, done, strict=True):
            outcomes[index] = item
        events = dict(emitted)
    waiting: list[_Running] = []
    for i in rest:
        op = ops[i]
        try:
            waiting.append(_decode_op(limits, i, op))
        except StateError as exc:
            outcomes[i] = BatchItem(op.get("op", "") if isinstance(op, Mapping) else "", error=exc)
    if waiting:
        ran, by_index = yield from _side_by_side(waiting)
        for running, item in zip(waiting, ran, strict=True):
            outcomes[running.index] = item
        events.update(by_index)
    return [o for o in outcomes if o is not None], [events[i] for i in sorted(events)]


def plans_side_by_side(plans: list[tuple[str, str, str, Plan]]) -> Plan:
    """Any plans ``(function, scope, key, plan)`` run as one batch; one :class:`BatchItem` each.

    Import and migrate run their own plans (create-only writes) this way.
    """
    running = [_Running(i, f, plan, _hashable(s, k)) for i, (f, s, k, plan) in enumerate(plans)]
    return (yield from side_by_side(running))


def numbered_side_by_side(
    plans: list[tuple[int, str, str, str, Plan]],
) -> Generator[Call, Any, tuple[list[BatchItem], dict[int, StateEvent]]]:
    """Plans ``(number, function, scope, key, plan)`` run as one batch: their items, and their
    events by number (for a caller that merges them with events of its own)."""
    return (yield from _side_by_side([_Running(n, f, plan, _hashable(s, k)) for n, f, s, k, plan in plans]))


def side_by_side(waiting: list[_Running]) -> Generator[Call, Any, tuple[list[BatchItem], list[StateEvent]]]:
    """Run the plans together: each round asks for every waiting call at once (``RUN_MANY``)."""
    items, events = yield from _side_by_side(waiting)
    return items, [events[i] for i in sorted(events)]


def _side_by_side(
    waiting: list[_Running],
) -> Generator[Call, Any, tuple[list[BatchItem], dict[int, StateEvent]]]:
    """:func:`side_by_side`, its events by operation index."""
    outcomes: dict[int, BatchItem] = {}
    events: dict[int, StateEvent] = {}

    def step(running: _Running, answer: Any, first: bool) -> bool:
        """Advance one plan; ``True`` while it waits for another call."""
        try:
            if first:
                running.call = next(running.plan)
            elif isinstance(answer, StateError):
                raise answer
            else:
                running.applied = running.applied or _applies(running.call[0], answer)  # type: ignore[index]
                running.call = running.plan.send(answer)
            return True
        except StopIteration as stop:
            result, event = stop.value
            outcomes[id(running)] = BatchItem(running.function, result)
            if event is not None:
                events[id(running)] = event
        except Exception as exc:
            outcomes[id(running)] = BatchItem(running.function, error=_failure(running, exc))
        return False

    queue, active = list(waiting), list[_Running]()
    while queue or active:
        busy = {r.entry for r in active}
        still: list[_Running] = []
        for running in queue:  # an entry's operations run one after another, in order
            if running.entry in busy:
                still.append(running)
                continue
            busy.add(running.entry)
            if step(running, None, first=True):
                active.append(running)
        queue = still
        if not active:
            continue
        answers = yield Call(RUN_MANY, ([r.call for r in active], [r.function for r in active]))
        active = [r for r, answer in zip(active, answers, strict=True) if step(r, answer, first=False)]
    return [outcomes[id(r)] for r in waiting], {r.index: events[id(r)] for r in waiting if id(r) in events}


def _hashable(scope: object, key: object) -> tuple[str, str]:
    if type(scope) is str and type(key) is str:
        return scope, key
    return (scope if isinstance(scope, str) else repr(scope), key if isinstance(key, str) else repr(key))

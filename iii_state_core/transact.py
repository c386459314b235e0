"""``state::transact``: several writes, all or nothing, under optional conditions.

The core reads every entry involved (one round), checks the conditions, computes each write as its
single function would, and asks the adapter to apply all of them only if none of those entries
changed since the read (primitive ``write_many_if``, one atomic step of the store). A lost race
starts over; a failed condition or a bad operation applies nothing. Events fire after the commit.

Sets and deletes need no old value to be computed, so on an adapter with ``write_many_when`` such a
transaction is first sent whole, in one call: conditions as the bytes the core would store for
``expected``, the old values coming back. Only a miss whose stored JSON still matches (spelled
otherwise, or a stored ``null`` for "absent") goes the read-then-write way.
``ttl_ms`` is turned into a deadline once, when the call arrives, as the single functions do.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from .adapter import ByteCondition, PlannedWrite
from .driver import RUN_MANY
from .errors import DeserializationError, StateError, UnsupportedError
from .expiry import KEEP, ExpiresAt
from .operations import Call, Limits, Plan, _decode, _replaced, _written, sleep_call
from .results import SetResult, StateEvent, UpdateResult
from .retry import LOST, Lost, optimistic
from .swap import matches
from .table import TABLE
from .update_ops import apply_ops, parse_ops
from .values import _PLAIN_FIRST, JSON, _scan_once, canonical_or_none, check_value, json_type

#: Builds a named tuple from all its fields without its Python-level ``__new__`` (one per write).
_new: Any = tuple.__new__

#: The writes a transaction may hold (each takes that function's own fields).
TRANSACT_FUNCTIONS: Final = ("set", "delete", "update")


@dataclass(frozen=True, slots=True)
class TransactResult:
    """``committed`` with one single-function result per write, or which condition failed."""

    committed: bool
    results: list[Any] = field(default_factory=list)
    #: The index of the condition that did not hold, and the value found there.
    failed_condition: int | None = None
    current: JSON = None

    def to_wire(self) -> dict[str, Any]:
        if self.committed:
            return {"committed": True, "results": [_wire(r) for r in self.results]}
        return {"committed": False, "failed_condition": self.failed_condition, "current": self.current}


def _wire(result: Any) -> Any:
    return result.to_wire() if isinstance(result, (SetResult, UpdateResult)) else result


class _Write(NamedTuple):
    """One write of the transaction, checked (a named tuple: a frozen dataclass's ``__init__``
    cost more per write than the store's own work)."""

    function: str
    scope: str
    key: str
    data: bytes | None = None  # set
    value: JSON = None  # set
    ops: tuple[Any, ...] | list[Any] = ()  # update
    #: The deadline the entry gets: ``ttl_ms`` from the call, else none (set) or its own (update).
    expires: ExpiresAt = None


def _refuse(index: str, exc: StateError) -> StateError:
    try:
        return type(exc)(f"{index}: {exc.message}; nothing was written", code=exc.code)
    except TypeError:
        return StateError(f"{index}: {exc.message}; nothing was written", code=exc.code)


def _decode_write(limits: Limits, i: int, op: object, encoded: dict[int, bytes]) -> _Write:
    """:param encoded: the bytes of each value object already encoded in this transaction, by ``id``
        (one value written to several keys is checked and encoded once, as ``Limits.encode_each``)."""
    if type(op) is dict:  # a plain set or delete: the checks below, without the field walk
        name, scope, key = op.get("op"), op.get("scope"), op.get("key")
        plain = name == "delete" or (name == "set" and "value" in op and "data" not in op)
        if plain and isinstance(scope, str) and isinstance(key, str) and op.get("ttl_ms") is None:
            try:
                limits.check_entry(scope, key)
                value = op["value"] if name == "set" else None
                data = None
                if name == "set":  # the ops list holds every value while this runs: no id is reused
                    data = encoded.get(id(value))
                    if data is None:
                        data = encoded[id(value)] = limits.encode(value)
                write: _Write = _new(_Write, (name, scope, key, data, value, (), None))
                return write
            except StateError as exc:
                raise _refuse(f"ops[{i}] ({name})", exc) from None
    where = f"ops[{i}]"
    if not isinstance(op, Mapping):
        raise DeserializationError(f"{where} must be an object, got {json_type(op)}; nothing was written")
    name = op.get("op")
    if name not in TRANSACT_FUNCTIONS:
        shown = f'"{name}"' if isinstance(name, str) else json_type(name)
        raise DeserializationError(
            f"{where}: `op` must be one of {', '.join(TRANSACT_FUNCTIONS)}, got {shown}; nothing was written"
        )
    kwargs: dict[str, Any] = {}
    try:
        for f in TABLE[name].fields or ():
            f.take(op, kwargs)
        scope, key = kwargs["scope"], kwargs["key"]
        limits.check_entry(scope, key)
        # the deadline is fixed once, when the call arrives, as for the single functions
        deadline = limits.expires_at("transact", kwargs.get("ttl_ms"))
        if name == "set":
            value = kwargs["value"]
            expires = deadline[0] if deadline else None
            return _Write(name, scope, key, limits.encode(value), value, expires=expires)
        if name == "update":
            ops = parse_ops(kwargs["ops"], max_depth=limits.max_depth)
            return _Write(name, scope, key, ops=ops, expires=deadline[0] if deadline else KEEP)
        return _Write(name, scope, key)
    except StateError as exc:
        raise _refuse(f"{where} ({name})", exc) from None


def _decode_condition(limits: Limits, i: int, condition: object) -> tuple[str, str, JSON]:
    where = f"conditions[{i}]"
    if not isinstance(condition, Mapping):
        got = json_type(condition)
        raise DeserializationError(f"{where} must be an object, got {got}; nothing was written")
    scope, key, expected = condition.get("scope"), condition.get("key"), condition.get("expected")
    try:
        for what, text in (("scope", scope), ("key", key)):
            if not isinstance(text, str):
                raise DeserializationError(f"missing or non-string field `{what}`")
        limits.check_entry(scope, key)
        check_value(expected, max_depth=limits.max_depth)
    except StateError as exc:
        raise _refuse(where, exc) from None
    return scope, key, expected  # type: ignore[return-value]


def scopes_of(payload: Mapping[str, Any]) -> list[tuple[str, object]]:
    """``(where, scope)`` of each write and condition, for the wire's reserved-scope check."""
    found: list[tuple[str, object]] = []
    for name in ("ops", "conditions"):
        items = payload.get(name)
        if isinstance(items, list):
            found += [(f"{name}[{i}]: ", c.get("scope")) for i, c in enumerate(items) if isinstance(c, dict)]
    return found


def check_transaction(limits: Limits, ops: object, conditions: object) -> tuple[list[_Write], list[Any]]:
    """The whole request, checked before anything is read or written.

    :raises UnsupportedError: when the adapter does not declare ``transactions``.
    :raises DeserializationError: naming the operation or condition at fault.
    """
    caps = limits.capabilities
    if not caps.transactions:
        raise UnsupportedError(
            f"state::transact: the {limits.adapter_name} adapter cannot apply several writes atomically "
            f"(capability transactions is false); nothing was written. state::batch runs them one by one"
        )
    if not isinstance(ops, list) or not ops:
        got = "an empty one" if isinstance(ops, list) else json_type(ops)
        raise DeserializationError(f"field `ops` must be a non-empty array of writes, got {got}")
    if conditions is None:
        conditions = []
    if not isinstance(conditions, list):
        raise DeserializationError(f"field `conditions` must be an array, got {json_type(conditions)}")
    if len(ops) + len(conditions) > caps.max_transaction_ops:
        raise DeserializationError(
            f"state::transact takes at most {caps.max_transaction_ops} operations and conditions on the "
            f"{limits.adapter_name} adapter, got {len(ops) + len(conditions)}; nothing was written"
        )
    encoded: dict[int, bytes] = {}
    writes = [_decode_write(limits, i, op, encoded) for i, op in enumerate(ops)]
    if len({(w.scope, w.key) for w in writes}) == len(writes):  # the usual case: no entry twice
        return writes, [_decode_condition(limits, i, c) for i, c in enumerate(conditions)]
    seen: dict[tuple[str, str], int] = {}
    for i, w in enumerate(writes):
        first = seen.setdefault((w.scope, w.key), i)
        if first != i:
            raise DeserializationError(
                f"ops[{i}] writes the entry ops[{first}] writes; a transaction writes each entry once "
                f"(put the changes in one update); nothing was written"
            )
    return writes, [_decode_condition(limits, i, c) for i, c in enumerate(conditions)]


def transact(
    limits: Limits, ops: list[dict[str, Any]], conditions: list[dict[str, Any]] | None = None
) -> Plan:
    """Apply every write of ``ops`` if every condition holds, atomically; else nothing."""
    writes, checks = check_transaction(limits, ops, conditions)
    if limits.one_step_transact and all(w.function != "update" for w in writes):
        done = yield from _in_one_step(writes, checks, limits.listening)
        if done is not None:
            return done
    entries = [(w.scope, w.key) for w in writes]  # each written once (checked)
    if checks:
        entries = list(dict.fromkeys(entries + [(s, k) for s, k, _ in checks]))
    # an adapter that reads and writes in one atomic step of its own (``modify_many``): no race to lose
    computed: list[_Computed | StateError] = []

    def change(raws: list[bytes | None]) -> list[PlannedWrite] | None:
        computed.clear()
        try:
            done = _compute(limits, writes, checks, dict(zip(entries, raws, strict=True)))
        except StateError as exc:
            computed.append(exc)
            return None
        computed.append(done)
        return done.planned if done.result.committed else None

    if (yield Call("modify_many", (entries, change))) is not None:
        outcome = computed[0]
        if isinstance(outcome, StateError):
            raise outcome
        return outcome.result, outcome.events

    def attempt(_n: int) -> Generator[Call, Any, tuple[TransactResult, list[StateEvent]] | Lost]:
        calls = [Call("read_versioned", entry) for entry in entries]
        answers = yield Call(RUN_MANY, (calls, ["transact"] * len(calls)))
        for answer in answers:
            if isinstance(answer, StateError):
                raise answer
        read = dict(zip(entries, answers, strict=True))
        done = _compute(limits, writes, checks, {entry: raw for entry, (raw, _) in read.items()})
        if not done.result.committed:
            return done.result, []
        tokens = [(scope, key, read[(scope, key)][1]) for scope, key in entries]
        if not (yield Call("write_many_if", (tokens, done.planned))):
            return LOST
        return done.result, done.events

    failure, code = TABLE["transact"].failure_text, TABLE["transact"].error_code
    return (yield from optimistic(attempt, sleep_call, failure=failure, code=code))


def _in_one_step(
    writes: list[_Write], checks: list[tuple[str, str, JSON]], listening: Callable[[], bool] | None = None
) -> Generator[Call, Any, tuple[TransactResult, list[StateEvent]] | None]:
    """Sets and deletes under conditions as one ``write_many_when`` call; ``None`` when a condition
    missed on bytes but its stored JSON matches (the caller then reads and compares).

    :param listening: ``Limits.listening``: when it answers ``False`` no event is built (nobody
        would receive one), as a batch's plain writes skip theirs."""
    conditions: list[ByteCondition] = []
    for scope, key, expected in checks:
        offered = None if expected is None else canonical_or_none(expected)
        if offered is None and expected is not None:
            return None  # no bytes stand for it (a lone surrogate): compare the read JSON
        conditions.append((scope, key, offered))
    planned: list[PlannedWrite] = [(w.scope, w.key, w.data, w.expires) for w in writes]
    answer = yield Call("write_many_when", (conditions, planned))
    if not isinstance(answer, list):
        scope, key, expected = checks[answer.condition]
        current = _decode("transact", scope, key, answer.found)
        if matches(answer.found, current, expected):
            return None
        return TransactResult(False, failed_condition=answer.condition, current=current), []
    results: list[Any] = []
    events: list[StateEvent] = []
    wanted = listening is None or listening()
    for w, raw in zip(writes, answer, strict=True):
        old = None if raw is None else _replaced("transact", w.scope, w.key, raw)
        if w.function == "set":
            results.append(SetResult(old, w.value))
            if wanted:
                events.append(_written(w.scope, w.key, raw, old, w.value))
        else:
            results.append(old)
            if wanted:
                events.append(StateEvent("state:deleted", w.scope, w.key, old, None))
    return TransactResult(True, results), events


@dataclass(frozen=True, slots=True)
class _Computed:
    result: TransactResult
    events: list[StateEvent]
    planned: list[PlannedWrite]


def _compute(
    limits: Limits,
    writes: list[_Write],
    checks: list[tuple[str, str, JSON]],
    read: dict[tuple[str, str], bytes | None],
) -> _Computed:
    """The transaction over the entries as read: a failed condition, or each write's bytes,
    result and event, as its single function computes them.

    :raises StateError: a write that cannot be made (naming it; nothing is written).
    """
    for i, (scope, key, expected) in enumerate(checks):
        raw = read[(scope, key)]
        current = _decode("transact", scope, key, raw)
        if not matches(raw, current, expected):
            return _Computed(TransactResult(False, failed_condition=i, current=current), [], [])
    planned: list[PlannedWrite] = []
    results: list[Any] = []
    events: list[StateEvent] = []
    wanted = limits.listening is None or limits.listening()  # nobody listening: build no event
    for i, w in enumerate(writes):
        raw = read[(w.scope, w.key)]
        try:
            # set and delete replace bytes another program stored, as the single calls do
            if raw is None:
                old: JSON = None
            elif type(raw) is bytes and raw and raw[0] in _PLAIN_FIRST and (len(raw) == 1 or raw[1]):
                # decode_stored's fast path, inlined (two calls per write cost more than the parse)
                try:
                    text = raw.decode("utf-8", "surrogatepass")
                    old, end = _scan_once(text, 0)
                    fast = end == len(text)
                except Exception:
                    fast = False  # decode_stored says what is wrong
                if not fast:
                    old = (_decode if w.function == "update" else _replaced)("transact", w.scope, w.key, raw)
            else:
                old = (_decode if w.function == "update" else _replaced)("transact", w.scope, w.key, raw)
            if w.function == "set":
                planned.append((w.scope, w.key, w.data, w.expires))
                results.append(SetResult(old, w.value))
                new: JSON = w.value
            elif w.function == "delete":
                planned.append((w.scope, w.key, None, None))
                results.append(old)
                if wanted:
                    events.append(StateEvent("state:deleted", w.scope, w.key, old, None))
                continue
            else:
                new, errors = apply_ops(old, raw is None, list(w.ops))
                planned.append((w.scope, w.key, limits.encode(new), w.expires))
                results.append(UpdateResult(old, new, errors))
            if wanted:
                events.append(_written(w.scope, w.key, raw, old, new))
        except StateError as exc:
            raise _refuse(f"ops[{i}] ({w.function})", exc) from None
    return _Computed(TransactResult(True, results), events, planned)

"""``state::barrier``: a fan-in condition that allows its target once every expected arrival came.

Used as a trigger condition: the engine calls it with ``{event, condition_config}``; the answer
is ``{"decision": "allow", "payload": {"results": {...}}, "reason"}`` exactly once per barrier
id, and ``{"decision": "skip", "reason"}`` for every other arrival. Decisions and texts are
those of iii's ``state`` worker. The barrier's record lives in the reserved scope
``state_barrier`` (key = the barrier id) and is changed only by a conditional write
(``read_versioned`` + ``write_if``), so on every adapter — and with any number of processes or
worker replicas arriving at once — exactly one arrival completes it. Barrier writes emit no
events.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Final

from .errors import ConflictError, DeserializationError, StateError, StoredValueError
from .operations import Call, Limits, Plan, sleep_call
from .retry import LOST, Lost, optimistic
from .values import JSON, decode_stored, encode, json_type

BARRIER_SCOPE: Final = "state_barrier"
MAX_ARRIVALS: Final = 10_000
DEFAULT_KEY_FROM: Final = "/key"
CONFIG_MISSING: Final = (
    "state::barrier needs `condition_config` { id, expect, key_from?, carry? } — as a binding it "
    "goes in `conditions: [{ function_id, config }]`"
)


class BarrierError(StateError):
    """A barrier arrival that cannot be decided; nothing was recorded."""

    code = "BARRIER_ERROR"


@dataclass(frozen=True)
class BarrierConfig:
    """A checked ``condition_config``."""

    id: str
    #: The number of arrivals to wait for.
    target: int
    #: The named arrivals, in the order given (``None``: any ``target`` distinct keys).
    names: tuple[str, ...] | None
    key_from: str = DEFAULT_KEY_FROM
    carry: str | None = None

    @classmethod
    def parse(cls, config: object) -> BarrierConfig:
        """:raises StateError: ``BARRIER_CONFIG`` when absent; serde-worded type errors; then the
        reference's ``BARRIER_ERROR`` texts for a bad ``expect``."""
        if config is None:
            raise StateError(CONFIG_MISSING, code="BARRIER_CONFIG")
        if not isinstance(config, dict):
            raise DeserializationError(f"invalid type: {json_type(config)}, expected struct BarrierConfig")
        for name in ("id", "expect"):
            if name not in config:
                raise DeserializationError(f"missing field `{name}`")
        barrier_id = config["id"]
        if not isinstance(barrier_id, str):
            raise DeserializationError(f"invalid type: {json_type(barrier_id)}, expected a string for `id`")
        key_from, carry = config.get("key_from"), config.get("carry")
        for name, pointer in (("key_from", key_from), ("carry", carry)):
            if pointer is not None and not isinstance(pointer, str):
                raise DeserializationError(
                    f"invalid type: {json_type(pointer)}, expected a string for `{name}`"
                )
        expect = config["expect"]
        names: tuple[str, ...] | None
        if isinstance(expect, list):
            if not all(isinstance(n, str) for n in expect):
                raise DeserializationError("invalid type: `expect` must be an integer or an array of strings")
            names, target = tuple(expect), len(expect)
        elif isinstance(expect, int) and not isinstance(expect, bool) and expect >= 0:
            names, target = None, expect
        else:
            raise DeserializationError(
                f"invalid type: {json_type(expect)}, expected an unsigned integer or an array of strings "
                "for `expect`"
            )
        if target > MAX_ARRIVALS:
            raise BarrierError(f"barrier `{barrier_id}`: `expect` cannot exceed {MAX_ARRIVALS} arrivals")
        if target == 0:
            raise BarrierError(f"barrier `{barrier_id}`: `expect` must contain at least one arrival")
        if names is not None:
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    raise BarrierError(f"barrier `{barrier_id}`: duplicate expected arrival key `{name}`")
                seen.add(name)
        return cls(barrier_id, target, names, key_from if key_from is not None else DEFAULT_KEY_FROM, carry)


_MISSING: Final[Any] = object()


def resolve_pointer(document: JSON, pointer: str) -> Any:
    """The value at a JSON pointer (RFC 6901), or ``_MISSING``. ``""`` is the whole document."""
    if pointer == "":
        return document
    if not pointer.startswith("/"):
        return _MISSING  # serde_json's pointer() answers None for these too
    node: Any = document
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            if token not in node:
                return _MISSING
            node = node[token]
        elif isinstance(node, list):
            if not token.isdigit() or (len(token) > 1 and token[0] == "0") or int(token) >= len(node):
                return _MISSING
            node = node[int(token)]
        else:
            return _MISSING
    return node


def _compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def rust_debug_list(items: list[str]) -> str:
    """``["b", "c"]`` as Rust's ``{:?}`` prints a ``Vec<String>``."""
    return "[" + ", ".join(_rust_debug_str(i) for i in items) + "]"


def _rust_debug_str(text: str) -> str:
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\0":
            out.append("\\0")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


@dataclass(frozen=True)
class Arrival:
    """What one arrival does: the answer, and the record to store (``None``: no write)."""

    decision: dict[str, Any]
    record: dict[str, Any] | None


def _skip(reason: str) -> dict[str, Any]:
    return {"decision": "skip", "reason": reason}


def arrive(config: BarrierConfig, stored: JSON, event: JSON) -> Arrival:
    """Decide one arrival against the stored record (``None`` when the barrier is new).

    :raises BarrierError: an unreadable record, or an event without an arrival key.
    """
    bid = config.id
    if stored is None:
        arrived: dict[str, Any] = {}
        complete = False
    elif (
        isinstance(stored, dict)
        and isinstance(stored.get("arrived"), dict)
        and isinstance(stored.get("complete"), bool)
    ):
        arrived, complete = dict(stored["arrived"]), stored["complete"]
    else:
        raise BarrierError(f"barrier `{bid}` state is unreadable: expected {{arrived, complete}}")
    found = resolve_pointer(event, config.key_from)
    if found is _MISSING or found is None:
        raise BarrierError(
            f"barrier `{bid}`: no arrival key at `{config.key_from}` in the event — set `key_from` to a "
            "pointer that resolves, or arrivals cannot be told apart"
        )
    key = found if isinstance(found, str) else _compact(found)
    if complete:
        return Arrival(_skip(f"barrier `{bid}` already complete"), None)
    if config.names is not None and key not in config.names:
        return Arrival(
            _skip(
                f"barrier `{bid}`: `{key}` is not one of the expected arrivals — check the producer's key "
                "against `expect`"
            ),
            None,
        )
    if config.carry is None:
        carried = event
    else:
        value = resolve_pointer(event, config.carry)
        carried = None if value is _MISSING else value
    repeated = key in arrived
    unchanged = repeated and _compact(arrived[key]) == _compact(carried)
    arrived[key] = carried
    count = len(arrived)
    if count >= config.target:
        decision = {
            "decision": "allow",
            "payload": {"results": arrived},
            "reason": f"barrier `{bid}` complete ({config.target}/{config.target})",
        }
        return Arrival(decision, {"arrived": arrived, "complete": True})
    record = None if unchanged else {"arrived": arrived, "complete": False}
    if repeated:
        return Arrival(
            _skip(f"barrier `{bid}`: `{key}` already counted, still {count}/{config.target}"), record
        )
    if config.names is None:
        waiting = f"{config.target - count} more"
    else:
        waiting = rust_debug_list([n for n in config.names if n not in arrived])
    return Arrival(_skip(f"barrier `{bid}`: {count}/{config.target} arrived, waiting on {waiting}"), record)


def barrier(limits: Limits, payload: object) -> Plan:
    """The ``state::barrier`` plan: decide and record one arrival atomically; no event."""
    if not isinstance(payload, dict):
        raise DeserializationError(f"invalid type: {json_type(payload)}, expected a condition envelope")
    config = BarrierConfig.parse(payload.get("condition_config"))
    event = payload.get("event")
    decision = yield from _record(limits, config, event)
    return decision, None


def _record(limits: Limits, config: BarrierConfig, event: JSON) -> Generator[Call, Any, dict[str, Any]]:
    def attempt(_n: int) -> Generator[Call, Any, dict[str, Any] | Lost]:
        raw, token = yield Call("read_versioned", (BARRIER_SCOPE, config.id))
        try:
            stored = None if raw is None else decode_stored(raw)
        except (ValueError, StoredValueError) as exc:
            raise BarrierError(f"barrier `{config.id}` state is unreadable: {exc}") from None
        outcome = arrive(config, stored, event)
        if outcome.record is None:
            return outcome.decision
        # bookkeeping, not a user value: max_value_bytes does not apply
        data = encode(outcome.record, max_depth=limits.max_depth + 4)
        if (yield Call("write_if", (BARRIER_SCOPE, config.id, data, token))):
            return outcome.decision
        return LOST

    def give_up(attempts: int) -> ConflictError:
        return ConflictError(
            f"barrier `{config.id}`: gave up after {attempts} attempts because other arrivals kept "
            "changing the record; nothing was recorded, retry",
            code="BARRIER_ERROR",
        )

    return (yield from optimistic(attempt, sleep_call, give_up=give_up))

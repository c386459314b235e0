"""``state::compare-and-set`` as iii's ``state`` worker answers it.

``{scope, key, expected?, value}`` → ``{"swapped": true}`` or ``{"swapped": false, "current"}``.
``expected`` absent or ``null`` means "expect absent", and a stored ``null`` counts as absent for
the match; otherwise the stored value must equal ``expected`` as JSON (object key order does not
matter, ``1`` is not ``1.0``, ``true`` is not ``1``). A swap emits ``state:created`` when the key
was missing and ``state:updated`` when it was present (a stored ``null`` included), with
``old_value`` = the value replaced. A miss emits nothing and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from .errors import ConflictError
from .operations import MAX_ATTEMPTS, Call, Limits, Plan, _backoff
from .results import StateEvent
from .values import JSON, check_value, decode_stored, same_json

#: The retry budget, as our other optimistic writes.
CAS_ATTEMPTS: Final = MAX_ATTEMPTS


@dataclass(frozen=True, slots=True)
class SwapResult:
    """The typed result: ``swapped``, and on a miss the stored value (``None`` when absent)."""

    swapped: bool
    current: JSON = None

    def to_wire(self) -> dict[str, Any]:
        return {"swapped": True} if self.swapped else {"swapped": False, "current": self.current}


def matches(stored_raw: bytes | None, stored: JSON, expected: JSON) -> bool:
    """Whether ``expected`` holds for the stored entry (``None`` expects absent or null)."""
    if expected is None:
        return stored_raw is None or stored is None
    return stored_raw is not None and same_json(stored, expected)


def compare_and_set(limits: Limits, scope: str, key: str, expected: JSON, value: JSON) -> Plan:
    """Write ``value`` only if the entry matches ``expected``; atomic on every adapter."""
    limits.check_entry(scope, key)
    data = limits.encode(value)
    check_value(expected, max_depth=limits.max_depth)
    for attempt in range(CAS_ATTEMPTS):
        raw, token = yield Call("read_versioned", (scope, key))
        current = None if raw is None else decode_stored(raw)
        if not matches(raw, current, expected):
            return SwapResult(False, current), None
        if (yield Call("write_if", (scope, key, data, token))):
            kind: Any = "state:created" if raw is None else "state:updated"
            return SwapResult(True), StateEvent(kind, scope, key, current, value)
        yield Call("sleep", (_backoff(attempt),))
    raise ConflictError(
        f"Failed to compare-and-set value: gave up after {CAS_ATTEMPTS} attempts because other "
        "writers kept changing the entry; nothing was written, retry",
        code="CAS_ERROR",
    )

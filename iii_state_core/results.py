"""The small result types of the typed API, and their wire (JSON) forms (contract § Functions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .update_ops import OpError
from .values import JSON


@dataclass(frozen=True, slots=True)
class SetResult:
    old_value: JSON
    new_value: JSON

    def to_wire(self) -> dict[str, Any]:
        return {"old_value": self.old_value, "new_value": self.new_value}


@dataclass(frozen=True, slots=True)
class UpdateResult:
    old_value: JSON
    new_value: JSON
    errors: list[OpError] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"old_value": self.old_value, "new_value": self.new_value}
        if self.errors:
            wire["errors"] = [e.to_wire() for e in self.errors]
        return wire


@dataclass(frozen=True, slots=True)
class TtlResult:
    """``state::ttl``: whether the entry exists (live), and its milliseconds left (``None``: never)."""

    exists: bool
    ttl_ms: int | None

    def to_wire(self) -> dict[str, Any]:
        return {"exists": self.exists, "ttl_ms": self.ttl_ms}


@dataclass(frozen=True, slots=True)
class EntriesPage:
    entries: list[tuple[str, JSON]]
    next_cursor: str | None
    done: bool
    #: Rows sent before this page in the same walk.
    offset: int = 0
    #: How many rows the scope held when the walk began (the first page counted them);
    #: ``None`` for a page of the older walk, whose wire form has no offset and total.
    total: int | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "entries": [[k, v] for k, v in self.entries],
            "next_cursor": self.next_cursor,
            "done": self.done,
        }
        if self.total is not None:
            wire["offset"], wire["total"] = self.offset, self.total
        return wire


@dataclass(frozen=True, slots=True)
class CompareAndSetResult:
    """``state::compare-and-set``: ``swapped``, and on a miss the stored value (``None`` when absent)."""

    swapped: bool
    current: JSON = None

    def to_wire(self) -> dict[str, Any]:
        return {"swapped": True} if self.swapped else {"swapped": False, "current": self.current}


@dataclass(frozen=True, slots=True)
class StateEvent:
    """One write's event (contract § Events).

    Read it as attributes (``event.scope``) or as the contract's object, the dict a worker
    ``state`` trigger's function receives (``event["scope"]``, ``event["type"] == "state"``), so
    one handler body serves both. A ``state:expired`` event also carries ``expiry_id``: the same
    for every delivery of one expiry (a sweeper killed before acknowledging it delivers it again),
    different for any other, so a receiver can drop a redelivery (contract § Expiry events).
    """

    event_type: Literal["state:created", "state:updated", "state:deleted", "state:expired"]
    scope: str
    key: str
    old_value: JSON
    new_value: JSON
    expiry_id: str | None = None

    def __getitem__(self, field: str) -> Any:
        """``event["scope"]`` … as in the contract's event object; unknown fields: ``KeyError``."""
        if field == "type":
            return "state"
        if field in _EVENT_FIELDS or (field == "expiry_id" and self.expiry_id is not None):
            return getattr(self, field)
        raise KeyError(field)

    def get(self, field: str, default: Any = None) -> Any:
        try:
            return self[field]
        except KeyError:
            return default

    def keys(self) -> tuple[str, ...]:
        if self.expiry_id is not None:
            return ("type", *_EVENT_FIELDS, "expiry_id")
        return ("type", *_EVENT_FIELDS)

    def __contains__(self, field: object) -> bool:
        if field == "expiry_id":
            return self.expiry_id is not None
        return field == "type" or field in _EVENT_FIELDS

    def to_wire(self) -> dict[str, Any]:
        wire = {
            "type": "state",
            "event_type": self.event_type,
            "scope": self.scope,
            "key": self.key,
            "old_value": self.old_value,
            "new_value": self.new_value,
        }
        if self.expiry_id is not None:
            wire["expiry_id"] = self.expiry_id
        return wire


_EVENT_FIELDS = ("event_type", "scope", "key", "old_value", "new_value")


#: What a plan's writes emit: one event, none, or (``state::batch``) one per changed entry, in order.
Emitted = StateEvent | list[StateEvent] | None

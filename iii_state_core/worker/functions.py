"""The nine ``state::*`` functions as the engine sees them: descriptions, request schemas, and
how a failure becomes the ``"<CODE>: <message>"`` text an ``invocation_failed`` error carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ..errors import StateError
from ..operations import ERROR_CODES, MAX_LIST_LIMIT
from ..wire import FUNCTIONS

_STR: Final = {"type": "string"}
_ANY: Final[dict[str, Any]] = {}
_SCOPE_KEY: Final = {"scope": _STR, "key": _STR}


def _obj(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    # additionalProperties stays open: contract § Functions ignores unknown payload fields.
    return {"type": "object", "properties": properties, "required": required}


@dataclass(frozen=True)
class FunctionSpec:
    """One function the worker registers."""

    name: str
    description: str
    request_format: dict[str, Any]

    @property
    def function_id(self) -> str:
        return f"state::{self.name}"


SPECS: Final[dict[str, FunctionSpec]] = {
    spec.name: spec
    for spec in (
        FunctionSpec(
            "set",
            "Store a JSON value at scope/key; returns {old_value, new_value}",
            _obj({**_SCOPE_KEY, "value": _ANY, "data": _ANY}, ["scope", "key"]),
        ),
        FunctionSpec(
            "get", "Read the value at scope/key (null when missing)", _obj(_SCOPE_KEY, ["scope", "key"])
        ),
        FunctionSpec(
            "delete",
            "Delete scope/key; returns the value removed (or null)",
            _obj(_SCOPE_KEY, ["scope", "key"]),
        ),
        FunctionSpec(
            "update",
            "Apply update ops atomically; returns {old_value, new_value, errors?}",
            _obj(
                {**_SCOPE_KEY, "ops": {"type": "array", "items": {"type": "object"}}}, ["scope", "key", "ops"]
            ),
        ),
        FunctionSpec("list", "The values of a scope, as an array", _obj({"scope": _STR}, ["scope"])),
        FunctionSpec("list_groups", "Every scope holding at least one key: {groups}", _obj({}, [])),
        FunctionSpec("list_keys", "The keys of a scope: {keys}", _obj({"scope": _STR}, ["scope"])),
        FunctionSpec(
            "list_entries",
            "One page of a scope's [key, value] pairs: {entries, next_cursor, done}",
            _obj(
                {
                    "scope": _STR,
                    "cursor": {"type": ["string", "null"]},
                    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT},
                },
                ["scope"],
            ),
        ),
        FunctionSpec(
            "compare_and_set",
            "Store new_value only if the entry equals expected_value (absent: only if missing); "
            "returns {outcome, old_value, new_value}",
            _obj({**_SCOPE_KEY, "expected_value": _ANY, "new_value": _ANY}, ["scope", "key", "new_value"]),
        ),
    )
}
assert tuple(SPECS) == FUNCTIONS, "the worker must serve exactly the functions the core knows"

#: Codes that mean "the caller sent something unusable": expected traffic, not a worker fault.
CLIENT_CODES: Final = frozenset(
    {"deserialization_error", "VALUE_TOO_LARGE", "KEY_TOO_LARGE", "UNSUPPORTED", "function_not_found"}
)


class FunctionCallError(Exception):
    """What a ``state::*`` handler raises; the SDK sends ``str(self)`` as the error message.

    The SDK always answers ``invocation_failed``, so the contract § Functions code travels as the message's
    prefix (``SET_ERROR: Failed to set value: …``), as the engine's standalone state worker does.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def client_fault(self) -> bool:
        """``True`` when the caller's input was at fault rather than the store or the worker."""
        return self.code in CLIENT_CODES


def call_error(function: str, exc: BaseException) -> FunctionCallError:
    """Translate what a store call raised into the error the handler reports.

    :param function: the short name (``set``, ``list_entries``, …).
    :returns: a :class:`FunctionCallError` whose text never holds a secret: state errors were
        redacted by the core; anything else is a bug here, reported by type name only.
    """
    if isinstance(exc, StateError):
        return FunctionCallError(exc.code, exc.message)
    return FunctionCallError(
        ERROR_CODES[function],
        f"internal error in the iii-state worker ({type(exc).__name__}); see the worker's log",
    )

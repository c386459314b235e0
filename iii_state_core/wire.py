"""The wire form: decode a ``trigger`` request into a plan, and a plan's result into JSON."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from . import operations as plans
from .errors import DeserializationError, StateError
from .operations import Limits, Plan
from .results import CompareAndSetResult, EntriesPage, SetResult, UpdateResult
from .update_ops import parse_ops
from .values import json_type

FUNCTIONS: Final = (
    "set", "get", "delete", "update", "list", "list_groups",
    "list_keys", "list_entries", "compare_and_set",
)  # fmt: skip
FUNCTION_IDS: Final = tuple(f"state::{name}" for name in FUNCTIONS)


class UnknownFunctionError(StateError, LookupError):
    code = "function_not_found"


_KIND_NAMES: Final[dict[type, str]] = {str: "a string", list: "an array"}


def _field(payload: Mapping[str, Any], name: str, *, kind: type = str) -> Any:
    if name not in payload:
        raise DeserializationError(f"missing field `{name}`")
    value = payload[name]
    if not isinstance(value, kind):
        raise DeserializationError(f"field `{name}` must be {_KIND_NAMES[kind]}, got {json_type(value)}")
    return value


def _set_value(payload: Mapping[str, Any]) -> Any:
    if "value" in payload and "data" in payload:
        raise DeserializationError("give `value` or its old alias `data`, not both")
    if "value" in payload:
        return payload["value"]
    if "data" in payload:
        return payload["data"]
    raise DeserializationError("missing field `value`")


def _list_entries(limits: Limits, p: Mapping[str, Any]) -> Plan:
    cursor = p.get("cursor")
    limit = p.get("limit")
    return plans.list_entries(
        limits,
        _field(p, "scope"),
        cursor,
        plans.DEFAULT_LIST_LIMIT if limit is None else limit,
    )


def _compare_and_set(limits: Limits, p: Mapping[str, Any]) -> Plan:
    if "new_value" not in p:
        raise DeserializationError("missing field `new_value`")
    expected = p["expected_value"] if "expected_value" in p else plans.MISSING
    return plans.compare_and_set(limits, _field(p, "scope"), _field(p, "key"), expected, p["new_value"])


_DECODERS: Final[dict[str, Callable[[Limits, Mapping[str, Any]], Plan]]] = {
    "set": lambda lim, p: plans.set_value(lim, _field(p, "scope"), _field(p, "key"), _set_value(p)),
    "get": lambda lim, p: plans.get_value(lim, _field(p, "scope"), _field(p, "key")),
    "delete": lambda lim, p: plans.delete_value(lim, _field(p, "scope"), _field(p, "key")),
    "update": lambda lim, p: plans.update(
        lim, _field(p, "scope"), _field(p, "key"),
        parse_ops(_field(p, "ops", kind=list), max_depth=lim.max_depth),
    ),
    "list": lambda lim, p: plans.list_values(lim, _field(p, "scope")),
    "list_keys": lambda lim, p: plans.list_keys(lim, _field(p, "scope")),
    "list_groups": lambda lim, p: plans.list_groups(lim),
    "list_entries": _list_entries,
    "compare_and_set": _compare_and_set,
}  # fmt: skip


def result_to_wire(function: str, result: Any) -> Any:
    """The JSON result contract § Functions gives for ``function``."""
    if isinstance(result, (SetResult, UpdateResult, EntriesPage, CompareAndSetResult)):
        return result.to_wire()
    if function == "list_groups":
        return {"groups": result}
    if function == "list_keys":
        return {"keys": result}
    return result


def decode_request(limits: Limits, request: object) -> tuple[str, Plan]:
    """Turn ``{"function_id": "state::…", "payload": {...}}`` into ``(function, plan)``.

    :raises UnknownFunctionError: when the function id is not one of the nine.
    :raises DeserializationError: when the request or payload has the wrong shape.
    """
    if type(request) is not dict and not isinstance(request, Mapping):  # exact dict: skip the ABC check
        raise DeserializationError(f"request must be an object, got {json_type(request)}")
    function_id = request.get("function_id")
    if not isinstance(function_id, str) or not function_id.startswith("state::"):
        raise UnknownFunctionError(
            f"function_id {function_id!r} is not a state function; use one of {', '.join(FUNCTION_IDS)}"
        )
    function = function_id[len("state::") :]
    payload = request.get("payload", {})
    return function, decode_payload(limits, function, payload)


def decode_payload(limits: Limits, function: str, payload: object) -> Plan:
    decoder = _DECODERS.get(function)
    if decoder is None:
        raise UnknownFunctionError(
            f"state::{function} is not a state function; use one of {', '.join(FUNCTION_IDS)}"
        )
    if payload is None:
        payload = {}
    if type(payload) is not dict and not isinstance(payload, Mapping):
        raise DeserializationError(f"payload must be an object, got {json_type(payload)}")
    return decoder(limits, payload)

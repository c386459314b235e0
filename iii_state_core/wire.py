"""The wire form: decode a ``trigger`` request into a plan, and a plan's result into JSON.

Both follow from the function table (:mod:`iii_state_core.functions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from .errors import DeserializationError, StateError
from .functions import StateFunctions  # noqa: F401  (declares the built-ins into the table)
from .namespaces import ReservedScopes
from .operations import Limits, Plan
from .table import TABLE, StateFunction, UnknownFunctionError, function, function_ids
from .values import json_type

#: The built-in functions' short names and ids (the table may hold more: see ``table.TABLE``).
FUNCTIONS: Final = tuple(TABLE)
FUNCTION_IDS: Final = tuple(f"state::{name}" for name in FUNCTIONS)
_PREFIX_LENGTH: Final = len("state::")

__all__ = [
    "FUNCTIONS", "FUNCTION_IDS", "UnknownFunctionError", "decode_payload", "decode_request", "result_to_wire",
]  # fmt: skip


def result_to_wire(function_name: str, result: Any) -> Any:
    """The JSON result contract § Functions gives for ``function_name``."""
    return TABLE[function_name].to_wire(result)


def decode_request(
    limits: Limits, request: object, reserved: ReservedScopes | None = None
) -> tuple[str, Plan]:
    """Turn ``{"function_id": "state::…", "payload": {...}}`` into ``(function, plan)``.

    :raises UnknownFunctionError: when the function id is not in the table.
    :raises DeserializationError: when the request or payload has the wrong shape.
    """
    declared, plan = decode_call(limits, request, reserved)
    return declared.id, plan


def decode_call(
    limits: Limits, request: object, reserved: ReservedScopes | None = None
) -> tuple[StateFunction[Any, Any], Plan]:
    """:func:`decode_request`, giving the declaration itself (the stores' ``trigger`` encodes
    the result with it, without looking it up again)."""
    if type(request) is not dict and not isinstance(request, Mapping):  # exact dict: skip the ABC check
        raise DeserializationError(f"request must be an object, got {json_type(request)}")
    function_id = request.get("function_id")
    if not isinstance(function_id, str) or not function_id.startswith("state::"):
        raise UnknownFunctionError(
            f"function_id {function_id!r} is not a state function; use one of {', '.join(function_ids())}"
        )
    name = function_id[_PREFIX_LENGTH:]
    declared = TABLE.get(name) or function(name)  # `function` raises, naming them
    payload = request.get("payload", {})
    if reserved is not None and (type(payload) is dict or isinstance(payload, Mapping)):
        # iii's worker checks this before anything else on every function with a scope
        if declared.scope_field_only:  # the usual: one field, one set look-up, no call
            scope = payload.get("scope")
            if isinstance(scope, str) and scope in reserved.scopes:
                reserved.check(scope)
        else:
            for where, scope in declared.scopes_in(payload):
                try:
                    reserved.check(scope)
                except StateError as exc:
                    raise StateError(f"{where}{exc.message}", code=exc.code) from None
    return declared, _decode(limits, declared, payload)


def decode_payload(limits: Limits, function_name: str, payload: object) -> Plan:
    return _decode(limits, function(function_name), payload)


def _decode(limits: Limits, declared: StateFunction[Any, Any], payload: object) -> Plan:
    if payload is None:
        payload = {}
    if type(payload) is not dict and not isinstance(payload, Mapping):
        raise DeserializationError(f"payload must be an object, got {json_type(payload)}")
    return declared.decode(limits, payload)

"""``state::claim-namespace`` and the ``<prefix>::state::*`` accessors of claimed scopes, as the
worker serves them (they need the engine: it names the caller, and it routes the accessors)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from .. import operations as plans
from .. import paging, swap
from ..driver import run_async
from ..errors import BackendError, DeserializationError, StateError
from ..functions import DURABLE
from ..namespaces import accessor_ids, caller_name, check_claim, check_owner, claim
from ..operations import Plan
from ..store import AsyncStateStore
from ..values import json_type
from ..wire import result_to_wire

#: How long the engine may take to list its workers (as iii's worker waits).
LOOKUP_TIMEOUT_MS: Final = 5000
ACCESSOR_METADATA: Final = {"internal": True, "trace_hidden": True}
#: ``call(function_id, payload, timeout_ms)``: a call through the engine.
EngineCall = Callable[[str, Any, int], Awaitable[Any]]


def _required(payload: Any, name: str) -> Any:
    if not isinstance(payload, dict):
        raise DeserializationError(f"invalid type: {json_type(payload)}, expected an object")
    if name not in payload:
        raise DeserializationError(f"missing field `{name}`")
    return payload[name]


def _claim_plan(prefix: str, scopes: list[str]) -> Plan:
    outcome = yield from claim(prefix, scopes)
    return outcome, None


async def claim_namespace(
    store: AsyncStateStore, payload: Any, engine: EngineCall
) -> tuple[dict[str, Any], bool]:
    """Serve one claim. :returns: the wire result, and whether accessors should be registered."""
    prefix, scopes, caller = check_claim(
        _required(payload, "functions_prefix"), _required(payload, "scopes"), payload.get("_caller_worker_id")
    )
    try:
        workers = await engine("engine::workers::list", {}, LOOKUP_TIMEOUT_MS)
    except Exception as exc:
        raise StateError(str(exc) or type(exc).__name__, code="CALLER_LOOKUP_ERROR") from None
    check_owner(caller_name(workers, caller), prefix)
    if not scopes:
        await store.refresh_reserved()
        owned = sorted(store.reserved.ledger.namespaces.get(prefix, set()))
        return {"claimed": False, "scopes": owned, "functions": accessor_ids(prefix)}, False
    try:
        result, ledger = await store._run("claim-namespace", _claim_plan(prefix, scopes))
    except BackendError as exc:  # the store failed: the scopes stay as they were, or reserved
        raise StateError(str(exc), code="CLAIM_PERSIST_ERROR") from None
    store.reserved.replace(ledger)
    return result, True


def _owned_scope(store: AsyncStateStore, prefix: str, payload: Any) -> str:
    scope = _required(payload, "scope")
    if not isinstance(scope, str):
        raise DeserializationError(f"invalid type: {json_type(scope)}, expected a string for `scope`")
    if not store.reserved.owned_by(prefix, scope):
        raise StateError(f"`{scope}` is not private state of namespace `{prefix}`", code="INVALID_SCOPE")
    return scope


def _key(payload: dict[str, Any]) -> str:
    key = _required(payload, "key")
    if not isinstance(key, str):
        raise DeserializationError(f"invalid type: {json_type(key)}, expected a string for `key`")
    return key


async def serve_accessor(store: AsyncStateStore, prefix: str, name: str, payload: Any) -> Any:
    """One call of ``<prefix>::state::<name>``; reads the owned set per call, emits no event."""
    if store.reserved.stale():
        await store.refresh_reserved()
    scope = _owned_scope(store, prefix, payload)
    limits = store.limits
    plan: Plan
    function = name
    if name == "get":
        plan = plans.get_value(limits, scope, _key(payload))
    elif name == "list":
        plan = plans.list_values(limits, scope)
    elif name == "list_keys":
        plan = plans.list_keys(limits, scope)
    elif name == "compare-and-set":
        if "value" not in payload:
            raise DeserializationError("missing field `value`")
        options: dict[str, Any] = {}
        DURABLE.take(payload, options)
        plan = swap.compare_and_set(
            limits, scope, _key(payload), payload.get("expected"), payload["value"], **options
        )
    else:
        request = paging.PageRequest.parse(
            namespace=prefix,
            scope=scope,
            caller=payload.get("_caller_worker_id"),
            limit=payload.get("limit"),
            max_bytes=payload.get("max_bytes"),
            non_null_only=payload.get("non_null_only", False),
        )
        plan = paging.list_entries(limits, request, payload.get("cursor"))
    # run_async directly: private writes emit no event and skip the reserved check
    result, _ = await run_async(plan, store.async_adapter, function, store._describe, store._secrets)
    return result_to_wire(function, result)

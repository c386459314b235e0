"""The function table: every built-in ``state::*`` function, declared once.

To add a function, declare it here (id, fields, error code and failure text, plan, result
form, docs row, optional CLI command) and write its plan; ``trigger``, both stores' typed
methods, the worker, the CLI and the docs table follow from the declaration (see
:mod:`iii_state_core.table`; ``table.markdown_table()`` prints the docs table).
"""

from __future__ import annotations

import builtins
from typing import Any

from . import barrier, paging, swap
from . import batch as batches
from . import operations as plans
from . import transact as transactions
from .operations import Limits, Plan
from .results import CompareAndSetResult, EntriesPage, SetResult, TtlResult, UpdateResult
from .table import ANY, STRING, Command, Field, StateFunction
from .update_ops import parse_ops
from .values import JSON

SCOPE = Field("scope", STRING, kind=str)
KEY = Field("key", STRING, kind=str)
VALUE = Field("value", ANY, aliases=("data",), json=True)
OPS = Field("ops", {"type": "array", "items": {"type": "object"}}, kind=list, json=True)
CURSOR = Field("cursor", {"type": ["string", "null"]}, required=False)
_TTL_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 2**53}
#: On a write: ``null`` or absent = no expiry (set) / keep the entry's expiry (update, compare-and-set).
TTL_MS = Field("ttl_ms", _TTL_SCHEMA, required=False, null_is_absent=True, json=True)
#: On ``state::expire``: required; ``null`` removes the expiry.
NEW_TTL_MS = Field("ttl_ms", {"type": ["integer", "null"], "minimum": 1, "maximum": 2**53}, json=True)
LIMIT = Field(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": plans.MAX_LIST_LIMIT},
    required=False,
    null_is_absent=True,
)
MAX_BYTES = Field(
    "max_bytes",
    {"type": "integer", "minimum": paging.MIN_MAX_BYTES, "maximum": paging.MAX_MAX_BYTES},
    required=False,
    null_is_absent=True,
    wire_default=paging.DEFAULT_MAX_BYTES,
    has_wire_default=True,
)
#: Stamped by the engine on every call; a wire payload without it is UNKNOWN_CALLER.
CALLER = Field(
    "_caller_worker_id", STRING, required=False, null_is_absent=True, param="caller",
    wire_default="", has_wire_default=True,
)  # fmt: skip
#: Absent on the wire = ``null`` = "expect absent (or a stored null)"; the typed method takes it first.
EXPECTED = Field("expected", ANY, required=False, wire_default=None, has_wire_default=True, json=True)
CONDITIONS = Field("conditions", {"type": "array", "items": {"type": "object"}}, required=False, json=True)
_BATCH_SCHEMA = {"type": "array", "items": {"type": "object", "required": ["op"]}}
BATCH_OPS = Field("ops", _BATCH_SCHEMA, kind=list, json=True)
SWAP_VALUE = Field("value", ANY, json=True)  # no `data` alias here, as in iii's worker
DURABLE = Field("durable", {"type": "boolean"}, required=False, kind=bool)


# -- plans whose typed signature differs from the core plan's ------------------------------------
def _update(
    limits: Limits, scope: str, key: str, ops: builtins.list[dict[str, Any]], ttl_ms: int | None = None
) -> Plan:
    """Apply wire-shaped ops (``{"type": "increment", "path": "n", "by": 1}``) atomically."""
    return plans.update(limits, scope, key, parse_ops(ops, max_depth=limits.max_depth), ttl_ms)


def _compare_and_set(
    limits: Limits,
    scope: str,
    key: str,
    expected: JSON,
    value: JSON,
    ttl_ms: int | None = None,
    durable: bool = False,
) -> Plan:
    """Store ``value`` only if the entry equals ``expected`` (``None``: missing or null)."""
    return swap.compare_and_set(limits, scope, key, expected, value, ttl_ms, durable)


def _barrier(limits: Limits, envelope: dict[str, Any]) -> Plan:
    """Record one arrival ``{event, condition_config}``; ``allow`` once every arrival came."""
    return barrier.barrier(limits, envelope)


def _decision(decision: dict[str, Any]) -> dict[str, Any]:
    return decision


# -- result forms ----------------------------------------------------------------------------------
def _value(value: JSON) -> JSON:
    return value


def _values(values: builtins.list[JSON]) -> builtins.list[JSON]:
    return values


def _groups(groups: builtins.list[str]) -> dict[str, Any]:
    return {"groups": groups}


def _keys(keys: builtins.list[str]) -> dict[str, Any]:
    return {"keys": keys}


def _existed(existed: bool) -> dict[str, Any]:
    return {"existed": existed}


class StateFunctions:
    """The built-in functions; each attribute is also the stores' typed method of that name."""

    set = StateFunction(
        "set",
        description="Store a JSON value at scope/key; returns {old_value, new_value}",
        plan=plans.set_value,
        fields=[SCOPE, KEY, VALUE, TTL_MS],
        result=SetResult.to_wire,
        error_code="SET_ERROR",
        failure_text="Failed to set value",
        payload_doc="`{scope, key, value, ttl_ms?}` (`data` accepted as an old alias of `value`; "
        "`ttl_ms`: see § Expiry, absent = no expiry)",
        result_doc="`{old_value, new_value}`; `old_value` is `null` when the key was new",
        command=Command("set", "Store VALUE (JSON) at SCOPE/KEY; print {old_value, new_value}."),
    )
    get = StateFunction(
        "get",
        description="Read the value at scope/key (null when missing)",
        plan=plans.get_value,
        fields=[SCOPE, KEY],
        result=_value,
        error_code="GET_ERROR",
        failure_text="Failed to get value",
        payload_doc="`{scope, key}`",
        result_doc="the value, or `null` when missing",
        command=Command("get", "Print the value at SCOPE/KEY (null when missing)."),
    )
    delete = StateFunction(
        "delete",
        description="Delete scope/key; returns the value removed (or null)",
        plan=plans.delete_value,
        fields=[SCOPE, KEY],
        result=_value,
        error_code="DELETE_ERROR",
        failure_text="Failed to delete value",
        payload_doc="`{scope, key}`",
        result_doc="the value that was removed (bare, not wrapped), or `null`",
        command=Command("delete", "Delete SCOPE/KEY; print the value removed (null when missing)."),
    )
    update = StateFunction(
        "update",
        description="Apply update ops atomically; returns {old_value, new_value, errors?}",
        plan=_update,
        fields=[SCOPE, KEY, OPS, TTL_MS],
        result=UpdateResult.to_wire,
        error_code="UPDATE_ERROR",
        failure_text="Failed to update value",
        payload_doc="`{scope, key, ops, ttl_ms?}` (`ttl_ms` absent = keep the entry's expiry)",
        result_doc="`{old_value, new_value}` plus `errors` only when some op failed",
        command=Command("update", "Apply OPS (a JSON list of update ops) to SCOPE/KEY atomically."),
    )
    list = StateFunction(
        "list",
        description="The values of a scope, as an array",
        plan=plans.list_values,
        fields=[SCOPE],
        result=_values,
        error_code="LIST_ERROR",
        failure_text="Failed to list values",
        payload_doc="`{scope}`",
        result_doc="array of the scope's values (no keys); `[]` for an unknown scope",
        command=Command("list", "Print the values of SCOPE as a JSON array."),
    )
    list_groups = StateFunction(
        "list_groups",
        description="Every scope holding at least one key: {groups}",
        plan=plans.list_groups,
        fields=[],
        result=_groups,
        error_code="LIST_GROUPS_ERROR",
        failure_text="Failed to list groups",
        payload_doc="`{}`",
        result_doc="`{groups: [...]}`: every scope holding at least one key, deduplicated, sorted by "
        "code point (**fix**: the engine's file store kept emptied scopes)",
        command=Command("groups", "Print every scope that holds at least one key."),
    )
    list_keys = StateFunction(
        "list_keys",
        description="The keys of a scope: {keys}",
        plan=plans.list_keys,
        fields=[SCOPE],
        result=_keys,
        error_code="LIST_KEYS_ERROR",
        failure_text="Failed to list keys",
        payload_doc="`{scope}`",
        result_doc="`{keys: [...]}`",
        extension=True,
        command=Command("keys", "Print the keys of SCOPE as a JSON array."),
    )
    list_entries = StateFunction(
        "list_entries",
        description="One page of a scope's [key, value] pairs: {entries, next_cursor, done, offset, total}",
        plan=paging.list_entries_page,
        fields=[SCOPE, CURSOR, LIMIT, MAX_BYTES, CALLER],
        result=EntriesPage.to_wire,
        error_code="LIST_ENTRIES_ERROR",
        failure_text="Failed to list entries",
        payload_doc="`{scope, cursor?, limit?, max_bytes?}` + the engine-stamped `_caller_worker_id` "
        "(limit 1–1000, default 100; max_bytes 256–8,000,000, default 1,000,000)",  # noqa: RUF001
        result_doc="`{entries: [[key, value], …], next_cursor, done, offset, total}` "
        "(contract § Listing pages); memory stays bounded by `limit`; cursors survive restarts and "
        "work on any replica",
        extension=True,
    )
    compare_and_set = StateFunction(
        "compare-and-set",
        description="Store value only if the entry equals expected (absent or null: only if missing "
        "or null); returns {swapped, current?}",
        plan=_compare_and_set,
        fields=[SCOPE, KEY, EXPECTED, SWAP_VALUE, TTL_MS, DURABLE],
        result=CompareAndSetResult.to_wire,
        error_code="CAS_ERROR",
        failure_text="Failed to compare-and-set value",
        payload_doc="`{scope, key, expected?, value, ttl_ms?, durable?}`; `expected` absent or `null` means "
        '"only if missing or stored `null`"; no `data` alias; `ttl_ms` absent = keep the entry\'s expiry; '
        "`durable: true`: answer only once the outcome survives a crash (§ Compare-and-set)",
        result_doc="`{swapped: true}` or `{swapped: false, current}`; JSON equality (key order "
        "irrelevant, `1` ≠ `1.0`); a swap emits `created`/`updated`, a miss nothing",
        extension=True,
    )
    barrier = StateFunction(
        "barrier",
        description="Fan-in condition: allow once every expected arrival came; "
        "config {id, expect, key_from?, carry?}",
        plan=_barrier,
        fields=None,
        result=_decision,
        error_code="BARRIER_ERROR",
        failure_text="Failed to record the barrier arrival",
        payload_doc="`{event?, condition_config?: {id, expect, key_from?, carry?}}`",
        result_doc='`{decision: "allow", payload: {results}, reason}` exactly once per id, else '
        '`{decision: "skip", reason}` (contract § Barrier)',
        extension=True,
    )
    expire = StateFunction(
        "expire",
        description="Set (ttl_ms) or remove (ttl_ms null) the expiry of a live entry: {existed}",
        plan=plans.expire,
        fields=[SCOPE, KEY, NEW_TTL_MS],
        result=_existed,
        error_code="EXPIRE_ERROR",
        failure_text="Failed to set expiry",
        payload_doc="`{scope, key, ttl_ms}`; `ttl_ms: null` removes the expiry (§ Expiry)",
        result_doc="`{existed}`: whether a live entry was there (nothing is created); no event",
        extension=True,
        command=Command("expire", "Expire SCOPE/KEY TTL_MS milliseconds from now (null: never)."),
    )
    ttl = StateFunction(
        "ttl",
        description="The time left before an entry expires: {exists, ttl_ms}",
        plan=plans.time_to_live,
        fields=[SCOPE, KEY],
        result=TtlResult.to_wire,
        error_code="TTL_ERROR",
        failure_text="Failed to read expiry",
        payload_doc="`{scope, key}`",
        result_doc="`{exists, ttl_ms}`: `exists: false, ttl_ms: null` for a missing or expired key; "
        "`ttl_ms: null` for an entry without expiry, else the milliseconds left (≥ 1)",
        extension=True,
        command=Command("ttl", "Print {exists, ttl_ms} of SCOPE/KEY."),
    )
    batch = StateFunction(
        "batch",
        description="Run many get/set/delete/update/compare-and-set calls in one request; one result "
        "or error per operation, in order",
        plan=batches.batch,
        fields=[BATCH_OPS],
        result=batches.items_to_wire,
        error_code="BATCH_ERROR",
        failure_text="Failed to run the batch",
        payload_doc="`{ops: [{op, scope, key, …that function's fields}, …]}`; `op` is one of `get`, "
        "`set`, `delete`, `update`, `compare-and-set`; at most the adapter's `max_batch_ops` "
        "(default 1000) operations (contract § Batches)",
        result_doc="one item per operation, in order: the single function's result, or "
        "`{error: {code, message}}`; each operation atomic on its own, events as the single calls",
        extension=True,
        scopes_in=batches.scopes_of,
    )
    transact = StateFunction(
        "transact",
        description="Apply several set/delete/update writes all or nothing, if every condition holds",
        plan=transactions.transact,
        fields=[OPS, CONDITIONS],
        result=transactions.TransactResult.to_wire,
        error_code="TRANSACT_ERROR",
        failure_text="Failed to run the transaction",
        payload_doc="`{ops: [{op: set|delete|update, scope, key, …}], conditions?: [{scope, key, "
        "expected?}]}`; each entry written once; at most `max_transaction_ops` (default 100) ops + "
        "conditions; adapters with capability `transactions` only (contract § Transactions)",
        result_doc="`{committed: true, results: [...]}` (each write's single-call result) or `{committed: "
        "false, failed_condition, current}`; nothing applied unless committed; events after the commit",
        extension=True,
        scopes_in=transactions.scopes_of,
    )

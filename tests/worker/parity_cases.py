"""The wire surface of iii's standalone ``state`` worker, as cases: what each call answers, which
error text it fails with, which events it emits and what it leaves stored.

Written from that worker's public code and iii's docs, in our own words. Each case starts on an
empty store, writes ``given`` directly, makes ``calls`` in order and checks each answer:

- ``result``: the exact JSON result;
- ``error``: the exact ``CODE: message`` text (``error_prefix``: the text starts so — for
  serde-worded decoding errors and backend details);
- ``events``: the events that call emits, in order (``[]``: none);
- ``stored``: ``{scope: {key: value}}`` that must hold after the case (``None``: key absent).

``CALLER`` stands for the engine-stamped ``_caller_worker_id`` (the worker test lets the engine
stamp it; ``store.trigger`` callers pass it themselves).
"""

from __future__ import annotations

from typing import Any

CALLER = "worker-under-test"


def ev(kind: str, scope: str, key: str, old: Any, new: Any) -> dict[str, Any]:
    return {"type": "state", "event_type": f"state:{kind}", "scope": scope, "key": key,
            "old_value": old, "new_value": new}  # fmt: skip


def call(function: str, payload: dict[str, Any], **expect: Any) -> dict[str, Any]:
    return {"function_id": function, "payload": payload, **expect}


RESERVED = "RESERVED_SCOPE: `{}` is private worker bookkeeping"
PAGE_LIMITS = "INVALID_PAGE_LIMITS: limit=1..1000, max_bytes=256..8000000, scope/namespace<=1024 bytes"
NO_CALLER = "UNKNOWN_CALLER: list_entries requires engine-stamped identity"
BAD_CURSOR = "INVALID_CURSOR: invalid, expired or consumed cursor; restart without cursor"

CASES: list[dict[str, Any]] = [
    # -- §2.1 set / get / delete / update ---------------------------------------------------------
    {
        "name": "set a new key",
        "calls": [
            call(
                "state::set",
                {"scope": "s", "key": "k", "value": {"a": 1}},
                result={"old_value": None, "new_value": {"a": 1}},
                events=[ev("created", "s", "k", None, {"a": 1})],
            ),
        ],
        "stored": {"s": {"k": {"a": 1}}},
    },
    {
        "name": "set over a value",
        "given": [["s", "k", 1]],
        "calls": [
            call(
                "state::set",
                {"scope": "s", "key": "k", "value": 2},
                result={"old_value": 1, "new_value": 2},
                events=[ev("updated", "s", "k", 1, 2)],
            ),
        ],
    },
    {
        "name": "set over a stored null is an update",
        "given": [["s", "k", None]],
        "calls": [
            call(
                "state::set",
                {"scope": "s", "key": "k", "value": 2},
                result={"old_value": None, "new_value": 2},
                events=[ev("updated", "s", "k", None, 2)],
            ),
        ],
    },
    {
        "name": "set accepts the data alias",
        "calls": [
            call(
                "state::set",
                {"scope": "s", "key": "k", "data": [1]},
                result={"old_value": None, "new_value": [1]},
                events=[ev("created", "s", "k", None, [1])],
            ),
        ],
    },
    {
        "name": "set without value",
        "calls": [
            call(
                "state::set",
                {"scope": "s", "key": "k"},
                error_prefix="deserialization_error: missing field `value`",
                events=[],
            ),
        ],
        "stored": {"s": {"k": None}},
    },
    {
        "name": "get a missing key and a stored null",
        "given": [["s", "n", None]],
        "calls": [
            call("state::get", {"scope": "s", "key": "missing"}, result=None, events=[]),
            call("state::get", {"scope": "s", "key": "n"}, result=None, events=[]),
        ],
    },
    {
        "name": "delete returns the bare value",
        "given": [["s", "k", {"v": 1}]],
        "calls": [
            call(
                "state::delete",
                {"scope": "s", "key": "k"},
                result={"v": 1},
                events=[ev("deleted", "s", "k", {"v": 1}, None)],
            ),
        ],
        "stored": {"s": {"k": None}},
    },
    {
        "name": "delete of a missing key still emits",
        "calls": [
            call(
                "state::delete",
                {"scope": "s", "key": "k"},
                result=None,
                events=[ev("deleted", "s", "k", None, None)],
            ),
        ],
    },
    {
        "name": "update creates from {}",
        "calls": [
            call(
                "state::update",
                {"scope": "s", "key": "c", "ops": [{"type": "increment", "path": "n", "by": 2}]},
                result={"old_value": None, "new_value": {"n": 2}},
                events=[ev("created", "s", "c", None, {"n": 2})],
            ),
        ],
    },
    {
        "name": "update writes back even when an op failed",
        "given": [["s", "c", {"n": "x"}]],
        "calls": [
            call(
                "state::update",
                {"scope": "s", "key": "c", "ops": [{"type": "increment", "path": "n", "by": 1}]},
                result_fields=["old_value", "new_value", "errors"],
                events=[ev("updated", "s", "c", {"n": "x"}, {"n": "x"})],
            ),
        ],
    },
    # -- §2.1 listing -----------------------------------------------------------------------------
    {
        "name": "list of an unknown scope",
        "calls": [call("state::list", {"scope": "nope"}, result=[], events=[])],
    },
    {
        "name": "list_keys shape",
        "given": [["s", "a", 1], ["s", "b", 2]],
        "calls": [
            call("state::list_keys", {"scope": "s"}, result_sorted={"keys": ["a", "b"]}, events=[]),
        ],
    },
    {
        "name": "list_groups sorted, reserved scopes left out",
        "given": [
            ["b", "k", 1],
            ["a", "k", 1],
            ["state_barrier", "x", {"arrived": {}, "complete": False}],
        ],
        "calls": [call("state::list_groups", {}, result={"groups": ["a", "b"]}, events=[])],
    },
    # -- reserved scopes on every public call -----------------------------------------------------
    *[
        {
            "name": f"{fn} on a reserved scope",
            "calls": [
                call(
                    f"state::{fn}",
                    {"scope": scope, "key": "k", "value": 1, "ops": [], "_caller_worker_id": CALLER},
                    error=RESERVED.format(scope),
                    events=[],
                ),
            ],
            "stored": {scope: {"k": None}},
        }
        for fn in ("set", "get", "delete", "update", "list", "list_keys", "list_entries", "compare-and-set")
        for scope in ("state_barrier", "__state_private_namespaces")
    ],
    # -- §2.1 / §4 compare-and-set ----------------------------------------------------------------
    {
        "name": "cas expect absent on a missing key swaps",
        "calls": [
            call(
                "state::compare-and-set",
                {"scope": "s", "key": "k", "value": 1},
                result={"swapped": True},
                events=[ev("created", "s", "k", None, 1)],
            ),
        ],
        "stored": {"s": {"k": 1}},
    },
    {
        "name": "cas expected null also means absent",
        "calls": [
            call(
                "state::compare-and-set",
                {"scope": "s", "key": "k", "expected": None, "value": 1},
                result={"swapped": True},
                events=[ev("created", "s", "k", None, 1)],
            ),
        ],
    },
    {
        "name": "cas on a stored null with expect absent is an update",
        "given": [["s", "k", None]],
        "calls": [
            call(
                "state::compare-and-set",
                {"scope": "s", "key": "k", "value": 1},
                result={"swapped": True},
                events=[ev("updated", "s", "k", None, 1)],
            ),
        ],
    },
    {
        "name": "cas miss returns current and writes nothing",
        "given": [["s", "k", 1]],
        "calls": [
            call(
                "state::compare-and-set",
                {"scope": "s", "key": "k", "value": 2},
                result={"swapped": False, "current": 1},
                events=[],
            ),
            call(
                "state::compare-and-set",
                {"scope": "s", "key": "k", "expected": 1.0, "value": 2},
                result={"swapped": False, "current": 1},
                events=[],
            ),
        ],
        "stored": {"s": {"k": 1}},
    },
    {
        "name": "cas miss on a missing key",
        "calls": [
            call(
                "state::compare-and-set",
                {"scope": "s", "key": "k", "expected": 5, "value": 6},
                result={"swapped": False, "current": None},
                events=[],
            ),
        ],
        "stored": {"s": {"k": None}},
    },
    {
        "name": "cas match ignores object key order",
        "given": [["s", "k", {"a": 1, "b": 2}]],
        "calls": [
            call(
                "state::compare-and-set",
                {"scope": "s", "key": "k", "expected": {"b": 2, "a": 1}, "value": 3},
                result={"swapped": True},
                events=[ev("updated", "s", "k", {"a": 1, "b": 2}, 3)],
            ),
        ],
    },
    {
        "name": "cas has no data alias",
        "calls": [
            call(
                "state::compare-and-set",
                {"scope": "s", "key": "k", "data": 1},
                error_prefix="deserialization_error: missing field `value`",
                events=[],
            ),
        ],
        "stored": {"s": {"k": None}},
    },
    {
        "name": "cas durable must be a boolean",
        "calls": [
            call(
                "state::compare-and-set",
                {"scope": "s", "key": "k", "value": 1, "durable": "yes"},
                error_prefix="deserialization_error: field `durable` must be a boolean",
                events=[],
            ),
        ],
        "stored": {"s": {"k": None}},
    },
    # -- §3 list_entries --------------------------------------------------------------------------
    {
        "name": "list_entries one final page",
        "given": [["s", "a", 1], ["s", "b", 2]],
        "calls": [
            call(
                "state::list_entries",
                {"scope": "s", "_caller_worker_id": CALLER},
                result={
                    "entries": [["a", 1], ["b", 2]],
                    "next_cursor": None,
                    "done": True,
                    "offset": 0,
                    "total": 2,
                },
                events=[],
            ),
        ],
    },
    {
        "name": "list_entries of an unknown scope",
        "calls": [
            call(
                "state::list_entries",
                {"scope": "none", "_caller_worker_id": CALLER},
                result={"entries": [], "next_cursor": None, "done": True, "offset": 0, "total": 0},
            ),
        ],
    },
    *[
        {
            "name": f"list_entries refuses {bad}",
            "calls": [
                call(
                    "state::list_entries",
                    {"scope": "s", "_caller_worker_id": CALLER, **bad},
                    error=PAGE_LIMITS,
                ),
            ],
        }
        for bad in (
            {"limit": 0},
            {"limit": 1001},
            {"max_bytes": 255},
            {"max_bytes": 8_000_001},
            {"scope": "x" * 1025},
        )
    ],
    {
        "name": "list_entries limit -1 fails in decoding",
        "calls": [
            call(
                "state::list_entries",
                {"scope": "s", "limit": -1, "_caller_worker_id": CALLER},
                error_prefix="deserialization_error: invalid value",
            ),
        ],
    },
    {
        "name": "list_entries without a caller",
        "calls": [
            call("state::list_entries", {"scope": "s"}, error=NO_CALLER, unstamped=True),
            call(
                "state::list_entries",
                {"scope": "s", "_caller_worker_id": ""},
                error=NO_CALLER,
                unstamped=True,
            ),
        ],
    },
    {
        "name": "list_entries forged cursor",
        "calls": [
            call(
                "state::list_entries",
                {"scope": "s", "cursor": "00000000-0000-0000-0000-000000000000", "_caller_worker_id": CALLER},
                error=BAD_CURSOR,
            ),
        ],
    },
    {
        "name": "list_entries row too large",
        "given": [["s", "k", "v" * 400]],
        "calls": [
            call(
                "state::list_entries",
                {"scope": "s", "max_bytes": 256, "_caller_worker_id": CALLER},
                error="ROW_TOO_LARGE: a complete keyed row does not fit the page byte budget",
            ),
        ],
    },
    # -- §2.2 barrier -----------------------------------------------------------------------------
    {
        "name": "barrier counted to completion",
        "calls": [
            call(
                "state::barrier",
                {"event": {"key": "a"}, "condition_config": {"id": "b", "expect": 2}},
                result={"decision": "skip", "reason": "barrier `b`: 1/2 arrived, waiting on 1 more"},
                events=[],
            ),
            call(
                "state::barrier",
                {"event": {"key": "b"}, "condition_config": {"id": "b", "expect": 2}},
                result={
                    "decision": "allow",
                    "payload": {"results": {"a": {"key": "a"}, "b": {"key": "b"}}},
                    "reason": "barrier `b` complete (2/2)",
                },
                events=[],
            ),
            call(
                "state::barrier",
                {"event": {"key": "c"}, "condition_config": {"id": "b", "expect": 2}},
                result={"decision": "skip", "reason": "barrier `b` already complete"},
                events=[],
            ),
        ],
    },
    {
        "name": "barrier without condition_config",
        "calls": [
            call(
                "state::barrier",
                {"event": {"key": "a"}},
                error="BARRIER_CONFIG: state::barrier needs `condition_config` "
                "{ id, expect, key_from?, carry? } — as a binding it goes in "
                "`conditions: [{ function_id, config }]`",
            ),
        ],
    },
    {
        "name": "barrier config without id",
        "calls": [
            call(
                "state::barrier",
                {"event": {"key": "a"}, "condition_config": {"expect": 1}},
                error_prefix="deserialization_error: missing field `id`",
            ),
        ],
        "stored": {"state_barrier": {"": None}},
    },
    {
        "name": "barrier expect too large",
        "calls": [
            call(
                "state::barrier",
                {"event": {"key": "a"}, "condition_config": {"id": "x", "expect": 10001}},
                error="BARRIER_ERROR: barrier `x`: `expect` cannot exceed 10000 arrivals",
            ),
        ],
    },
    # -- §2.3 claim-namespace ---------------------------------------------------------------------
    {
        "name": "claim with a bad prefix",
        "calls": [
            call(
                "state::claim-namespace",
                {"functions_prefix": "a b", "scopes": ["x"]},
                error="INVALID_PREFIX: functions_prefix must be non-empty [A-Za-z0-9_-]",
            ),
        ],
    },
    {
        "name": "claim a built-in reserved scope",
        "calls": [
            call(
                "state::claim-namespace",
                {"functions_prefix": "p", "scopes": ["state_barrier"]},
                error="RESERVED_SCOPE: `state_barrier` is state worker bookkeeping",
            ),
        ],
    },
]

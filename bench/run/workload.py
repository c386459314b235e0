"""The one workload every adapter and every raw client runs: data, update ops, and their raw form."""

from __future__ import annotations

import json
from typing import Any, Final

#: Entries the point operations (get, set, update) cycle through.
KEYS: Final = 200
#: Entries of the scope that ``list_entries`` pages through.
LISTED: Final = 1000
PAGE: Final = 100
VALUE: Final[dict[str, Any]] = {"n": 1, "name": "alice", "tags": ["a", "b"]}

INCREMENT: Final[list[dict[str, Any]]] = [{"type": "increment", "path": "n", "by": 1}]
#: Ten ops touching every op type; the value does not grow from one call to the next.
TEN_OPS: Final[list[dict[str, Any]]] = [
    {"type": "increment", "path": "n", "by": 1},
    {"type": "decrement", "path": "m", "by": 1},
    {"type": "set", "path": "name", "value": "bob"},
    {"type": "set", "path": "flag", "value": True},
    {"type": "merge", "value": {"seen": True}},
    {"type": "merge", "path": ["profile"], "value": {"city": "Oslo"}},
    {"type": "remove", "path": "tmp"},
    {"type": "set", "path": "tmp", "value": 1},
    {"type": "append", "path": "log", "value": "x"},
    {"type": "remove", "path": "log"},
]


def key(i: int) -> str:
    return f"k{i % KEYS}"


def dumps(value: Any) -> bytes:
    """What a raw client stores: compact JSON, like the core."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def increment(value: dict[str, Any]) -> dict[str, Any]:
    """``INCREMENT`` written by hand, as a raw client would."""
    value["n"] = value.get("n", 0) + 1
    return value


def ten_changes(value: dict[str, Any]) -> dict[str, Any]:
    """``TEN_OPS`` written by hand on a decoded object, as a raw client would."""
    value["n"] = value.get("n", 0) + 1
    value["m"] = value.get("m", 0) - 1
    value["name"] = "bob"
    value["flag"] = True
    value["seen"] = True
    profile = value.get("profile")
    if not isinstance(profile, dict):
        profile = value["profile"] = {}
    profile["city"] = "Oslo"
    value.pop("tmp", None)
    value["tmp"] = 1
    value["log"] = "x"
    value.pop("log")
    return value

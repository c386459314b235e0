"""The ``state`` trigger type as the worker registers it: kept apart from the reactions code so
that ``iii-state worker --dry-run`` can show it without the iii SDK installed."""

from __future__ import annotations

from typing import Any, Final

TRIGGER_TYPE: Final[dict[str, Any]] = {
    "id": "state",
    "description": "Fires after each successful state write (contract § Events event); "
    "config: optional scope, key, condition_function_id",
    "trigger_request_format": {
        "type": "object",
        "properties": {
            "scope": {"type": "string"},
            "key": {"type": "string"},
            "condition_function_id": {"type": "string"},
        },
    },
    "call_request_format": {
        "type": "object",
        "properties": {
            "type": {"const": "state"},
            "event_type": {"enum": ["state:created", "state:updated", "state:deleted", "state:expired"]},
            "scope": {"type": "string"},
            "key": {"type": "string"},
            "old_value": {},
            "new_value": {},
            "expiry_id": {"type": "string"},
        },
    },
}

"""The ``state::*`` functions as the engine sees them: descriptions, request schemas, and
how a failure becomes the ``"<CODE>: <message>"`` text an ``invocation_failed`` error carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ..errors import StateError
from ..table import TABLE, StateFunction
from ..wire import FUNCTIONS


@dataclass(frozen=True)
class FunctionSpec:
    """One function the worker registers, as the engine sees it."""

    name: str
    description: str
    request_format: dict[str, Any]

    @property
    def function_id(self) -> str:
        return f"state::{self.name}"

    @classmethod
    def of(cls, function: StateFunction[Any, Any]) -> FunctionSpec:
        return cls(function.id, function.description, function.request_format())


def specs() -> dict[str, FunctionSpec]:
    """What the worker registers: one spec per function of the table, in its order."""
    return {name: FunctionSpec.of(function) for name, function in TABLE.items()}


#: The built-in functions' specs (``specs()`` also has any registered later).
SPECS: Final[dict[str, FunctionSpec]] = {name: FunctionSpec.of(TABLE[name]) for name in FUNCTIONS}

#: Codes that mean "the caller sent something unusable": expected traffic, not a worker fault.
CLIENT_CODES: Final = frozenset(
    {
        "deserialization_error", "VALUE_TOO_LARGE", "KEY_TOO_LARGE", "function_not_found",
        "RESERVED_SCOPE", "INVALID_PAGE_LIMITS", "UNKNOWN_CALLER", "INVALID_CURSOR", "ROW_TOO_LARGE",
        "BARRIER_CONFIG", "INVALID_PREFIX", "INVALID_SCOPE", "FORBIDDEN", "SCOPE_CONFLICT",
    }
)  # fmt: skip


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
    declared = TABLE.get(function)  # claim-namespace and the accessors are the worker's own
    return FunctionCallError(
        declared.error_code if declared else "STATE_ERROR",
        f"internal error in the iii-state worker ({type(exc).__name__}); see the worker's log",
    )


#: Every function id the worker registers at start: the claim first (as iii's worker does), the
#: state functions, the observed ``state::on-changed``, then ``state::on-config-change`` (bound to
#: the configuration worker's updates). Claimed namespaces add their accessors.
WORKER_FUNCTION_IDS: Final = (
    "state::claim-namespace",
    *(spec.function_id for spec in SPECS.values()),  # the table's, in its order
    "state::on-changed",
    "state::on-config-change",
)

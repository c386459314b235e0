"""The error hierarchy: one root, a wire ``code`` on every error, builtin bases for callers."""

from __future__ import annotations


class StateError(Exception):
    """Root of every error this pack raises.

    ``code`` is the wire code a ``state::*`` call fails with (contract § Functions).
    """

    code: str = "STATE_ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class DeserializationError(StateError, ValueError):
    """A payload field is missing or has the wrong type; nothing was changed."""

    code = "deserialization_error"


class InvalidValueError(DeserializationError):
    """A value is not strict JSON (NaN, out-of-range integer, non-string key, too deep, …)."""


class InvalidCursorError(DeserializationError):
    """A ``list_entries`` cursor was not produced by this store for this scope."""


class ValueTooLargeError(StateError, ValueError):
    """A value serialises larger than ``max_value_bytes`` or the adapter's declared limit."""

    code = "VALUE_TOO_LARGE"


class KeyTooLargeError(StateError, ValueError):
    """A scope or key is longer than the adapter declares it can hold."""

    code = "KEY_TOO_LARGE"


class StoreClosedError(StateError, RuntimeError):
    """The store was closed; nothing was sent. Open a new one."""

    code = "STORE_CLOSED"


class UnsupportedError(StateError, NotImplementedError):
    """The adapter does not declare the capability the call needs (entry expiry on an adapter
    with ``ttl: none``); nothing was written."""

    code = "UNSUPPORTED"


class ConfigError(StateError, ValueError):
    """The configuration cannot be used; the message says which field and what to do."""

    code = "CONFIG_ERROR"


class AdapterNotFoundError(ConfigError, LookupError):
    """No installed plugin registers the adapter name the config asks for."""


class BackendError(StateError, OSError):
    """The store failed; ``code`` is the failing function's ``*_ERROR`` code."""

    code = "BACKEND_ERROR"


class StoredValueError(BackendError):
    """An entry's stored bytes are not strict JSON: another program wrote them.

    The caller's request was fine, so the code is the function's ``*_ERROR``, not
    ``deserialization_error``. Nothing was written; ``set`` or ``delete`` replaces such an entry.
    """


class WriteAppliedError(BackendError):
    """The write was applied, and then something failed: the store holds the new state.

    Raised instead of a plain error so that no failure is ever reported for a write that happened.
    """


class UnknownOutcomeError(BackendError):
    """A write was sent but the connection died before the reply: it may or may not be applied.

    It is never retried automatically, because retrying could apply it twice.
    """


class ConflictError(BackendError):
    """An optimistic write kept losing races until the retry budget ran out; nothing was written."""

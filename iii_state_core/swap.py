"""``state::compare-and-set`` as iii's ``state`` worker answers it.

``{scope, key, expected?, value}`` → ``{"swapped": true}`` or ``{"swapped": false, "current"}``.
``expected`` absent or ``null`` means "expect absent", and a stored ``null`` counts as absent for
the match; otherwise the stored value must equal ``expected`` as JSON (object key order does not
matter, ``1`` is not ``1.0``, ``true`` is not ``1``). A swap emits ``state:created`` when the key
was missing and ``state:updated`` when it was present (a stored ``null`` included), with
``old_value`` = the value replaced. A miss emits nothing and writes nothing.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from .errors import ConflictError
from .operations import Call, Limits, Plan, _decode, sleep_call
from .results import CompareAndSetResult, StateEvent
from .retry import LOST, MAX_ATTEMPTS, Lost, backoff, optimistic
from .values import JSON, canonical_or_none, check_value, plainly_valid, same_json

#: Every swap's result: immutable, so one object serves them all.
SWAPPED = CompareAndSetResult(True)


def matches(stored_raw: bytes | None, stored: JSON, expected: JSON) -> bool:
    """Whether ``expected`` holds for the stored entry (``None`` expects absent or null)."""
    if expected is None:
        return stored_raw is None or stored is None
    return stored_raw is not None and same_json(stored, expected)


def compare_and_set(
    limits: Limits,
    scope: str,
    key: str,
    expected: JSON,
    value: JSON,
    ttl_ms: int | None = None,
    durable: bool = False,
) -> Plan:
    """Write ``value`` only if the entry matches ``expected``; atomic on every adapter.

    ``ttl_ms`` (optional) gives the written entry a new deadline; without it the entry keeps its own.
    ``durable``: the answer (a swap, and the value a miss reports) must survive a crash of this
    process. iii's worker flushes its periodic file save for it; here every acknowledged write of
    an adapter declaring ``durable`` already survives one, and the others refuse (``UNSUPPORTED``).
    """
    limits.check_entry(scope, key)
    data = limits.encode(value)
    if not plainly_valid(expected, 0, limits.max_depth):
        check_value(expected, max_depth=limits.max_depth)
    expires_at = () if ttl_ms is None else limits.expires_at("compare-and-set", ttl_ms)
    if durable:
        limits.check_durable("compare-and-set")

    if limits.value_tokens and expected is not None:
        # The token is the stored bytes: offer the bytes the core stores for ``expected``. They
        # match when the entry holds exactly that (the usual case: a value read, then swapped),
        # and the swap costs one call instead of a read and a write. Otherwise (absent, another
        # value, or the same JSON spelled differently) nothing was written: compare as below.
        offered = canonical_or_none(expected)
        if offered is not None and (yield Call("write_if", (scope, key, data, offered, *expires_at))):
            # The entry held canonical(expected), which decodes to JSON identical to ``expected``
            # (``1`` stays ``1``, ``1.0`` stays ``1.0``): the event reports ``expected`` itself as
            # it reports the caller's ``value``, instead of decoding the bytes again.
            if limits.listening is not None and not limits.listening():
                return SWAPPED, None  # nobody would receive the event: do not build it
            return SWAPPED, StateEvent("state:updated", scope, key, expected, value)
    # retry.optimistic's loop written out: this is a hot path, and each generator layer
    # between the plan and the driver costs every yield of every call
    for n in range(MAX_ATTEMPTS):
        raw, token = yield Call("read_versioned", (scope, key))
        current = _decode("compare-and-set", scope, key, raw)
        if not matches(raw, current, expected):
            return CompareAndSetResult(False, current), None
        if (yield Call("write_if", (scope, key, data, token, *expires_at))):
            kind: Any = "state:created" if raw is None else "state:updated"
            return SWAPPED, StateEvent(kind, scope, key, current, value)
        yield sleep_call(backoff(n))
    raise _gave_up(MAX_ATTEMPTS)


def _gave_up(attempts: int) -> ConflictError:
    return ConflictError(
        f"Failed to compare-and-set value: gave up after {attempts} attempts because other "
        "writers kept changing the entry; nothing was written, retry",
        code="CAS_ERROR",
    )


def create_only(limits: Limits, scope: str, key: str, value: JSON, ttl_ms: int | None = None) -> Plan:
    """Write ``value`` only if the key is missing (a stored ``null`` is kept, unlike the wire's
    compare-and-set); import and migrate use it so a key another writer made is never replaced.
    """
    limits.check_entry(scope, key)
    data = limits.encode(value)
    expires_at = limits.expires_at("compare-and-set", ttl_ms)
    if limits.bytes_tokens:
        # the missing form of the token (None) needs no read: a key that is missing (an import's usual
        # case) is written in one call; only one that is present is read for its value
        if (yield Call("write_if", (scope, key, data, None, *expires_at))):
            return SWAPPED, StateEvent("state:created", scope, key, None, value)
    return (yield from create_after_miss(scope, key, value, data, expires_at))


def create_after_miss(scope: str, key: str, value: JSON, data: bytes, expires_at: tuple[int, ...]) -> Plan:
    """:func:`create_only` from its read on: the entry's value if present, else the write."""
    created = StateEvent("state:created", scope, key, None, value)

    def attempt(_n: int) -> Generator[Call, Any, tuple[CompareAndSetResult, StateEvent | None] | Lost]:
        raw, token = yield Call("read_versioned", (scope, key))
        if raw is not None:
            return CompareAndSetResult(False, _decode("compare-and-set", scope, key, raw)), None
        if not (yield Call("write_if", (scope, key, data, token, *expires_at))):
            return LOST
        return SWAPPED, created

    return (yield from optimistic(attempt, sleep_call, give_up=_gave_up))

"""The state functions as sans-I/O plans: all semantics, no storage calls of their own.

Each plan is a generator that yields :class:`Call` requests for adapter primitives and gets
their results sent back; it returns ``(result, events)``: one event, ``None``, or a list
(``state::batch``). The sync and async stores drive the same plans, so both behave
identically over every adapter.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from time import time_ns
from typing import Any, Final, NamedTuple

from .adapter import Capabilities
from .errors import (
    DeserializationError,
    KeyTooLargeError,
    StoredValueError,
    UnsupportedError,
    ValueTooLargeError,
)
from .expiry import MAX_TTL_MS, check_ttl_ms, deadline_after, remaining_ms
from .results import Emitted, SetResult, StateEvent, TtlResult, UpdateResult
from .retry import LOST, Lost, optimistic
from .table import TABLE
from .update_ops import Op, apply_ops
from .values import DEFAULT_MAX_DEPTH, JSON, decode_stored, encode, encode_all, encode_parsed

log = logging.getLogger("iii_state.operations")
SCAN_PAGE: Final = 500
MAX_LIST_LIMIT: Final = 1000
DEFAULT_LIST_LIMIT: Final = 100


class Call(NamedTuple):
    """A request for one adapter primitive (or ``sleep``) with positional arguments.

    A named tuple rather than a frozen dataclass: one is built per storage call, and a
    frozen dataclass's ``__init__`` cost more than the in-memory adapter's whole ``read``.
    """

    name: str
    args: tuple[Any, ...]


Plan = Generator[Call, Any, "tuple[Any, Emitted]"]


@dataclass(frozen=True)
class Limits:
    """The checks that apply to every call of one store."""

    capabilities: Capabilities
    adapter_name: str
    max_value_bytes: int | None = None
    max_depth: int = DEFAULT_MAX_DEPTH
    #: The adapter's ``write_if`` token is the stored bytes (it keeps the default
    #: ``read_versioned``), so a plan may offer bytes it expects without reading them first.
    value_tokens: bool = False
    #: The adapter's ``read_versioned`` is the default: every token is the bytes read, ``None`` for
    #: a missing entry, so a plan may offer ``None`` ("only if still missing") without reading.
    bytes_tokens: bool = False
    #: The adapter implements ``write_many_when``: a transaction of blind writes is one call.
    one_step_transact: bool = False
    #: The adapter implements ``read_joined``: a batch of gets of one scope asks it first.
    joined_reads: bool = False
    #: Whether the store's events reach anybody now; each store sets it to its own
    #: ``EventBus.listening``. A hot plan may skip building an event when it answers ``False``
    #: (the store would drop it). ``None``: assume somebody listens.
    listening: Callable[[], bool] | None = None

    def check_name(self, what: str, text: object, limit: int | None) -> None:
        # ASCII (nearly every name): its UTF-8 size is its length and it has no surrogate.
        if type(text) is str and text.isascii() and (limit is None or len(text) <= limit):
            return
        if not isinstance(text, str):
            raise DeserializationError(f"{what} must be a string, got {type(text).__name__}")
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise DeserializationError(
                f"{what} holds a lone surrogate: scopes and keys must be valid Unicode"
            ) from None
        if limit is not None and size > limit:
            raise KeyTooLargeError(
                f"{what} is {size} bytes; the {self.adapter_name} adapter holds at most {limit} bytes"
            )

    def check_entry(self, scope: object, key: object) -> None:
        capabilities = self.capabilities
        scope_limit, key_limit = capabilities.max_scope_bytes, capabilities.max_key_bytes
        # check_name's fast path for both names at once (every call checks a pair)
        if (
            type(scope) is str and type(key) is str and scope.isascii() and key.isascii()
            and (scope_limit is None or len(scope) <= scope_limit)
            and (key_limit is None or len(key) <= key_limit)
        ):  # fmt: skip
            return
        self.check_name("scope", scope, scope_limit)
        self.check_name("key", key, key_limit)

    def expires_at(self, function: str, ttl_ms: object) -> tuple[int, ...]:
        """The extra ``expires_at`` argument of a write primitive: ``()`` without ``ttl_ms``.

        :raises DeserializationError: for a ``ttl_ms`` that is not an integer from 1 to 2^53.
        :raises UnsupportedError: when the adapter does not declare ``ttl``.
        """
        if ttl_ms is None:
            return ()
        # The usual call, checked inline: a plain int in range for an adapter with ttl. Its
        # deadline is now_ms() + ttl_ms with the clock read here (a set with a TTL otherwise
        # pays four helper calls more than one without).
        if type(ttl_ms) is int and 0 < ttl_ms <= MAX_TTL_MS and self.capabilities.ttl != "none":
            return (time_ns() // 1_000_000 + ttl_ms,)
        valid = check_ttl_ms(ttl_ms)  # anything else: the same checks, in order, with their errors
        self.check_ttl(function)
        return (deadline_after(valid),)

    def check_ttl(self, function: str) -> None:
        if self.capabilities.ttl == "none":
            raise UnsupportedError(
                f"state::{function}: the {self.adapter_name} adapter does not support entry expiry "
                f"(capability ttl is none); nothing was written"
            )

    def check_durable(self, function: str) -> None:
        if not self.capabilities.durable:
            raise UnsupportedError(
                f"state::{function}: durable needs an adapter whose acknowledged writes survive a "
                f"crash; the {self.adapter_name} adapter's do not (capability durable is false); "
                f"nothing was written"
            )

    def encode(self, value: object) -> bytes:
        """Check and encode a value for storage, enforcing the size limits."""
        data = encode(value, max_depth=self.max_depth)
        if self.max_value_bytes is None and self.capabilities.max_value_bytes is None:
            return data  # the usual store: no limit (one call less per write)
        return self._sized(data)

    def encode_each(self, values: Iterable[object]) -> list[bytes]:
        """:meth:`encode` of each value, in order; a value object given several times (``set_many``
        of one value, a transaction writing one value to several keys) is checked and encoded once.

        Keyed by ``id``: every value stays referenced by the caller's list while this runs, so no
        id is reused for another object. An equal but distinct object is encoded again.

        :raises StateError: the first value :meth:`encode` refuses.
        """
        values = list(values)
        if len(set(map(id, values))) == len(values):  # each value once: the whole list at once
            whole = encode_all(values, max_depth=self.max_depth)
            if whole is not None and self._all_sized(whole):
                return whole
        done: dict[int, bytes] = {}
        out: list[bytes] = []
        for value in values:
            data = done.get(id(value))
            if data is None:
                data = done[id(value)] = self.encode(value)
            out.append(data)
        return out

    def encode_parsed(self, value: object) -> bytes:
        """:meth:`encode` of a value ``json`` just parsed (see :func:`values.encode_parsed`)."""
        return self._sized(encode_parsed(value, max_depth=self.max_depth))

    def _all_sized(self, each: list[bytes]) -> bool:
        """Whether every one is within the size limits (else the caller's loop raises for the first)."""
        configured, declared = self.max_value_bytes, self.capabilities.max_value_bytes
        if (configured is None and declared is None) or not each:
            return True
        largest = max(map(len, each))
        return (configured is None or largest <= configured) and (declared is None or largest <= declared)

    def _sized(self, data: bytes) -> bytes:
        configured, declared = self.max_value_bytes, self.capabilities.max_value_bytes
        if (configured is None or len(data) <= configured) and (declared is None or len(data) <= declared):
            return data
        if configured is not None and len(data) > configured:
            # iii's state worker's exact text (it no longer states the size)
            raise ValueTooLargeError(f"value exceeds the configured max_value_bytes limit of {configured}")
        raise ValueTooLargeError(
            f"value of {len(data)} bytes exceeds the {self.adapter_name} adapter's limit of {declared}"
        )


def _entry(scope: str, key: str) -> str:
    shown = [json.dumps(t if len(t) <= 60 else f"{t[:60]}…", ensure_ascii=False) for t in (scope, key)]
    return f"scope {shown[0]} key {shown[1]}"


def _decode(function: str, scope: str, key: str, raw: bytes | None) -> JSON:
    """The value of stored bytes, read before anything is written.

    :raises StoredValueError: with the function's ``*_ERROR`` code when another program stored
        bytes that are not strict JSON (the caller's request is not to blame).
    """
    if raw is None:
        return None
    try:
        return decode_stored(raw)
    except StoredValueError as exc:
        raise StoredValueError(
            f"{TABLE[function].failure_text}: {_entry(scope, key)}: {exc}; another program wrote them: "
            f"overwrite the entry with set or remove it with delete",
            code=TABLE[function].error_code,
        ) from None


def _replaced(function: str, scope: str, key: str, raw: bytes | None) -> JSON:
    """The value a write replaced. The write is done, so this must not fail.

    Bytes another program stored that are not JSON have no value to report: ``null`` (the
    event still says ``state:updated``, since the key was present) and a logged warning.
    """
    if raw is None:
        return None
    try:
        return decode_stored(raw)
    except StoredValueError as exc:
        log.warning(
            "state::%s on %s replaced what was there: %s; old_value is reported as null",
            function, _entry(scope, key), exc,
        )  # fmt: skip
        return None


def _written(scope: str, key: str, old_raw: bytes | None, old: JSON, new: JSON) -> StateEvent:
    if old_raw is None:
        return StateEvent("state:created", scope, key, old, new)
    return StateEvent("state:updated", scope, key, old, new)


# -- the functions ---------------------------------------------------------------------------


def get_value(limits: Limits, scope: str, key: str) -> Plan:
    limits.check_entry(scope, key)
    raw = yield Call("read", (scope, key))
    return _decode("get", scope, key, raw), None


def set_value(limits: Limits, scope: str, key: str, value: JSON, ttl_ms: int | None = None) -> Plan:
    limits.check_entry(scope, key)
    data = limits.encode(value)
    expires_at = () if ttl_ms is None else limits.expires_at("set", ttl_ms)  # no call without a TTL
    old_raw = yield Call("write", (scope, key, data, *expires_at))
    old = _replaced("set", scope, key, old_raw)
    return SetResult(old, value), _written(scope, key, old_raw, old, value)


def delete_value(limits: Limits, scope: str, key: str) -> Plan:
    limits.check_entry(scope, key)
    old_raw = yield Call("remove", (scope, key))
    old = _replaced("delete", scope, key, old_raw)
    # engine parity: a delete of a missing key still emits, with old_value null
    return old, StateEvent("state:deleted", scope, key, old, None)


def update(limits: Limits, scope: str, key: str, ops: list[Op], ttl_ms: int | None = None) -> Plan:
    """``ttl_ms`` (optional) gives the entry a new deadline; without it the entry keeps its own."""
    limits.check_entry(scope, key)
    expires_at = () if ttl_ms is None else limits.expires_at("update", ttl_ms)
    outcome: dict[str, Any] = {}

    def change(old_raw: bytes | None) -> bytes:
        current = _decode("update", scope, key, old_raw)
        new, errors = apply_ops(current, old_raw is None, ops)
        data = limits.encode(new)
        outcome["new"], outcome["errors"] = new, errors
        return data

    native = yield Call("modify", (scope, key, change, *expires_at))
    if native is not None:
        old_raw = native[0]
    else:
        old_raw = yield from _optimistic(scope, key, change, "update", expires_at)
    old = _replaced("update", scope, key, old_raw)  # change() read it already: cannot fail
    new_value, errors = outcome["new"], outcome["errors"]
    result = UpdateResult(old, new_value, errors)
    return result, _written(scope, key, old_raw, old, new_value)


def sleep_call(seconds: float) -> Call:
    """The request to pause a plan (the retry helper's back-off between lost races)."""
    return Call("sleep", (seconds,))


def _optimistic(
    scope: str, key: str, change: Any, function: str, expires_at: tuple[int, ...] = ()
) -> Generator[Call, Any, bytes | None]:
    """Read, compute, conditionally write; the retry helper repeats it while other writers win."""

    def attempt(_n: int) -> Generator[Call, Any, bytes | Lost | None]:
        raw, token = yield Call("read_versioned", (scope, key))
        data = change(raw)
        won = yield Call("write_if", (scope, key, data, token, *expires_at))
        return raw if won else LOST

    failure, code = TABLE[function].failure_text, TABLE[function].error_code
    return (yield from optimistic(attempt, sleep_call, failure=failure, code=code))


def expire(limits: Limits, scope: str, key: str, ttl_ms: int | None) -> Plan:
    """Give a live entry a new deadline ``ttl_ms`` from now (``None``: never expires).

    Returns whether the entry existed; emits no event (the value did not change).
    """
    limits.check_entry(scope, key)
    deadline = None if ttl_ms is None else deadline_after(check_ttl_ms(ttl_ms))
    limits.check_ttl("expire")
    existed = yield Call("set_expiry", (scope, key, deadline))
    return bool(existed), None


def time_to_live(limits: Limits, scope: str, key: str) -> Plan:
    """The time left before the entry expires: missing, no expiry, or milliseconds."""
    limits.check_entry(scope, key)
    limits.check_ttl("ttl")
    present, deadline = yield Call("read_expiry", (scope, key))
    if not present:
        return TtlResult(False, None), None
    return TtlResult(True, remaining_ms(deadline)), None


def _walk(scope: str) -> Generator[Call, Any, list[tuple[str, bytes]]]:
    out: list[tuple[str, bytes]] = []
    cursor: str | None = None
    while True:
        page, cursor = yield Call("scan", (scope, cursor, SCAN_PAGE))
        out.extend(page)
        if cursor is None:
            return out


def list_values(limits: Limits, scope: str) -> Plan:
    limits.check_name("scope", scope, limits.capabilities.max_scope_bytes)
    entries = yield from _walk(scope)
    if not limits.capabilities.ordered_listing:
        entries = list(dict(entries).items())  # an unordered scan may repeat a key
    return [_decode("list", scope, k, raw) for k, raw in entries], None


def list_keys(limits: Limits, scope: str) -> Plan:
    limits.check_name("scope", scope, limits.capabilities.max_scope_bytes)
    entries = yield from _walk(scope)
    return list(dict.fromkeys(k for k, _ in entries)), None


def list_groups(limits: Limits) -> Plan:
    scopes = yield Call("list_scopes", ())
    return sorted(dict.fromkeys(scopes)), None

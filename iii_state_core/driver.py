"""Run a plan against an adapter (sync or async) and turn adapter failures into wire errors."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from .adapter import Adapter, AsyncAdapter, Expired
from .errors import BackendError, DeserializationError, StateError, StoredValueError, WriteAppliedError
from .operations import Call, Plan
from .results import Emitted
from .table import TABLE

#: A secret this long or longer is hidden wherever it appears. A shorter one is hidden only as
#: a whole token (not touching a letter or digit): a one-letter password must not turn
#: "script write failed" into "script writ*** fail***d", and in `redis://:e@host` it still goes.
WHOLE_TOKEN_BELOW = 8


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with each secret replaced by ``***`` (longest first, so no fragment survives)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if len(secret) >= WHOLE_TOKEN_BELOW:
            text = text.replace(secret, "***")
        else:
            text = re.sub(rf"(?<![^\W_]){re.escape(secret)}(?![^\W_])", "***", text)
    return text


def mentions_secret(exc: BaseException, secrets: list[str]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        text = f"{seen!s} {seen!r} {getattr(seen, '__notes__', '')}"
        if any(s and s in text for s in secrets):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def backend_error(function: str, exc: Exception, describe: str, secrets: list[str]) -> StateError:
    """Wrap an adapter's exception as the function's ``*_ERROR``, secrets removed.

    State errors other than backend errors (a size limit an adapter checks itself) pass as they are.
    """
    if isinstance(exc, StateError) and not isinstance(exc, BackendError):
        return exc
    declared = TABLE.get(function)  # a worker-only plan (a namespace claim) is not in the table
    failure_text = declared.failure_text if declared else f"state::{function} failed"
    code = declared.error_code if declared else "BACKEND_ERROR"
    detail = redact(str(exc) or type(exc).__name__, secrets)
    cls = type(exc) if isinstance(exc, BackendError) else BackendError
    if isinstance(exc, BackendError) and detail.startswith(failure_text):
        message = detail
    else:
        message = f"{failure_text}: {describe}: {detail}"
    try:
        wrapped = cls(message, code=code)
    except TypeError:  # an adapter's subclass with an __init__ of its own
        wrapped = BackendError(message, code=code)
    if not isinstance(exc, StateError):
        wrapped.__cause__ = None if mentions_secret(exc, secrets) else exc
    return wrapped


#: The primitives that may write (what :func:`_applies` can say ``True`` for).
_WRITES = frozenset(
    {"write", "remove", "write_if", "set_expiry", "write_many_if", "write_many_when", "modify"}
)
#: The primitives whose every answer means the write reached the store.
_ALWAYS_APPLIED = frozenset({"write", "remove"})


def _applies(name: str, value: Any) -> bool:
    """Whether a primitive's result means a write reached the store."""
    if name in ("write", "remove"):
        return True
    if name in ("write_if", "set_expiry", "write_many_if"):
        return value is True
    if name == "write_many_when":
        return isinstance(value, list)
    return name == "modify" and value is not None


def _reports_a_lost_write(applied: bool, exc: Exception) -> bool:
    """Whether a plan's error, raised after ``applied`` writes, would read as "nothing written".

    An unexpected exception or a data error (a value or stored bytes the plan could not read)
    after a write is never a decision about the write, so it must say the write was applied. A
    state error with a code of its own (``SCOPE_CONFLICT`` after compensating writes, …) is the
    plan's deliberate answer and passes as it is.
    """
    return applied and (
        not isinstance(exc, StateError) or isinstance(exc, (DeserializationError, StoredValueError))
    )


def _after_write(function: str, exc: Exception) -> WriteAppliedError:
    """A plan failed after its write was applied: say so, never report a plain failure."""
    detail = str(exc) or type(exc).__name__
    declared = TABLE.get(function)
    return WriteAppliedError(
        f"{declared.failure_text if declared else f'state::{function} failed'}: the write was applied, "
        f"then this failed: {detail}",
        code=declared.error_code if declared else "BACKEND_ERROR",
    )


#: A call's primitive name.
_NAME = itemgetter(0)

#: The plan's request to run several primitive calls at once (``state::batch``): args are the
#: calls and, per call, the function whose error code a failure of that call takes. The answer
#: is one item per call: its result, or its failure as a :class:`StateError` value (not raised).
RUN_MANY = "run_many"


def _pause_and_sent(calls: list[Call]) -> tuple[float, list[int] | None]:
    """The longest ``sleep`` among the calls (all pause together) and the indices to send
    (``None``: all of them, the usual round)."""
    if "sleep" not in map(_NAME, calls):  # the usual round (C iteration: no Python step per call)
        return 0.0, None
    pauses = [c.args[0] for c in calls if c.name == "sleep"]
    return max(pauses, default=0.0), [i for i, c in enumerate(calls) if c.name != "sleep"]


def _answers(
    calls: list[Call],
    functions: list[str],
    sent: list[int] | None,
    answers: list[Any],
    describe: str,
    secrets: list[str],
) -> list[Any]:
    if sent is None:
        if len(answers) != len(calls):
            raise BackendError(f"{describe}: run_many answered {len(answers)} calls of {len(calls)}")
        # the few kinds of answer, not each answer (a Python step per call cost a tenth of a round)
        if not any(issubclass(kind, Exception) for kind in set(map(type, answers))):
            return answers  # nothing failed, nothing paused: the adapter's answers as they are
        sent = list(range(len(calls)))
    if len(answers) != len(sent):
        raise BackendError(f"{describe}: run_many answered {len(answers)} calls of {len(sent)}")
    out: list[Any] = [None] * len(calls)
    for i, answer in zip(sent, answers, strict=True):
        failed = isinstance(answer, Exception)
        out[i] = backend_error(functions[i], answer, describe, secrets) if failed else answer
    return out


def _many_sync(adapter: Adapter, calls: list[Call], functions: list[str]) -> list[Any]:
    pause, sent = _pause_and_sent(calls)
    if pause:
        time.sleep(pause)
    to_send = calls if sent is None else [calls[i] for i in sent]
    try:
        answers = adapter.run_many(to_send) if to_send else []
    except Exception as exc:  # the whole round failed: each call reports it
        answers = [exc] * len(to_send)
    return _answers(calls, functions, sent, answers, adapter.describe(), adapter.secrets())


def run_sync(plan: Plan, adapter: Adapter, function: str) -> tuple[Any, Emitted]:
    applied = False
    try:
        name, args = next(plan)
        while True:
            if name == "sleep":
                time.sleep(args[0])
                value: Any = None
            elif name == RUN_MANY:
                value = _many_sync(adapter, *args)
            else:
                try:
                    value = getattr(adapter, name)(*args)
                except Exception as exc:
                    error = backend_error(function, exc, adapter.describe(), adapter.secrets())
                    raise error from error.__cause__
                if not applied and name in _WRITES:  # a read needs no _applies call
                    applied = name in _ALWAYS_APPLIED or _applies(name, value)
            # the plan resumed inline (a helper call per primitive showed in profiles)
            try:
                name, args = plan.send(value)
            except StopIteration:
                raise
            except Exception as exc:
                if _reports_a_lost_write(applied, exc):
                    raise _after_write(function, exc) from exc
                raise
    except StopIteration as stop:
        result: tuple[Any, Emitted] = stop.value
        return result


async def run_async(
    plan: Plan, adapter: AsyncAdapter, function: str, describe: str, secrets: list[str]
) -> tuple[Any, Emitted]:
    applied = False
    try:
        name, args = next(plan)
        while True:
            if name == "sleep":
                await asyncio.sleep(args[0])
                value: Any = None
            elif name == RUN_MANY:
                calls, functions = args
                pause, sent = _pause_and_sent(calls)
                if pause:
                    await asyncio.sleep(pause)
                to_send = calls if sent is None else [calls[i] for i in sent]
                try:
                    answers = await adapter.run_many(to_send) if to_send else []
                except Exception as exc:
                    answers = [exc] * len(to_send)
                value = _answers(calls, functions, sent, answers, describe, secrets)
            else:
                try:
                    value = await getattr(adapter, name)(*args)
                except Exception as exc:
                    error = backend_error(function, exc, describe, secrets)
                    raise error from error.__cause__
                if not applied and name in _WRITES:  # a read needs no _applies call
                    applied = name in _ALWAYS_APPLIED or _applies(name, value)
            # the plan resumed inline, as in run_sync
            try:
                name, args = plan.send(value)
            except StopIteration:
                raise
            except Exception as exc:
                if _reports_a_lost_write(applied, exc):
                    raise _after_write(function, exc) from exc
                raise
    except StopIteration as stop:
        result: tuple[Any, Emitted] = stop.value
        return result


class ThreadedAsyncAdapter(AsyncAdapter):
    """The async face of a sync adapter: each primitive runs in a worker thread."""

    def __init__(self, adapter: Adapter) -> None:
        self._adapter = adapter

    async def read(self, scope: str, key: str) -> bytes | None:
        return await asyncio.to_thread(self._adapter.read, scope, key)

    async def read_versioned(self, scope: str, key: str) -> tuple[bytes | None, object]:
        return await asyncio.to_thread(self._adapter.read_versioned, scope, key)

    async def write(self, scope: str, key: str, data: bytes, *expires_at: Any) -> bytes | None:
        return await asyncio.to_thread(self._adapter.write, scope, key, data, *expires_at)

    async def remove(self, scope: str, key: str) -> bytes | None:
        return await asyncio.to_thread(self._adapter.remove, scope, key)

    async def write_if(self, scope: str, key: str, data: bytes, token: object, *expires_at: Any) -> bool:
        return await asyncio.to_thread(self._adapter.write_if, scope, key, data, token, *expires_at)

    async def modify(self, scope: str, key: str, change: Any, *expires_at: Any) -> Any:
        return await asyncio.to_thread(self._adapter.modify, scope, key, change, *expires_at)

    async def read_expiry(self, scope: str, key: str) -> tuple[bool, int | None]:
        return await asyncio.to_thread(self._adapter.read_expiry, scope, key)

    async def set_expiry(self, scope: str, key: str, expires_at: int | None) -> bool:
        return await asyncio.to_thread(self._adapter.set_expiry, scope, key, expires_at)

    async def take_expired(self, limit: int) -> list[Expired]:
        return await asyncio.to_thread(self._adapter.take_expired, limit)

    async def ack_expired(self, taken: Sequence[Expired]) -> None:
        await asyncio.to_thread(self._adapter.ack_expired, taken)

    async def run_many(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        return await asyncio.to_thread(self._adapter.run_many, calls)

    async def read_joined(self, scope: str, keys: Sequence[str]) -> str | None:
        if type(self._adapter).read_joined is Adapter.read_joined:
            return None  # no thread for the default's answer
        return await asyncio.to_thread(self._adapter.read_joined, scope, keys)

    async def write_many_if(self, checks: Sequence[Any], writes: Sequence[Any]) -> bool:
        return await asyncio.to_thread(self._adapter.write_many_if, checks, writes)

    async def write_many_when(self, conditions: Sequence[Any], writes: Sequence[Any]) -> Any:
        return await asyncio.to_thread(self._adapter.write_many_when, conditions, writes)

    async def modify_many(self, entries: Sequence[Any], change: Any) -> bool | None:
        return await asyncio.to_thread(self._adapter.modify_many, entries, change)

    async def list_scopes(self) -> list[str]:
        return await asyncio.to_thread(self._adapter.list_scopes)

    async def scan(self, scope: str, cursor: str | None, limit: int) -> Any:
        return await asyncio.to_thread(self._adapter.scan, scope, cursor, limit)

    async def count(self, scope: str) -> int | None:
        return await asyncio.to_thread(self._adapter.count, scope)

    async def scan_counted(self, scope: str, limit: int) -> Any:
        return await asyncio.to_thread(self._adapter.scan_counted, scope, limit)

    async def close(self) -> None:
        await asyncio.to_thread(self._adapter.close)

"""The ``redis`` adapter for asyncio: the same scripts, plans and retry rules on ``redis.asyncio``.

One instance serves one event loop (redis.asyncio connections belong to the loop that
opened them), which is how :class:`iii_state_core.AsyncStateStore` uses it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, TypeVar

from redis.exceptions import NoPermissionError, NoScriptError

from iii_state_core import AsyncAdapter, BackendError, StateError
from iii_state_core.adapter import ByteCondition, Missed, Page, PlannedWrite, Token
from iii_state_core.expiry import KEEP, ExpiresAt, now_ms

from . import connections
from .connections import check_cluster_fits, closed_error, cluster_enabled
from .expiring import (
    SWEEP_LIMIT,
    Claimed,
    Leases,
    Registered,
    SweepClock,
    Taken,
    ack_plan,
    deadline_of,
    expires_arg,
    take_plan,
)
from .layout import Layout, Names
from .listing import PRIMARIES, Read, ReadMany, Run, scan_counted_plan, scan_plan, scopes_plan
from .outcomes import Kind, RetryPolicy
from .pipelining import by_node, fail_units, kind_of, pipelined, spread, units
from .scripts import COUNT, READ, READ_EXPIRY, REMOVE, SET_EXPIRY, SWAP, WRITE, Script
from .settings import RedisSettings
from .transactions import TRANSACT, checked_tokens, outcome, script_args
from .updating import Pause, Recent, Swap, modify_plan, swap_args, swap_result

T = TypeVar("T")


class AsyncRedisAdapter(AsyncAdapter):
    """The awaitable twin of :class:`~iii_state_redis.RedisAdapter`."""

    def __init__(
        self,
        settings: RedisSettings,
        *,
        cluster: bool | None = None,
        recent: Recent | None = None,
        registered: Registered | None = None,
    ) -> None:
        self.settings = settings
        self.recent = Recent() if recent is None else recent
        self.registered = Registered() if registered is None else registered
        self._keep = b"1" if settings.expiry_events else b"0"
        #: with expiry events on, take_expired leases (see ``expiring.take_plan``)
        self._lease_ms = settings.expiry_lease_ms if settings.expiry_events else None
        self.leases = Leases()
        self._sweeps = SweepClock()
        self.layout = Layout.for_prefix(settings.key_prefix)
        self.policy = RetryPolicy(settings.retries)
        self._cluster = settings.cluster if cluster is None else cluster
        self._client: Any = None
        self._closed = False
        self._lock = asyncio.Lock()
        #: The event loop the client's connections belong to (``None``: not connected yet).
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"<AsyncRedisAdapter {self.settings.describe(self._cluster)}>"

    # -- client --------------------------------------------------------------------------------
    def _check_loop(self) -> None:
        """Bind to the running event loop, before anything is sent.

        redis.asyncio connections belong to the loop that opened them. A client whose loop has
        ended (sequential ``asyncio.run`` calls) is dropped and a new one opened here: its
        connections died with their loop. A client whose loop still runs cannot serve another
        loop: that is refused here, before a byte is sent, never after a write was applied.
        """
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._loop is not None and not self._loop.is_closed():
            raise BackendError(
                "this async store is in use by another running event loop; nothing was sent. "
                "Open one store per event loop (open_async_store() in each)"
            )
        self._client, self._loop, self._lock = None, loop, asyncio.Lock()

    async def _connect(self) -> Any:
        self._check_loop()
        client = self._client
        if client is not None:
            return client
        async with self._lock:
            if self._closed:
                raise closed_error()
            if self._client is None:
                cluster = self._cluster
                standalone = None
                if cluster is None:
                    standalone = connections.async_standalone(self.settings)
                    cluster = await self._detect(standalone)
                if cluster:
                    if standalone is not None:
                        await standalone.aclose()
                    check_cluster_fits(self.settings)
                    client = connections.async_cluster(self.settings)
                    # Learn the slot map before anyone can use the client: commands racing
                    # the first lazy initialisation find nodes closed under them (redis-py 8.1).
                    try:
                        await client.initialize()
                    except BaseException:
                        await client.aclose()
                        raise
                    self._client = client
                else:
                    self._client = standalone or connections.async_standalone(self.settings)
                self._cluster = cluster
            return self._client

    @staticmethod
    async def _detect(client: Any) -> bool:
        try:
            return cluster_enabled(await client.info("cluster"))
        except NoPermissionError:
            return False
        except BaseException:
            await client.aclose()
            raise

    async def _call(self, kind: Kind, what: str, command: Callable[[Any], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            try:
                return await command(await self._connect())
            except StateError:
                raise
            except Exception as exc:
                pause = self.policy.delay(kind, exc, attempt, what)
            attempt += 1
            await asyncio.sleep(pause)

    async def _script(
        self, script: Script, keys: tuple[bytes, ...], args: tuple[Any, ...], kind: Kind = "write"
    ) -> Any:
        async def run(client: Any) -> Any:
            try:
                return await client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                return await client.eval(script.source, len(keys), *keys, *args)

        return await self._call(kind, f"script {script.name}", run)

    async def _sweep_now_and_then(self) -> None:
        """Without expiry events no sweeper runs: a process that stores deadlines takes (and so
        deletes) expired entries from its writes, at most once a second, so they do not pile up
        in Redis. A failure is left to the write that follows to report."""
        if self.settings.expiry_events or not self.registered.any() or not self._sweeps.due():
            return
        try:
            await self.take_expired(SWEEP_LIMIT)
        except StateError:
            pass

    async def _register(self, names: Names, expires: bytes) -> None:
        if expires not in (b"", b"k") and self.registered.due(names.tag):
            registry = self.layout.registry_key()
            await self._call("read", "SADD", lambda c: c.sadd(registry, names.tag))  # idempotent
            self.registered.done(names.tag)

    async def _drive(self, plan: Generator[Any, Any, Any]) -> Any:
        request = next(plan)
        while True:
            reply: Any = None
            if request is PRIMARIES:
                reply = await self._call("read", "CLUSTER SLOTS", self._primaries)
            elif isinstance(request, Read):
                reply = await self._call(
                    "read", str(request.args[0]), functools.partial(_execute, request=request)
                )
            elif isinstance(request, ReadMany):
                reply = await self._call("read", f"pipeline of {len(request.commands)} reads", request.send)
            elif isinstance(request, Run):
                reply = await self._script(request.script, request.keys, request.args, request.kind)
            elif isinstance(request, Swap):
                reply = await self._swap(request)
            elif isinstance(request, Pause):
                await asyncio.sleep(request.seconds)
            try:
                request = plan.send(reply)
            except StopIteration as stop:
                return stop.value

    async def _swap(self, request: Swap) -> tuple[bool, bytes | None]:
        await self._register(request.names, request.expires)
        reply = await self._script(SWAP, request.keys(), swap_args(request, self._keep))
        stored, current = swap_result(reply)
        self.recent.put(request.names.hash, request.field, request.data if stored else current)
        return stored, current

    async def _primaries(self, client: Any) -> list[Any]:
        return list(client.get_primaries()) if self._cluster else [None]

    # -- primitives ----------------------------------------------------------------------------
    async def read(self, scope: str, key: str) -> bytes | None:
        names, field = self.layout.names(scope), self.layout.field(key)
        raw: bytes | None = await self._script(READ, (names.hash, names.deadlines), (field, now_ms()), "read")
        return raw

    async def write(self, scope: str, key: str, data: bytes, expires_at: int | None = None) -> bytes | None:
        await self._sweep_now_and_then()
        names, field, expires = self.layout.names(scope), self.layout.field(key), expires_arg(expires_at)
        await self._register(names, expires)
        args = (field, data, now_ms(), expires, names.scope, self._keep)
        old: bytes | None = await self._script(WRITE, names.writing(), args)
        self.recent.put(names.hash, field, data)
        return old

    async def remove(self, scope: str, key: str) -> bytes | None:
        names, field = self.layout.names(scope), self.layout.field(key)
        args = (field, now_ms(), names.scope, self._keep)
        old: bytes | None = await self._script(REMOVE, names.writing(), args)
        self.recent.put(names.hash, field, None)
        return old

    async def write_if(
        self, scope: str, key: str, data: bytes, token: Token, expires_at: ExpiresAt = KEEP
    ) -> bool:
        if token is not None and not isinstance(token, bytes):
            raise TypeError(f"write_if token must be the bytes read_versioned returned, got {token!r}")
        request = Swap(self.layout.names(scope), self.layout.field(key), token, data, expires_arg(expires_at))
        stored, _ = await self._swap(request)
        return stored

    async def modify(
        self, scope: str, key: str, change: Callable[[bytes | None], bytes], expires_at: ExpiresAt = KEEP
    ) -> tuple[bytes | None, bytes]:
        await self._sweep_now_and_then()
        names, field = self.layout.names(scope), self.layout.field(key)
        plan = modify_plan(self.recent, names, field, change, expires_arg(expires_at))
        result: tuple[bytes | None, bytes] = await self._drive(plan)
        return result

    async def read_expiry(self, scope: str, key: str) -> tuple[bool, int | None]:
        names, field = self.layout.names(scope), self.layout.field(key)
        reply = await self._script(READ_EXPIRY, (names.hash, names.deadlines), (field, now_ms()), "read")
        return (bool(reply), deadline_of(reply[1]) if len(reply) > 1 else None)

    async def set_expiry(self, scope: str, key: str, expires_at: int | None) -> bool:
        names, field, expires = self.layout.names(scope), self.layout.field(key), expires_arg(expires_at)
        await self._register(names, expires)
        keys = (names.hash, names.deadlines, names.due)
        return bool(await self._script(SET_EXPIRY, keys, (field, now_ms(), expires, names.scope)))

    async def take_expired(self, limit: int = 1000) -> list[Taken]:
        """See :meth:`RedisAdapter.take_expired`."""
        claimed: list[Claimed] = await self._drive(take_plan(self.layout, limit, self._lease_ms))
        return self.leases.hold(claimed) if self._lease_ms is not None else [claim[0] for claim in claimed]

    async def ack_expired(self, taken: Sequence[Taken]) -> None:
        """See :meth:`RedisAdapter.ack_expired`."""
        changes = self.leases.release(taken)
        if changes:
            await self._drive(ack_plan(self.layout, changes))
        self.leases.drop(taken, changes)

    async def write_many_if(
        self, checks: Sequence[tuple[str, str, Token]], writes: Sequence[PlannedWrite]
    ) -> bool:
        """``state::transact`` after a read: one script checks every entry and writes them all."""
        return isinstance(await self.write_many_when(checked_tokens(checks), writes), list)

    async def write_many_when(
        self, conditions: Sequence[ByteCondition], writes: Sequence[PlannedWrite]
    ) -> list[bytes | None] | Missed:
        """``state::transact``: one script checks the conditions, writes and answers the old bytes
        (see ``transactions``)."""
        for scope, _key, data, expires_at in writes:
            if data is not None and expires_at is not None and expires_at is not KEEP:
                await self._register(self.layout.names(scope), expires_arg(expires_at))

        async def run(client: Any) -> Any:
            # the client is connected here, so an auto-detected Cluster is known by now
            keys, argv = script_args(self.layout, conditions, writes, bool(self._cluster), self._keep)
            try:
                return await client.evalsha(TRANSACT.sha, len(keys), *keys, *argv)
            except NoScriptError:  # NOSCRIPT means it did not run
                return await client.eval(TRANSACT.source, len(keys), *keys, *argv)

        answer = outcome(await self._call("write", "script transact", run))
        if isinstance(answer, list):
            hash_key = self.layout.hash_key
            self.recent.put_many((hash_key(scope), key.encode(), data) for scope, key, data, _ in writes)
        return answer

    # -- state::batch ----------------------------------------------------------------------------
    async def run_many(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """See :meth:`RedisAdapter.run_many`; a Cluster's node pipelines go out together."""
        out: list[Any] = [None] * len(calls)
        queued: list[int] = []
        for i, call in enumerate(calls):
            if pipelined(call):
                queued.append(i)
            else:
                out[i] = await _alone(self, call)
        groups = [queued] if queued else []
        if queued and self._cluster:
            try:
                groups = by_node(await self._connect(), self.layout, calls, queued)
            except Exception:  # not connected: the pipeline's own call reports it
                pass
        await asyncio.gather(*(self._send(calls, group, out) for group in groups))
        return out

    async def _send(
        self, calls: Sequence[tuple[str, tuple[Any, ...]]], group: list[int], out: list[Any]
    ) -> None:
        part = [calls[i] for i in group]
        sent = units(self.layout, calls, group, self._keep)

        async def run(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for args, _, _ in sent:
                pipe.execute_command(*args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            return replies

        while sent:  # a second time only for scripts the server lacked (sent again by source)
            try:
                replies = await self._call(kind_of(part), f"pipeline of {len(sent)} commands", run)
            except Exception as exc:
                fail_units(sent, out, exc)
                return
            again, sent = spread(self.layout, self.recent, calls, sent, replies, out)
            for i in again:
                out[i] = await _alone(self, calls[i])

    async def list_scopes(self) -> list[str]:
        scopes: list[str] = await self._drive(scopes_plan(self.layout))
        return scopes

    async def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        page: Page = await self._drive(scan_plan(self.layout, scope, cursor, limit))
        return page

    async def scan_counted(
        self, scope: str, limit: int
    ) -> tuple[list[tuple[str, bytes]], str | None, int | None]:
        """The first page and the count in one script: one round trip per first page, not two."""
        found: tuple[list[tuple[str, bytes]], str | None, int | None] = await self._drive(
            scan_counted_plan(self.layout, scope, limit)
        )
        return found

    async def count(self, scope: str) -> int | None:
        names = self.layout.names(scope)
        n: int = await self._script(COUNT, (names.hash, names.deadlines), (now_ms(),), "read")
        return n

    async def close(self) -> None:
        if self._loop is not asyncio.get_running_loop():  # its connections died with their loop
            self._closed, self._client = True, None
            return
        async with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            await client.aclose()


async def _alone(adapter: AsyncAdapter, call: tuple[str, tuple[Any, ...]]) -> Any:
    try:
        return await getattr(adapter, call[0])(*call[1])
    except Exception as exc:
        return exc


def _execute(client: Any, request: Read) -> Awaitable[Any]:
    if request.node is None:
        return client.execute_command(*request.args)  # type: ignore[no-any-return]
    return client.execute_command(*request.args, target_nodes=request.node)  # type: ignore[no-any-return]

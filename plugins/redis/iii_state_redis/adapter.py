"""The ``redis`` adapter (sync): the primitives over redis-py, one round trip each (``update``:
one when this process knows the entry, see ``updating``; a batch round: one pipeline, see
``pipelining``; the first deadline a process stores in a slot: one more, see ``expiring``).

The client is built on first use, so opening a store does no I/O and a server that is
down at start-up is retried like any other outage. With ``cluster: auto`` the server is
asked once (``INFO cluster``) which client it needs.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, TypeVar

from redis.exceptions import NoPermissionError, NoScriptError

from iii_state_core import Adapter, AsyncAdapter, StateError
from iii_state_core.adapter import ByteCondition, Missed, Page, PlannedWrite, Token
from iii_state_core.expiry import KEEP, ExpiresAt, now_ms

from . import connections
from .async_adapter import AsyncRedisAdapter
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
from .plugin import CAPABILITIES, RedisDeclaration
from .scripts import COUNT, READ, READ_EXPIRY, REMOVE, SET_EXPIRY, SWAP, WRITE, Script
from .settings import RedisSettings, read_settings
from .transactions import TRANSACT, checked_tokens, outcome, script_args
from .updating import Pause, Recent, Swap, modify_plan, swap_args, swap_result

T = TypeVar("T")

class RedisAdapter(Adapter):
    """Scopes as Redis hashes (``<key_prefix><scope>``), values as compact JSON fields."""

    name = RedisDeclaration.name
    path_options = RedisDeclaration.path_options
    state_options = RedisDeclaration.state_options
    distribution = RedisDeclaration.distribution
    capabilities = CAPABILITIES

    @classmethod
    def open(cls, config: Mapping[str, Any]) -> Adapter:
        return cls(read_settings(config))

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.layout = Layout.for_prefix(settings.key_prefix)
        self.policy = RetryPolicy(settings.retries)
        self.recent = Recent()
        self.registered = Registered()
        #: SWAP/WRITE/REMOVE's ``keep`` argument: keep expired fields for the sweeper's events.
        self._keep = b"1" if settings.expiry_events else b"0"
        #: with expiry events on, take_expired leases (see ``expiring.take_plan``)
        self._lease_ms = settings.expiry_lease_ms if settings.expiry_events else None
        self.leases = Leases()
        self._sweeps = SweepClock()
        self._cluster = settings.cluster
        self._client: Any = None
        self._closed = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<RedisAdapter {self.describe()}>"

    def describe(self) -> str:
        return self.settings.describe(self._cluster)

    def secrets(self) -> list[str]:
        return self.settings.secrets()

    # -- client --------------------------------------------------------------------------------
    def _connect(self) -> Any:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._closed:
                raise closed_error()
            if self._client is None:
                cluster = self._cluster
                standalone = None
                if cluster is None:
                    standalone = connections.sync_standalone(self.settings)
                    cluster = self._detect(standalone)
                if cluster:
                    if standalone is not None:
                        standalone.close()
                    check_cluster_fits(self.settings)
                    self._client = connections.sync_cluster(self.settings)
                else:
                    self._client = standalone or connections.sync_standalone(self.settings)
                self._cluster = cluster
            return self._client

    @staticmethod
    def _detect(client: Any) -> bool:
        try:
            return cluster_enabled(client.info("cluster"))
        except NoPermissionError:
            return False  # a user without INFO: say `cluster: true` when it is one
        except BaseException:
            client.close()
            raise

    def _call(self, kind: Kind, what: str, command: Callable[[Any], T]) -> T:
        """Run ``command(client)``, sending it again only when ``RetryPolicy`` allows."""
        attempt = 0
        while True:
            try:
                return command(self._connect())
            except StateError:
                raise
            except Exception as exc:
                pause = self.policy.delay(kind, exc, attempt, what)
            attempt += 1
            time.sleep(pause)

    def _script(
        self, script: Script, keys: tuple[bytes, ...], args: tuple[Any, ...], kind: Kind = "write"
    ) -> Any:
        def run(client: Any) -> Any:
            try:
                return client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:  # a restarted or new server: NOSCRIPT means it did not run
                return client.eval(script.source, len(keys), *keys, *args)

        return self._call(kind, f"script {script.name}", run)

    def _sweep_now_and_then(self) -> None:
        """Without expiry events no sweeper runs: a process that stores deadlines takes (and so
        deletes) expired entries from its writes, at most once a second, so they do not pile up
        in Redis. A failure is left to the write that follows to report."""
        if self.settings.expiry_events or not self.registered.any() or not self._sweeps.due():
            return
        try:
            self.take_expired(SWEEP_LIMIT)
        except StateError:
            pass

    def _register(self, names: Names, expires: bytes) -> None:
        """Put the scope's slot in the registry before a deadline is stored there (``expiring``)."""
        if expires not in (b"", b"k") and self.registered.due(names.tag):
            registry = self.layout.registry_key()
            self._call("read", "SADD", lambda c: c.sadd(registry, names.tag))  # idempotent
            self.registered.done(names.tag)

    def _drive(self, plan: Generator[Any, Any, Any]) -> Any:
        """Run a plan of ``listing``/``updating`` requests to its result."""
        request = next(plan)
        while True:
            reply: Any = None
            if request is PRIMARIES:
                reply = self._call("read", "CLUSTER SLOTS", self._primaries)
            elif isinstance(request, Read):
                reply = self._call("read", str(request.args[0]), functools.partial(_execute, request=request))
            elif isinstance(request, ReadMany):
                reply = self._call("read", f"pipeline of {len(request.commands)} reads", request.send)
            elif isinstance(request, Run):
                reply = self._script(request.script, request.keys, request.args, request.kind)
            elif isinstance(request, Swap):
                reply = self._swap(request)
            elif isinstance(request, Pause):
                time.sleep(request.seconds)
            try:
                request = plan.send(reply)
            except StopIteration as stop:
                return stop.value

    def _swap(self, request: Swap) -> tuple[bool, bytes | None]:
        self._register(request.names, request.expires)
        stored, current = swap_result(self._script(SWAP, request.keys(), swap_args(request, self._keep)))
        self.recent.put(request.names.hash, request.field, request.data if stored else current)
        return stored, current

    def _primaries(self, client: Any) -> list[Any]:
        return list(client.get_primaries()) if self._cluster else [None]

    # -- primitives ----------------------------------------------------------------------------
    def read(self, scope: str, key: str) -> bytes | None:
        names, field = self.layout.names(scope), self.layout.field(key)
        raw: bytes | None = self._script(READ, (names.hash, names.deadlines), (field, now_ms()), "read")
        return raw

    def write(self, scope: str, key: str, data: bytes, expires_at: int | None = None) -> bytes | None:
        self._sweep_now_and_then()
        names, field, expires = self.layout.names(scope), self.layout.field(key), expires_arg(expires_at)
        self._register(names, expires)
        args = (field, data, now_ms(), expires, names.scope, self._keep)
        old: bytes | None = self._script(WRITE, names.writing(), args)
        self.recent.put(names.hash, field, data)
        return old

    def remove(self, scope: str, key: str) -> bytes | None:
        names, field = self.layout.names(scope), self.layout.field(key)
        args = (field, now_ms(), names.scope, self._keep)
        old: bytes | None = self._script(REMOVE, names.writing(), args)
        self.recent.put(names.hash, field, None)
        return old

    def write_if(self, scope: str, key: str, data: bytes, token: Token, expires_at: ExpiresAt = KEEP) -> bool:
        if token is not None and not isinstance(token, bytes):
            raise TypeError(f"write_if token must be the bytes read_versioned returned, got {token!r}")
        request = Swap(self.layout.names(scope), self.layout.field(key), token, data, expires_arg(expires_at))
        stored, _ = self._swap(request)
        return stored

    def modify(
        self, scope: str, key: str, change: Callable[[bytes | None], bytes], expires_at: ExpiresAt = KEEP
    ) -> tuple[bytes | None, bytes]:
        self._sweep_now_and_then()
        names, field = self.layout.names(scope), self.layout.field(key)
        plan = modify_plan(self.recent, names, field, change, expires_arg(expires_at))
        result: tuple[bytes | None, bytes] = self._drive(plan)
        return result

    def read_expiry(self, scope: str, key: str) -> tuple[bool, int | None]:
        names, field = self.layout.names(scope), self.layout.field(key)
        reply = self._script(READ_EXPIRY, (names.hash, names.deadlines), (field, now_ms()), "read")
        return (bool(reply), deadline_of(reply[1]) if len(reply) > 1 else None)

    def set_expiry(self, scope: str, key: str, expires_at: int | None) -> bool:
        names, field, expires = self.layout.names(scope), self.layout.field(key), expires_arg(expires_at)
        self._register(names, expires)
        keys = (names.hash, names.deadlines, names.due)
        return bool(self._script(SET_EXPIRY, keys, (field, now_ms(), expires, names.scope)))

    def take_expired(self, limit: int = 1000) -> list[Taken]:
        """Claim up to ``limit`` entries past their deadline and return them as
        ``(scope, key, value, deadline)``; across processes each is claimed once while its claim
        holds. With expiry events on the claim is a lease (``expiring.take_plan``): the entries
        wait in their slot's lease set until :meth:`ack_expired`, and are claimed again once
        the lease lapses; without, they are removed."""
        claimed: list[Claimed] = self._drive(take_plan(self.layout, limit, self._lease_ms))
        return self.leases.hold(claimed) if self._lease_ms is not None else [claim[0] for claim in claimed]

    def ack_expired(self, taken: Sequence[Taken]) -> None:
        """Remove the leases of delivered entries: one ACK script per slot (a batch acknowledged in
        part: its lease replaced by one of the rest, ``expiring.Leases.release``)."""
        changes = self.leases.release(taken)
        if changes:
            self._drive(ack_plan(self.layout, changes))
        self.leases.drop(taken, changes)

    def write_many_if(
        self, checks: Sequence[tuple[str, str, Token]], writes: Sequence[PlannedWrite]
    ) -> bool:
        """``state::transact`` after a read: one script checks every entry and writes them all."""
        return isinstance(self.write_many_when(checked_tokens(checks), writes), list)

    def write_many_when(
        self, conditions: Sequence[ByteCondition], writes: Sequence[PlannedWrite]
    ) -> list[bytes | None] | Missed:
        """``state::transact``: one script checks the conditions, writes and answers the old bytes
        (see ``transactions``)."""
        for scope, _key, data, expires_at in writes:
            if data is not None and expires_at is not None and expires_at is not KEEP:
                self._register(self.layout.names(scope), expires_arg(expires_at))

        def run(client: Any) -> Any:
            # the client is connected here, so an auto-detected Cluster is known by now
            keys, argv = script_args(self.layout, conditions, writes, bool(self._cluster), self._keep)
            try:
                return client.evalsha(TRANSACT.sha, len(keys), *keys, *argv)
            except NoScriptError:  # NOSCRIPT means it did not run
                return client.eval(TRANSACT.source, len(keys), *keys, *argv)

        answer = outcome(self._call("write", "script transact", run))
        if isinstance(answer, list):
            hash_key = self.layout.hash_key
            self.recent.put_many((hash_key(scope), key.encode(), data) for scope, key, data, _ in writes)
        return answer

    # -- state::batch ----------------------------------------------------------------------------
    def run_many(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Reads and writes in one pipeline (on a Cluster, one per node); see ``pipelining``."""
        out: list[Any] = [None] * len(calls)
        queued: list[int] = []
        for i, call in enumerate(calls):
            if pipelined(call):
                queued.append(i)
            else:
                out[i] = _alone(self, call)
        groups = [queued] if queued else []
        if queued and self._cluster:
            try:
                groups = by_node(self._connect(), self.layout, calls, queued)
            except Exception:  # not connected: the pipeline's own call reports it
                pass
        for group in groups:
            self._send(calls, group, out)
        return out

    def _send(self, calls: Sequence[tuple[str, tuple[Any, ...]]], group: list[int], out: list[Any]) -> None:
        part = [calls[i] for i in group]
        sent = units(self.layout, calls, group, self._keep)

        def run(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for args, _, _ in sent:
                pipe.execute_command(*args)
            replies: list[Any] = pipe.execute(raise_on_error=False)
            return replies

        while sent:  # a second time only for scripts the server lacked (sent again by source)
            try:
                replies = self._call(kind_of(part), f"pipeline of {len(sent)} commands", run)
            except Exception as exc:
                fail_units(sent, out, exc)
                return
            again, sent = spread(self.layout, self.recent, calls, sent, replies, out)
            for i in again:
                out[i] = _alone(self, calls[i])

    def list_scopes(self) -> list[str]:
        scopes: list[str] = self._drive(scopes_plan(self.layout))
        return scopes

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        page: Page = self._drive(scan_plan(self.layout, scope, cursor, limit))
        return page

    def scan_counted(self, scope: str, limit: int) -> tuple[list[tuple[str, bytes]], str | None, int | None]:
        """The first page and the count in one script: one round trip per first page, not two."""
        found: tuple[list[tuple[str, bytes]], str | None, int | None] = self._drive(
            scan_counted_plan(self.layout, scope, limit)
        )
        return found

    def count(self, scope: str) -> int | None:
        names = self.layout.names(scope)
        n: int = self._script(COUNT, (names.hash, names.deadlines), (now_ms(),), "read")
        return n

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def async_twin(self) -> AsyncAdapter:
        return AsyncRedisAdapter(
            self.settings, cluster=self._cluster, recent=self.recent, registered=self.registered
        )


def _alone(adapter: Adapter, call: tuple[str, tuple[Any, ...]]) -> Any:
    try:
        return getattr(adapter, call[0])(*call[1])
    except Exception as exc:
        return exc


def _execute(client: Any, request: Read) -> Any:
    if request.node is None:
        return client.execute_command(*request.args)
    return client.execute_command(*request.args, target_nodes=request.node)

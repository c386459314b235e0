"""The ``redis`` adapter (sync): the primitives over redis-py, one round trip each.

The client is built on first use, so opening a store does no I/O and a server that is
down at start-up is retried like any other outage. With ``cluster: auto`` the server is
asked once (``INFO cluster``) which client it needs.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from redis.exceptions import NoPermissionError, NoScriptError

from iii_state_core import Adapter, AsyncAdapter, BackendError, Capabilities, StateError
from iii_state_core.adapter import Page, Token

from . import connections
from .layout import REMOVE, WRITE, WRITE_IF, Layout, Script
from .listing import PRIMARIES, Plan, Read, scan_plan, scopes_plan
from .outcomes import Kind, RetryPolicy
from .settings import RedisSettings, read_settings

T = TypeVar("T")

CAPABILITIES = Capabilities(
    # Redis itself limits names and values to proto-max-bulk-len (512 MB by default).
    max_scope_bytes=None,
    max_key_bytes=None,
    max_value_bytes=None,
    # Held by the server, so an acknowledged write outlives the writing process; whether it
    # outlives the server depends on its AOF/RDB settings (see the README).
    durable=True,
    shared=True,
    # The core's loop: HGET, then a compare-and-swap script on the exact bytes.
    atomic_update="emulated",
    # HSCAN may return a key twice (the core deduplicates list and list_keys).
    ordered_listing=False,
    listing_cost=(
        "list_entries: HSCAN, O(limit) per page; list_groups: SCAN MATCH on every primary, "
        "O(all keys in the database)"
    ),
)


def closed_error() -> BackendError:
    return BackendError("the store is closed")


def cluster_enabled(info: Mapping[str, Any]) -> bool:
    return str(info.get("cluster_enabled", 0)) == "1"


class RedisAdapter(Adapter):
    """Scopes as Redis hashes (``<key_prefix><scope>``), values as compact JSON fields."""

    name = "redis"
    distribution = "iii-state-redis"
    capabilities = CAPABILITIES

    @classmethod
    def open(cls, config: Mapping[str, Any]) -> Adapter:
        return cls(read_settings(config))

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.layout = Layout.for_prefix(settings.key_prefix)
        self.policy = RetryPolicy(settings.retries)
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

    def _script(self, script: Script, key: bytes, *args: bytes) -> Any:
        def run(client: Any) -> Any:
            try:
                return client.evalsha(script.sha, 1, key, *args)
            except NoScriptError:  # a restarted or new server: NOSCRIPT means it did not run
                return client.eval(script.source, 1, key, *args)

        return self._call("write", f"script {script.name}", run)

    def _drive(self, plan: Plan) -> Any:
        request = next(plan)
        while True:
            if request is PRIMARIES:
                reply: Any = self._call("read", "CLUSTER SLOTS", self._primaries)
            else:
                assert isinstance(request, Read)
                reply = self._call("read", str(request.args[0]), functools.partial(_execute, request=request))
            try:
                request = plan.send(reply)
            except StopIteration as stop:
                return stop.value

    def _primaries(self, client: Any) -> list[Any]:
        return list(client.get_primaries()) if self._cluster else [None]

    # -- primitives ----------------------------------------------------------------------------
    def read(self, scope: str, key: str) -> bytes | None:
        name, field = self.layout.hash_key(scope), self.layout.field(key)
        raw: bytes | None = self._call("read", "HGET", lambda c: c.hget(name, field))
        return raw

    def write(self, scope: str, key: str, data: bytes) -> bytes | None:
        old: bytes | None = self._script(WRITE, self.layout.hash_key(scope), self.layout.field(key), data)
        return old

    def remove(self, scope: str, key: str) -> bytes | None:
        old: bytes | None = self._script(REMOVE, self.layout.hash_key(scope), self.layout.field(key))
        return old

    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        name, field = self.layout.hash_key(scope), self.layout.field(key)
        if token is None:
            return bool(self._call("write", "HSETNX", lambda c: c.hsetnx(name, field, data)))
        if not isinstance(token, bytes):
            raise TypeError(f"write_if token must be the bytes read_versioned returned, got {token!r}")
        return int(self._script(WRITE_IF, name, field, token, data)) == 1

    def list_scopes(self) -> list[str]:
        scopes: list[str] = self._drive(scopes_plan(self.layout))
        return scopes

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        page: Page = self._drive(scan_plan(self.layout, scope, cursor, limit))
        return page

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def async_twin(self) -> AsyncAdapter:
        from .async_adapter import AsyncRedisAdapter

        return AsyncRedisAdapter(self.settings, cluster=self._cluster)


def _execute(client: Any, request: Read) -> Any:
    if request.node is None:
        return client.execute_command(*request.args)
    return client.execute_command(*request.args, target_nodes=request.node)

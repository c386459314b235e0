"""The engine's side of the iii worker protocol, for tests.

:class:`EnginePeer` is a small asyncio WebSocket server that a worker built on
the real ``iii-sdk`` client connects to instead of an iii engine. It speaks the
engine's JSON frames (see ``tests/worker/README.md``): it greets each
connection with ``workerregistered``, records what the worker registers, sends
``invokefunction`` / ``registertrigger`` / ``unregistertrigger`` and awaits the
answers, answers the worker's own ``invokefunction`` calls with functions a test
serves on the peer, replays trigger bindings when a trigger type registers again
(as the engine does after a reconnect), and can drop the connection.

Use it from a coroutine; the SDK runs its own event loop on a thread of its own,
so call the SDK's blocking functions (``register_worker``, ``shutdown``) through
``asyncio.to_thread``::

    async with EnginePeer() as peer:
        iii = await asyncio.to_thread(register_worker, peer.url, options)
        iii.register_function("demo::echo", echo)
        await peer.wait_for_function("demo::echo")
        assert await peer.call("demo::echo", {"x": 1}) == {"x": 1}
"""

from __future__ import annotations

import asyncio
import inspect
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

T = TypeVar("T")

#: A function served on the peer: ``handler(data, metadata)`` returning the
#: result, or an awaitable of it. Raise :class:`PeerFunctionError` to answer
#: with a chosen error body; any other exception answers ``invocation_failed``.
PeerHandler = Callable[[Any, Any], Any]

DEFAULT_TIMEOUT = 5.0


async def eventually(
    predicate: Callable[[], T | None], timeout: float = DEFAULT_TIMEOUT, interval: float = 0.01
) -> T:
    """Poll ``predicate()`` until it is truthy: for state the peer is not told
    about, such as a list a worker's handler fills on the SDK's thread.

    :returns: the predicate's truthy value.
    :raises TimeoutError: after ``timeout`` seconds.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := predicate()):
        if asyncio.get_running_loop().time() >= deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
    assert value is not None
    return value


class PeerFunctionError(Exception):
    """Raised by a peer-side function to answer with ``{code, message}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RemoteError(Exception):
    """The worker answered an invocation with an error body."""

    def __init__(self, error: dict[str, Any]) -> None:
        self.code: str = str(error.get("code", ""))
        self.message: str = str(error.get("message", ""))
        self.stacktrace: str | None = error.get("stacktrace")
        super().__init__(f"{self.code}: {self.message}")


class ConnectionLost(Exception):
    """The connection closed while the peer was waiting for an answer on it."""


@dataclass(frozen=True)
class InvocationOutcome:
    """The ``invocationresult`` frame the worker sent back."""

    frame: dict[str, Any]

    @property
    def ok(self) -> bool:
        """:returns: ``True`` when the frame carries no ``error``."""
        return not self.frame.get("error")

    @property
    def result(self) -> Any:
        """:returns: ``result`` (``None`` when absent)."""
        return self.frame.get("result")

    @property
    def error(self) -> dict[str, Any] | None:
        """:returns: the ``{code, message, stacktrace?}`` body, or ``None``."""
        return self.frame.get("error") or None

    @property
    def code(self) -> str | None:
        return self.error["code"] if self.error else None

    @property
    def message(self) -> str | None:
        return self.error["message"] if self.error else None


@dataclass(frozen=True)
class PeerCall:
    """One ``invokefunction`` the worker sent to the peer (a call it made)."""

    function_id: str
    data: Any
    metadata: Any
    namespace: str | None
    invocation_id: str | None
    action: Any
    frame: dict[str, Any]
    connection: int


@dataclass(eq=False)
class WorkerConnection:
    """One accepted SDK connection and what the worker registered on it."""

    index: int
    worker_id: str
    ws: ServerConnection = field(repr=False)
    #: Every JSON frame received, in order.
    frames: list[dict[str, Any]] = field(default_factory=list)
    #: Live ``registerfunction`` frames, by function id.
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Live ``registertriggertype`` frames, by trigger type id.
    trigger_types: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``registertrigger`` frames the worker sent (its own bindings), by id.
    triggers: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``triggerregistrationresult`` frames received, by trigger id (last wins).
    trigger_results: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The payload of the worker's ``engine::workers::register`` call.
    worker_info: dict[str, Any] | None = None
    #: Binary frames received (the SDK's telemetry); counted, never parsed.
    binary_frames: int = 0
    closed: bool = False

    def frames_of(self, frame_type: str) -> list[dict[str, Any]]:
        """:returns: the received frames whose ``type`` is ``frame_type``."""
        return [f for f in self.frames if f.get("type") == frame_type]


class EnginePeer:
    """A fake iii engine on loopback for one worker (or a few, one at a time).

    :param host: interface to listen on.
    :param port: port to listen on; ``0`` picks a free one (see :attr:`url`).
    :param features: sent as ``workerregistered.features``. Empty (the
        default) leaves the field out, as an engine older than 0.25 does. With
        ``observe.v1`` the peer confirms each registered function with
        ``functionregistered`` and the observers :meth:`add_observer` attached,
        as iii 0.25 tells a function's host who observes it.
    :param replay_triggers: when a connection registers a trigger type, send it
        every binding of that type the peer holds, as the engine does when a
        provider registers again after a reconnect.
    :param stamp_callers: overwrite ``_caller_worker_id`` in every object payload the peer
        sends, as the engine does (the state worker's identity checks need it).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        features: Sequence[str] = (),
        replay_triggers: bool = True,
        stamp_callers: bool = False,
    ) -> None:
        self._host = host
        self._port = port
        self._features = list(features)
        self._replay_triggers = replay_triggers
        self.stamp_callers = stamp_callers
        self._server: Server | None = None
        self._changed = asyncio.Condition()
        self._pending: dict[str, tuple[asyncio.Future[dict[str, Any]], WorkerConnection]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._served: dict[str, PeerHandler] = {}
        #: Every connection accepted, oldest first.
        self.connections: list[WorkerConnection] = []
        #: Every call the worker made to a function other than ``engine::*``.
        self.calls: list[PeerCall] = []
        #: Bindings the worker accepted (``registertrigger`` frames), by id.
        self.bindings: dict[str, dict[str, Any]] = {}
        #: Other workers the engine lists (``engine::workers::list``): id -> name.
        self.workers: dict[str, str] = {}
        #: Observers attached with :meth:`add_observer` (``ObserverInfo`` objects), by function id.
        self.observers: dict[str, list[dict[str, Any]]] = {}
        self._revision = 0
        #: The worker the test's own calls come from: the engine stamps its id as
        #: ``_caller_worker_id`` on every call, as iii does.
        self.caller_id = self.add_worker("app")

    # -- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        """Start listening. :attr:`url` is valid afterwards."""
        self._server = await serve(self._handle, self._host, self._port, max_size=64 * 1024 * 1024)
        self._port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening, close every connection and fail what still waits."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> EnginePeer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """:returns: the ``ws://`` address a worker connects to."""
        return f"ws://{self._host}:{self._port}"

    @property
    def current(self) -> WorkerConnection:
        """:returns: the newest connection that is still open.

        :raises LookupError: when no connection is open.
        """
        for conn in reversed(self.connections):
            if not conn.closed:
                return conn
        raise LookupError("no worker is connected")

    # -- waiting ---------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float = DEFAULT_TIMEOUT) -> T:
        """Wait until ``predicate()`` is truthy, re-checked after every frame
        and connection event (use :func:`eventually` for other state).

        :returns: the predicate's truthy value.
        :raises TimeoutError: after ``timeout`` seconds.
        """
        try:
            async with self._changed:
                value = await asyncio.wait_for(self._changed.wait_for(predicate), timeout)
        except asyncio.TimeoutError:  # not the builtin before Python 3.11
            raise TimeoutError(f"condition not met within {timeout}s") from None
        assert value is not None
        return value

    async def wait_for_connection(self, index: int = 0, timeout: float = DEFAULT_TIMEOUT) -> WorkerConnection:
        """:returns: the ``index``-th connection (0 = first), once accepted."""
        return await self.wait_for(
            lambda: self.connections[index] if len(self.connections) > index else None, timeout
        )

    async def wait_for_function(
        self, function_id: str, connection: WorkerConnection | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        """:returns: the ``registerfunction`` frame for ``function_id`` on
        ``connection`` (default: whichever open connection has it)."""
        return await self.wait_for(lambda: self._find(connection, "functions", function_id), timeout)

    async def wait_for_trigger_type(
        self, type_id: str, connection: WorkerConnection | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        """:returns: the ``registertriggertype`` frame for ``type_id``."""
        return await self.wait_for(lambda: self._find(connection, "trigger_types", type_id), timeout)

    async def wait_for_calls(
        self, function_id: str, count: int = 1, timeout: float = DEFAULT_TIMEOUT
    ) -> list[PeerCall]:
        """:returns: the first ``count`` calls the worker made to ``function_id``."""

        def enough() -> list[PeerCall] | None:
            found = self.calls_to(function_id)
            return found[:count] if len(found) >= count else None

        return await self.wait_for(enough, timeout)

    def calls_to(self, function_id: str) -> list[PeerCall]:
        """:returns: the calls the worker made to ``function_id`` so far."""
        return [c for c in self.calls if c.function_id == function_id]

    # -- identity ------------------------------------------------------

    def add_worker(self, name: str) -> str:
        """List one more (not connected) worker under ``name``. :returns: its id."""
        worker_id = str(uuid.uuid4())
        self.workers[worker_id] = name
        return worker_id

    def list_workers(self) -> dict[str, Any]:
        """The answer to ``engine::workers::list``: connected workers and added ones."""
        listed = [{"id": i, "name": n} for i, n in self.workers.items()]
        for conn in self.connections:
            if not conn.closed:
                name = (conn.worker_info or {}).get("name") or conn.worker_id
                listed.append({"id": conn.worker_id, "name": name})
        return {"workers": listed}

    # -- peer-side functions --------------------------------------------

    def serve(self, function_id: str, handler: PeerHandler) -> None:
        """Answer the worker's calls to ``function_id`` with ``handler``.

        Every call is recorded in :attr:`calls` whether served or not; a call
        to a function nobody serves answers ``function_not_found``.
        """
        self._served[function_id] = handler

    # -- observers (observe.v1) ------------------------------------------

    async def add_observer(self, function_id: str, observer_id: str, target: str = "app::observer") -> None:
        """Attach an observer (no filters) to ``function_id`` and tell its host (``observeradded``),
        as the engine does when an app calls ``iii.observe``."""
        info = {"id": observer_id, "filters": {}, "target": target, "capture": ["input"]}
        self.observers.setdefault(function_id, []).append(info)
        await self._tell_host(function_id, {"type": "observeradded", "observer": info})

    async def remove_observer(self, function_id: str, observer_id: str) -> None:
        """Detach observer ``observer_id`` from ``function_id`` and tell its host
        (``observerremoved``), as the engine does when the observing app stops observing."""
        kept = [o for o in self.observers.get(function_id, []) if o["id"] != observer_id]
        self.observers[function_id] = kept
        await self._tell_host(function_id, {"type": "observerremoved", "id": observer_id})

    async def _tell_host(self, function_id: str, message: dict[str, Any]) -> None:
        """Send an observer change to the live connection that registered ``function_id``, with
        the next revision (the SDK ignores a change whose revision is not above the last it applied)."""
        conn = next(c for c in reversed(self.connections) if function_id in c.functions and not c.closed)
        self._revision += 1
        message = {**message, "function_id": function_id, "namespace": "default", "revision": self._revision}
        await conn.ws.send(json.dumps(message))

    def _observe(self) -> bool:
        return "observe.v1" in self._features

    # -- engine -> worker ------------------------------------------------

    async def send(self, frame: dict[str, Any], connection: WorkerConnection | None = None) -> None:
        """Send one raw JSON frame (default: on :attr:`current`)."""
        conn = connection or self.current
        await conn.ws.send(json.dumps(frame))

    async def invoke(
        self,
        function_id: str,
        data: Any = None,
        *,
        metadata: Any = None,
        connection: WorkerConnection | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        caller: str | None = None,
        stamp: bool | None = None,
    ) -> InvocationOutcome:
        """Send ``invokefunction`` and await the worker's ``invocationresult``.

        Like the engine, the peer overwrites ``_caller_worker_id`` in an object payload with the
        calling worker's id (``caller``, default :attr:`caller_id`) when ``stamp`` (default: the
        peer's ``stamp_callers``); otherwise the payload goes as given.

        :raises TimeoutError: when no answer comes within ``timeout``.
        :raises ConnectionLost: when the connection closes first.
        """
        conn = connection or self.current
        invocation_id = str(uuid.uuid4())
        if (self.stamp_callers if stamp is None else stamp) and isinstance(data, dict):
            data = {**data, "_caller_worker_id": caller or self.caller_id}
        frame: dict[str, Any] = {
            "type": "invokefunction",
            "invocation_id": invocation_id,
            "function_id": function_id,
            "data": data,
        }
        if metadata is not None:
            frame["metadata"] = metadata
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[invocation_id] = (future, conn)
        try:
            await self.send(frame, conn)
            return InvocationOutcome(await asyncio.wait_for(future, timeout))
        except asyncio.TimeoutError:  # not the builtin before Python 3.11
            raise TimeoutError(f"no invocationresult for {function_id} within {timeout}s") from None
        finally:
            self._pending.pop(invocation_id, None)

    async def call(self, function_id: str, data: Any = None, **kwargs: Any) -> Any:
        """Like :meth:`invoke`, returning the result.

        :raises RemoteError: when the worker answers with an error.
        """
        outcome = await self.invoke(function_id, data, **kwargs)
        if outcome.error:
            raise RemoteError(outcome.error)
        return outcome.result

    async def send_void(
        self, function_id: str, data: Any = None, connection: WorkerConnection | None = None
    ) -> None:
        """Send a fire-and-forget ``invokefunction`` (``invocation_id: null``)."""
        await self.send(
            {"type": "invokefunction", "invocation_id": None, "function_id": function_id, "data": data},
            connection,
        )

    async def register_trigger(
        self,
        trigger_type: str,
        function_id: str,
        config: Any = None,
        *,
        trigger_id: str | None = None,
        metadata: Any = None,
        namespace: str | None = None,
        connection: WorkerConnection | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> dict[str, Any]:
        """Bind ``function_id`` to ``trigger_type`` on the worker that provides it.

        Sends ``registertrigger`` and awaits ``triggerregistrationresult``. An
        accepted binding (no ``error``) is kept in :attr:`bindings` and replayed
        on reconnect. The SDK answers nothing for a type it does not provide,
        which ends in ``TimeoutError``.

        :returns: the ``triggerregistrationresult`` frame.
        """
        conn = connection or self.current
        trigger_id = trigger_id or str(uuid.uuid4())
        frame: dict[str, Any] = {
            "type": "registertrigger",
            "id": trigger_id,
            "trigger_type": trigger_type,
            "function_id": function_id,
            "config": config,
        }
        if metadata is not None:
            frame["metadata"] = metadata
        if namespace is not None:
            frame["namespace"] = namespace
        await self.send(frame, conn)
        result = await self.wait_for(lambda: conn.trigger_results.get(trigger_id), timeout)
        if not result.get("error"):
            self.bindings[trigger_id] = frame
        return result

    async def unregister_trigger(
        self, trigger_id: str, trigger_type: str | None = None, connection: WorkerConnection | None = None
    ) -> None:
        """Send ``unregistertrigger`` (no answer is expected) and forget the binding."""
        binding = self.bindings.pop(trigger_id, None)
        if trigger_type is None and binding is not None:
            trigger_type = binding["trigger_type"]
        await self.send(
            {"type": "unregistertrigger", "id": trigger_id, "trigger_type": trigger_type}, connection
        )

    async def drop(
        self, *, abort: bool = True, connection: WorkerConnection | None = None
    ) -> WorkerConnection:
        """Drop a connection (default: :attr:`current`) and wait until it is closed.

        :param abort: ``True`` cuts the TCP connection with no close frame (a
            crashed or unreachable engine); ``False`` sends close code 1012
            (an engine restart).
        :returns: the dropped connection.
        """
        conn = connection or self.current
        if abort:
            conn.ws.transport.abort()
        else:
            await conn.ws.close(1012, "engine restarting")
        await self.wait_for(lambda: conn.closed)
        return conn

    # -- internals -------------------------------------------------------

    def _find(self, connection: WorkerConnection | None, table: str, key: str) -> dict[str, Any] | None:
        conns = [connection] if connection is not None else [c for c in self.connections if not c.closed]
        for conn in reversed(conns):
            found: dict[str, Any] | None = getattr(conn, table).get(key)
            if found is not None:
                return found
        return None

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else "/"
        if path.startswith("/otel"):
            # The SDK's telemetry socket (OpenTelemetry on): drained, ignored.
            async for _ in ws:
                pass
            return
        conn = WorkerConnection(index=len(self.connections), worker_id=str(uuid.uuid4()), ws=ws)
        self.connections.append(conn)
        hello: dict[str, Any] = {
            "type": "workerregistered",
            "worker_id": conn.worker_id,
            "reattach_token": str(uuid.uuid4()),
        }
        if self._features:
            hello["features"] = self._features
        try:
            await ws.send(json.dumps(hello))
            await self._notify()
            async for raw in ws:
                if isinstance(raw, bytes):
                    conn.binary_frames += 1
                    continue
                await self._on_frame(conn, json.loads(raw))
        except ConnectionClosed:
            pass
        finally:
            conn.closed = True
            for future, owner in list(self._pending.values()):
                if owner is conn and not future.done():
                    future.set_exception(ConnectionLost(f"connection {conn.index} closed"))
            await self._notify()

    async def _on_frame(self, conn: WorkerConnection, frame: dict[str, Any]) -> None:
        conn.frames.append(frame)
        kind = frame.get("type")
        if kind == "registerfunction":
            conn.functions[frame["id"]] = frame
            if self._observe():
                self._revision += 1
                confirmed = {
                    "type": "functionregistered", "id": frame["id"], "namespace": "default",
                    "revision": self._revision, "local_dispatch": False,
                    "observers": self.observers.get(frame["id"], []),
                }  # fmt: skip
                await conn.ws.send(json.dumps(confirmed))
        elif kind == "unregisterfunction":
            conn.functions.pop(frame.get("id", ""), None)
        elif kind == "registertriggertype":
            conn.trigger_types[frame["id"]] = frame
            if self._replay_triggers:
                for binding in [b for b in self.bindings.values() if b["trigger_type"] == frame["id"]]:
                    await conn.ws.send(json.dumps(binding))
        elif kind == "unregistertriggertype":
            conn.trigger_types.pop(frame.get("id", ""), None)
        elif kind == "registertrigger":
            conn.triggers[frame["id"]] = frame
        elif kind == "unregistertrigger":
            conn.triggers.pop(frame.get("id", ""), None)
        elif kind == "triggerregistrationresult":
            conn.trigger_results[frame["id"]] = frame
        elif kind == "invocationresult":
            pending = self._pending.get(frame.get("invocation_id", ""))
            if pending is not None and not pending[0].done():
                pending[0].set_result(frame)
        elif kind == "invokefunction":
            self._spawn(self._answer(conn, frame))
        elif kind == "ping":
            await conn.ws.send(json.dumps({"type": "pong"}))
        await self._notify()

    async def _answer(self, conn: WorkerConnection, frame: dict[str, Any]) -> None:
        """Answer one call the worker made, as the engine routes it."""
        function_id = frame.get("function_id", "")
        invocation_id = frame.get("invocation_id")
        action = frame.get("action")
        if function_id == "engine::workers::register":
            conn.worker_info = frame.get("data")
            reply: dict[str, Any] = {"result": {"worker_id": conn.worker_id}}
        elif function_id == "engine::workers::list" and function_id not in self._served:
            reply = {"result": self.list_workers()}
        else:
            self.calls.append(
                PeerCall(
                    function_id=function_id,
                    data=frame.get("data"),
                    metadata=frame.get("metadata"),
                    namespace=frame.get("namespace"),
                    invocation_id=invocation_id,
                    action=action,
                    frame=frame,
                    connection=conn.index,
                )
            )
            await self._notify()
            reply = await self._run_served(function_id, frame)
        if not invocation_id or (isinstance(action, dict) and action.get("type") == "void"):
            return
        try:
            answer = {"type": "invocationresult", "invocation_id": invocation_id, "function_id": function_id}
            await conn.ws.send(json.dumps({**answer, **reply}))
        except ConnectionClosed:
            pass

    async def _run_served(self, function_id: str, frame: dict[str, Any]) -> dict[str, Any]:
        handler = self._served.get(function_id)
        if handler is None:
            namespace = frame.get("namespace") or "default"
            return {
                "error": {
                    "code": "function_not_found",
                    "message": f"Function {function_id} not found in namespace {namespace}",
                }
            }
        try:
            result = handler(frame.get("data"), frame.get("metadata"))
            if inspect.isawaitable(result):
                result = await result
        except PeerFunctionError as error:
            return {"error": {"code": error.code, "message": error.message}}
        except Exception as error:  # a test's handler failed: answer as a worker would
            return {"error": {"code": "invocation_failed", "message": str(error)}}
        return {"result": result}

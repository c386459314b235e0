"""Run store work in separate processes: the contention and pagination tests need real ones.

Children are started with ``spawn`` (no inherited sockets or locks) and reopen the store from
a picklable :class:`StoreSpec`.
"""

from __future__ import annotations

import importlib
import multiprocessing
import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from iii_state_core import ConflictError, StateStore, open_store
from iii_state_core.plugins import Registry


def running(pid: int) -> bool:
    """Whether process ``pid`` runs (Linux ``/proc``). A zombie, ended but not reaped (an init
    that never reaps leaves orphans so), does not."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass(frozen=True)
class StoreSpec:
    """Everything another process needs to open the same store."""

    adapter: str
    adapter_config: dict[str, Any]
    state_block: dict[str, Any]
    plugin_modules: list[str] = field(default_factory=list)
    load_entry_points: bool = True

    @classmethod
    def of(cls, store: StateStore) -> StoreSpec | None:
        settings = store.settings
        if settings is None:
            return None
        registry = store.registry
        return cls(
            adapter=settings.adapter,
            adapter_config=dict(settings.adapter_config),
            state_block={
                "triggers_enabled": settings.triggers_enabled,
                "max_value_bytes": settings.max_value_bytes,
                "max_value_depth": settings.max_value_depth,
            },
            plugin_modules=list(registry.extra_plugin_modules) if registry else [],
            load_entry_points=registry.load_entry_points if registry else True,
        )

    def open(self) -> StateStore:
        registry = Registry(
            extra_plugins=[importlib.import_module(m) for m in self.plugin_modules],
            load_entry_points=self.load_entry_points,
        )
        block = {"adapter": {"name": self.adapter, "config": self.adapter_config}}
        block.update({k: v for k, v in self.state_block.items() if v is not None})
        return open_store(block, registry=registry)


def _child(
    target: Callable[..., Any], spec: StoreSpec, queue: Any, args: tuple[Any, ...], index: int = 0
) -> None:
    try:
        with spec.open() as store:
            queue.put(("ok", index, target(store, *args)))
    except BaseException:
        queue.put(("error", index, traceback.format_exc()))


def run_processes(
    spec: StoreSpec,
    target: Callable[..., Any],
    args_per_process: list[tuple[Any, ...]],
    *,
    timeout: float = 120.0,
) -> list[Any]:
    """Run ``target(store, *args)`` in one process per args tuple; return results in args order.

    :raises AssertionError: with the child's traceback when a child fails or times out.
    """
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(target, spec, queue, a, i), daemon=True)
        for i, a in enumerate(args_per_process)
    ]
    for p in procs:
        p.start()
    results: list[Any] = [None] * len(procs)
    deadline = time.monotonic() + timeout
    try:
        for _ in procs:
            remaining = max(0.1, deadline - time.monotonic())
            status, index, value = queue.get(timeout=remaining)
            if status != "ok":
                raise AssertionError(f"worker process {index} failed:\n{value}")
            results[index] = value
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
    return results


def context() -> Any:
    return multiprocessing.get_context("spawn")


# -- work done in children -------------------------------------------------------------------


def increments(store: StateStore, scope: str, key: str, count: int, barrier: Any) -> int:
    barrier.wait()
    for _ in range(count):
        store.update(scope, key, [{"type": "increment", "path": "n", "by": 1}])
    return count


def increments_and_deletes(
    store: StateStore, scope: str, key: str, count: int, me: int, barrier: Any
) -> tuple[int, int]:
    """Increment ``n``, deleting the entry every tenth step; return (increments, sum of n deleted)."""
    barrier.wait()
    increments = deleted = 0
    for i in range(count):
        if (i + me) % 10 == 9:
            removed = store.delete(scope, key)
            deleted += removed["n"] if isinstance(removed, dict) else 0
        else:
            store.update(scope, key, [{"type": "increment", "path": "n", "by": 1}])
            increments += 1
    return increments, deleted


def racing_cas(store: StateStore, scope: str, key: str, expected: Any, me: int, barrier: Any) -> str:
    barrier.wait()
    return "swapped" if store.compare_and_set(scope, key, expected, {"winner": me}).swapped else "missed"


def set_chain(store: StateStore, scope: str, key: str, me: int, count: int, barrier: Any) -> list[Any]:
    barrier.wait()
    return [store.set(scope, key, {"w": me, "i": i}).old_value for i in range(count)]


def churn(store: StateStore, scope: str, prefix: str, stop: Any, started: Any) -> int:
    """Write, overwrite and delete keys named ``prefix…`` until ``stop`` is set."""
    n = 0
    while not stop.is_set() or n < 50:
        if n == 20:
            started.set()  # the walk starts once writes are really flowing
        key = f"{prefix}{n % 300:04d}"
        if n % 3 == 2:
            store.delete(scope, key)
        else:
            store.set(scope, key, {"churn": n})
        n += 1
        if n > 20000:
            break
    return n


def create_keys(store: StateStore, scope: str, prefix: str, count: int, barrier: Any) -> int:
    """Create ``count`` new keys ``prefix00000…`` once every process is ready."""
    barrier.wait()
    for i in range(count):
        store.set(scope, f"{prefix}{i:05d}", i)
    return count


def reopen_and_read(store: StateStore, scope: str, key: str) -> Any:
    return store.get(scope, key)


def start(spec: StoreSpec, target: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, Any]:
    """Start ``target(store, *args)`` in one child process; return ``(process, result queue)``."""
    ctx = context()
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(target, spec, queue, args), daemon=True)
    proc.start()
    return proc, queue


def write_then_hang(store: StateStore, scope: str, count: int, acks: Any) -> None:
    """Write, acknowledge each write on ``acks``, then wait to be killed without ever closing."""
    for i in range(count):
        store.set(scope, f"k{i:03d}", {"i": i})
        acks.put(("set", i))
    store.update(scope, "k000", [{"type": "increment", "path": "n", "by": 5}])
    acks.put(("update", 0))
    store.delete(scope, "k001")
    acks.put(("delete", 1))
    store.compare_and_set(scope, "cas", None, "created")
    acks.put(("done", count))
    time.sleep(3600)


def obey(store: StateStore, orders: Any, replies: Any) -> int:
    """Run the store calls sent on ``orders`` (``(method, args)``; ``None`` ends) and reply to each."""
    done = 0
    while True:
        order = orders.get(timeout=120)
        if order is None:
            return done
        method, args = order
        try:
            result = getattr(store, method)(*args)
            if hasattr(result, "to_wire"):
                result = result.to_wire()
            replies.put(("ok", result))
        except Exception:
            replies.put(("error", traceback.format_exc()))
        done += 1


def collect_expired(store: StateStore, scope: str, ready: Any, stop: Any) -> list[tuple[str, Any, int]]:
    """Deliver expiry events (``store`` opened with ``expiry_events``) until ``stop`` is set:
    ``(key, old_value, wall-clock ms when delivered)`` of each ``state:expired`` on ``scope``."""
    from iii_state_core.expiry import now_ms

    seen: list[tuple[str, Any, int]] = []
    store.on_change(
        lambda e: seen.append((e.key, e.old_value, now_ms())),
        scope=scope,
        condition=lambda e: e.event_type == "state:expired",
    )
    ready.wait()
    stop.wait(60)
    store.close()  # the sweeper delivers what it already took before this returns
    return seen


INC = "increment"


def transfers(
    store: StateStore, scope: str, accounts: int, count: int, me: int, barrier: Any
) -> list[tuple[int, int]]:
    """``count`` transactions each moving 1 unit between two random accounts (``acct<i>``).

    :returns: the ``(from, to)`` of each one that committed; one that lost every race of its
        budget (``ConflictError``) applied nothing and is left out.
    """
    pick = random.Random(me)
    barrier.wait()
    moved: list[tuple[int, int]] = []
    for _ in range(count):
        a, b = pick.sample(range(accounts), 2)
        ops = [
            {"op": "update", "scope": scope, "key": f"acct{k}", "ops": [{"type": INC, "path": "", "by": n}]}
            for k, n in ((a, -1), (b, 1))
        ]  # fmt: skip
        try:
            if store.transact(ops).committed:
                moved.append((a, b))
        except ConflictError:
            pass
    return moved


def balances_after(start: int, accounts: int, moves: list[tuple[int, int]]) -> dict[str, int]:
    """Each account's balance once ``moves`` applied, from ``start`` each."""
    balances = {f"acct{i}": start for i in range(accounts)}
    for a, b in moves:
        balances[f"acct{a}"] -= 1
        balances[f"acct{b}"] += 1
    return balances

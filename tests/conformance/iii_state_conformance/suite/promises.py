"""The ``durable`` and ``shared`` promises, tested the way they are broken.

``durable``: an acknowledged write survives the writing process being killed (SIGKILL, no
``close()``): an adapter that saves at ``close()`` or keeps writes in a process buffer fails.
``shared``: another process's writes are seen by this one's *next* call, even when this one
read the entry just before: an adapter that caches reads, listings or tokens per process fails.
"""

from __future__ import annotations

from typing import Any

import pytest

from iii_state_core import StateStore

from .. import processes
from ..processes import StoreSpec

WRITES = 30


class _Other:
    """A second process running the store calls this test sends it, one at a time."""

    def __init__(self, spec: StoreSpec) -> None:
        ctx = processes.context()
        self.orders, self.replies = ctx.Queue(), ctx.Queue()
        self.proc, self.result = processes.start(spec, processes.obey, (self.orders, self.replies))

    def __call__(self, method: str, *args: Any) -> Any:
        self.orders.put((method, args))
        status, value = self.replies.get(timeout=120)
        assert status == "ok", f"the other process failed:\n{value}"
        return value

    def stop(self) -> None:
        self.orders.put(None)
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()


class PromiseTests:
    def test_acknowledged_writes_survive_the_writer_process_being_killed(
        self, store: StateStore, scope: str, caps: Any
    ) -> None:
        if not caps.durable:
            pytest.skip(f"{store.adapter.name} does not declare durable=True")
        spec = StoreSpec.of(store)
        if spec is None:
            pytest.skip("the store was not opened with open_store(); another process cannot open it")
        acks = processes.context().Queue()
        proc, _ = processes.start(spec, processes.write_then_hang, (scope, WRITES, acks))
        try:
            acked: list[tuple[str, int]] = []
            while not acked or acked[-1][0] != "done":
                acked.append(acks.get(timeout=120))
        finally:
            proc.kill()  # SIGKILL: no close(), no atexit, no flush
            proc.join(30)
        with spec.open() as reopened:
            got = {k: reopened.get(scope, k) for k in reopened.list_keys(scope)}
        want: dict[str, Any] = {f"k{i:03d}": {"i": i} for i in range(WRITES)}
        want["k000"] = {"i": 0, "n": 5}
        del want["k001"]
        want["cas"] = "created"
        lost = sorted(k for k in want if got.get(k) != want[k])
        assert not lost, (
            f"{len(lost)} acknowledged writes were lost when the writer was killed without close(), "
            f"e.g. {lost[0]!r}: {got.get(lost[0])!r} instead of {want[lost[0]]!r}"
        )
        assert "k001" not in got, "an acknowledged delete came back after the writer was killed"

    def test_another_process_writing_between_two_reads_is_seen(
        self, store: StateStore, scope: str, spec: StoreSpec
    ) -> None:
        other = _Other(spec)
        try:
            store.set(scope, "k", {"v": 1})
            assert store.get(scope, "k") == {"v": 1}  # a per-process cache would now hold it
            assert store.get(scope, "absent") is None
            assert sorted(store.list_keys(scope)) == ["k"]
            groups_before = store.list_groups()
            other("set", scope, "k", {"v": 2})
            assert store.get(scope, "k") == {"v": 2}, "a value another process wrote was not seen"
            other("set", scope, "absent", 1)
            assert store.get(scope, "absent") == 1, "a key another process created was not seen"
            assert sorted(store.list_keys(scope)) == ["absent", "k"], "list_keys missed another's key"
            assert [v for k, v in store.list_entries(scope).entries if k == "absent"] == [1]
            other("delete", scope, "k")
            assert store.get(scope, "k") is None, "a key another process deleted is still read"
            # a token or value cached by this process must not decide a conditional write
            store.set(scope, "n", {"n": 1})
            other("update", scope, "n", [{"type": "increment", "path": "n", "by": 10}])
            assert store.update(scope, "n", [{"type": "increment", "path": "n", "by": 1}]).old_value == {
                "n": 11
            }, "an update started from a stale value"
            assert other("get", scope, "n") == {"n": 12}
            assert store.compare_and_set(scope, "absent", 1, 2).swapped
            other("set", scope, "absent", 3)
            assert store.compare_and_set(scope, "absent", 2, 4).current == 3
            # scopes another process creates and empties
            fresh = scope + "-other"
            assert fresh not in groups_before
            other("set", fresh, "x", 1)
            assert fresh in store.list_groups(), "list_groups missed a scope another process created"
            other("delete", fresh, "x")
            assert fresh not in store.list_groups(), "list_groups kept a scope another process emptied"
        finally:
            other.stop()
            store.delete(scope + "-other", "x")

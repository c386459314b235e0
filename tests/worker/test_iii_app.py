"""An app written for iii's ``state`` worker, run unchanged against ``iii-state worker`` over a
real WebSocket: calls, a ``state`` trigger binding with metadata, an ``on-changed`` observer, a
barrier used as a condition, and a worker claiming its namespace — then a restart. As in an iii
0.23+ project, the engine runs the configuration worker, whose entry chooses the store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from engine_peer import EnginePeer, RemoteError
from worker_harness import MEMORY, ConfigurationWorker, run, run_until_it_stops, serving

ORDER = {"id": "o1", "status": "new", "total": 12}


def file_store(path: Path) -> dict[str, Any]:
    return {"adapter": {"name": "kv", "config": {"store_method": "file_based", "file_path": str(path)}}}


async def failure(peer: EnginePeer, function_id: str, payload: Any, **kwargs: Any) -> str:
    try:
        await peer.call(function_id, payload, **kwargs)
    except RemoteError as error:
        assert error.code == "invocation_failed"
        return error.message
    raise AssertionError(f"{function_id} did not fail")


def test_an_iii_app_runs_unchanged(tmp_path: Path) -> None:
    async def scenario() -> None:
        engine = EnginePeer(stamp_callers=True)
        await engine.start()
        try:
            # the project's configuration entry, as iii's console writes it, names the file store;
            # the worker's own config file says in-memory: the entry wins (at boot)
            config = ConfigurationWorker(
                engine, {"state": {**file_store(tmp_path / "kv"), "triggers_enabled": True}}
            )
            await run_app(engine)
            assert (tmp_path / "kv").is_dir() and len(config.entries) == 1, "the entry's store served"
            await after_a_restart(engine)
        finally:
            await engine.close()

    async def run_app(engine: EnginePeer) -> None:
        async with serving(MEMORY, peer=engine) as (peer, _):
            reacted: list[tuple[Any, Any]] = []
            peer.serve("app::on-order", lambda data, metadata: reacted.append((data, metadata)))
            peer.serve("state::on-changed", lambda data, metadata: None)  # the engine's observe hook
            bound = await peer.register_trigger(
                "state", "app::on-order", {"scope": "orders"}, metadata={"tenant": "t1"}
            )
            assert "error" not in bound
            # a binding with a condition (0.23's `condition_function_id`): only an exact false skips
            peer.serve("app::is-paid", lambda data, metadata: data["new_value"]["status"] == "paid")
            peer.serve("app::on-paid", lambda data, metadata: None)
            paid = {"scope": "orders", "key": "o1", "condition_function_id": "app::is-paid"}
            assert "error" not in await peer.register_trigger("state", "app::on-paid", paid)

            # calls
            assert await peer.call("state::set", {"scope": "orders", "key": "o1", "value": ORDER}) == {
                "old_value": None, "new_value": ORDER,
            }  # fmt: skip
            swap = {"scope": "orders", "key": "o1", "expected": ORDER, "value": {**ORDER, "status": "paid"}}
            assert await peer.call("state::compare-and-set", swap) == {"swapped": True}
            assert await peer.call("state::compare-and-set", swap) == {
                "swapped": False, "current": {**ORDER, "status": "paid"},
            }  # fmt: skip
            page = await peer.call("state::list_entries", {"scope": "orders", "limit": 10})
            assert page == {
                "entries": [["o1", {**ORDER, "status": "paid"}]], "next_cursor": None, "done": True,
                "offset": 0, "total": 1,
            }  # fmt: skip

            # the binding ran for both writes, metadata riding along
            await peer.wait_for_calls("app::on-order", 2)
            assert [d["event_type"] for d, _ in reacted] == ["state:created", "state:updated"]
            assert all(m == {"tenant": "t1"} for _, m in reacted)
            (on_paid,) = await peer.wait_for_calls("app::on-paid", 1)
            assert on_paid.data["new_value"]["status"] == "paid" and len(peer.calls_to("app::is-paid")) == 2
            # the observer hook was called through the engine with each change document
            changes = await peer.wait_for_calls("state::on-changed", 2)
            assert changes[1].data["old_value"] == ORDER and changes[1].data["new_value"]["status"] == "paid"
            assert all(c.action == {"type": "void"} for c in changes)

            # a barrier used as a condition (`conditions: [{function_id: "state::barrier", config}]`
            # on a binding): the engine calls it with {event, condition_config}
            barrier = {"id": "ship-o1", "expect": ["payment", "stock"], "key_from": "/key"}
            arrivals = [{"key": "payment", "amount": 12}, {"key": "stock", "left": 3}]
            first = await peer.call("state::barrier", {"event": arrivals[0], "condition_config": barrier})
            assert first == {
                "decision": "skip",
                "reason": 'barrier `ship-o1`: 1/2 arrived, waiting on ["stock"]',
            }
            done = await peer.call("state::barrier", {"event": arrivals[1], "condition_config": barrier})
            assert done == {
                "decision": "allow",
                "payload": {"results": {"payment": arrivals[0], "stock": arrivals[1]}},
                "reason": "barrier `ship-o1` complete (2/2)",
            }
            again = await peer.call("state::barrier", {"event": arrivals[1], "condition_config": barrier})
            assert again == {"decision": "skip", "reason": "barrier `ship-o1` already complete"}

            # a worker claims its namespace
            billing = peer.add_worker("billing")
            claim = {"functions_prefix": "billing", "scopes": ["invoices"]}
            claimed = await peer.call("state::claim-namespace", claim, caller=billing)
            assert claimed == {"claimed": True, "scopes": ["invoices"], "functions": [
                "billing::state::get", "billing::state::list", "billing::state::list_keys",
                "billing::state::list_entries", "billing::state::compare-and-set",
            ]}  # fmt: skip
            assert (await peer.call("state::claim-namespace", claim, caller=billing))["claimed"] is False
            assert await failure(peer, "state::claim-namespace", claim) == (
                "FORBIDDEN: worker `app` may only claim namespace `app`, not `billing`"
            )
            assert await failure(peer, "state::claim-namespace", claim, caller="no-such-id") == (
                "UNKNOWN_CALLER: worker id `no-such-id` is not registered"
            )
            await peer.wait_for_function("billing::state::compare-and-set")
            assert peer.current.functions["billing::state::get"]["metadata"] == {
                "internal": True, "trace_hidden": True,
            }  # fmt: skip
            private = {"scope": "invoices", "key": "i1", "value": {"n": 1}}
            assert await peer.call("billing::state::compare-and-set", private, caller=billing) == {
                "swapped": True
            }
            durable = {**private, "expected": {"n": 1}, "value": {"n": 2}, "durable": True}
            assert await peer.call("billing::state::compare-and-set", durable, caller=billing) == {
                "swapped": True
            }
            assert (
                await failure(peer, "billing::state::compare-and-set", {**private, "durable": "yes"})
            ).startswith("deserialization_error: field `durable` must be a boolean")
            got = await peer.call("billing::state::get", {"scope": "invoices", "key": "i1"}, caller=billing)
            assert got == {"n": 2}
            for function_id, payload in (
                ("state::set", {"scope": "invoices", "key": "x", "value": 1}),
                ("state::get", {"scope": "invoices", "key": "i1"}),
                ("state::list_entries", {"scope": "invoices"}),
            ):
                assert await failure(peer, function_id, payload) == (
                    "RESERVED_SCOPE: `invoices` is private worker bookkeeping"
                )
            assert await failure(peer, "billing::state::get", {"scope": "orders", "key": "o1"}) == (
                "INVALID_SCOPE: `orders` is not private state of namespace `billing`"
            )
            groups = await peer.call("state::list_groups", {})
            assert groups == {"groups": ["orders"]}  # ledger, barrier and invoices hidden
            await peer.call("state::set", {"scope": "orders", "key": "o2", "value": 2})
            first_page = await peer.call("state::list_entries", {"scope": "orders", "limit": 1})
            assert first_page["entries"][0][0] == "o1" and first_page["total"] == 2
            walks.append((peer.caller_id, first_page))

    walks: list[tuple[Any, Any]] = []

    async def after_a_restart(engine: EnginePeer) -> None:
        # a restart on the same store: claims come back, the old cursor still works
        async with serving(MEMORY, peer=engine) as (peer, _):
            await peer.wait_for_function("billing::state::list_entries")
            billing = peer.add_worker("billing")
            page = await peer.call(
                "billing::state::list_entries", {"scope": "invoices", "non_null_only": True}, caller=billing
            )
            assert page["entries"] == [["i1", {"n": 2}]] and page["total"] == 1
            assert await failure(peer, "state::get", {"scope": "invoices", "key": "i1"}) == (
                "RESERVED_SCOPE: `invoices` is private worker bookkeeping"
            )
            # the same app worker (same engine identity) resumes its walk on the new process
            first_page_caller, first_page = walks[0]
            peer.caller_id = first_page_caller
            second = await peer.call(
                "state::list_entries", {"scope": "orders", "limit": 1, "cursor": first_page["next_cursor"]}
            )
            assert second["entries"] == [["o2", 2]] and (second["offset"], second["total"]) == (1, 2)

    run(scenario(), timeout=40)


def test_the_worker_refuses_to_run_beside_the_builtin_iii_state(caplog: Any) -> None:
    caplog.set_level("INFO", logger="iii_state")

    async def scenario() -> None:
        async with EnginePeer(stamp_callers=True) as peer:
            peer.add_worker("iii-state")  # the engine's built-in is listed
            worker = await run_until_it_stops(MEMORY, peer.url)
            assert worker.exit_code == 1

    async def beside_an_app() -> None:
        async with serving() as (_, worker):
            await asyncio.sleep(0.3)  # the guard's engine::workers::list call has been answered
            assert worker.exit_code == 0 and not worker._stopping

    run(scenario())
    assert "cannot start the state worker: the built-in iii-state worker is active" in caplog.text
    run(beside_an_app())

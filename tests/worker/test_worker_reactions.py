"""The ``state`` trigger type (contract § Events): matching, conditions, failures, and ``triggers_enabled``.

Reactions for one write run one binding after the other, in registration order, so each
scenario registers a catch-all ``sentinel`` binding last: once the sentinel is called for a
write, every other binding has been dealt with for that write.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from engine_peer import EnginePeer, PeerFunctionError, eventually
from worker_harness import memory, run, serving


def recorder(peer: EnginePeer, *function_ids: str) -> None:
    for function_id in function_ids:
        peer.serve(function_id, lambda data, metadata: None)


async def bind(peer: EnginePeer, trigger_id: str, function_id: str, config: Any, **kwargs: Any) -> None:
    result = await peer.register_trigger("state", function_id, config, trigger_id=trigger_id, **kwargs)
    assert "error" not in result, result


async def write_and_settle(peer: EnginePeer, function: str, payload: Any) -> Any:
    """Run one write and wait until its reactions are through (the sentinel was called)."""
    before = len(peer.calls_to("r::sentinel"))
    result = await peer.call(f"state::{function}", payload)
    await peer.wait_for_calls("r::sentinel", before + 1)
    return result


@asynccontextmanager
async def unobserved_on_changed() -> AsyncIterator[tuple[EnginePeer, Any]]:
    """A worker on an engine that tells observers (iii 0.25, ``observe.v1``), with a sentinel
    binding and a recorder of ``state::on-changed``, once the worker knows nobody observes it."""
    async with EnginePeer(stamp_callers=True, features=["observe.v1"]) as engine:
        async with serving(memory(), peer=engine) as (peer, worker):
            recorder(peer, "r::sentinel", "state::on-changed")
            await bind(peer, "t-sentinel", "r::sentinel", {})
            # the SDK applies the observer set the engine confirmed with on its own loop
            await eventually(lambda: not worker.on_changed_observed())
            yield peer, worker


def called(peer: EnginePeer, *function_ids: str) -> list[str]:
    return [c.function_id for c in peer.calls if c.function_id in function_ids]


def test_bindings_match_on_scope_key_both_and_none() -> None:
    async def scenario() -> None:
        async with serving() as (peer, _):
            recorder(peer, "r::any", "r::scope", "r::key", "r::both", "r::sentinel")
            await bind(peer, "t-any", "r::any", {})
            await bind(peer, "t-scope", "r::scope", {"scope": "orders"})
            await bind(peer, "t-key", "r::key", {"key": "o1"})
            await bind(peer, "t-both", "r::both", {"scope": "orders", "key": "o1", "unknown": "ignored"})
            await bind(peer, "t-sentinel", "r::sentinel", {"scope": None, "key": None})
            names = ("r::any", "r::scope", "r::key", "r::both")
            expected = {
                ("orders", "o1"): ["r::any", "r::scope", "r::key", "r::both"],
                ("orders", "o2"): ["r::any", "r::scope"],
                ("users", "o1"): ["r::any", "r::key"],
                ("users", "u1"): ["r::any"],
                ("orders1", "o"): ["r::any"],  # exact match, not a prefix
            }
            for (scope, key), functions in expected.items():
                before = len(peer.calls)
                await write_and_settle(peer, "set", {"scope": scope, "key": key, "value": 1})
                got = [c.function_id for c in peer.calls[before:] if c.function_id in names]
                assert got == functions, (scope, key)

    run(scenario())


def test_reaction_payload_is_the_spec_event_with_metadata_and_namespace() -> None:
    async def scenario() -> None:
        async with serving() as (peer, _):
            recorder(peer, "r::default", "r::sentinel")
            peer.serve("r::namespaced", lambda data, metadata: None)
            await bind(peer, "t-1", "r::default", {"scope": "s"}, metadata={"tenant": "a"})
            await bind(peer, "t-2", "r::namespaced", {"scope": "s"}, namespace="billing")
            await bind(peer, "t-sentinel", "r::sentinel", {})

            await write_and_settle(peer, "set", {"scope": "s", "key": "k", "value": {"n": 1}})
            increment = [{"type": "increment", "path": "n", "by": 1}]
            await write_and_settle(peer, "update", {"scope": "s", "key": "k", "ops": increment})
            cas = {"scope": "s", "key": "k", "expected": {"n": 2}, "value": None}
            await write_and_settle(peer, "compare-and-set", cas)
            await write_and_settle(peer, "delete", {"scope": "s", "key": "k"})
            await write_and_settle(peer, "delete", {"scope": "s", "key": "k"})
            await write_and_settle(peer, "update", {"scope": "s", "key": "k2", "ops": []})

            calls = peer.calls_to("r::default")
            event = {"type": "state", "scope": "s", "key": "k"}
            assert [c.data for c in calls] == [
                {**event, "event_type": "state:created", "old_value": None, "new_value": {"n": 1}},
                {**event, "event_type": "state:updated", "old_value": {"n": 1}, "new_value": {"n": 2}},
                {**event, "event_type": "state:updated", "old_value": {"n": 2}, "new_value": None},
                {**event, "event_type": "state:deleted", "old_value": None, "new_value": None},
                {**event, "event_type": "state:deleted", "old_value": None, "new_value": None},
                {**event, "key": "k2", "event_type": "state:created", "old_value": None, "new_value": {}},
            ]
            assert all(c.metadata == {"tenant": "a"} and c.namespace == "default" for c in calls)
            assert all(c.invocation_id for c in calls), "a reaction is an awaited call, so failures are seen"
            namespaced = peer.calls_to("r::namespaced")
            assert len(namespaced) == 6 and all(
                c.namespace == "billing" and c.metadata is None for c in namespaced
            )

    run(scenario())


def test_reads_and_failed_writes_fire_nothing() -> None:
    async def scenario() -> None:
        async with serving(memory(max_value_bytes=16)) as (peer, _):
            recorder(peer, "r::any", "r::sentinel")
            await bind(peer, "t-any", "r::any", {})
            await bind(peer, "t-sentinel", "r::sentinel", {})
            await write_and_settle(peer, "set", {"scope": "s", "key": "k", "value": 1})
            await peer.call("state::get", {"scope": "s", "key": "k"})
            await peer.call("state::list", {"scope": "s"})
            await peer.call("state::list_entries", {"scope": "s"})
            assert not (await peer.invoke("state::set", {"scope": "s", "key": "k", "value": "x" * 40})).ok
            assert not (await peer.invoke("state::update", {"scope": "s", "ops": []})).ok
            missed = await peer.call("state::compare-and-set", {"scope": "s", "key": "k", "value": 2})
            assert missed == {"swapped": False, "current": 1}
            await write_and_settle(peer, "set", {"scope": "s", "key": "k", "value": 2})
            assert [c.data["new_value"] for c in peer.calls_to("r::any")] == [1, 2]

    run(scenario())


VERDICTS: list[Any] = [False, None, 0, "", True, [], {}, "false"]


def test_only_an_explicit_false_from_the_condition_skips(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="iii_state")

    async def scenario() -> None:
        async with serving() as (peer, _):
            conditions_seen: list[Any] = []
            for i, verdict in enumerate(VERDICTS):

                def condition(data: Any, metadata: Any, verdict: Any = verdict) -> Any:
                    conditions_seen.append((data, metadata))
                    return verdict

                peer.serve(f"cond::v{i}", condition)
                recorder(peer, f"r::v{i}")
                await bind(
                    peer, f"t-v{i}", f"r::v{i}", {"scope": "s", "condition_function_id": f"cond::v{i}"}
                )

            def boom(data: Any, metadata: Any) -> Any:
                raise PeerFunctionError("invocation_failed", "condition exploded")

            peer.serve("cond::boom", boom)
            recorder(peer, "r::after-boom", "r::after-missing", "r::sentinel")
            await bind(peer, "t-boom", "r::after-boom", {"condition_function_id": "cond::boom"})
            await bind(peer, "t-missing", "r::after-missing", {"condition_function_id": "cond::nobody"})
            await bind(peer, "t-sentinel", "r::sentinel", {})

            await write_and_settle(peer, "set", {"scope": "s", "key": "k", "value": 1})
            ran = {c.function_id for c in peer.calls if c.function_id.startswith("r::v")}
            assert ran == {f"r::v{i}" for i, v in enumerate(VERDICTS) if v is not False}
            assert not peer.calls_to("r::after-boom") and not peer.calls_to("r::after-missing")
            event = {"type": "state", "event_type": "state:created", "scope": "s", "key": "k"}
            assert conditions_seen[0] == ({**event, "old_value": None, "new_value": 1}, None)
            assert len(peer.calls_to("cond::nobody")) == 1

    run(scenario())
    assert "condition cond::boom failed" in caplog.text and "condition exploded" in caplog.text
    assert "condition cond::nobody failed" in caplog.text and "function_not_found" in caplog.text


def test_a_failing_reaction_is_logged_and_the_next_one_runs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="iii_state")

    async def scenario() -> None:
        async with serving() as (peer, _):

            def fail(data: Any, metadata: Any) -> Any:
                raise PeerFunctionError("invocation_failed", "reaction exploded")

            peer.serve("r::fail", fail)
            recorder(peer, "r::sentinel")
            await bind(peer, "t-fail", "r::fail", {})
            await bind(peer, "t-unserved", "r::unserved", {})
            await bind(peer, "t-sentinel", "r::sentinel", {})
            result = await write_and_settle(peer, "set", {"scope": "s", "key": "k", "value": 1})
            assert result == {"old_value": None, "new_value": 1}
            assert await peer.call("state::get", {"scope": "s", "key": "k"}) == 1, "the write stands"

    run(scenario())
    assert "t-fail: r::fail failed for state:created on scope='s' key='k'" in caplog.text
    assert "reaction exploded" in caplog.text and "the write stands" in caplog.text
    assert "t-unserved: r::unserved failed" in caplog.text


def test_a_slow_reaction_never_delays_the_write() -> None:
    async def scenario() -> None:
        async with serving() as (peer, worker):
            release = asyncio.Event()

            async def slow(data: Any, metadata: Any) -> Any:
                await release.wait()
                return None

            peer.serve("r::slow", slow)
            await bind(peer, "t-slow", "r::slow", {})
            # Each write returns although every reaction so far is still blocked.
            for i in range(5):
                await peer.call("state::set", {"scope": "s", "key": str(i), "value": i})
            await peer.wait_for_calls("r::slow", 5)  # all five in flight at once
            assert worker.reactions.pending == 5
            release.set()

    run(scenario())


def test_triggers_enabled_false_fires_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="iii_state")

    async def scenario() -> None:
        async with serving(memory(triggers_enabled=False)) as (peer, worker):
            recorder(peer, "r::any")
            peer.serve("cond::yes", lambda data, metadata: True)
            await bind(peer, "t-any", "r::any", {})
            await bind(peer, "t-cond", "r::any", {"condition_function_id": "cond::yes"})
            for i in range(3):
                await peer.call("state::set", {"scope": "s", "key": str(i), "value": i})
            await peer.call("state::delete", {"scope": "s", "key": "0"})
            await asyncio.sleep(0.3)
            reactions = [c for c in peer.calls if not c.function_id.startswith("configuration::")]
            assert reactions == [] and worker.reactions.pending == 0

    run(scenario())
    assert "reactions off (triggers_enabled: false)" in caplog.text


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("orders", "expected an object, got string"),
        (None, "expected an object, got null"),
        ([{"scope": "s"}], "expected an object, got array"),
        ({"scope": 1}, "field `scope` must be a string, got number"),
        ({"key": ["k"]}, "field `key` must be a string, got array"),
        ({"condition_function_id": True}, "field `condition_function_id` must be a string, got boolean"),
    ],
)
def test_a_malformed_trigger_config_is_refused(config: Any, message: str) -> None:
    async def scenario() -> None:
        async with serving() as (peer, worker):
            result = await peer.register_trigger("state", "r::x", config, trigger_id="t-bad")
            assert result["error"]["code"] == "trigger_registration_failed"
            assert result["error"]["message"] == f"Failed to parse trigger config: {message}"
            assert len(worker.triggers) == 0

    run(scenario())


def test_an_unregistered_trigger_stops_firing() -> None:
    async def scenario() -> None:
        async with serving() as (peer, worker):
            recorder(peer, "r::gone", "r::sentinel")
            await bind(peer, "t-gone", "r::gone", {})
            await bind(peer, "t-sentinel", "r::sentinel", {})
            await write_and_settle(peer, "set", {"scope": "s", "key": "k", "value": 1})
            await peer.unregister_trigger("t-gone")
            await eventually(lambda: len(worker.triggers) == 1)
            await write_and_settle(peer, "set", {"scope": "s", "key": "k", "value": 2})
            assert [c.data["new_value"] for c in peer.calls_to("r::gone")] == [1]

    run(scenario())


def test_on_changed_follows_an_observer_added_removed_and_added_again() -> None:
    """The worker asks the SDK's observer set at each write, so an observer that goes stops the
    calls and one that comes back (the same id again) gets the next write's change at once: no
    stale "nobody observes" after an add, no stale "observed" after a remove."""

    async def scenario() -> None:
        async with unobserved_on_changed() as (peer, worker):
            await peer.add_observer("state::on-changed", "obs-1")
            await eventually(worker.on_changed_observed)
            await write_and_settle(peer, "set", {"scope": "s", "key": "k", "value": 1})
            await peer.wait_for_calls("state::on-changed", 1)

            await peer.remove_observer("state::on-changed", "obs-1")
            await eventually(lambda: not worker.on_changed_observed())
            await write_and_settle(peer, "set", {"scope": "s", "key": "k", "value": 2})
            assert [c.data["new_value"] for c in peer.calls_to("state::on-changed")] == [1]

            await peer.add_observer("state::on-changed", "obs-1")
            await eventually(worker.on_changed_observed)
            await write_and_settle(peer, "set", {"scope": "s", "key": "k", "value": 3})
            calls = await peer.wait_for_calls("state::on-changed", 2)
            assert [c.data["new_value"] for c in calls] == [1, 3]

    run(scenario())


def test_on_changed_is_called_only_while_an_engine_that_tells_observers_has_one() -> None:
    """iii 0.25 (``observe.v1``) tells a function's host who observes it: with nobody observing
    ``state::on-changed`` the worker does not call it; once an observer is attached it does, with
    each change document. An engine that does not tell (the default peer) gets every call."""

    async def scenario() -> None:
        async with unobserved_on_changed() as (peer, worker):
            await write_and_settle(peer, "set", {"scope": "s", "key": "k", "value": 1})
            assert peer.calls_to("state::on-changed") == [], "called with nobody observing"

            await peer.add_observer("state::on-changed", "obs-1")
            await eventually(worker.on_changed_observed)
            await write_and_settle(peer, "set", {"scope": "s", "key": "k", "value": 2})
            (change,) = await peer.wait_for_calls("state::on-changed", 1)
            assert change.data == {
                "type": "state", "event_type": "state:updated", "scope": "s", "key": "k",
                "old_value": 1, "new_value": 2,
            }  # fmt: skip

        async with serving(memory()) as (peer, _):  # no observe.v1: nobody can say, so every write
            recorder(peer, "r::sentinel", "state::on-changed")
            await bind(peer, "t-sentinel", "r::sentinel", {})
            await write_and_settle(peer, "set", {"scope": "s", "key": "k", "value": 1})
            await peer.wait_for_calls("state::on-changed", 1)

    run(scenario())

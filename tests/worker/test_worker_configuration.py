"""The worker's entry in iii's configuration worker (ensure at boot, get, ``state::on-config-change``
bound to ``configuration:updated``, live ``triggers_enabled`` / ``max_value_bytes``), through the
fake engine serving the configuration functions, and the reference's value rules."""

from __future__ import annotations

from typing import Any

import pytest
from engine_peer import EnginePeer, PeerFunctionError, eventually
from worker_harness import memory, run, serving

from iii_state_core.worker.configuration import ConfigValueError, EntrySettings, parse_entry


class ConfigurationWorker:
    """The configuration worker's functions, over one dict of entries."""

    def __init__(self, peer: EnginePeer, stored: dict[str, Any] | None = None) -> None:
        self.entries: dict[str, Any] = dict(stored or {})
        peer.serve("configuration::ensure", self.ensure)
        peer.serve("configuration::get", self.get)

    def ensure(self, data: Any, _metadata: Any) -> Any:
        if self.entries.get(data["id"]) is None:  # installed only when nothing is stored
            self.entries[data["id"]] = data.get("initial_value")
        return {"ok": True}

    def get(self, data: Any, _metadata: Any) -> Any:
        if data["id"] not in self.entries:
            raise PeerFunctionError("NOT_FOUND", f"configuration {data['id']} not found")
        return {"id": data["id"], "value": self.entries[data["id"]]}


def test_boot_seeds_reads_and_applies_the_entry_then_reloads_it_on_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("III_CONFIG_NAME", "  state-eu  ")

    async def scenario() -> None:
        async with EnginePeer(stamp_callers=True) as peer:
            config = ConfigurationWorker(
                peer, {"state-eu": {"triggers_enabled": False, "max_value_bytes": 8}}
            )
            peer.serve("r::any", lambda data, metadata: None)
            async with serving(memory(max_value_bytes=1000), peer=peer) as (_, worker):
                assert worker.store is not None
                applied = await eventually(lambda: worker.entry)
                assert applied == EntrySettings(triggers_enabled=False, max_value_bytes=8)
                (ensure,) = peer.calls_to("configuration::ensure")
                assert ensure.namespace == "default"
                assert ensure.data["id"] == "state-eu" and ensure.data["metadata"] == {"ui_form": "state"}
                assert ensure.data["initial_value"] == {
                    "triggers_enabled": True,
                    "adapter": {"name": "kv", "config": {"store_method": "in_memory"}},
                    "max_value_bytes": 1000,
                }
                assert config.entries["state-eu"] == {"triggers_enabled": False, "max_value_bytes": 8}, (
                    "a stored entry is never replaced by the seed"
                )
                (binding,) = [
                    t for t in peer.current.triggers.values() if t.get("trigger_type") == "configuration"
                ]
                assert binding["function_id"] == "state::on-config-change"
                assert binding["config"] == {
                    "configuration_id": "state-eu",
                    "event_types": ["configuration:updated"],
                }

                # live: the limit and the reaction gate of the entry, not of iii-config.yaml
                await peer.register_trigger("state", "r::any", {}, trigger_id="t-any")
                too_big = await peer.invoke("state::set", {"scope": "s", "key": "k", "value": "x" * 20})
                assert too_big.message is not None and too_big.message.startswith("VALUE_TOO_LARGE: ")
                await peer.call("state::set", {"scope": "s", "key": "quiet", "value": 1})
                assert not worker.store.events.enabled

                config.entries["state-eu"] = {"triggers_enabled": True, "max_value_bytes": 0}  # 0: unset
                assert await peer.call("state::on-config-change", {"anything": "ignored"}) == {"ok": True}
                await peer.call("state::set", {"scope": "s", "key": "k", "value": "x" * 20})
                calls = await peer.wait_for_calls("r::any", 1)
                assert [c.data["key"] for c in calls] == ["k"], "the write made while off fired nothing"

                # a malformed value or a failing fetch keeps what was applied
                config.entries["state-eu"] = {"triggers_enabled": "yes"}
                assert await peer.call("state::on-config-change", {}) == {"ok": True}
                assert worker.entry == EntrySettings(triggers_enabled=True, max_value_bytes=None)
                assert worker.store.limits.max_value_bytes is None and worker.store.events.enabled

    run(scenario())


def test_a_malformed_entry_at_boot_stops_the_worker() -> None:
    async def scenario() -> None:
        async with EnginePeer(stamp_callers=True) as peer:
            ConfigurationWorker(peer, {"state": {"adapter": {"name": "kv"}, "triggers_enabledd": True}})
            async with serving(peer=peer) as (_, worker):
                await eventually(lambda: worker.exit_code == 1)

    run(scenario())


def test_without_a_configuration_worker_the_config_file_settings_stay() -> None:
    async def scenario() -> None:
        async with serving(memory(max_value_bytes=8)) as (peer, worker):
            await eventually(lambda: peer.calls_to("configuration::ensure"))
            assert worker.store is not None
            too_big = await peer.invoke("state::set", {"scope": "s", "key": "k", "value": "x" * 20})
            assert too_big.message is not None and too_big.message.startswith("VALUE_TOO_LARGE: ")
            assert len(peer.calls_to("configuration::ensure")) == 1, "function_not_found is not retried"
            assert worker.entry is None and worker.exit_code == 0

    run(scenario())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, EntrySettings()),
        ({}, EntrySettings()),
        ({"max_value_bytes": 0, "save_interval_ms": 99}, EntrySettings()),
        (
            {"save_interval_ms": 3_600_000, "triggers_enabled": None},
            EntrySettings(save_interval_ms=3_600_000),
        ),
        (
            {"adapter": {"name": "redis", "config": {"redis_url": "redis://h"}}, "max_value_bytes": 5},
            EntrySettings(adapter={"name": "redis", "config": {"redis_url": "redis://h"}}, max_value_bytes=5),
        ),
    ],
)
def test_entry_values_normalize_like_the_reference(value: Any, expected: EntrySettings) -> None:
    assert parse_entry(value) == expected


@pytest.mark.parametrize(
    "value",
    [[], "x", {"unknown": 1}, {"triggers_enabled": 1}, {"max_value_bytes": -1}, {"max_value_bytes": 1.5},
     {"adapter": "kv"}, {"adapter": {"name": "kv", "extra": 1}}, {"save_interval_ms": True}],
)  # fmt: skip
def test_malformed_entry_values_are_refused(value: Any) -> None:
    with pytest.raises(ConfigValueError, match="invalid state configuration"):
        parse_entry(value)

"""The worker's entry in iii's configuration worker (ensure at boot, get, ``state::on-config-change``
bound to ``configuration:updated``, live ``triggers_enabled`` / ``max_value_bytes``), through the
fake engine serving the configuration functions, and the reference's value rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from engine_peer import EnginePeer, PeerFunctionError, eventually
from worker_harness import (
    SECRET,
    ConfigurationWorker,
    make_registry,
    memory,
    run,
    run_until_it_stops,
    serving,
)

from iii_state_core.worker.configuration import (
    ConfigValueError,
    EntrySettings,
    boot_settings,
    parse_entry,
    schema,
    seed_of,
)


def file_store(path: Path, **state: Any) -> dict[str, Any]:
    return {
        "adapter": {"name": "kv", "config": {"store_method": "file_based", "file_path": str(path)}},
        **state,
    }


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
                # the SDK sends registrations over the socket as it goes: the binding may come after
                # the entry was applied (CI once asserted before it arrived)
                (binding,) = await eventually(
                    lambda: [
                        t for t in peer.current.triggers.values() if t.get("trigger_type") == "configuration"
                    ]
                )
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


@pytest.mark.parametrize("failure", ["malformed", "unreadable"])
def test_a_malformed_or_unreadable_entry_at_boot_stops_the_worker_before_it_serves(
    tmp_path: Path, failure: str
) -> None:
    """An unreadable entry may name another adapter than the config file: the worker stops
    rather than guess (it could serve another store than its replicas)."""

    def unavailable(data: Any, metadata: Any) -> Any:
        raise PeerFunctionError("UNAVAILABLE", "the configuration store is down")

    async def scenario() -> None:
        async with EnginePeer(stamp_callers=True) as peer:
            ConfigurationWorker(peer, {"state": {"adapter": {"name": "kv"}, "triggers_enabledd": True}})
            if failure == "unreadable":
                peer.serve("configuration::get", unavailable)
            worker = await run_until_it_stops(file_store(tmp_path / "kv"), peer.url)
            assert worker.exit_code == 1
            gets = peer.calls_to("configuration::get")
            assert len(gets) == (3 if failure == "unreadable" else 1), "3 attempts, then it stops"
            assert "state::set" not in peer.connections[-1].functions
        assert not (tmp_path / "kv").exists(), "no store was opened"

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


def test_the_entrys_adapter_is_opened_at_boot_and_a_change_waits_for_the_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """iii's own block as its console writes it (kv with `save_interval_ms` inside and outside
    the adapter) is the store the worker opens; the config file's adapter is not opened at all."""
    caplog.set_level("INFO", logger="iii_state")
    chosen = {
        "adapter": {
            "name": "kv",
            "config": {
                "store_method": "file_based",
                "file_path": str(tmp_path / "chosen"),
                "save_interval_ms": 5000,
            },
        },
        "save_interval_ms": 750,
    }

    async def scenario() -> None:
        async with EnginePeer(stamp_callers=True) as peer:
            config = ConfigurationWorker(peer, {"state": chosen})
            async with serving(file_store(tmp_path / "file"), peer=peer) as (_, worker):
                assert worker.store is not None and worker.entry is not None
                await peer.call("state::set", {"scope": "s", "key": "k", "value": 1})
                assert (tmp_path / "chosen").is_dir() and not (tmp_path / "file").exists()
                assert worker.entry.save_interval_ms == 750

                config.entries["state"] = {"adapter": {"name": "kv", "config": {"store_method": "in_memory"}}}
                assert await peer.call("state::on-config-change", {}) == {"ok": True}
                assert "changed the adapter (now 'kv'); it applies at the next restart" in caplog.text
                assert await peer.call("state::get", {"scope": "s", "key": "k"}) == 1, "still the file store"

            async with serving(file_store(tmp_path / "file"), peer=peer) as (_, worker):  # the restart
                assert await peer.call("state::get", {"scope": "s", "key": "k"}) is None, "now in memory"
                assert not (tmp_path / "file").exists()

            config.entries["state"] = {"adapter": {"name": "nope"}}
            worker = await run_until_it_stops(file_store(tmp_path / "file"), peer.url)
            assert worker.exit_code == 1 and not (tmp_path / "file").exists()

    run(scenario(), timeout=30)
    assert (
        "cannot open the nope adapter" in caplog.text
        and "no installed plugin provides the adapter" in caplog.text
    )


def test_a_secret_stays_in_the_config_file_and_still_opens_the_adapter() -> None:
    """The seed leaves a secret-bearing adapter config out of the configuration store; the entry
    it installs (the adapter's name alone) then opens the adapter with the file's config."""
    file = {"adapter": {"name": "gated", "config": {"url": f"x://admin:{SECRET}@db", "region": "eu"}}}

    async def scenario() -> None:
        async with EnginePeer(stamp_callers=True) as peer:
            config = ConfigurationWorker(peer)
            async with serving(file, registry=make_registry(), peer=peer) as (_, worker):
                assert config.entries["state"] == {"triggers_enabled": True, "adapter": {"name": "gated"}}
                assert SECRET not in str(peer.calls_to("configuration::ensure")[0].data)
                assert worker.store is not None and worker.store.settings is not None
                assert worker.store.settings.adapter_config == file["adapter"]["config"]

    run(scenario())


def test_boot_settings_put_the_entry_over_the_config_file() -> None:
    from iii_state_core.config import parse_state_block

    file = parse_state_block(
        {"adapter": {"name": "redis", "config": {"redis_url": "redis://h", "password": SECRET}},
         "max_value_bytes": 9, "save_interval_ms": 200},
        source="iii-config.yaml",
    )  # fmt: skip
    assert boot_settings(file, None) is file
    same = boot_settings(
        file,
        parse_entry({"adapter": {"name": "redis", "config": {"redis_url": "redis://other", "db": None}}}),
    )
    assert same.adapter_config == {"redis_url": "redis://other"}, "the entry's config replaces; null is unset"
    named = boot_settings(file, parse_entry({"adapter": {"name": "redis"}}))
    assert named.adapter_config == file.adapter_config, "the name alone keeps the file's config"
    assert (same.max_value_bytes, same.triggers_enabled, same.state_options) == (
        None,
        True,
        {"save_interval_ms": 200},
    )
    other = boot_settings(
        file, parse_entry({"adapter": {"name": "kv"}, "save_interval_ms": 100, "max_value_bytes": 3})
    )
    assert (other.adapter, other.adapter_config, other.max_value_bytes) == ("kv", {}, 3)
    assert other.state_options == {"save_interval_ms": 100}
    assert SECRET not in str(seed_of(file)) and seed_of(file)["adapter"] == {"name": "redis"}


def test_the_schema_is_the_references_closed_oneof_extended_with_our_adapters() -> None:
    import jsonschema

    sent = schema(["kv", "redis", "dynamodb", "memcached"])
    jsonschema.Draft7Validator.check_schema(sent)
    branches = sent["properties"]["adapter"]["oneOf"]
    assert [b["properties"]["name"]["enum"][0] for b in branches] == ["kv", "redis", "dynamodb", "memcached"]
    assert all(b["additionalProperties"] is False and b["required"] == ["name"] for b in branches)
    assert sent["additionalProperties"] is False
    assert sent["properties"]["max_value_bytes"]["minimum"] == 1
    assert (
        sent["properties"]["save_interval_ms"]["minimum"],
        sent["properties"]["save_interval_ms"]["maximum"],
    ) == (100, 3_600_000)
    validator = jsonschema.Draft7Validator(sent)
    for good in (
        {"adapter": {"name": "kv", "config": {"store_method": "file_based", "save_interval_ms": 5000,
                                               "file_path": "./data/state_store.db"}}},
        {"adapter": {"name": "redis", "config": {"redis_url": "redis://h:6379"}}, "max_value_bytes": 1024},
        {"adapter": {"name": "dynamodb", "config": {"table": "state"}}, "save_interval_ms": None},
        {},
    ):  # fmt: skip
        assert not list(validator.iter_errors(good)), good
        parse_entry(good)
    for bad in (
        {"adapter": {"name": "nope"}},
        {"adapter": {"name": "kv", "config": {"store_method": "on_disk"}}},
        {"adapter": {"name": "kv", "config": {"unknown": 1}}},
        {"adapter": {"name": "kv", "extra": 1}},
        {"save_interval_ms": 99},
        {"triggers_enabledd": True},
    ):
        assert list(validator.iter_errors(bad)), bad

"""``expiry_sweeper: process`` (decision 0030): a child process claims expired entries and this
process delivers their events; its config, its failures, and its life beside the store's."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import failing_take_plugin
import pytest
from iii_state_conformance.cpu_load import wait_until
from iii_state_conformance.processes import running

from iii_state_core import BackendError, ConfigError, open_async_store, open_store
from iii_state_core.plugins import Registry
from iii_state_core.results import StateEvent

#: kv declares 500 ms; starting a process and a loaded CI machine get slack on top.
PATIENCE_S = 10.0


def _config(directory: Path, **extra: Any) -> dict[str, Any]:
    return {
        "adapter": {"name": "kv", "config": {"store_method": "file_based", "file_path": str(directory)}},
        "expiry_events": True,
        "expiry_sweeper": "process",
        **extra,
    }


def _wait_for(condition: Callable[[], bool], timeout: float = PATIENCE_S) -> bool:
    return wait_until(condition, timeout)


def _expired(seen: list[StateEvent]) -> dict[str, Any]:
    """``{key: old_value}`` of the expiry events seen; fails on a key expired twice."""
    found: dict[str, Any] = {}
    for event in seen:
        if event.event_type == "state:expired":
            assert event.key not in found, f"{event.key} delivered twice"
            assert event.new_value is None and event.expiry_id
            found[event.key] = event.old_value
    return found


def test_a_sweeper_process_delivers_each_expiry_once_here_with_the_value_it_held(tmp_path: Path) -> None:
    seen: list[StateEvent] = []
    with open_store(_config(tmp_path / "kv")) as store:
        pid = store._sweeper.pid  # type: ignore[union-attr]
        assert pid is not None and pid != os.getpid() and running(pid)
        store.on_change(seen.append, scope="s")
        wanted = {f"k{n}": {"n": n} for n in range(700)}  # more than one batch of 500
        store.set_many("s", {"kept": 1})
        for key, value in wanted.items():
            store.set("s", key, value, ttl_ms=50)
        assert _wait_for(lambda: len(_expired(seen)) >= len(wanted)), f"{len(_expired(seen))} delivered"
        time.sleep(0.6)  # a later sweep must not deliver them again
        assert _expired(seen) == wanted
        assert store.list_keys("s") == ["kept"]
    assert _wait_for(lambda: not running(pid)), "the sweeper process outlived its store"


def test_a_killed_sweeper_process_is_replaced_and_nothing_is_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[StateEvent] = []
    with caplog.at_level(logging.WARNING, "iii_state.expiry"), open_store(_config(tmp_path / "kv")) as store:
        store.on_change(seen.append, scope="s")
        first = store._sweeper.pid  # type: ignore[union-attr]
        assert first is not None
        os.kill(first, signal.SIGKILL)
        for n in range(50):
            store.set("s", f"k{n}", n, ttl_ms=100)
        assert _wait_for(lambda: len(_expired(seen)) == 50), f"{len(_expired(seen))} of 50 delivered"
        second = store._sweeper.pid  # type: ignore[union-attr]
        assert second not in (None, first)
        assert _expired(seen) == {f"k{n}": n for n in range(50)}
    assert "exited (code -9); starting another" in caplog.text


def test_sweeper_processes_killed_again_and_again_lose_no_expiry(tmp_path: Path) -> None:
    """SIGKILL the sweeper process whenever one runs while 300 entries expire: every expiry is
    still delivered, and one delivered twice (a kill between its handlers and the
    acknowledgement) carries the same ``expiry_id`` both times."""
    config = _config(tmp_path / "kv")
    config["adapter"]["config"]["expiry_lease_ms"] = 300  # claims of a killed child lapse soon
    seen: list[StateEvent] = []
    kills = 0
    with open_store(config) as store:
        store.on_change(seen.append, scope="s", condition=lambda e: e.event_type == "state:expired")
        for n in range(300):
            store.set("s", f"k{n}", n, ttl_ms=20 + 5 * n)  # deadlines over 1.5 s
        until = time.monotonic() + 3.0
        while time.monotonic() < until:
            pid = store._sweeper.pid  # type: ignore[union-attr]
            if pid is not None and running(pid):
                os.kill(pid, signal.SIGKILL)
                kills += 1
            time.sleep(0.4)
        assert _wait_for(lambda: len({e.key for e in seen}) == 300, 30), (
            f"{len({e.key for e in seen})} of 300"
        )
    ids: dict[str, set[str | None]] = {}
    for event in seen:
        ids.setdefault(event.key, set()).add(event.expiry_id)
        assert event.old_value == int(event.key[1:])
    assert all(len(one) == 1 for one in ids.values()), "a redelivery carried another expiry_id"
    assert kills >= 3, f"only {kills} sweeper processes were running to be killed"


def test_a_sweeper_process_ends_when_the_process_that_opened_the_store_dies(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal
        from iii_state_core import open_store
        store = open_store({_config(tmp_path / "kv")!r})
        print(store._sweeper.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no atexit: as a crash leaves it
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    child = int(done.stdout.strip())
    assert _wait_for(lambda: not running(child)), "the sweeper process outlived the process that started it"


def test_the_sweeper_process_logs_here_without_secrets_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fail_while = tmp_path / "fail"
    fail_while.touch()
    config = {
        "adapter": {
            "name": "kv-failing-take",
            "config": {
                "file_path": str(tmp_path / "kv"),
                "password": "hunter2-secret",
                "fail_while": str(fail_while),
            },
        },
        "expiry_events": True,
        "expiry_sweeper": "process",
    }
    registry = Registry([failing_take_plugin], load_entry_points=False)
    seen: list[StateEvent] = []
    with caplog.at_level(logging.WARNING, "iii_state.expiry"), open_store(config, registry=registry) as store:
        store.on_change(seen.append, scope="s")
        store.set("s", "k", "held", ttl_ms=20)
        assert _wait_for(lambda: "taking expired entries from" in caplog.text), caplog.text
        assert _expired(seen) == {}
        fail_while.unlink()
        assert _wait_for(lambda: _expired(seen) == {"k": "held"}, 15), "not delivered once the store answered"
    assert "RuntimeError: take refused (password " in caplog.text
    assert "hunter2-secret" not in caplog.text
    assert any(r.name == "iii_state.expiry" and "answers again" in r.getMessage() for r in caplog.records)


def test_a_sweeper_process_that_cannot_open_the_store_fails_the_open(tmp_path: Path) -> None:
    # an adapter registered by hand is in no registry another process can build
    registry = Registry(load_entry_points=False)
    registry._register(failing_take_plugin.FailingTakeStore, __name__)
    config = _config(tmp_path / "kv")
    config["adapter"] = {
        "name": "kv-failing-take",
        "config": {"file_path": str(tmp_path / "kv"), "password": "hunter2-secret", "fail_while": "-"},
    }
    with pytest.raises(BackendError, match="expiry sweeper process could not open the store") as info:
        open_store(config, registry=registry)
    assert "kv-failing-take" in str(info.value) and "hunter2-secret" not in str(info.value)


def test_expiry_sweeper_config_is_checked(tmp_path: Path) -> None:
    kv = {"name": "kv", "config": {"store_method": "file_based", "file_path": str(tmp_path / "kv")}}
    with pytest.raises(ConfigError, match="'expiry_events' is not true; set 'expiry_events: true'"):
        open_store({"adapter": kv, "expiry_sweeper": "process"})
    with pytest.raises(ConfigError, match="'expiry_sweeper' is 'fork'; choose one of thread, process"):
        open_store({"adapter": kv, "expiry_events": True, "expiry_sweeper": "fork"})
    with pytest.raises(ConfigError, match="lives in this process only"):
        open_store({"adapter": {"name": "kv"}, "expiry_events": True, "expiry_sweeper": "process"})
    with open_store({"adapter": kv, "expiry_events": True, "expiry_sweeper": "thread"}) as store:
        assert type(store._sweeper).__name__ == "ThreadSweeper"
    with pytest.raises(ConfigError, match="lives in this process only"):
        open_async_store({"adapter": {"name": "kv"}, "expiry_events": True, "expiry_sweeper": "process"})


def test_an_async_store_sweeper_process_runs_the_handlers_on_its_loop(tmp_path: Path) -> None:
    """``open_async_store`` (and so the worker): the child claims, the store's event loop runs
    the handlers, coroutines awaited there, each expiry once with the value it held."""

    async def main() -> tuple[dict[str, Any], set[int], int]:
        seen: list[StateEvent] = []
        threads: set[int] = set()

        async def handler(event: StateEvent) -> None:
            threads.add(threading.get_ident())
            await asyncio.sleep(0)
            seen.append(event)

        async with open_async_store(_config(tmp_path / "kv")) as store:
            pid = store._sweeper.pid  # type: ignore[union-attr]
            assert pid is not None and running(pid)
            store.on_change(handler, scope="s")
            for n in range(600):
                await store.set("s", f"k{n}", n, ttl_ms=30)
            until = time.monotonic() + PATIENCE_S
            while len(_expired(seen)) < 600 and time.monotonic() < until:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.6)  # a later sweep must not deliver them again
            assert await store.list_keys("s") == []
        return _expired(seen), threads, pid

    expired, threads, pid = asyncio.run(main())
    assert expired == {f"k{n}": n for n in range(600)}
    assert threads == {threading.get_ident()}  # asyncio.run's loop runs in this thread
    assert _wait_for(lambda: not running(pid)), "the sweeper process outlived its store"


def test_a_held_async_store_sweeper_process_claims_nothing_until_started(tmp_path: Path) -> None:
    """The worker holds its sweeper until it is connected to the engine: the child opens the
    store at once but claims nothing (another taker still finds the expired entries), and
    delivers from ``start_expiry_events`` on."""
    config = _config(tmp_path / "kv")

    async def main() -> tuple[list[str], dict[str, Any]]:
        seen: list[StateEvent] = []
        # opened in a thread, as the worker opens its store: inside a loop its sweeper would start
        store = await asyncio.to_thread(open_async_store, config)
        store.hold_expiry_events()
        try:
            store.on_change(seen.append, scope="s")
            await store.set("s", "early", 1, ttl_ms=20)
            await asyncio.sleep(1.5)  # the child polls every 0.25 s: it would have claimed it
            with open_store({"adapter": config["adapter"]}) as other:  # no sweeper of its own
                taken = other.adapter.take_expired(100)
                other.adapter.ack_expired(taken)
            await store.set("s", "late", 2, ttl_ms=20)
            store.start_expiry_events()
            until = time.monotonic() + PATIENCE_S
            while "late" not in _expired(seen) and time.monotonic() < until:
                await asyncio.sleep(0.05)
        finally:
            await store.close()
        return [entry[1] for entry in taken], _expired(seen)

    taken, expired = asyncio.run(main())
    assert taken == ["early"]
    assert expired == {"late": 2}


def test_a_batch_goes_to_the_application_decoded_or_else_as_it_was_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The child decodes each batch's values and hashes its ids, so the application's process
    only builds the events; a batch marshal cannot carry goes raw, and gives the same events."""
    import marshal

    from iii_state_core import sweeper_process
    from iii_state_core.events import EventBus, Subscription
    from iii_state_core.sweeper import expired_events

    bus = EventBus()
    bus.subscribe(Subscription(lambda event: None, scope="s"))
    taken = [
        ("s", f"k{n}", b'{"n":%d,"l":[1.5,"\\u00e9",null]}' % n, 1_700_000_000_000 + n) for n in range(3)
    ]
    taken += [("other", "k", b"1", 5), ("s", "bad", b"not json", 7)]
    expected = [event for event in expired_events(taken) if event.scope == "s"]
    decoded = marshal.loads(sweeper_process._batch(taken))
    assert decoded[0] == "decoded"
    assert sweeper_process._events(decoded, bus) == expected
    monkeypatch.setattr(sweeper_process, "expiry_parts", lambda plain: [object()])  # unmarshallable
    raw = marshal.loads(sweeper_process._batch(taken))
    assert raw[0] == "raw" and raw[1] == taken
    assert sweeper_process._events(raw, bus) == expected

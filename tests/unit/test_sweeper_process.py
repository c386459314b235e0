"""``expiry_sweeper: process`` (decision 0030): a child process claims expired entries and this
process delivers their events; its config, its failures, and its life beside the store's."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
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
    with pytest.raises(ConfigError, match="for stores opened with open_store"):
        open_async_store({"adapter": kv, "expiry_events": True, "expiry_sweeper": "process"})
    with open_store({"adapter": kv, "expiry_events": True, "expiry_sweeper": "thread"}) as store:
        assert type(store._sweeper).__name__ == "ThreadSweeper"

"""``iii-state worker`` as a real subprocess: SIGTERM with a call in flight, no engine at all,
a config it cannot open, and ``--help``."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from engine_peer import EnginePeer
from worker_harness import WorkerProcess, free_port, run

from iii_state_core import open_store
from iii_state_core.cli import cli
from iii_state_core.wire import FUNCTION_IDS

FILE_CONFIG = """\
workers:
  - name: iii-state
    config:
      adapter:
        name: kv
        config:
          store_method: file_based
          file_path: ./data
"""


def test_sigterm_finishes_the_call_in_flight_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "iii-config.yaml").write_text(FILE_CONFIG)
    monkeypatch.chdir(tmp_path)  # the config's ./data, for the worker and for the check below

    async def scenario() -> WorkerProcess:
        async with EnginePeer() as peer:
            worker = WorkerProcess(
                "--config", "iii-config.yaml", "--engine", peer.url, "--log-level", "debug", cwd=tmp_path
            )  # fmt: skip
            try:
                for function_id in FUNCTION_IDS:
                    await peer.wait_for_function(function_id, timeout=20)
                op = {"scope": "s", "key": "k", "ops": [{"type": "increment", "path": "n", "by": 1}]}
                assert (await peer.call("state::update", op))["new_value"] == {"n": 1}

                # Another process holds the store's write lock: the next write waits inside
                # the worker, in flight, until the test lets go.
                lock = sqlite3.connect(tmp_path / "data" / "state.sqlite3", isolation_level=None)
                lock.execute("BEGIN IMMEDIATE")
                call = asyncio.ensure_future(peer.invoke("state::update", op, timeout=20))
                await asyncio.to_thread(worker.wait_for_line, "state::update: call started (1 in flight)", 2)
                await asyncio.sleep(0.2)
                assert not call.done()

                worker.proc.send_signal(signal.SIGTERM)
                await asyncio.to_thread(worker.wait_for_line, "waiting for 1 in-flight call(s)")
                conn = peer.current
                await peer.wait_for(lambda: not conn.functions)  # withdrawn: no new calls
                await asyncio.sleep(0.3)
                assert worker.proc.poll() is None and not call.done()

                lock.execute("COMMIT")
                lock.close()
                outcome = await call
                assert outcome.ok and outcome.result == {"old_value": {"n": 1}, "new_value": {"n": 2}}
                assert await asyncio.to_thread(worker.finish) == 0
                return worker
            finally:
                worker.kill()

    async def main() -> None:
        worker = await scenario()
        log = worker.log
        assert "SIGTERM received: stopping" in log and "iii-state worker stopped" in log
        assert f"adapter kv (file_based at {tmp_path / 'data/state.sqlite3'})" in log
        assert "serving state::set, state::get, state::delete, state::update, state::list" in log
        assert "Traceback" not in log

    run(main(), timeout=40)
    with open_store("iii-config.yaml") as store:
        assert store.get("s", "k") == {"n": 2}, "the drained call was committed"


def test_with_no_engine_it_keeps_retrying_and_stops_on_sigint(tmp_path: Path) -> None:
    port = free_port()
    url = f"ws://admin:pw-s3cret@127.0.0.1:{port}/?token=tok-s3cret"
    worker = WorkerProcess("--engine", url, cwd=tmp_path)
    try:
        shown = f"cannot reach the iii engine at ws://***@127.0.0.1:{port}/?token=*** ("
        # generous waits: a loaded machine (CI runs two sessions at once) slows start-up and exit
        lines = worker.wait_for_line(shown, count=2, timeout=60)
        assert "retrying (attempt 2," in lines[1]
        assert worker.proc.poll() is None, "it keeps running without an engine"
        worker.proc.send_signal(signal.SIGINT)
        assert worker.finish(timeout=60) == 0
    finally:
        worker.kill()
    log = worker.log
    assert "pw-s3cret" not in log and "tok-s3cret" not in log
    assert "no iii-config.yaml found; serving the embedded file store in data/state_store" in log
    # the store opens once connected, after the configuration entry is read: never, here
    assert "config default file store (adapter kv, unless the configuration entry names another" in log
    assert "serving state::set" not in log and not (tmp_path / "data").exists()
    assert "SIGINT received: stopping" in log and "iii-state worker stopped" in log
    assert "Traceback" not in log


def test_a_config_it_cannot_open_exits_1_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "workers:\n  - name: iii-state\n    config:\n      adapter:\n        name: nope\n"
    )
    worker = WorkerProcess("--config", "bad.yaml", "--engine", f"ws://127.0.0.1:{free_port()}", cwd=tmp_path)
    try:
        assert worker.finish(timeout=20) == 1
    finally:
        worker.kill()
    assert "error: CONFIG_ERROR: no installed plugin provides the adapter 'nope'" in worker.log
    assert "Traceback" not in worker.log


def test_help_explains_every_option() -> None:
    result = CliRunner().invoke(cli, ["worker", "--help"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for option in (
        "--config", "--engine", "--worker-name", "--namespace", "--drain-timeout", "--reaction-timeout",
        "--threads", "--telemetry / --no-telemetry", "--trace-payloads / --no-trace-payloads", "--log-level",
    ):  # fmt: skip
        assert option in text, option
    for phrase in ("III_URL", "III_TOKEN", "III_WORKER_NAME", "III_NAMESPACE", "ws://127.0.0.1:49134",
                   "built-in state worker", "SIGTERM"):  # fmt: skip
        assert phrase in text, phrase


def test_dry_run_shows_what_would_be_registered_without_an_engine(tmp_path: Path) -> None:
    """``iii-state worker --dry-run``: the functions, the trigger type, the adapter and the engine
    URL with its credentials hidden; no engine runs, exit code 0, in well under the retry delay."""
    (tmp_path / "iii-config.yaml").write_text(
        "workers:\n  - name: iii-state\n    config:\n      adapter:\n        name: kv\n"
        "        config: {store_method: file_based, file_path: ./store}\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("III_WORKER_NAME", "III_CONFIG", "III_URL")}
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "iii-state"), "worker", "--dry-run", "--no-telemetry",
         "--engine", "ws://u:pw-s3cret@127.0.0.1:1/?token=t0k"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "nothing is registered and no engine is contacted" in out
    assert f"adapter:      kv (file_based at {tmp_path / 'store/state.sqlite3'})" in out
    assert "(the configuration entry, read once connected, wins over it)" in out
    assert "engine:       ws://***@127.0.0.1:1/?token=***" in out and "s3cret" not in out + done.stderr
    assert "functions:    17: state::claim-namespace, state::set, state::get, state::delete," in out
    assert "trigger type: state (binding config: scope, key, condition_function_id, each optional)" in out
    assert "telemetry:    off" in out

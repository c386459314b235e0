"""What the iii-state worker costs per call, over the same fake engine and the same store.

"ours" is ``StateWorker``. The SDK's loop forwards each call to the worker's loop, which counts it
as in flight and runs ``AsyncStateStore.trigger``. "raw" is a bare ``iii-sdk`` worker whose
handler awaits the same ``AsyncStateStore.trigger`` directly on the SDK's loop: the least any
SDK-based state worker could do. Both use the in-memory kv store, so the difference is the
worker's own overhead. The peer (``tests/worker/engine_peer.py``) stands in for an iii 0.25
engine (``observe.v1``: it tells the worker who observes ``state::on-changed``). Nobody does in
the first rows, so writes call nothing more; the last row attaches an observer, and each write
then also calls ``state::on-changed`` through the engine, as on an engine before 0.25::

    python bench/run/worker_script.py [--seconds 1]

``python -m bench`` runs it in a process of its own (``bench/run/worker.py``) and keeps its table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "worker"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run by path: ``bench`` from the root

from engine_peer import EnginePeer
from iii import InitOptions  # type: ignore[import-untyped]
from iii.iii import III  # type: ignore[import-untyped]

from bench.run.measuring import Pair, measure, rows_table
from bench.run.worker_calls import (
    FEATURES,
    MEMORY,
    OPS,
    Loop,
    caller,
    concurrent,
    start_peer,
    wait_registered,
    wait_until,
)  # fmt: skip
from iii_state_core import open_async_store
from iii_state_core.worker import StateWorker, WorkerSettings


async def _serve_raw() -> tuple[EnginePeer, Any, Any]:
    peer = EnginePeer(features=FEATURES)
    await peer.start()
    store = open_async_store(MEMORY)
    iii = await asyncio.to_thread(III, peer.url, InitOptions(worker_name="raw", otel={"enabled": False}))
    for name in OPS:

        async def handler(data: Any, name: str = name) -> Any:
            return await store.trigger({"function_id": f"state::{name}", "payload": data})

        iii.register_function(f"raw::{name}", handler)
        await peer.wait_for_function(f"raw::{name}")
    return peer, iii, store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    os.environ.setdefault("OTEL_ENABLED", "false")
    runner = Loop()
    # The worker owns its loop, as under `iii-state worker`; the peers share another one.
    worker_loop = Loop()
    ours_peer = runner.run(start_peer())
    worker = StateWorker(MEMORY, WorkerSettings(engine_url=ours_peer.url, telemetry=False))
    worker_loop.run(worker.start())
    runner.run(wait_registered(ours_peer))
    wait_until(lambda: not worker.on_changed_observed())  # the engine's (empty) observer set arrived
    raw_peer, raw_iii, raw_store = runner.run(_serve_raw())
    pairs = []
    for name in OPS:
        ours = measure(
            f"state::{name}", caller(runner, ours_peer, f"state::{name}", name), seconds=args.seconds
        )
        raw = measure(f"raw::{name}", caller(runner, raw_peer, f"raw::{name}", name), seconds=args.seconds)
        pairs.append(Pair(f"{name} (one at a time)", ours, raw))
    pairs.append(
        Pair(
            "update (200 in flight)",
            concurrent(runner, ours_peer, "state::update", "ours"),
            concurrent(runner, raw_peer, "raw::update", "raw"),
        )
    )
    runner.run(ours_peer.add_observer("state::on-changed", "bench-observer"))
    wait_until(worker.on_changed_observed)
    ours = measure("state::set", caller(runner, ours_peer, "state::set", "set"), seconds=args.seconds)
    raw = measure("raw::set", caller(runner, raw_peer, "raw::set", "set"), seconds=args.seconds)
    pairs.append(Pair("set, state::on-changed observed", ours, raw))
    worker_loop.run(worker.stop())
    worker_loop.close()
    runner.run(asyncio.to_thread(raw_iii.shutdown))
    runner.run(raw_store.close())
    runner.run(ours_peer.close())
    runner.run(raw_peer.close())
    runner.close()
    print(rows_table("iii-state worker vs a bare iii-sdk handler (fake engine, in-memory kv)", pairs))


if __name__ == "__main__":
    main()

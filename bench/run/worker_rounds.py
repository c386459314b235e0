"""One side of ``python -m bench.worker_ab``: a worker of one revision, timed in rounds on request.

Started by ``bench/worker_ab.py`` with that revision's ``iii_state_core`` and kv plugin first on
``PYTHONPATH`` (then this tree, for ``bench`` and ``tests/worker/engine_peer.py``: both sides run
the same bench code and the same fake engine). It starts the revision's ``StateWorker`` over the
in-memory kv store against a fake iii 0.25 engine, says which core and kv plugin it loaded, then
answers one JSON line per JSON line it reads on stdin:

- ``{"op": "set"|"get"|"update", "seconds": S}``: calls one at a time for about ``S`` seconds;
- ``{"op": "update_in_flight", "calls": N}``: ``N`` updates, 200 in flight at a time;
- ``{"op": "stop"}``: stops the worker and exits.

Each answer is ``{"ops_per_s": …, "cpu_us": …}``; ``cpu_us`` is this whole process's CPU time per
call (engine peer, SDK and worker together: the same peer and SDK on both sides, so a difference
is the worker's, and other processes on the machine cannot inflate it).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import IO, Any

#: Calls before each timed round (not timed) and the fewest a round times.
WARMUP, MIN_CALLS = 20, 20


def _serve(out: IO[str]) -> None:
    import iii_state_kvfile

    import iii_state_core
    from bench.run.worker_calls import (
        MEMORY,
        Loop,
        caller,
        concurrent,
        start_peer,
        wait_registered,
        wait_until,
    )  # fmt: skip
    from iii_state_core.worker import StateWorker, WorkerSettings

    runner = Loop()
    worker_loop = Loop()  # the worker owns its loop, as under `iii-state worker`
    peer = runner.run(start_peer())
    worker = StateWorker(MEMORY, WorkerSettings(engine_url=peer.url, telemetry=False))
    worker_loop.run(worker.start())
    runner.run(wait_registered(peer))
    observed = getattr(worker, "on_changed_observed", None)  # absent before issue 15
    if observed is not None:
        wait_until(lambda: not observed())  # the engine's (empty) observer set arrived
    ready = {"core": iii_state_core.__file__, "kv": iii_state_kvfile.__file__}
    out.write(json.dumps(ready) + "\n")
    out.flush()
    for line in sys.stdin:
        request: dict[str, Any] = json.loads(line)
        op = request["op"]
        if op == "stop":
            break
        if op == "update_in_flight":
            calls = int(request["calls"])
            cpu0, wall0 = time.process_time(), time.perf_counter()
            concurrent(runner, peer, "state::update", op, n=calls)
        else:
            call = caller(runner, peer, f"state::{op}", op)
            for i in range(WARMUP):
                call(i)
            seconds = float(request["seconds"])
            calls = 0
            cpu0, wall0 = time.process_time(), time.perf_counter()
            while calls < MIN_CALLS or time.perf_counter() - wall0 < seconds:
                call(calls)
                calls += 1
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        ops_per_s = calls / wall
        out.write(json.dumps({"ops_per_s": ops_per_s, "cpu_us": cpu / calls * 1e6}) + "\n")
        out.flush()
    worker_loop.run(worker.stop())
    worker_loop.close()
    runner.run(peer.close())
    runner.close()


def main() -> None:
    # Answers go to the real stdout; anything else printing to fd 1 (the SDK, a warning) lands
    # on stderr instead of in the middle of an answer.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    os.environ.setdefault("OTEL_ENABLED", "false")
    _serve(out)


if __name__ == "__main__":
    main()

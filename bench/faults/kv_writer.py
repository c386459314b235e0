"""A writer the kv SIGKILL campaign kills: deterministic ops on its own keys, each logged.

``python -m bench.faults.kv_writer DIR LOG WRITER START`` opens the kv file store in ``DIR``,
prints ``ready``, then runs op ``START``, ``START+1``, … forever. Before op ``s`` it appends
``B s`` to ``LOG``, after the store returned ``A s``: an ``A`` line is an acknowledged write.
The op for ``s`` (and so the expected state) follows from ``s`` alone: see :func:`op_for`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

KEYS = 8
#: Set by the campaign's self-test only: a writer that lies, so the check must catch lost writes.
ACK_EARLY = os.environ.get("III_FAULTS_ACK_EARLY") == "1"


def key_for(writer: str, s: int) -> str:
    return f"{writer}-k{(s * 5) % KEYS}"


def op_for(s: int) -> str:
    return ("set", "update", "compare_and_set", "delete", "update")[s % 5]


def apply(state: dict[str, Any], writer: str, s: int) -> None:
    """What op ``s`` does to ``state`` (the parent's model and the writer's agree on this)."""
    key, op = key_for(writer, s), op_for(s)
    if op == "set" or op == "compare_and_set":
        state[key] = {"seq": s}
    elif op == "delete":
        state.pop(key, None)
    else:
        current = state.get(key)
        base = dict(current) if isinstance(current, dict) else {}
        base["seq"] = s
        base["count"] = base.get("count", 0) + 1
        state[key] = base


def run(directory: str, log_path: str, writer: str, start: int) -> None:
    from iii_state_core import open_store

    store = open_store(adapter="kv", adapter_config={"store_method": "file_based", "file_path": directory})
    scope = "faults"
    model = {k: v for k in (f"{writer}-k{i}" for i in range(KEYS)) if (v := store.get(scope, k)) is not None}
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    print("ready", flush=True)
    s = start
    while True:
        key, op = key_for(writer, s), op_for(s)
        os.write(log, f"B {s}\n".encode())
        if ACK_EARLY:  # the negative control: acknowledge before the write is done
            os.write(log, f"A {s}\n".encode())
        if op == "set":
            store.set(scope, key, {"seq": s})
        elif op == "update":
            store.update(
                scope,
                key,
                [
                    {"type": "set", "path": "seq", "value": s},
                    {"type": "increment", "path": "count", "by": 1},
                ],
            )
        elif op == "delete":
            store.delete(scope, key)
        else:
            result = store.compare_and_set(scope, key, model.get(key), {"seq": s})
            if not result.swapped:
                print(f"compare-and-set {s} did not swap: {result}", file=sys.stderr, flush=True)
                os._exit(3)
        if not ACK_EARLY:
            os.write(log, f"A {s}\n".encode())
        apply(model, writer, s)
        s += 1


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))

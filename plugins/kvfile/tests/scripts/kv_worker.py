"""A separate process for the kv file store tests: ``kv_worker.py MODE STORE_DIR [ARGS…]``.

Modes:
- ``increment GO_FILE COUNT``: wait for GO_FILE, run COUNT ``update`` increments on one key,
  print the JSON list of every ``new_value.n`` it got.
- ``write PREFIX``: print ``ready``, then set ``PREFIX<i>`` = ``{"i": i, …}`` for i = 0, 1, …
  forever, printing ``i`` after each set returns (an acknowledged write); every 7th write
  is an ``update`` increment of the ``counter`` key, printed as ``c<n>``.
- ``share``: read ``from-parent``, write ``from-child`` = what it read plus one, print it.
"""

from __future__ import annotations

import json
import os
import sys
import time

from iii_state_core import open_store


def main() -> None:
    mode, directory, *args = sys.argv[1:]
    config = {"store_method": "file_based", "file_path": directory}
    with open_store(adapter="kv", adapter_config=config) as store:
        if mode == "increment":
            go_file, count = args[0], int(args[1])
            while not os.path.exists(go_file):
                time.sleep(0.002)
            ops = [{"type": "increment", "path": "n", "by": 1}]
            seen = [store.update("contention", "counter", ops).new_value["n"] for _ in range(count)]
            print(json.dumps(seen), flush=True)
        elif mode == "write":
            prefix = args[0]
            pad = "x" * 1500  # a few pages per few writes, so WAL checkpoints happen under the kill
            print("ready", flush=True)
            i = 0
            while True:
                store.set("crash", f"{prefix}{i}", {"i": i, "pad": pad})
                print(i, flush=True)
                if i % 7 == 0:
                    n = store.update(
                        "crash", "counter", [{"type": "increment", "path": "", "by": 1}]
                    ).new_value
                    print(f"c{n}", flush=True)
                i += 1
        elif mode == "share":
            got = store.get("shared", "from-parent")
            store.set("shared", "from-child", got + 1)
            print(json.dumps(got + 1), flush=True)
        else:
            raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()

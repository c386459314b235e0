"""``python -m bench.batches [ADAPTER …]``: only the "Batches and transactions" section of
``python -m bench`` (default adapters: kv and redis), with the same code and budget."""

from __future__ import annotations

import sys

from bench.run import batches, machine
from bench.run.measuring import Budget
from bench.run.targets import TARGETS


def main(argv: list[str]) -> None:
    names = argv or ["kv", "redis"]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        sys.exit(f"unknown adapter(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    budget = Budget(seconds=1.0, rounds=3)
    tables = []
    for name in names:
        target = TARGETS[name]
        with target.open() as session:
            scope = session.scope + "-b"
            tables.append(batches.table(target.title, session.store, scope, session.raw, budget))
    print(f"Load average at the start (1/5/15 min): {machine.load()}\n")
    print("\n\n".join(["## Batches and transactions", batches.TEXT, *tables]))
    print(f"\nLoad average at the end (1/5/15 min): {machine.load()}")


if __name__ == "__main__":
    main(sys.argv[1:])

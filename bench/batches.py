"""``python -m bench.batches [ADAPTER …]``: only the "Batches and transactions" section of
``python -m bench`` (default adapters: kv and redis), with the same code and budget, and for kv and
Redis the 100,000-entry import."""

from __future__ import annotations

import sys

from bench.run import batches, imports, machine
from bench.run.measuring import Budget
from bench.run.targets import TARGETS

#: Adapters whose 100,000-entry import is timed (issue 17's targets).
IMPORT_TARGETS = ("kv", "redis")


def main(argv: list[str]) -> None:
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__.replace("``", "`"))
        print(f"ADAPTER: any of {', '.join(TARGETS)}. Prints Markdown tables: ours beside the raw client.")
        return
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
            # The raw batches read the standard entries: without them every raw get is a miss
            # (no value to send or decode) while ours reads hits. `python -m bench` populated
            # them in its standard table before this section.
            session.raw.populate()
            tables.append(batches.table(target.title, session.store, scope, session.raw, budget))
            if name in IMPORT_TARGETS:
                tables.append(imports.table(target.title, session.store))
    print(f"Load average at the start (1/5/15 min): {machine.load()}\n")
    print("\n\n".join(["## Batches and transactions", batches.TEXT, *tables]))
    print(f"\nLoad average at the end (1/5/15 min): {machine.load()}")


if __name__ == "__main__":
    main(sys.argv[1:])

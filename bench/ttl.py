"""``python -m bench.ttl [--seconds S] [--rounds N] [ADAPTER …]``: only the "With and without a
TTL" tables of ``python -m bench`` (default adapters: every target but kv-fsync), with the same code
and, unless told otherwise, the same budget; the load average is printed before and after, since
the rows are compared within one run and the machine may be shared."""

from __future__ import annotations

import argparse

from bench.run import machine, ttl
from bench.run.measuring import Budget
from bench.run.targets import TARGETS
from bench.run_all import DEFAULT_ADAPTERS, Options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ttl", description=__doc__.split("\n\n")[0])
    parser.add_argument("adapters", nargs="*", metavar="ADAPTER", help=f"any of {', '.join(TARGETS)}")
    parser.add_argument("--seconds", type=float, help="seconds per measurement round")
    parser.add_argument("--rounds", type=int, help="rounds per operation (each cut into slices)")
    args = parser.parse_args(argv)
    names = args.adapters or list(DEFAULT_ADAPTERS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown adapter(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    base = Options.make(quick=False).budget
    budget = Budget(args.seconds or base.seconds, args.rounds or base.rounds)
    print(f"Load average at the start (1/5/15 min): {machine.load()}\n")
    for name in names:
        target = TARGETS[name]
        with target.open() as session:
            if not ttl.has_ttl(session.store):
                print(f"{target.title}: the adapter declares no `ttl`; nothing to measure\n")
                continue
            session.raw.populate()  # the raw side's plain get/set read and write the standard entries
            scope = session.scope + "-t"
            rows = ttl.measure_rows(session.store, scope, session.raw, budget, session.server_pid)
            print(ttl.table(target.title, str(session.store.capabilities.ttl), rows) + "\n", flush=True)
    print(f"Load average at the end (1/5/15 min): {machine.load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

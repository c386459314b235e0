"""``python -m bench.faults [--quick] [--out docs/RELIABILITY.md]``: the fault campaign."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.run import machine

from .campaign import PARTS, Plan, markdown, new_failures, run


def _split(text: str | None) -> tuple[str, ...] | None:
    return tuple(p.strip() for p in text.split(",") if p.strip()) if text else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults",
        description="Kill writers and servers, break connections, run the model and fuzz the core; "
        "write one Markdown report.",
    )
    parser.add_argument("--quick", action="store_true", help="the short version (about a minute)")
    parser.add_argument("--only", help=f"comma-separated parts: {', '.join(PARTS)}")
    parser.add_argument("--backends", help="comma-separated: redis, memcached, dynamodb, kv, kv-memory")
    parser.add_argument("--seed", type=int, help="seed for every random choice (default: random, reported)")
    parser.add_argument("--out", type=Path, help="write the report here (default: print it)")
    parser.add_argument(
        "--sweeper", choices=("thread", "process"), default="thread",
        help="expiry part: where each sweeping process's sweeper claims (process: "
        "expiry_sweeper: process, a child of its own, which is SIGKILLed too)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    plan = Plan.make(
        quick=args.quick, parts=_split(args.only), backends=_split(args.backends), seed=args.seed,
        sweeper=args.sweeper,
    )  # fmt: skip
    facts = machine.facts()
    lines = run(plan)
    text = markdown(
        lines, plan, "python -m bench.faults " + " ".join(argv if argv is not None else sys.argv[1:]), facts
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)
    for line in lines:
        print(f"{line.area}: {line.what}: tried {line.tried}, failed {line.failed}")
    fresh = new_failures(lines)
    if fresh:
        print(f"{len(fresh)} failure(s) not among the known open limits", file=sys.stderr)
    return 1 if fresh else 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m bench``: see ``bench/run_all.py``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.run.targets import TARGETS
from bench.run_all import Options, markdown, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Every benchmark in one run: core overhead, each adapter beside its raw client, "
        "growth with scope size, the worker. Writes one Markdown report.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="seconds-long smoke run (CI); figures not meaningful"
    )
    parser.add_argument(
        "--adapters", help=f"comma-separated, from: {', '.join(TARGETS)} (default: all)", default=None
    )
    parser.add_argument("--out", type=Path, help="write the report here (default: print it)")
    parser.add_argument("--seconds", type=float, help="seconds per measurement round")
    parser.add_argument("--rounds", type=int, help="alternating rounds per operation")
    parser.add_argument("--large", type=int, help="keys in the large scope (default 100,000; quick 2,000)")
    parser.add_argument(
        "--baseline", help="git revision of the core to compare the overhead with ('' = none)"
    )
    parser.add_argument("--no-callgrind", action="store_true", help="skip the instruction counts")
    parser.add_argument("--no-worker", action="store_true", help="skip the worker benchmark")
    args = parser.parse_args(argv)
    adapters = None
    if args.adapters:
        adapters = tuple(a.strip() for a in args.adapters.split(",") if a.strip())
        unknown = [a for a in adapters if a not in TARGETS]
        if unknown:
            parser.error(f"unknown adapter(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    from bench.run.measuring import Budget

    overrides: dict[str, object] = {"large": args.large}
    if args.seconds is not None or args.rounds is not None:
        base = Options.make(quick=args.quick).budget
        overrides["budget"] = Budget(args.seconds or base.seconds, args.rounds or base.rounds)
    if args.baseline is not None:
        overrides["baseline"] = args.baseline or None
    options = Options.make(quick=args.quick, adapters=adapters, **overrides)
    if args.no_callgrind:
        options = Options(**{**options.__dict__, "callgrind_calls": 0})
    if args.no_worker:
        options = Options(**{**options.__dict__, "worker": False})
    report = run(options)
    text = markdown(
        report, options, "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())

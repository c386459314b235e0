"""``python -m bench``: see ``bench/run_all.py``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.run.targets import TARGETS
from bench.run_all import Options, Report, markdown, run


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
        "--adapters",
        help=f"comma-separated, from: {', '.join(TARGETS)} (default: all but kv-fsync)",
        default=None,
    )
    parser.add_argument("--out", type=Path, help="write the report here (default: print it)")
    parser.add_argument(
        "--update",
        type=Path,
        metavar="REPORT",
        help="refresh only the --adapters' figures in this report (no overhead, worker, transfer)",
    )
    parser.add_argument("--seconds", type=float, help="seconds per measurement round")
    parser.add_argument("--rounds", type=int, help="alternating rounds per operation")
    parser.add_argument("--large", type=int, help="keys in the large scope (default 100,000; quick 2,000)")
    parser.add_argument(
        "--import-entries", type=int,
        help="entries of the kv and Redis import timing (default 100,000; quick 10,000)",
    )  # fmt: skip
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

    overrides: dict[str, object] = {"large": args.large, "import_entries": args.import_entries}
    if args.seconds is not None or args.rounds is not None:
        base = Options.make(quick=args.quick).budget
        overrides["budget"] = Budget(args.seconds or base.seconds, args.rounds or base.rounds)
    if args.baseline is not None:
        overrides["baseline"] = args.baseline or None
    options = Options.make(quick=args.quick, adapters=adapters, **overrides)
    if args.no_callgrind:
        options = Options(**{**options.__dict__, "callgrind_calls": 0})
    if args.no_worker or args.update:
        options = Options(**{**options.__dict__, "worker": False})
    if args.update:
        if args.out or not adapters:
            parser.error("--update needs --adapters and no --out")
        if not args.update.exists():
            parser.error(f"--update: {args.update} does not exist; write a full report with --out first")
        options = Options(**{**options.__dict__, "overhead": False, "transfer_entries": 0})
    report = run(options)
    if args.update:
        return _update(args.update, report, argv)
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


def _update(path: Path, report: Report, argv: list[str] | None) -> int:
    from bench.run import machine
    from bench.run.update import merge

    if report.failed or report.not_run:
        for name, why in {**report.not_run, **report.failed}.items():
            print(f"{name}: {why}", file=sys.stderr)
        print(f"{path} left as it was", file=sys.stderr)
        return 1
    facts = dict(machine.facts())
    names = ", ".join(report.adapter_tables)
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    note = (
        f"The {names} figures were refreshed by `{command}` on {facts['date (UTC)']} UTC at commit "
        f"{facts['commit']} (load average {report.load_at_start} at start, {machine.load()} at end); "
        "the machine is the one described below."
        + (" The expiry events under load were measured again in that run." if report.expiry_section else "")
    )
    extra = {"expiry": report.expiry_section} if report.expiry_section else {}
    text = merge(path.read_text(), report.adapter_tables, report.growth_rows, report.walk_rows, note, extra)
    path.write_text(text)
    print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

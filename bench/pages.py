"""list_entries pages of this tree against the code before issue 15, same run, on each backend.

``python -m bench.pages [ADAPTER ...] [--old REV] [--rounds N] [--seconds S] [--with-deletes]
[--smoke] [--update REPORT]``

Issue 15's bar: ``list_entries`` pages at least 0.8 times their speed before issue 15's work.
Both revisions have the typed call ``store.list_entries(scope, cursor, limit)``; before issue 15
a page was ``{entries, next_cursor, done}`` (one adapter ``scan``), now it also carries ``offset``
and ``total``, and a first page of a scope longer than the page counts ``total`` exactly (the
adapter's ``scan_counted``: kv file a COUNT query, kept while the file is unchanged; kv in_memory
the dict's size; Redis the count in the first page's own script; memcached decisions 0020/0022;
DynamoDB ``Select=COUNT`` Queries over the scope, decision 0019). A typed call has no byte
budget (``max_bytes``) unless asked, so both sides do the same listing work but the count and
the cursor (new: signed, with offset and total).

Method. Per adapter, three child processes (``bench/run/page_rounds.py``): **new** (this
working tree, or ``--new REV``), **old** and **old2** (two processes of ``--old``, default
f27a8d6, the last commit before issue 15). Each takes its ``iii_state_core`` and its adapter's
plugin from its revision (``git archive`` into a temporary directory put first on the child's
``PYTHONPATH``; bench code and client libraries are this tree's venv's) and reports the files it
loaded; the run stops if they are not its revision's. Each fills a scope of its own with 1,000
entries (keys ``e0000``…``e0999``, a small JSON object each) and pages it 100 at a time. Servers:
kv file, one SQLite folder per side; Redis, ONE server for all three (each its own hash with the
same field names, so HSCAN cuts batches alike: the cut depends on the server's random hash seed);
memcached, one server per side (its counters are server-wide and must not see the other sides'
deletes); dynalite and moto, one server, a table per side. The sides take turns in rounds of
``S`` seconds of pages, in an order rotating each round, so load from elsewhere hits all alike.

Rows. **first page**: ``list_entries(scope, None, 100)``, repeated (new: counts ``total``);
**next page**: ``list_entries(scope, cursor, 100)`` with the cursor of one first page, the same
walk's second page (no count on either side); **first page, one delete before each** (memcached
by default, every adapter with ``--with-deletes``): one untimed delete through the same store,
in another scope, before each page (it makes memcached's count probe again before decision
0022). pages/s counts only time inside ``list_entries``; CPU µs is the child's process CPU per
page (the client side; a server's time is not in it).

Rule. Per round: new ÷ old and, as the A-vs-A noise floor, old2 ÷ old; the table shows medians of
the rounds, the median per-round ratio and its 90 % bootstrap interval. **met**: the interval of
new ÷ old lies at or above 0.8; **not met**: wholly below 0.8; **undecided**: it straddles 0.8
(rerun with more rounds). The noise band 1 ± n (n: how far old2 ÷ old's interval reaches from 1)
says how far two copies of the same code drift apart in this run; over ±10 % it is flagged.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iii_state_testsupport import ServerStartError, ServerUnavailable

from bench.run import revisions
from bench.run.machine import load
from bench.run.revisions import BenchError, revision_label
from bench.worker_ab import OLD_REV, Verdict, compare

REPO = Path(__file__).resolve().parents[1]
BAR = 0.8
COARSE = 0.10
SIDES = ("old", "new", "old2")
START, END = "<!-- bench.pages: start -->", "<!-- bench.pages: end -->"

#: A side's adapter config, given the side's label and what :func:`servers` started.
Config = Callable[[str, Any], dict[str, Any]]


@dataclass(frozen=True)
class Backend:
    title: str
    adapter: str
    plugin: str  # the plugin package's path in the repository
    #: A context manager started once for the three sides (``None``: nothing shared).
    shared: Callable[[], ContextManager[Any]] | None
    #: One started per side (memcached), or ``None``.
    own: Callable[[], ContextManager[Any]] | None
    config: Config
    deletes_by_default: bool = False


@contextlib.contextmanager
def _folder() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="iii-pages-kv-") as folder:
        yield folder


def _redis() -> ContextManager[Any]:
    from iii_state_testsupport import redis_server

    return redis_server()


def _memcached() -> ContextManager[Any]:
    from iii_state_testsupport import memcached_server

    return memcached_server()


def _dynamo(kind: str) -> Callable[[], ContextManager[Any]]:
    def start() -> ContextManager[Any]:
        from iii_state_testsupport import dynalite_server, moto_server

        from bench.run.raw_dynamodb import DUMMY_ENV

        for name, value in DUMMY_ENV.items():  # neither server checks them; boto3 wants some
            os.environ.setdefault(name, value)
        return dynalite_server() if kind == "dynalite" else moto_server()

    return start


def _dynamo_config(label: str, server: Any) -> dict[str, Any]:
    return {"table_name": f"iii-pages-{label}", "endpoint_url": server.url, "create_table": True}


KV, REDIS, MEMCACHED, DYNAMODB = (
    "plugins/kvfile/iii_state_kvfile",
    "plugins/redis/iii_state_redis",
    "plugins/memcached/iii_state_memcached",
    "plugins/dynamodb/iii_state_dynamodb",
)
BACKENDS: dict[str, Backend] = {
    "kv": Backend(
        "kv file (SQLite WAL)",
        "kv",
        KV,
        None,
        _folder,
        lambda label, folder: {"store_method": "file_based", "file_path": folder},
    ),
    "kv-memory": Backend(
        "kv in_memory", "kv", KV, None, None, lambda label, _: {"store_method": "in_memory"}
    ),
    "redis": Backend(
        "Redis (one server)", "redis", REDIS, _redis, None, lambda label, s: {"redis_url": s.url}
    ),
    "memcached": Backend(
        "memcached (a server per side)",
        "memcached",
        MEMCACHED,
        None,
        _memcached,
        lambda label, s: {"servers": [s.address], "key_prefix": "pages:"},
        deletes_by_default=True,
    ),
    "dynamodb": Backend(
        "DynamoDB on dynalite", "dynamodb", DYNAMODB, _dynamo("dynalite"), None, _dynamo_config
    ),
    "dynamodb-moto": Backend("DynamoDB on moto", "dynamodb", DYNAMODB, _dynamo("moto"), None, _dynamo_config),
}
DEFAULT = ("kv", "kv-memory", "redis", "memcached", "dynamodb")


@dataclass(frozen=True)
class Settings:
    rounds: int
    seconds: float


FULL = Settings(rounds=15, seconds=0.2)
SMOKE = Settings(rounds=3, seconds=0.005)


class Side:
    """One child process paging one revision's store."""

    def __init__(
        self, label: str, tree: Path, backend: Backend, config: dict[str, Any], workdir: Path
    ) -> None:
        self.label = label
        paths = [tree, tree / Path(backend.plugin).parent, REPO]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(dict.fromkeys(map(str, paths))),
            "III_STATE_PLUGINS": backend.adapter,
        }
        self.stderr_path = workdir / f"{label}.stderr"
        self._stderr = self.stderr_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "run" / "page_rounds.py"), backend.adapter,
             json.dumps(config), f"pages-{label}"],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            cwd=workdir,  # not the repo: its core must not shadow the revision's
        )  # fmt: skip
        self.tree = tree

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            tail = self.stderr_path.read_text().strip().splitlines()[-1:]
            raise BenchError(f"the {self.label} side exited ({self.process.returncode}): {tail}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ready(self) -> None:
        for name, path in self._answer().items():
            if not Path(path).resolve().is_relative_to(self.tree.resolve()):
                raise BenchError(f"the {self.label} side loaded its {name} from {path}, not {self.tree}")

    def round(self, page: str, seconds: float, deletes: bool) -> dict[str, float]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"page": page, "seconds": seconds, "deletes": deletes}) + "\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._stderr.close()


@dataclass(frozen=True)
class Row:
    backend: str
    page: str
    ops: dict[str, list[float]]
    cpu: dict[str, list[float]]


PAGES = {
    ("first", False): "first page",
    ("next", False): "next page",
    ("first", True): "first page, one delete before each",
}


def measure(name: str, old: str, new: str | None, settings: Settings, deletes: bool) -> list[Row]:
    """Start one backend's three sides, run their rounds, stop them."""
    backend = BACKENDS[name]
    packages = ("iii_state_core", backend.plugin)
    with ExitStack() as stack:
        old_tree = stack.enter_context(revisions.revision_tree(old, packages, "iii-pages-"))
        new_tree = stack.enter_context(revisions.revision_tree(new, packages, "iii-pages-"))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="iii-pages-run-")))
        shared = stack.enter_context(backend.shared()) if backend.shared else None
        sides: dict[str, Side] = {}
        for label in SIDES:
            server = stack.enter_context(backend.own()) if backend.own else shared
            tree = new_tree if label == "new" else old_tree
            sides[label] = Side(label, tree, backend, backend.config(label, server), workdir)
            stack.callback(sides[label].close)
        for side in sides.values():
            side.ready()
        kinds = [("first", False), ("next", False)]
        if deletes or backend.deletes_by_default:
            kinds.append(("first", True))
        rows = []
        for page, with_deletes in kinds:
            ops: dict[str, list[float]] = {label: [] for label in SIDES}
            cpu: dict[str, list[float]] = {label: [] for label in SIDES}
            for r in range(settings.rounds):
                for label in SIDES[r % 3 :] + SIDES[: r % 3]:
                    answer = sides[label].round(page, settings.seconds, with_deletes)
                    ops[label].append(answer["pages_per_s"])
                    cpu[label].append(answer["cpu_us"])
            rows.append(Row(backend.title, PAGES[page, with_deletes], ops, cpu))
        return rows


def verdict(v: Verdict) -> str:
    if v.low >= BAR:
        word = "met"
    elif v.high < BAR:
        word = "not met"
    else:
        word = f"undecided (interval straddles {BAR})"
    if v.noise > COARSE:
        word += f"; noise band over ±{COARSE:.0%}: rerun quieter"
    return word


def table(
    rows: list[Row], old: str, new: str, settings: Settings, seed: int, load_before: str, when: str
) -> str:
    rng = random.Random(seed)
    lines = [
        f"`python -m bench.pages`: {new} (new) vs {old} (old, and old2: a second process of it), "
        f"{when}; {settings.rounds} rounds of {settings.seconds:g} s of pages per side and row; "
        f"load average {load_before} before, {load()} after (1/5/15 min). Pages of 100 from a "
        "1,000-entry scope; medians of the rounds, ratios per round with their 90 % bootstrap interval.",
        "",
        "| backend | page | old pages/s | old2 pages/s | new pages/s | new ÷ old [90 % interval] "
        "| old2 ÷ old [90 % interval] | noise band | client CPU µs/page old → new | bar: new ÷ old ≥ 0.8 |",
        "|---|---|---:|---:|---:|---|---|---|---:|---|",
    ]
    for row in rows:
        v = compare(row.ops, rng)
        rates = " | ".join(f"{statistics.median(row.ops[s]):,.0f}" for s in ("old", "old2", "new"))
        cpu = f"{statistics.median(row.cpu['old']):,.0f} → {statistics.median(row.cpu['new']):,.0f}"
        lines.append(f"| {row.backend} | {row.page} | {rates} | {v.cells()} | {cpu} | {verdict(v)} |")
    return "\n".join(lines)


_BLOCK = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)


def _document(path: Path) -> str:
    """``path``'s text, checked to hold exactly one block between the bench's markers."""
    try:
        document = path.read_text()
    except OSError as exc:
        raise BenchError(f"cannot read {path}: {exc.strerror}") from None
    if len(_BLOCK.findall(document)) != 1:
        raise BenchError(f"{path} needs exactly one {START} … {END} block to update")
    return document


def update(path: Path, text: str) -> None:
    """Put ``text`` between the bench's markers in ``path``."""
    path.write_text(_BLOCK.sub(lambda _: f"{START}\n{text}\n{END}", _document(path)))


def _at_least(low: float, what: str, kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = float("nan")
        if not value >= low:
            raise argparse.ArgumentTypeError(f"{what} must be a number of at least {low:g}, not {text!r}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pages",
        description=(__doc__ or "").replace("**", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "adapters", nargs="*", metavar="ADAPTER",
        help=f"from {', '.join(BACKENDS)} (default: {' '.join(DEFAULT)})",
    )  # fmt: skip
    parser.add_argument("--old", default=OLD_REV, help=f"the old revision (default {OLD_REV[:10]})")
    parser.add_argument("--new", default=None, help="the new revision (default: this working tree)")
    parser.add_argument(
        "--rounds", type=_at_least(3, "--rounds", int), help=f"rounds per row (default {FULL.rounds})"
    )
    parser.add_argument(
        "--seconds",
        type=_at_least(0.001, "--seconds", float),
        help=f"seconds of pages per side and round (default {FULL.seconds:g})",
    )
    parser.add_argument("--with-deletes", action="store_true", help="the row with deletes on every adapter")
    parser.add_argument(
        "--smoke", action="store_true", help="seconds-long run (tests); figures not meaningful"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    parser.add_argument(
        "--update", type=Path, metavar="REPORT",
        help=f"write the table between {START} and {END} in REPORT instead of printing it",
    )  # fmt: skip
    args = parser.parse_args(argv)
    unknown = [a for a in args.adapters if a not in BACKENDS]
    if unknown:
        parser.error(f"unknown adapter(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    base = SMOKE if args.smoke else FULL
    settings = Settings(
        int(args.rounds) if args.rounds is not None else base.rounds,
        args.seconds if args.seconds is not None else base.seconds,
    )
    load_before = load()
    from datetime import datetime, timezone

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows: list[Row] = []
    try:
        if args.update:
            _document(args.update)  # a report it cannot update fails before the run, not after
        for name in dict.fromkeys(args.adapters or DEFAULT):
            rows += measure(name, args.old, args.new, settings, args.with_deletes)
            print(f"  {name}: done", file=sys.stderr, flush=True)
        text = table(
            rows, revision_label(args.old), revision_label(args.new), settings, args.seed, load_before, when
        )
        if args.update:
            update(args.update, text)
            print(f"updated {args.update}")
        else:
            print(text)
    except (BenchError, ServerUnavailable, ServerStartError) as exc:
        print(f"python -m bench.pages: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

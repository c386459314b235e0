"""Run each test folder in its own pytest process, then print one combined closing line.

Each plugin's tests/ is self-contained (own conftest, same-named files as its siblings), so
they run as separate pytest sessions, exactly as a user of that one package would run them.

With ``--containers`` (scripts/test-all passes it once the Docker engine and the test images
are ready), one conformance class per backend runs on a server that testcontainers started,
and the local-binary session of that folder leaves that class out: each test runs once, and
the fixtures' container path is exercised by a whole suite per backend.

With ``--jobs N`` up to N sessions run at once (the longest first); each session's output is
printed whole when it ends, so the log reads as if they had run one after another. Most
sessions wait on servers and child processes, so two share a 2-core machine well.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = [
    "tests/unit",
    "tests/conformance/selftests",
    "tests/support/selftests",
    "plugins/*/tests",
    "tests/worker",
    "tests/transfer",
    "tests/reliability",
    "tests/docs",
]
#: Started first when sessions run in parallel: the longest ones (seconds on a quiet machine).
LONGEST_FIRST = [
    "plugins/dynamodb/tests",
    "plugins/redis/tests",
    "tests/conformance/selftests",
    "plugins/memcached/tests",
    "tests/transfer",
]
# folder -> (conformance file, -k expression choosing the class/parameter served by a container)
CONTAINER_CONFORMANCE = {
    "plugins/redis/tests": ("test_conformance.py", "TestRedisSingleNode or TestValkey"),
    "plugins/memcached/tests": ("test_conformance.py", "TestMemcached and one-server"),
    "plugins/dynamodb/tests": ("test_conformance.py", "TestDynamoDB and dynalite"),
}


@dataclass(frozen=True)
class Session:
    name: str
    selection: list[str]
    servers: str | None  # III_STATE_TEST_SERVERS for this session; None keeps the caller's


def sessions(containers: bool) -> list[Session]:
    found = []
    for folder in (p for pattern in FOLDERS for p in sorted(ROOT.glob(pattern)) if p.is_dir()):
        rel = folder.relative_to(ROOT).as_posix()
        by_container = CONTAINER_CONFORMANCE.get(rel) if containers else None
        if by_container is None:
            found.append(Session(rel, [rel], "binary" if containers else None))
            continue
        file, selection = by_container
        found.append(Session(rel, [rel, "-k", f"not ({selection})"], "binary"))
        name = f"{rel}/{file} -k '{selection}'"
        found.append(Session(name, [f"{rel}/{file}", "-k", selection], "container"))
    return found


def _rank(session: Session) -> int:
    folder = session.selection[0]
    return next((i for i, slow in enumerate(LONGEST_FIRST) if folder.startswith(slow)), len(LONGEST_FIRST))


class Runner:
    def __init__(self, tmp: Path, extra: list[str], parallel: bool) -> None:
        self.tmp, self.extra, self.parallel = tmp, extra, parallel
        self.totals = {"passed": 0, "failed": 0, "skipped": 0}
        self.failed: list[str] = []
        self._print_lock = threading.Lock()

    def run(self, n: int, session: Session) -> None:
        report = self.tmp / f"{n}.xml"
        header = f"\n== {session.name}" + (f" (servers: {session.servers})" if session.servers else "")
        command = [
            sys.executable, "-m", "pytest", *session.selection, "-q", "-rfEs",
            "-p", "no:cacheprovider", f"--junitxml={report}", *self.extra,
        ]  # fmt: skip
        env = {**os.environ, "III_STATE_TEST_SERVERS": session.servers} if session.servers else None
        started = time.monotonic()
        if self.parallel:
            with self._print_lock:
                print(f"== started: {session.name}", flush=True)
            log = self.tmp / f"{n}.log"
            with log.open("wb") as out:
                code = subprocess.call(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            output = log.read_text(errors="replace")
        else:
            print(header, flush=True)
            code = subprocess.call(command, cwd=ROOT, env=env)
            output = ""
        counts = _counts(report)
        with self._print_lock:
            if self.parallel:
                print(header, flush=True)
                sys.stdout.write(output)
            print(
                f"== {session.name}: {counts['passed']} passed, {counts['failed']} failed, "
                f"{counts['skipped']} skipped in {time.monotonic() - started:.0f}s",
                flush=True,
            )
            for k in self.totals:
                self.totals[k] += counts[k]
            if code not in (0, 5) or counts["failed"]:
                self.failed.append(f"{session.name} (exit {code})")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--containers", action="store_true", help="run one conformance class per backend on containers"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="how many pytest sessions run at once (default 1)"
    )
    args, extra = parser.parse_known_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    todo = sessions(args.containers)
    if args.jobs > 1:
        todo.sort(key=_rank)  # stable: the rest keep their order
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(Path(tmp), extra, parallel=args.jobs > 1)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for future in [pool.submit(runner.run, n, s) for n, s in enumerate(todo)]:
                future.result()
    totals = runner.totals
    if runner.failed:
        print("\nfailing:", ", ".join(runner.failed))
    print(f"\n{totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
    return 1 if runner.failed or totals["passed"] == 0 else 0


def _counts(report: Path) -> dict[str, int]:
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    if not report.exists():
        counts["failed"] = 1  # the session crashed before writing its report
        return counts
    for suite in ElementTree.parse(report).getroot().iter("testsuite"):
        tests = int(suite.get("tests", 0))
        failures = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped = int(suite.get("skipped", 0))
        counts["failed"] += failures
        counts["skipped"] += skipped
        counts["passed"] += tests - failures - skipped
    return counts


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Run each test folder in its own pytest process, then print one combined closing line.

Each plugin's tests/ is self-contained (own conftest, same-named files as its siblings), so
they run as separate pytest sessions, exactly as a user of that one package would run them.

With ``--containers`` (scripts/test-all passes it), one conformance class per backend runs on a
server that testcontainers started, and the local-binary session of that folder leaves that
class out: each test runs once, and the fixtures' container path is exercised by a whole suite
per backend. With ``--images-status FILE`` those container sessions start only once FILE exists
(it holds the exit code of scripts/build-test-images, which test-all runs in the background
meanwhile); the others do not wait for it.

With ``--jobs N`` up to N sessions run at once, longest first by the seconds each took in CI
(``SECONDS``): on two lanes that ends them close together. Each session's output is printed
whole when it ends, so the log reads as if they had run one after another. Most sessions wait
on servers and child processes, so two share a 2-core machine well.
"""

from __future__ import annotations

import argparse
import itertools
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
#: Roughly the seconds each session takes in CI (this machine, two lanes; the CI run of 5b2358a
#: less the cuts of decision 0015): only their order matters, the order sessions start in.
#: A session not listed counts as short; a container session is named after its folder + "#".
SECONDS = {
    "plugins/dynamodb/tests/#": 255,
    "tests/conformance/selftests": 250,
    "plugins/dynamodb/tests": 200,
    "plugins/redis/tests": 136,
    "tests/transfer": 106,
    "plugins/redis/tests/#": 105,
    "tests/reliability": 104,
    "tests/docs": 100,
    "plugins/kvfile/tests": 81,
    "plugins/memcached/tests": 75,
    "plugins/memcached/tests/#": 64,
    "tests/support/selftests": 51,
    "tests/worker": 28,
    "tests/unit": 23,
}
# folder -> (conformance file, -k expression choosing the class/parameter served by a container)
CONTAINER_CONFORMANCE = {
    "plugins/redis/tests": ("test_conformance.py", "TestRedisSingleNode or TestValkey"),
    "plugins/memcached/tests": ("test_conformance.py", "TestMemcachedOneServer"),
    "plugins/dynamodb/tests": ("test_conformance.py", "TestDynamoDBOnDynalite"),
}


@dataclass(frozen=True)
class Session:
    name: str
    selection: list[str]
    servers: str | None  # III_STATE_TEST_SERVERS for this session; None keeps the caller's
    folder: str = ""

    @property
    def seconds(self) -> int:
        key = self.folder + ("/#" if self.servers == "container" else "")
        return SECONDS.get(key, 10)


def sessions(containers: bool) -> list[Session]:
    found = []
    for folder in (p for pattern in FOLDERS for p in sorted(ROOT.glob(pattern)) if p.is_dir()):
        rel = folder.relative_to(ROOT).as_posix()
        by_container = CONTAINER_CONFORMANCE.get(rel) if containers else None
        if by_container is None:
            found.append(Session(rel, [rel], "binary" if containers else None, rel))
            continue
        file, selection = by_container
        found.append(Session(rel, [rel, "-k", f"not ({selection})"], "binary", rel))
        name = f"{rel}/{file} -k '{selection}'"
        found.append(Session(name, [f"{rel}/{file}", "-k", selection], "container", rel))
    return found


class Queue:
    """Sessions waiting to run, longest first; a container session only once the images are."""

    def __init__(self, todo: list[Session], images_status: Path | None) -> None:
        self._todo = sorted(todo, key=lambda s: -s.seconds)  # stable: ties keep their order
        self._images_status = images_status
        self._lock = threading.Lock()

    def images_ready(self) -> bool:
        return self._images_status is None or self._images_status.exists()

    def images_failure(self) -> str | None:
        """Why the images are missing (their build failed), or None."""
        if self._images_status is None or not self._images_status.exists():
            return None
        code = self._images_status.read_text().strip()
        return None if code == "0" else f"the test images were not built (build-test-images exit {code})"

    def take(self) -> Session | None:
        """The next session this lane may start, waiting for the images if only those are left."""
        while True:
            with self._lock:
                if not self._todo:
                    return None
                ready = self.images_ready()
                for session in self._todo:
                    if ready or session.servers != "container":
                        self._todo.remove(session)
                        return session
            time.sleep(1.0)


class Runner:
    def __init__(self, tmp: Path, extra: list[str], parallel: bool, images_log: Path | None) -> None:
        self.tmp, self.extra, self.parallel = tmp, extra, parallel
        self.totals = {"passed": 0, "failed": 0, "skipped": 0}
        self.failed: list[str] = []
        self._print_lock = threading.Lock()
        self._images_log = images_log  # printed before the first container session

    def _show_images_log(self) -> None:
        with self._print_lock:
            log, self._images_log = self._images_log, None
            if log is not None and log.exists():
                print(f"\n== test images (built while the first sessions ran)\n{log.read_text()}", end="")

    def run(self, n: int, session: Session, images_failure: str | None = None) -> None:
        if session.servers == "container":
            self._show_images_log()
            if images_failure:
                with self._print_lock:
                    print(f"\n== {session.name}: not run: {images_failure}", flush=True)
                    self.failed.append(f"{session.name} ({images_failure})")
                return
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
    parser.add_argument(
        "--images-status", type=Path, metavar="FILE",
        help="container sessions start once FILE exists; it holds the image build's exit code",
    )  # fmt: skip
    parser.add_argument("--images-log", type=Path, metavar="FILE", help="the image build's output to show")
    args, extra = parser.parse_known_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    queue = Queue(sessions(args.containers), args.images_status if args.containers else None)
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(Path(tmp), extra, parallel=args.jobs > 1, images_log=args.images_log)
        numbers = itertools.count()

        def lane() -> None:
            while (session := queue.take()) is not None:
                runner.run(next(numbers), session, queue.images_failure())

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for future in [pool.submit(lane) for _ in range(args.jobs)]:
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

"""Run each test folder in its own pytest process, then print one combined closing line.

Each plugin's tests/ is self-contained (own conftest, same-named files as its siblings), so
they run as separate pytest sessions, exactly as a user of that one package would run them.

With ``--containers`` (scripts/test-all passes it once the Docker engine and the test images
are ready), one conformance class per backend runs on a server that testcontainers started,
and the local-binary session of that folder leaves that class out: each test runs once, and
the fixtures' container path is exercised by a whole suite per backend.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
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
# folder -> (conformance file, -k expression choosing the class/parameter served by a container)
CONTAINER_CONFORMANCE = {
    "plugins/redis/tests": ("test_conformance.py", "TestRedisSingleNode"),
    "plugins/memcached/tests": ("test_conformance.py", "TestMemcached and one-server"),
    "plugins/dynamodb/tests": ("test_conformance.py", "TestDynamoDB and dynalite"),
}


def main(args: list[str]) -> int:
    containers = "--containers" in args
    extra = [a for a in args if a != "--containers"]
    folders = [p for pattern in FOLDERS for p in sorted(ROOT.glob(pattern)) if p.is_dir()]
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    failed_folders = []
    with tempfile.TemporaryDirectory() as tmp:
        sessions = []
        for folder in folders:
            rel = folder.relative_to(ROOT).as_posix()
            by_container = CONTAINER_CONFORMANCE.get(rel) if containers else None
            if by_container is None:
                sessions.append((rel, [rel], "binary" if containers else None))
                continue
            file, selection = by_container
            sessions.append((rel, [rel, "-k", f"not ({selection})"], "binary"))
            name = f"{rel}/{file} -k '{selection}'"
            sessions.append((name, [f"{rel}/{file}", "-k", selection], "container"))
        for n, (name, selection_args, servers) in enumerate(sessions):
            report = Path(tmp) / f"{n}.xml"
            print(f"\n== {name}" + (f" (servers: {servers})" if servers else ""), flush=True)
            started = time.monotonic()
            code = subprocess.call(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    *selection_args,
                    "-q",
                    "-rfEs",
                    "-p",
                    "no:cacheprovider",
                    f"--junitxml={report}",
                    *extra,
                ],
                cwd=ROOT,
                env={**os.environ, "III_STATE_TEST_SERVERS": servers} if servers else None,
            )
            counts = _counts(report)
            for k in totals:
                totals[k] += counts[k]
            print(
                f"== {name}: {counts['passed']} passed, {counts['failed']} failed, "
                f"{counts['skipped']} skipped in {time.monotonic() - started:.0f}s",
                flush=True,
            )
            if code not in (0, 5) or counts["failed"]:
                failed_folders.append(f"{name} (exit {code})")
    if failed_folders:
        print("\nfailing:", ", ".join(failed_folders))
    print(f"\n{totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
    return 1 if failed_folders or totals["passed"] == 0 else 0


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

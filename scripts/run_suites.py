"""Run each test folder in its own pytest process, then print one combined closing line.

Each plugin's tests/ is self-contained (own conftest, same-named files as its siblings), so
they run as separate pytest sessions, exactly as a user of that one package would run them.
"""

from __future__ import annotations

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


def main(extra: list[str]) -> int:
    folders = [p for pattern in FOLDERS for p in sorted(ROOT.glob(pattern)) if p.is_dir()]
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    failed_folders = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, folder in enumerate(folders):
            rel = folder.relative_to(ROOT)
            report = Path(tmp) / f"{n}.xml"
            print(f"\n== {rel}", flush=True)
            started = time.monotonic()
            code = subprocess.call(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    str(rel),
                    "-q",
                    "-rfEs",
                    "-p",
                    "no:cacheprovider",
                    f"--junitxml={report}",
                    *extra,
                ],
                cwd=ROOT,
            )
            counts = _counts(report)
            for k in totals:
                totals[k] += counts[k]
            print(
                f"== {rel}: {counts['passed']} passed, {counts['failed']} failed, "
                f"{counts['skipped']} skipped in {time.monotonic() - started:.0f}s",
                flush=True,
            )
            if code not in (0, 5) or counts["failed"]:
                failed_folders.append(f"{rel} (exit {code})")
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

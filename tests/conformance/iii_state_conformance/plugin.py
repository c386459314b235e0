"""The suite's opt-in pytest plugin: ``pytest_plugins = ["iii_state_conformance.plugin"]``.

It prints a per-area report of the suite's results after the run (``iii-state conformance``
uses it too). It starts no server: the suite needs only your ``store`` fixture.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

_AREA_KEY = pytest.StashKey[str]()
_results: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))


def _area_of(item: pytest.Item) -> str | None:
    from .suite import AREAS

    function = getattr(item, "function", None)
    owner = getattr(function, "__qualname__", "").split(".")[0]
    for cls, area in AREAS.items():
        if cls.__name__ == owner:
            return area
    return None


#: ``-k`` keyword of every test that opens the store in other processes (it takes ``spec``).
PROCESSES_KEYWORD = "runs_processes"


# First, so the keywords added here are there when pytest applies ``-k``.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "spec" in getattr(item, "fixturenames", ()):
            item.extra_keyword_matches.add(PROCESSES_KEYWORD)
        area = _area_of(item)
        if area is not None:
            item.stash[_AREA_KEY] = area
            # lets `-k ConcurrencyTests` select or drop a whole area
            owner = item.function.__qualname__.split(".")[0]  # type: ignore[attr-defined]
            item.extra_keyword_matches.add(owner)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    outcome = yield
    report = outcome.get_result()
    area = item.stash.get(_AREA_KEY, None)
    if area is None:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            _results[area]["skipped"].append(f"{item.name}: {reason.removeprefix('Skipped: ')}")
        elif report.failed:
            _results[area]["failed"].append(item.name)
        elif hasattr(report, "wasxfail"):
            _results[area]["xfailed"].append(item.name)
        else:
            _results[area]["passed"].append(item.name)


def area_report() -> list[str]:
    """Lines of the per-area table (also used by ``iii-state conformance``)."""
    from .suite import AREAS

    lines = [f"{'area':28} {'passed':>6} {'failed':>6} {'skipped':>7}"]
    for area in AREAS.values():
        got = _results.get(area)
        if not got:
            continue
        lines.append(f"{area:28} {len(got['passed']):>6} {len(got['failed']):>6} {len(got['skipped']):>7}")
        lines.extend(f"    FAILED {name}" for name in got["failed"][:20])
        lines.extend(f"    skipped {why}" for why in got["skipped"][:20])
    return lines


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _results:
        terminalreporter.section("iii-state conformance by area")
        for line in area_report():
            terminalreporter.write_line(line)

"""The pytest plugin of the test-support package (its ``pytest11`` entry point).

It offers the server fixtures, says in the report header in which order servers are chosen, and
lists in the terminal summary what served each backend (environment, container or local binary).
"""

from __future__ import annotations

from typing import Any

import pytest

from .choice import SESSIONS, header_line, served
from .fixtures import *  # noqa: F403  (the fixtures are what this plugin offers)
from .fixtures import _iii_state_redis_cluster  # noqa: F401  (behind redis_cluster_url/_nodes)


def pytest_configure(config: pytest.Config) -> None:
    SESSIONS.append([])


def pytest_unconfigure(config: pytest.Config) -> None:
    if len(SESSIONS) > 1:
        SESSIONS.pop()


def pytest_report_header(config: pytest.Config) -> str:
    return header_line()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not served():
        return
    terminalreporter.section("iii-state test servers (what served each backend)")
    for one in served():
        terminalreporter.write_line(f"{one.backend}: {one.source} — {one.detail}")

"""One line of the reliability report: what was tried, how often, how often it failed, and why."""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Line:
    """``tried`` attempts of ``what``; ``failed`` of them broke the promise in ``promise``."""

    area: str
    what: str
    promise: str
    tried: int = 0
    failed: int = 0
    #: short descriptions of failures (first few), with what is needed to reproduce them
    failures: list[str] = field(default_factory=list)
    #: extra counts worth reporting (unknown outcomes seen, recoveries, …)
    details: dict[str, object] = field(default_factory=dict)
    seconds: float = 0.0

    def fail(self, text: str) -> None:
        self.failed += 1
        if len(self.failures) < 5:
            self.failures.append(text)


@dataclass(frozen=True)
class KillRun:
    """What every kill campaign starts from: a recorded seed, its clock, a scratch folder."""

    rng: random.Random
    started: float
    directory: str
    logs: Path

    def finish(self, line: Line, details: dict[str, object]) -> Line:
        """Record ``details`` and the seconds taken; keep the scratch folder only when something
        failed (named in ``line`` for inspection), else remove it."""
        line.details.update(details)
        line.seconds = time.monotonic() - self.started
        if line.failed:
            line.details["store kept for inspection"] = self.directory
        else:
            shutil.rmtree(self.directory, ignore_errors=True)
        return line


def start_kill_run(line: Line, seed: int | None, prefix: str) -> KillRun:
    """Seed (recorded in ``line`` so a failure can be replayed), start the clock, and make a
    scratch folder named ``prefix…`` with a ``logs`` folder for the children's output."""
    seed = random.randrange(2**32) if seed is None else seed
    line.details["seed"] = seed
    directory = tempfile.mkdtemp(prefix=prefix)
    logs = Path(directory) / "logs"
    logs.mkdir()
    return KillRun(random.Random(seed), time.monotonic(), directory, logs)

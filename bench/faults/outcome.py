"""One line of the reliability report: what was tried, how often, how often it failed, and why."""

from __future__ import annotations

from dataclasses import dataclass, field


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

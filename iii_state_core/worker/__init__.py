"""The iii worker: serve ``state::*`` and the ``state`` trigger type to an iii engine.

Needs the ``worker`` extra (``pip install 'iii-state-core[worker]'``, which brings ``iii-sdk``).
The SDK is imported only when :class:`StateWorker` or :func:`run_worker` is first used, so
``iii-state worker --help`` works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import DEFAULT_ENGINE_URL, DEFAULT_WORKER_NAME, WorkerSettings, redact_url

if TYPE_CHECKING:
    from .runner import run_worker
    from .service import StateWorker

__all__ = [
    "DEFAULT_ENGINE_URL", "DEFAULT_WORKER_NAME", "StateWorker", "WorkerSettings", "redact_url", "run_worker",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name == "StateWorker":
        from .service import StateWorker

        return StateWorker
    if name == "run_worker":
        from .runner import run_worker

        return run_worker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The iii worker: serve ``state::*`` and the ``state`` trigger type to an iii engine.

Needs the ``worker`` extra (``pip install 'iii-state-core[worker]'``, which brings ``iii-sdk``).
The SDK is imported only when :class:`StateWorker` or :func:`run_worker` is first used, so
``iii-state worker --help`` works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports
from .settings import DEFAULT_ENGINE_URL, DEFAULT_WORKER_NAME, WorkerSettings, redact_url

if TYPE_CHECKING:
    from .runner import run_worker
    from .service import StateWorker

__all__ = [
    "DEFAULT_ENGINE_URL", "DEFAULT_WORKER_NAME", "StateWorker", "WorkerSettings", "redact_url", "run_worker",
]  # fmt: skip


__getattr__ = lazy_exports(__name__, {"StateWorker": "service", "run_worker": "runner"})

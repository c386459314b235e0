"""iii-state-redis: the ``redis`` adapter — Redis / Valkey, one server or a Cluster, engine layout.

Names load on first use, so registering the plugin does not import ``redis``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "CAPABILITIES": "plugin", "RedisAdapter": "adapter", "AsyncRedisAdapter": "async_adapter",
    "ReplyLost": "connections", "RedisSettings": "settings", "read_settings": "settings",
}  # fmt: skip

if TYPE_CHECKING:
    from .adapter import RedisAdapter
    from .async_adapter import AsyncRedisAdapter
    from .connections import ReplyLost
    from .plugin import CAPABILITIES
    from .settings import RedisSettings, read_settings


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = ["CAPABILITIES", "AsyncRedisAdapter", "RedisAdapter", "RedisSettings", "ReplyLost", "read_settings"]

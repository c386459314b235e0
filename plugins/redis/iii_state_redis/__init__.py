"""iii-state-redis: the ``redis`` adapter — Redis / Valkey, one server or a Cluster, engine layout.

Names load on first use, so registering the plugin does not import ``redis``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from iii_state_core.lazy import lazy_exports

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


__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = ["CAPABILITIES", "AsyncRedisAdapter", "RedisAdapter", "RedisSettings", "ReplyLost", "read_settings"]

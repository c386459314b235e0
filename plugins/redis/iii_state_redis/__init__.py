"""iii-state-redis: the ``redis`` adapter — Redis / Valkey, one server or a Cluster, engine layout."""

from .adapter import CAPABILITIES, RedisAdapter
from .async_adapter import AsyncRedisAdapter
from .connections import ReplyLost
from .settings import RedisSettings, read_settings

__all__ = ["CAPABILITIES", "AsyncRedisAdapter", "RedisAdapter", "RedisSettings", "ReplyLost", "read_settings"]

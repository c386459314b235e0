"""iii-state-memcached: the ``memcached`` adapter — state in memcached, atomic through gets/cas."""

from .adapter import MemcachedAdapter

__all__ = ["MemcachedAdapter"]

"""iii-state-memcached: the ``memcached`` adapter.

Names load on first use, so registering the plugin does not import ``pymemcache``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .adapter import MemcachedAdapter


def __getattr__(name: str) -> Any:
    if name == "MemcachedAdapter":
        from .adapter import MemcachedAdapter

        return MemcachedAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MemcachedAdapter"]

"""iii-state-memcached: the ``memcached`` adapter.

Names load on first use, so registering the plugin does not import ``pymemcache``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from iii_state_core.lazy import lazy_exports

if TYPE_CHECKING:
    from .adapter import MemcachedAdapter


__getattr__ = lazy_exports(__name__, {"MemcachedAdapter": "adapter"})


__all__ = ["MemcachedAdapter"]

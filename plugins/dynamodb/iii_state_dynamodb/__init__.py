"""iii-state-dynamodb: the ``dynamodb`` adapter.

Names load on first use, so registering the plugin does not import ``boto3``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from iii_state_core.lazy import lazy_exports

_EXPORTS = {"DynamoDBAdapter": "adapter", "Settings": "config", "parse_settings": "config"}

if TYPE_CHECKING:
    from .adapter import DynamoDBAdapter
    from .config import Settings, parse_settings


__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = ["DynamoDBAdapter", "Settings", "parse_settings"]

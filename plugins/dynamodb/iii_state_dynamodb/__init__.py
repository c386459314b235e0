"""iii-state-dynamodb: the ``dynamodb`` adapter.

Names load on first use, so registering the plugin does not import ``boto3``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {"DynamoDBAdapter": "adapter", "Settings": "config", "parse_settings": "config"}

if TYPE_CHECKING:
    from .adapter import DynamoDBAdapter
    from .config import Settings, parse_settings


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = ["DynamoDBAdapter", "Settings", "parse_settings"]

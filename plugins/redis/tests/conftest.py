"""Fixtures of the redis adapter's tests: the shared test servers, and store configs over them."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

# The shared servers (``redis_url``, ``redis_cluster_url``, ``redis_server_factory``,
# ``valkey_server_url``, ``start_server``...) are fixtures of the unpublished test-support
# package's pytest plugin (tests/support). Nothing here starts a server itself.

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # ``--import-mode=importlib`` does not add it (redis_helpers, redis_proxy)
    sys.path.insert(0, _HERE)


@pytest.fixture(params=["single", "cluster"])
def redis_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The adapter config of the session's single server, then of the session's Cluster."""
    if request.param == "single":
        return {"redis_url": request.getfixturevalue("redis_url"), "cluster": False}
    return {"redis_url": request.getfixturevalue("redis_cluster_url"), "cluster": True}

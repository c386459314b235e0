"""Fixtures of the redis adapter's tests: the shared test servers, and store configs over them."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

# The shared servers: one redis-server and one 3-primary Cluster per session, private
# servers (AOF, requirepass, ACL users, TLS) per test. Nothing here starts a server itself.
from iii_state_conformance.fixtures import (
    _iii_state_redis_cluster,
    redis_cluster_nodes,
    redis_cluster_url,
    redis_server_factory,
    redis_url,
    start_server,
    valkey_server_url,
)

__all__ = [
    "_iii_state_redis_cluster",
    "redis_cluster_nodes",
    "redis_cluster_url",
    "redis_server_factory",
    "redis_url",
    "start_server",
    "valkey_server_url",
]

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # ``--import-mode=importlib`` does not add it (redis_helpers, redis_proxy)
    sys.path.insert(0, _HERE)


@pytest.fixture(params=["single", "cluster"])
def redis_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The adapter config of the session's single server, then of the session's Cluster."""
    if request.param == "single":
        return {"redis_url": request.getfixturevalue("redis_url"), "cluster": False}
    return {"redis_url": request.getfixturevalue("redis_cluster_url"), "cluster": True}

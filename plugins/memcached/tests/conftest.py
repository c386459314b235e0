"""Fixtures of the memcached adapter's tests: the shared test servers and store configs over them."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

# The shared servers: one memcached and a pair per session, private ones (-M, -m, -I) per test.
# Nothing here starts a server itself.
from iii_state_conformance.fixtures import (
    memcached_server_factory,
    memcached_servers,
    memcached_servers_pair,
    start_server,
)

__all__ = ["memcached_server_factory", "memcached_servers", "memcached_servers_pair", "start_server"]


def fresh_prefix() -> str:
    """A key prefix of its own per store, so tests never see each other's index items."""
    return f"t{secrets.token_hex(4)}:"


@pytest.fixture(params=["one-server", "two-servers"])
def memcached_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The adapter config over the session's single server, then over the session's pair."""
    fixture = "memcached_servers" if request.param == "one-server" else "memcached_servers_pair"
    servers: list[str] = request.getfixturevalue(fixture)
    return {"servers": servers, "key_prefix": fresh_prefix()}

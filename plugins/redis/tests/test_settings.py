"""The adapter's config: URL forms, options, clear errors, secrets; and clients that never retry."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from iii_state_redis import CAPABILITIES, RedisAdapter, connections, read_settings
from iii_state_testsupport import free_port

from iii_state_core import ConfigError, StateError, open_store
from iii_state_core.plugins import Registry


def test_defaults_are_the_engines() -> None:
    s = read_settings({})
    assert (s.scheme, s.host, s.port, s.db, s.key_prefix) == ("redis", "localhost", 6379, 0, "state:")
    assert s.cluster is None and s.tls is None and s.retries == 3
    assert (s.socket_timeout, s.connect_timeout, s.max_connections) == (5.0, 5.0, 50)
    assert s.describe() == "redis at localhost:6379 (db 0, prefix 'state:')"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h:7000/2", {"host": "h", "port": 7000, "db": 2}),
        ("redis://h?db=3", {"db": 3}),
        ("redis://[::1]:7001", {"host": "::1", "where": "[::1]:7001"}),
        ("unix:///tmp/r.sock?db=1", {"path": "/tmp/r.sock", "db": 1, "where": "/tmp/r.sock"}),
        ("redis://u%40x:p%3Aw@h", {"username": "u@x", "password": "p:w"}),
        ("redis://:only-pw@h", {"username": None, "password": "only-pw"}),
        ("redis://h?socket_timeout=0.5&socket_connect_timeout=2", {"socket_timeout": 0.5}),
    ],
)
def test_url_forms(url: str, expected: dict[str, Any]) -> None:
    s = read_settings({"redis_url": url})
    for name, value in expected.items():
        assert getattr(s, name) == value, name


def test_tls_options_from_url_and_config() -> None:
    s = read_settings({"redis_url": "rediss://h?ssl_ca_certs=%2Fca.pem&ssl_check_hostname=false"})
    assert s.tls is not None and s.tls.ca_certs == "/ca.pem" and s.tls.check_hostname is False
    assert "tls" in s.describe()
    s = read_settings({"redis_url": "rediss://h?ssl_ca_certs=/url.pem", "ssl_ca_certs": "/config.pem"})
    assert s.tls is not None and s.tls.ca_certs == "/config.pem"  # the config key wins
    s = read_settings({"redis_url": "rediss://h", "ssl_cert_reqs": "none"})
    assert s.tls is not None and s.tls.kwargs()["ssl_check_hostname"] is False


@pytest.mark.parametrize(
    ("value", "mode"), [(True, True), (False, False), ("auto", None), ("TRUE", True), ("false", False)]
)
def test_cluster_values(value: object, mode: bool | None) -> None:
    assert read_settings({"cluster": value}).cluster is mode


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"redis_url": "http://h"}, "redis://, rediss:// or unix://"),
        ({"redis_url": "redis://h:port"}, "not a valid URL"),
        ({"redis_url": "redis://h?retry_on_timeout=yes"}, "'retry_on_timeout'"),
        ({"redis_url": "redis://h?db=x"}, "'db' in 'redis_url' must be a number"),
        ({"redis_url": "unix://"}, "socket path"),
        ({"redis_url": "redis://h/3", "cluster": True}, "only db 0"),
        ({"redis_url": "unix:///s.sock", "cluster": True}, "no unix sockets"),
        ({"redis_url": "redis://h", "ssl_ca_certs": "/ca"}, "need a rediss://"),
        ({"redis_url": "rediss://h", "ssl_cert_reqs": "maybe"}, "'ssl_cert_reqs' must be one of"),
        ({"cluster": "sometimes"}, "'cluster' must be true, false or \"auto\""),
        ({"retries": -1}, "'retries' must be at least 0"),
        ({"socket_timeout": 0}, "'socket_timeout' must be at least"),
        ({"max_connections": "10"}, "'max_connections' must be an integer"),
        ({"redis_url": "redis://h", "colour": "blue"}, "unknown key(s) 'colour'"),
    ],
)
def test_config_errors_are_clear(config: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        read_settings(config)
    assert words in str(info.value)


def test_a_password_is_never_printed_but_is_a_secret() -> None:
    s = read_settings({"redis_url": "redis://user:p%40ss%20w@h:1"})
    assert s.password == "p@ss w"
    assert {"p@ss w", "p%40ss%20w", "p%40ss+w"} <= set(s.secrets())
    for text in (repr(s), str(s), s.describe(), s.describe(True)):
        assert "p@ss" not in text and "p%40ss" not in text and "user" not in text
    s = read_settings({"redis_url": "redis://h", "password": "from config"})
    assert "from config" in s.secrets() and "from%20config" in s.secrets()


def test_opening_does_no_io_and_a_dead_server_fails_the_call_not_the_open() -> None:
    config = {"redis_url": f"redis://127.0.0.1:{free_port()}", "retries": 0, "connect_timeout": 0.5}
    with open_store(adapter="redis", adapter_config=config) as store:
        assert isinstance(store.adapter, RedisAdapter)
        with pytest.raises(StateError) as info:
            store.get("s", "k")
    assert info.value.code == "GET_ERROR" and "Connection refused" in str(info.value)


def test_the_plugin_registers_the_adapter() -> None:
    info = Registry().adapter("redis")
    assert info.cls.load() is RedisAdapter and info.capabilities is CAPABILITIES
    assert RedisAdapter.distribution == "iii-state-redis"
    assert CAPABILITIES.atomic_update == "native" and CAPABILITIES.ordered_listing is False


def _retries(retry: Any) -> int:
    return int(retry.get_retries())


def test_clients_never_retry_on_their_own() -> None:
    """redis-py retries at the connection, client and Cluster level by default; ours nowhere."""
    s = read_settings({"redis_url": "redis://127.0.0.1:1"})
    sync = connections.sync_standalone(s)
    assert _retries(sync.connection_pool.connection_kwargs["retry"]) == 0
    assert sync.connection_pool.connection_kwargs["protocol"] == 2
    assert sync.connection_pool.connection_class is connections.TrackedConnection
    sync.close()

    async def async_side() -> None:
        client = connections.async_standalone(s)
        assert _retries(client.connection_pool.connection_kwargs["retry"]) == 0
        assert client.connection_pool.connection_class is connections.AsyncTrackedConnection
        await client.aclose()
        cluster = connections.async_cluster(s)
        assert _retries(cluster.retry) == 0
        assert cluster.connection_kwargs["connection_class"] is connections.AsyncTrackedConnection
        assert all(n.connection_class is connections.AsyncTrackedConnection for n in cluster.startup_nodes)

    asyncio.run(async_side())


def test_the_sync_cluster_client_never_retries(redis_cluster_url: str) -> None:
    client = connections.sync_cluster(read_settings({"redis_url": redis_cluster_url}))
    try:
        assert _retries(client.retry) == 0
        for node in client.get_nodes():
            pool = node.redis_connection.connection_pool
            assert _retries(pool.connection_kwargs["retry"]) == 0
            assert pool.connection_class is connections.TrackedConnection
    finally:
        client.close()


@pytest.mark.parametrize("number", [".nan", ".inf", "-.inf", "1.0e+300", "1e300", "0", "-1"])
@pytest.mark.parametrize("option", ["socket_timeout", "connect_timeout"])
def test_timeouts_out_of_range_fail_at_load(tmp_path: Any, option: str, number: str) -> None:
    """Issue 12 #5: `.nan`, `.inf`, `1e300` loaded, then every call failed (OverflowError, NaN)."""
    path = tmp_path / "iii-config.yaml"
    path.write_text(
        "workers:\n  - name: iii-state\n    config:\n      adapter:\n        name: redis\n"
        f"        config: {{redis_url: 'redis://127.0.0.1:1', {option}: {number}}}\n"
    )
    with pytest.raises(ConfigError, match=f"'{option}' must be "):
        open_store(path)


@pytest.mark.parametrize(
    "query", ["socket_timeout=nan", "socket_timeout=inf", "socket_connect_timeout=1e300", "db=1e3"]
)
def test_url_query_numbers_out_of_range_fail_at_load(query: str) -> None:
    with pytest.raises(ConfigError, match="must be"):
        read_settings({"redis_url": f"redis://h?{query}"})


@pytest.mark.parametrize(
    ("option", "value"), [("max_connections", 10**300), ("retries", 2**40), ("db", 2**31)]
)
def test_integer_options_have_an_upper_bound(option: str, value: int) -> None:
    with pytest.raises(ConfigError, match=f"'{option}' must be at most"):
        read_settings({option: value})


@pytest.mark.parametrize(
    "url", ["redis://app:pa#ss@127.0.0.1:6379", "redis://:s3#cret@h", "redis://app:pa/ss@h:1", "redis://h:1#x"]
)
def test_a_reserved_character_in_the_password_says_to_percent_encode(url: str) -> None:
    """Regression: `#` in a password gave only "check the port and any brackets"."""
    with pytest.raises(ConfigError) as info:
        read_settings({"redis_url": url})
    assert "percent-encode" in str(info.value) and "# is %23" in str(info.value)
    assert "ss@" not in str(info.value) and "cret" not in str(info.value)


def test_a_percent_encoded_hash_in_the_password_works() -> None:
    assert read_settings({"redis_url": "redis://app:pa%23ss@h:1"}).password == "pa#ss"

"""AUTH (requirepass, ACL users) and TLS through the URL, against local redis-servers."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
import redis
from iii_state_testsupport import AclUser, RedisServer
from redis_helpers import unique

from iii_state_core import ConfigError, StateError, open_store


def _roundtrip(config: dict[str, Any]) -> None:
    scope = unique("auth")
    with open_store(adapter="redis", adapter_config=config) as store:
        assert store.set(scope, "k", {"v": [1]}).old_value is None
        assert store.get(scope, "k") == {"v": [1]}
        assert store.update(scope, "k", [{"type": "increment", "path": "n", "by": 1}]).new_value == {
            "v": [1],
            "n": 1,
        }
        assert scope in store.list_groups()
        assert store.list_entries(scope).entries == [("k", {"v": [1], "n": 1})]
        assert store.delete(scope, "k") == {"v": [1], "n": 1}
        # entry expiry: the deadline keys, the slot registry and the sweep
        store.set(scope, "t", 1, ttl_ms=60_000)
        assert store.expire(scope, "t", 1)
        time.sleep(0.005)
        assert store.ttl(scope, "t").exists is False
        assert scope not in store.list_groups()
        assert [e[:3] for e in store.adapter.take_expired() if e[0] == scope] == [(scope, "t", b"1")]  # type: ignore[attr-defined]


def test_requirepass_in_the_url(redis_server_factory: Callable[..., RedisServer]) -> None:
    server = redis_server_factory(requirepass="pa ss/wo:rd@#%")
    assert "%" in server.url  # percent-encoded in the URL, decoded before AUTH
    _roundtrip({"redis_url": server.url})


def test_password_as_a_config_key(redis_server_factory: Callable[..., RedisServer]) -> None:
    server = redis_server_factory(requirepass="from-config")
    _roundtrip({"redis_url": f"redis://127.0.0.1:{server.port}", "password": "from-config"})


def test_a_restricted_acl_user_in_the_url(redis_server_factory: Callable[..., RedisServer]) -> None:
    # Only the state: hashes and their deadlines (the README's minimum), and no INFO: cluster
    # detection must fall back to one server.
    rules = (
        "~state:* ~*iii-ttl*:state:* resetchannels -@all +@hash +@sortedset +@scripting +sadd +smembers +scan"
    )
    server = redis_server_factory(acl_users=[AclUser("app", "s3cret pw", rules)])
    url = server.info.url_for("app", "s3cret pw")
    _roundtrip({"redis_url": url})
    plain = redis.Redis.from_url(url)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            plain.get("not-state")  # the ACL really is in force
    finally:
        plain.close()
    _roundtrip({"redis_url": f"redis://127.0.0.1:{server.port}", "username": "app", "password": "s3cret pw"})


def test_a_wrong_password_fails_at_once_and_says_so(redis_server_factory: Callable[..., RedisServer]) -> None:
    server = redis_server_factory(requirepass="right")
    config = {"redis_url": server.info.url_for(None, "wrong"), "retries": 5}
    admin = redis.Redis.from_url(server.info.url_for(None, "right"))

    def connections() -> int:  # what the server accepted so far (the admin's one included once)
        return int(admin.info("stats")["total_connections_received"])

    with open_store(adapter="redis", adapter_config=config) as store:
        before = connections()
        with pytest.raises(StateError) as info:
            store.get("s", "k")
        # counted, not timed: a retried AUTH failure would connect again (up to 5 more times)
        assert connections() - before == 1, "an authentication failure was retried"
    admin.close()
    assert info.value.code == "GET_ERROR"
    assert "authentication failed" in str(info.value)


def test_tls_with_the_ca_in_the_url(redis_server_factory: Callable[..., RedisServer]) -> None:
    server = redis_server_factory(tls=True)
    assert server.url.startswith("rediss://")
    tls = server.info.tls
    assert tls is not None
    ca = urllib.parse.quote(str(tls.ca_cert))
    _roundtrip({"redis_url": f"{server.url}?ssl_ca_certs={ca}"})
    _roundtrip({"redis_url": server.url, "ssl_ca_certs": str(tls.ca_cert)})


def test_tls_refuses_a_server_it_cannot_verify(redis_server_factory: Callable[..., RedisServer]) -> None:
    server = redis_server_factory(tls=True)
    with open_store(adapter="redis", adapter_config={"redis_url": server.url, "retries": 0}) as store:
        with pytest.raises(StateError) as info:
            store.get("s", "k")
    assert info.value.code == "GET_ERROR"
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)


def test_tls_with_a_client_certificate_and_a_password(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory(tls=True, tls_auth_clients=True, requirepass="tls-and-auth")
    tls = server.info.tls
    assert tls is not None
    config = {
        "redis_url": server.url,
        "ssl_ca_certs": str(tls.ca_cert),
        "ssl_certfile": str(tls.client_cert),
        "ssl_keyfile": str(tls.client_key),
    }
    _roundtrip(config)
    without_cert = {"redis_url": server.url, "ssl_ca_certs": str(tls.ca_cert), "retries": 0}
    with open_store(adapter="redis", adapter_config=without_cert) as store, pytest.raises(StateError):
        store.get("s", "k")


def test_tls_options_need_a_rediss_url() -> None:
    with pytest.raises(ConfigError, match="rediss://"):
        open_store(adapter="redis", adapter_config={"redis_url": "redis://h", "ssl_ca_certs": "/ca.pem"})

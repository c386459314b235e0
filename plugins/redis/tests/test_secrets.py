"""A planted sentinel password never shows up: not in errors, tracebacks, reprs or log lines.

Every way we know to make the adapter talk about its connection is provoked with a unique
password that needs percent-encoding in the URL; then every text produced is searched for
the password as written, percent-encoded and percent-decoded.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import traceback
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from iii_state_testsupport import RedisCluster, RedisServer, ServerUnavailable, free_port
from iii_state_testsupport.fixtures import server_unavailable
from redis_helpers import unique
from redis_proxy import tcp_proxy

from iii_state_core import ConfigError, StateError, open_async_store, open_store

SENTINEL = f"Sntl-{secrets.token_hex(8)}/:@%#?+ "
FORMS = (SENTINEL, urllib.parse.quote(SENTINEL, safe=""), urllib.parse.quote_plus(SENTINEL))


def _url(host: str, port: int, password: str = SENTINEL, scheme: str = "redis", user: str = "") -> str:
    quote = urllib.parse.quote
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}"


class Evidence:
    """Every text the test produced: error strings, tracebacks, reprs."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def error(self, exc: BaseException) -> None:
        self.texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]

    def fails(self, call: Callable[[], Any]) -> BaseException:
        try:
            call()
        except (StateError, ConfigError) as exc:
            self.error(exc)
            return exc
        raise AssertionError("expected a failure")

    def text(self, *objects: Any) -> None:
        self.texts += [repr(o) for o in objects] + [str(o) for o in objects]

    def assert_clean(self, caplog: pytest.LogCaptureFixture) -> None:
        logged = [caplog.text] + [r.getMessage() for r in caplog.records]
        logged += [str(r.args) for r in caplog.records] + [str(r.exc_info) for r in caplog.records]
        for text in self.texts + logged:
            for form in FORMS:
                assert form not in text, f"the password leaked into: {text[:300]!r}"


@pytest.fixture
def evidence(caplog: pytest.LogCaptureFixture) -> Iterator[Evidence]:
    caplog.set_level(logging.DEBUG)  # redis-py logs command details at DEBUG
    found = Evidence()
    yield found
    found.assert_clean(caplog)


def test_the_password_is_a_secret_in_every_form() -> None:
    with open_store(adapter="redis", adapter_config={"redis_url": _url("127.0.0.1", 1)}) as store:
        hidden = store.adapter.secrets()
    for form in FORMS:
        assert form in hidden


def test_sentinel_password_never_leaks(
    redis_server_factory: Callable[..., RedisServer], evidence: Evidence
) -> None:
    server = redis_server_factory(requirepass=SENTINEL)
    good = _url("127.0.0.1", server.port)
    scope = unique("sentinel")

    # 1. working store: reprs of everything we hand out, including redis-py's client
    with open_store(adapter="redis", adapter_config={"redis_url": good}) as store:
        store.set(scope, "k", 1)
        adapter: Any = store.adapter
        evidence.text(store, adapter, adapter.describe(), adapter.settings, adapter._client)
        evidence.text(adapter._client.connection_pool, adapter.async_twin())
        # 2. a lost reply (unknown outcome) and a refused reconnect, through a proxy
        with tcp_proxy("127.0.0.1", server.port) as proxy:
            via_proxy = {"redis_url": _url("127.0.0.1", proxy.port), "retries": 0}
            with open_store(adapter="redis", adapter_config=via_proxy) as proxied:
                proxied.set(scope, "p", 1)
                proxy.drop_next_reply()
                evidence.fails(lambda: proxied.set(scope, "p", 2))
                proxy.refuse_for(5)
                evidence.fails(lambda: proxied.get(scope, "p"))

    # 3. the server wants another password
    wrong_server = redis_server_factory(requirepass="another-one")
    bad = {"redis_url": _url("127.0.0.1", wrong_server.port)}
    with open_store(adapter="redis", adapter_config=bad) as store:
        for call in (lambda: store.get(scope, "k"), lambda: store.set(scope, "k", 1), store.list_groups):
            evidence.fails(call)

    # 4. nothing listens there
    nobody = {"redis_url": _url("127.0.0.1", free_port()), "retries": 1, "connect_timeout": 0.5}
    with open_store(adapter="redis", adapter_config=nobody) as store:
        evidence.fails(lambda: store.update(scope, "k", [{"type": "set", "path": "a", "value": 1}]))
        evidence.fails(lambda: store.list_entries(scope))

    # 5. config errors around a URL that holds the password
    for broken in (
        {"redis_url": _url("127.0.0.1", 6379, scheme="http")},
        {"redis_url": _url("127.0.0.1", 6379) + "?retry_on_timeout=yes"},
        {"redis_url": _url("127.0.0.1", 6379).replace(":6379", ":notaport")},
        {"redis_url": _url("127.0.0.1", 6379), "unknown_key": 1},
        {"redis_url": _url("127.0.0.1", 6379), "cluster": True, "db": 3},
    ):
        evidence.fails(lambda b=broken: open_store(adapter="redis", adapter_config=b))

    # 6. the same through the async store
    async def async_paths() -> None:
        async with open_async_store(adapter="redis", adapter_config=bad) as store:
            evidence.text(store, store.async_adapter)
            for call in (lambda: store.get(scope, "k"), lambda: store.set(scope, "k", 2)):
                try:
                    await call()
                except StateError as exc:
                    evidence.error(exc)
                else:
                    raise AssertionError("expected a failure")

    asyncio.run(async_paths())
    assert len(evidence.texts) > 40


def test_sentinel_password_never_leaks_from_a_cluster(evidence: Evidence) -> None:
    cluster = RedisCluster(3, requirepass=SENTINEL)
    try:
        cluster.start()
    except ServerUnavailable as exc:
        server_unavailable(exc)
    try:
        host, port = cluster.nodes[0].info.host, cluster.nodes[0].port
        scope = unique("sentinel-cluster")
        with open_store(adapter="redis", adapter_config={"redis_url": _url(host, port)}) as store:
            store.set(scope, "k", 1)
            assert store.get(scope, "k") == 1 and scope in store.list_groups()
            adapter: Any = store.adapter
            evidence.text(store, adapter, adapter._client)
            store.delete(scope, "k")
        wrong = {"redis_url": _url(host, port, password="not-it"), "retries": 0}
        with open_store(adapter="redis", adapter_config=wrong) as store:
            evidence.fails(lambda: store.get(scope, "k"))
        cluster.nodes[1].kill()
        one_try = {"redis_url": _url(host, port), "retries": 0}
        with open_store(adapter="redis", adapter_config=one_try) as store:
            for i in range(30):  # some of these scopes live on the dead node
                try:
                    store.set(f"{scope}-{i}", "k", i)
                except StateError as exc:
                    evidence.error(exc)
            evidence.fails(store.list_groups)
    finally:
        cluster.stop()

"""The async store runs natively on redis.asyncio, with the same scripts and write-once rules."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from iii_state_redis import AsyncRedisAdapter
from iii_state_testsupport import RedisServer
from redis_helpers import command_calls, reset_stats, unique
from redis_proxy import tcp_proxy

from iii_state_core import UnknownOutcomeError, open_async_store, open_store


def test_async_store_is_native_and_agrees_with_the_sync_store(redis_config: dict[str, Any]) -> None:
    scope = unique("async")
    auto = {k: v for k, v in redis_config.items() if k != "cluster"}  # let the async twin detect

    async def main() -> dict[str, Any]:
        async with open_async_store(adapter="redis", adapter_config=auto) as store:
            assert isinstance(store.async_adapter, AsyncRedisAdapter)
            out: dict[str, Any] = {"set": await store.set(scope, "k", {"a": [], "n": 2**64 - 1})}
            out["get"] = await store.get(scope, "k")
            out["update"] = await store.update(scope, "k", [{"type": "append", "path": "a", "value": []}])
            out["cas"] = await store.compare_and_set(scope, "c", None, 1.0)
            for i in range(40):
                await store.set(scope, f"k{i:02d}", i)
            keys, cursor = [], None
            while True:
                page = await store.list_entries(scope, cursor, 7)
                assert len(page.entries) <= 7
                keys += [k for k, _ in page.entries]
                if page.done:
                    break
                cursor = page.next_cursor
            out["keys"] = sorted(set(keys))
            out["groups"] = scope in await store.list_groups()
            out["list"] = len(await store.list(scope))
            assert store.async_adapter._cluster is redis_config["cluster"]  # type: ignore[attr-defined]
            return out

    got = asyncio.run(main())
    assert got["set"].old_value is None and got["get"] == {"a": [], "n": 2**64 - 1}
    assert got["update"].new_value == {"a": [[]], "n": 2**64 - 1}
    assert got["cas"].swapped
    assert got["keys"] == sorted(["k", "c", *(f"k{i:02d}" for i in range(40))])
    assert got["groups"] and got["list"] == 42
    with open_store(adapter="redis", adapter_config=redis_config) as sync_store:
        assert sync_store.get(scope, "k") == {"a": [[]], "n": 2**64 - 1}
        assert sync_store.get(scope, "c") == 1.0
        for key in sync_store.list_keys(scope):
            sync_store.delete(scope, key)


def test_concurrent_async_increments_lose_nothing(redis_config: dict[str, Any]) -> None:
    scope = unique("async-inc")

    async def main() -> Any:
        async with open_async_store(adapter="redis", adapter_config=redis_config) as store:

            async def bump(n: int) -> None:
                for _ in range(n):
                    await store.update(scope, "n", [{"type": "increment", "path": "n", "by": 1}])

            await asyncio.gather(*(bump(25) for _ in range(8)))
            value = await store.get(scope, "n")
            await store.delete(scope, "n")
            return value

    assert asyncio.run(main()) == {"n": 200}


def test_async_lost_reply_is_unknown_and_sent_once(redis_server_factory: Callable[..., RedisServer]) -> None:
    server = redis_server_factory()
    scope = unique("async-lost")
    with tcp_proxy(server.info.host, server.port) as proxy:
        config = {"redis_url": f"redis://{proxy.address}"}

        async def main() -> None:
            async with open_async_store(adapter="redis", adapter_config=config) as store:
                await store.set(scope, "k", 1)
                await store.compare_and_set(scope, "k", 1, 1)  # load every script
                reset_stats(server)
                proxy.drop_next_reply()
                assert await store.get(scope, "k") == 1  # a read is simply read again
                proxy.drop_next_reply()
                with pytest.raises(UnknownOutcomeError) as info:
                    await store.set(scope, "k", 2)
                assert info.value.code == "SET_ERROR"
                assert await store.get(scope, "k") == 2

        asyncio.run(main())
    assert command_calls(server, "hset") == 1  # the write was sent once ...
    assert command_calls(server, "evalsha") == 4  # ... the first read twice (reads are scripts too)


def test_async_writes_retry_only_what_was_not_sent(redis_server_factory: Callable[..., RedisServer]) -> None:
    server = redis_server_factory()
    scope = unique("async-refused")
    with tcp_proxy(server.info.host, server.port) as proxy:
        config = {"redis_url": f"redis://{proxy.address}", "retries": 20}

        async def main() -> None:
            async with open_async_store(adapter="redis", adapter_config=config) as store:
                await store.set(scope, "k", 1)
                proxy.reset_all()  # the idle pooled connection gets a RST ...
                await asyncio.sleep(0.05)  # ... which the loop notices while it runs other work
                reset_stats(server)
                proxy.refuse_for(0.3)
                assert (await store.set(scope, "k", 2)).old_value == 1

        asyncio.run(main())
    assert command_calls(server, "evalsha") == 1 and command_calls(server, "hset") == 1


def test_one_async_store_serves_sequential_event_loops(redis_config: dict[str, Any]) -> None:
    """Issue 12 #8: the first call in each new asyncio.run() failed with "Event loop is closed"
    (a BackendError), yet its write had been applied."""
    scope = unique("loops")
    store = open_async_store(adapter="redis", adapter_config=redis_config)
    for i in range(4):
        result = asyncio.run(store.update(scope, "n", [{"type": "increment", "path": "", "by": 1}]))
        assert result.new_value == i + 1
    with open_store(adapter="redis", adapter_config=redis_config) as sync:
        assert sync.get(scope, "n") == 4
        sync.delete(scope, "n")
    asyncio.run(store.close())


def test_a_second_running_loop_is_refused_before_anything_is_sent(redis_config: dict[str, Any]) -> None:
    """From two loops at once one caller hung forever, or failed after its write was applied."""
    import threading

    from iii_state_core import BackendError

    scope = unique("two-loops")
    store = open_async_store(adapter="redis", adapter_config=redis_config)
    outcome: list[BaseException | None] = []

    def other_loop() -> None:
        async def write() -> None:
            await asyncio.wait_for(store.set(scope, "k", "other"), 5)

        try:
            asyncio.run(write())
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    async def main() -> None:
        await store.set(scope, "k", "first")
        thread = threading.Thread(target=other_loop)
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.01)
        assert await store.get(scope, "k") == "first"  # the refused write was never sent
        await store.delete(scope, "k")
        await store.close()

    asyncio.run(main())
    assert len(outcome) == 1 and isinstance(outcome[0], BackendError), outcome
    assert "another running event loop; nothing was sent" in str(outcome[0])

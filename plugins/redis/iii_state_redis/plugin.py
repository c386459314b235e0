"""Registers the ``redis`` adapter. Imports no client library: ``redis`` loads when a store opens."""

from __future__ import annotations

from collections.abc import Callable

from iii_state_core import Adapter, Capabilities, hookimpl
from iii_state_core.adapter import DeferredAdapter

CAPABILITIES = Capabilities(
    # Redis itself limits names and values to proto-max-bulk-len (512 MB by default).
    max_scope_bytes=None,
    max_key_bytes=None,
    max_value_bytes=None,
    # Held by the server, so an acknowledged write outlives the writing process; whether it
    # outlives the server depends on its AOF/RDB settings (see the README).
    durable=True,
    shared=True,
    # modify(): a compare-and-swap script on the exact bytes, from the last value this process
    # saw (one round trip) or one HGET; the core's op engine computes the new value.
    atomic_update="native",
    # HSCAN may return a key twice (the core deduplicates list and list_keys).
    ordered_listing=False,
    # state::transact: one Lua script; on a Cluster only scopes hashing to one slot.
    transactions=True,
    listing_cost=(
        "list_entries: HSCAN, O(limit) per page; list_groups: SCAN MATCH on every primary, "
        "O(all keys in the database)"
    ),
    # Deadlines in a sorted set beside each scope's hash, checked by every script; Redis does not
    # drop the fields itself (HPEXPIRE needs 7.4), take_expired() and writes to a field do.
    ttl="emulated",
    # take_expired(): the registry, one pipeline over the slots' due indexes, one script per due
    # scope; the core polls it every 500 ms.
    expiry_event_delay_ms=1000,
)


class RedisDeclaration(DeferredAdapter):
    """The ``redis`` adapter as the registry sees it; :class:`~.adapter.RedisAdapter` implements it."""

    name = "redis"
    path_options = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
    distribution = "iii-state-redis"
    capabilities = CAPABILITIES
    state_options = ("expiry_events",)
    implementation = "iii_state_redis.adapter:RedisAdapter"


@hookimpl
def iii_state_register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    register(RedisDeclaration)  # type: ignore[type-abstract]  # a declaration: never instantiated

"""Registers the ``memcached`` adapter. Imports no client library: ``pymemcache`` loads when a
store opens."""

from __future__ import annotations

from collections.abc import Callable

from iii_state_core import Adapter, Capabilities, hookimpl
from iii_state_core.adapter import DeferredAdapter

from .sizes import DEFAULT_ITEM_SIZE_MAX, value_limit

CAPABILITIES = Capabilities(
    max_value_bytes=value_limit(DEFAULT_ITEM_SIZE_MAX),
    durable=False,
    shared=True,
    atomic_update="emulated",
    ordered_listing=True,
    may_evict=True,
    ttl="emulated",
    expiry_event_delay_ms=1000,
    listing_cost=(
        "a per-scope tree of small index leaves kept with cas; a page reads the leaves it covers "
        "plus one multi-get of values; list_groups probes every scope"
    ),
)


class MemcachedDeclaration(DeferredAdapter):
    """The ``memcached`` adapter as the registry sees it; :class:`~.adapter.MemcachedAdapter`
    implements it (for servers started with another ``-I``, a subclass declaring that limit)."""

    name = "memcached"
    path_options = ("tls_ca_file", "tls_cert_file", "tls_key_file")
    state_options = ("expiry_events",)
    distribution = "iii-state-memcached"
    capabilities = CAPABILITIES
    implementation = "iii_state_memcached.adapter:MemcachedAdapter"


@hookimpl
def iii_state_register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    register(MemcachedDeclaration)  # type: ignore[type-abstract]  # a declaration: never instantiated

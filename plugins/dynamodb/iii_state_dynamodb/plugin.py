"""Registers the ``dynamodb`` adapter. Imports no client library: ``boto3`` loads when a store
opens."""

from __future__ import annotations

from collections.abc import Callable

from iii_state_core import Adapter, Capabilities, hookimpl
from iii_state_core.adapter import DeferredAdapter

from .layout import MAX_KEY_BYTES, MAX_SCOPE_BYTES, MAX_VALUE_BYTES

CAPABILITIES = Capabilities(
    max_scope_bytes=MAX_SCOPE_BYTES,
    max_key_bytes=MAX_KEY_BYTES,
    max_value_bytes=MAX_VALUE_BYTES,
    durable=True,
    shared=True,
    atomic_update="emulated",
    ordered_listing=True,
    may_evict=False,
    # DynamoDB deletes expired items itself (late: TimeToLive on the `ttl` attribute); the
    # adapter hides them from their deadline on.
    ttl="native",
    # take_expired polls a consistent Scan of the table every half of this (see the README).
    expiry_event_delay_ms=1000,
    # TransactWriteItems; a server found without it when a store opens (dynalite) gets an adapter
    # declaring transactions=False (see the README)
    transactions=True,
    max_transaction_ops=100,
    listing_cost=(
        "list/list_keys/list_entries: one strongly consistent Query per page of that scope; "
        "list_groups: a Scan of the whole table (read capacity grows with the table's size)"
    ),
)


class DynamoDBDeclaration(DeferredAdapter):
    """The ``dynamodb`` adapter as the registry sees it; :class:`~.adapter.DynamoDBAdapter` implements it."""

    name = "dynamodb"
    distribution = "iii-state-dynamodb"
    state_options = ("expiry_events",)
    capabilities = CAPABILITIES
    implementation = "iii_state_dynamodb.adapter:DynamoDBAdapter"


@hookimpl
def iii_state_register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    register(DynamoDBDeclaration)  # type: ignore[type-abstract]  # a declaration: never instantiated

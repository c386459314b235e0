"""Small helpers shared by the dynamodb adapter's test modules."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

#: Neither dynalite nor moto checks signatures, but botocore will not sign without credentials.
#: Set for the whole session (child processes of the concurrency tests inherit them) so that no
#: real credential is ever sent to a test server, and botocore never asks an instance-metadata
#: service.
DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def new_table_name(tag: str = "") -> str:
    return f"iii-state-test-{tag}{secrets.token_hex(4)}"


def adapter_config(endpoint: str, table: str, **extra: Any) -> dict[str, Any]:
    return {"table_name": table, "endpoint_url": endpoint, **extra}


def before_each_request(adapter: Any, hook: Callable[[str], object]) -> None:
    """Call ``hook(operation name)`` before every request the adapter sends, through botocore or
    through the lean client of its batch rounds."""
    adapter._client.meta.events.register("before-call.dynamodb", lambda model, **_: hook(model.name))
    lean = adapter._lean
    if lean is not adapter._client:
        send = lean.request

        def hooked(operation: str, params: dict[str, Any]) -> dict[str, Any]:
            hook(operation)
            reply: dict[str, Any] = send(operation, params)
            return reply

        lean.request = hooked

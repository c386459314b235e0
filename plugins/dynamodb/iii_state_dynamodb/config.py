"""Reading the ``dynamodb`` adapter's config block; credentials are refused here, by name."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from iii_state_core import ConfigError, Options
from iii_state_core.expiry import EXPIRY_LEASE_MS

OWNER: Final = "adapter 'dynamodb'"

#: Keys that would put credentials in plain text into iii-config.yaml. Matched case-insensitively.
CREDENTIAL_KEYS: Final = frozenset(
    {
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "access_key_id",
        "secret_access_key",
        "session_token",
        "access_key",
        "secret_key",
        "credentials",
        "password",
        "token",
    }
)
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")


@dataclass(frozen=True)
class Settings:
    """The adapter's options after checking. Holds no secret: credentials never come from here."""

    table_name: str
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    create_table: bool = False
    #: Seconds ``create_table`` waits for the table to become ACTIVE.
    create_timeout: float = 120.0
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    #: Tries per request, counting the first, for throttling and errors that prove nothing was applied.
    max_attempts: int = 10
    max_pool_connections: int = 32
    #: ``state:expired`` events are on (from the state block): an expired item a write replaces
    #: is kept for ``take_expired`` instead of being lost with its event.
    expiry_events: bool = False
    #: How long a claimed expired entry stays leased to its sweeper (``sweep.lease_expired``).
    expiry_lease_ms: int = EXPIRY_LEASE_MS
    #: A batch round's writes go through the lean client (:mod:`.lean`) instead of botocore's.
    lean_requests: bool = True


def _refuse_credentials(config: Mapping[str, Any]) -> None:
    found = sorted(k for k in config if isinstance(k, str) and k.lower() in CREDENTIAL_KEYS)
    if found:
        raise ConfigError(
            f"{OWNER} config: {', '.join(repr(k) for k in found)} is not accepted: credentials must "
            "never be written into iii-config.yaml. boto3 finds them itself: the environment "
            "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), a named `profile` from "
            "~/.aws/config, SSO, or the instance/task/pod role. Remove the key."
        )


def _check_table_name(name: str) -> str:
    if name.startswith("arn:") or _TABLE_NAME.fullmatch(name):
        return name
    raise ConfigError(
        f"{OWNER} config: 'table_name' {name!r} is not a DynamoDB table name: use 3 to 255 letters, "
        "digits, '_', '-' or '.' (or a table ARN)"
    )


def _check_endpoint(url: str | None) -> str | None:
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{OWNER} config: 'endpoint_url' must be an http(s) URL such as http://127.0.0.1:8000"
        )
    if parts.username or parts.password:
        # Never echo it: the user part may be a secret.
        raise ConfigError(f"{OWNER} config: 'endpoint_url' must not carry a user name or password")
    return url


def parse_settings(config: Mapping[str, Any] | None) -> Settings:
    """Check the adapter's config mapping.

    :raises ConfigError: on a missing ``table_name``, a credential key, an unknown key or a bad value.
    """
    if config is not None and isinstance(config, Mapping):
        _refuse_credentials(config)
    opts = Options(OWNER, config)
    table_name = opts.optional_str("table_name")
    region = opts.optional_str("region")
    endpoint_url = _check_endpoint(opts.optional_str("endpoint_url"))
    profile = opts.optional_str("profile")
    create_table = opts.bool("create_table", False)
    create_timeout = opts.float("create_timeout", 120.0, minimum=0.0)
    connect_timeout = opts.float("connect_timeout", 5.0, minimum=0.001)
    read_timeout = opts.float("read_timeout", 10.0, minimum=0.001)
    max_attempts = opts.int("max_attempts", 10, minimum=1)
    max_pool_connections = opts.int("max_pool_connections", 32, minimum=1)
    expiry_events = opts.bool("expiry_events", False)
    expiry_lease_ms = opts.int("expiry_lease_ms", EXPIRY_LEASE_MS, minimum=1)
    lean_requests = opts.bool("lean_requests", True)
    opts.finish()
    if not table_name:
        raise ConfigError(
            f"{OWNER} config: 'table_name' is required: the DynamoDB table that holds the state "
            "(partition key 'pk' and sort key 'sk', both strings; set `create_table: true` to create it)"
        )
    return Settings(
        table_name=_check_table_name(table_name),
        region=region or None,
        endpoint_url=endpoint_url,
        profile=profile or None,
        create_table=create_table,
        create_timeout=create_timeout,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_attempts=max_attempts,
        max_pool_connections=max_pool_connections,
        expiry_events=expiry_events,
        expiry_lease_ms=expiry_lease_ms,
        lean_requests=lean_requests,
    )

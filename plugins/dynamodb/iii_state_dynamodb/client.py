"""Building the clients: boto3's low-level DynamoDB client (botocore), our own session, no
botocore retries, timeouts from the config, and a CRC32 check of every reply; and beside it, for a
batch round's writes, the lean client over the same credentials and endpoint (:mod:`.lean`)."""

from __future__ import annotations

import threading
import zlib
from typing import Any

import botocore.loaders  # type: ignore[import-untyped, unused-ignore]
import botocore.session  # type: ignore[import-untyped, unused-ignore]
from botocore.config import Config  # type: ignore[import-untyped, unused-ignore]
from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    BotoCoreError,
    ChecksumError,
    ProfileNotFound,
)

from iii_state_core import ConfigError

from .config import OWNER, Settings
from .lean import LeanClient, lean_unsupported

USER_AGENT = "iii-state-dynamodb/0.1.0"
#: Region for a local endpoint (dynalite, moto, DynamoDB Local) when none is configured:
#: they ignore it, but botocore refuses to sign without one.
LOCAL_REGION = "us-east-1"


_loader_lock = threading.Lock()
_loader: Any = None


def _shared_loader() -> Any:
    """One botocore data loader per process, made on first use (no I/O at import).

    It only caches the service model files it reads, which never change while we run; sharing
    it makes opening a store about 15 ms instead of about 120 ms, most of which was parsing the
    same JSON again. Credentials, profiles and regions stay per session.
    """
    global _loader
    with _loader_lock:
        if _loader is None:
            _loader = botocore.loaders.create_loader()
        return _loader


def _profile_missing(settings: Settings) -> ConfigError:
    return ConfigError(
        f"{OWNER} config: AWS profile {settings.profile!r} is not in ~/.aws/config or "
        "~/.aws/credentials (or the files AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE name)"
    )


def make_session(settings: Settings) -> Any:
    """A botocore session of our own (boto3's default session is shared and not thread-safe).

    Credentials come from botocore's usual chain: environment, the profile's files, SSO,
    container or instance roles.

    :raises ConfigError: when the profile does not exist.
    """
    try:
        session = botocore.session.Session(profile=settings.profile)
        session.register_component("data_loader", _shared_loader())
        session.get_scoped_config()  # a missing profile fails here, with a clear message
    except ProfileNotFound:
        raise _profile_missing(settings) from None
    return session


def region_of(settings: Settings, session: Any) -> str:
    """:raises ConfigError: when no region is configured anywhere and there is no local endpoint."""
    region = settings.region or session.get_config_variable("region")
    if region:
        return str(region)
    if settings.endpoint_url:
        return LOCAL_REGION
    raise ConfigError(
        f"{OWNER} config: no AWS region: set `region` in the adapter config, or AWS_REGION / "
        "AWS_DEFAULT_REGION, or a region in the AWS profile"
    )


def make_client(settings: Settings, session: Any, region: str) -> Any:
    """A DynamoDB client. Clients are thread-safe; one is shared by every thread of the adapter.

    :raises ConfigError: when botocore cannot build a client from these settings.
    """
    config = Config(
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        # Our Caller retries, and only where it is safe; see calls.py.
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=settings.max_pool_connections,
        user_agent_extra=USER_AGENT,
        # Every request is built here from checked, typed data and DynamoDB validates it again;
        # botocore's client-side pass would only add ~20 µs per call.
        parameter_validation=False,
    )
    try:
        client = session.create_client(
            "dynamodb", region_name=region, endpoint_url=settings.endpoint_url, config=config
        )
    except (BotoCoreError, ValueError) as exc:
        raise ConfigError(f"{OWNER} config: cannot build a DynamoDB client: {exc}") from None
    client.meta.events.register("before-parse.dynamodb", check_crc32)
    return client


def check_crc32(response_dict: dict[str, Any], **_: Any) -> None:
    """Refuse a reply whose body does not match DynamoDB's ``x-amz-crc32`` header.

    botocore checks this header only inside its legacy retry handler, which we switch off. A body
    cut or changed on the way could otherwise parse as a reply without ``Item``/``Attributes``,
    that is, as "missing" — a wrong read, or a wrong old value.

    :raises ChecksumError: on a mismatch (the caller treats it like a lost reply).
    """
    expected = response_dict.get("headers", {}).get("x-amz-crc32")
    body = response_dict.get("body")
    if expected is None or not isinstance(body, bytes):
        return
    actual = zlib.crc32(body) & 0xFFFFFFFF
    if str(actual) != str(expected).strip():
        raise ChecksumError(checksum_type="crc32", expected_checksum=expected, actual_checksum=actual)


def make_lean(settings: Settings, session: Any, client: Any) -> LeanClient | None:
    """The lean client beside ``client`` (same credentials object, endpoint, region, timeouts and
    CA bundle), or ``None`` when ``lean_requests`` is off or the endpoint needs what only botocore
    does (a proxy, a path in the URL)."""
    if not settings.lean_requests or lean_unsupported(client) is not None:
        return None
    try:
        credentials = session.get_credentials()  # the object the client signs with (cached)
        ca_bundle = session.get_config_variable("ca_bundle")
    except BotoCoreError:  # botocore raises it again, clearly, on the first request
        return None
    return LeanClient(client, credentials, ca_bundle=ca_bundle, user_agent=f"{USER_AGENT} lean")

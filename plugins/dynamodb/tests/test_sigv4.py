"""The lean client's SigV4 signer against botocore's ``SigV4Auth``: byte-identical headers on many
requests (fixed credentials and clock, with and without a session token, many hosts, bodies,
operations and days), and a signing key cached per day that follows a change of secret."""

from __future__ import annotations

import datetime
import json
import random
import urllib.parse
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from iii_state_dynamodb.lean import TARGET_PREFIX, host_header
from iii_state_dynamodb.sigv4 import CONTENT_TYPE, Credentials, Signer

ENDPOINTS = [
    "http://127.0.0.1:8000",
    "http://localhost:4567",
    "https://dynamodb.eu-west-1.amazonaws.com",
    "https://DynamoDB.US-EAST-1.amazonaws.com:443",
    "http://Example.COM:80",
    "http://[::1]:9000",
]
OPERATIONS = ["PutItem", "DeleteItem", "UpdateItem", "GetItem"]


def _botocore_headers(
    credentials: Credentials, region: str, url: str, operation: str, body: bytes, now: datetime.datetime
) -> dict[str, str]:
    request = AWSRequest(
        method="POST",
        url=url + "/",
        data=body,
        headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + operation},
    )
    frozen = ReadOnlyCredentials(credentials.access_key, credentials.secret_key, credentials.token)
    with mock.patch("botocore.auth.get_current_datetime", return_value=now.replace(tzinfo=None)):
        SigV4Auth(frozen, "dynamodb", region).add_auth(request)
    return dict(request.headers.items())


@pytest.mark.parametrize("token", [None, "", "FwoGZXIvYXdzEJr//////////token+with/odd=chars"])
def test_signatures_are_byte_identical_to_botocore(token: str | None) -> None:
    rng = random.Random(20261206)
    for n in range(300):
        url = ENDPOINTS[n % len(ENDPOINTS)]
        parts = urllib.parse.urlsplit(url)
        region = rng.choice(["us-east-1", "eu-west-1", "ap-southeast-2"])
        credentials = Credentials(
            f"AKIA{rng.getrandbits(64):016X}", f"secret/{rng.getrandbits(128):032x}+", token
        )
        operation = rng.choice(OPERATIONS)
        value = "".join(chr(rng.choice([0x41, 0x20, 0xE9, 0x4E2D, 0x1F600, 0x22, 0x5C])) for _ in range(n))
        body = json.dumps(
            {"TableName": "t", "Item": {"pk": {"S": "#s"}, "val": {"S": value}}, "ReturnValues": "ALL_OLD"},
            separators=(",", ":"),
        ).encode()
        now = datetime.datetime(2026, 12, 6, 23, 59, 59, tzinfo=datetime.timezone.utc) + datetime.timedelta(
            seconds=rng.randrange(0, 3 * 86400)
        )
        ours = Signer(region).sign(
            credentials,
            host_header(parts.scheme, parts.hostname, parts.port),
            {"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + operation},
            body,
            now,
        )
        assert ours == _botocore_headers(credentials, region, url, operation, body, now), (n, url)
        assert ("X-Amz-Security-Token" in ours) == bool(token)


def test_the_signing_key_is_cached_per_day_and_follows_the_secret() -> None:
    signer = Signer("us-east-1")
    day1 = datetime.datetime(2026, 12, 6, 12, tzinfo=datetime.timezone.utc)
    day2 = day1 + datetime.timedelta(days=1)
    host = "127.0.0.1:8000"
    headers = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + "PutItem"}
    for credentials, now in [
        (Credentials("AK", "one", None), day1),
        (Credentials("AK", "one", None), day1),  # from the cache
        (Credentials("AK", "one", None), day2),  # a new day: a new key
        (Credentials("AK", "two", "tok"), day2),  # rotated (refreshed role credentials)
        (Credentials("AK", "one", None), day2),
    ]:
        signed = signer.sign(credentials, host, headers, b"{}", now)
        expected = _botocore_headers(credentials, "us-east-1", "http://" + host, "PutItem", b"{}", now)
        assert signed == expected

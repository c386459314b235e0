"""AWS Signature Version 4 for the lean client's requests: a JSON ``POST /`` to DynamoDB.

Only the shape of request :mod:`.lean` sends is signed here (no query string, a fixed path, the
headers below), which lets the canonical request be written out directly; the unit tests prove
the result byte-identical to botocore's ``SigV4Auth`` on the same request. The signing key
depends only on the secret, the day, the region and the service, so it is derived once per day
(four HMACs) instead of once per request.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import threading
from collections.abc import Mapping
from typing import Final, NamedTuple

ALGORITHM: Final = "AWS4-HMAC-SHA256"
TIMESTAMP: Final = "%Y%m%dT%H%M%SZ"
CONTENT_TYPE: Final = "application/x-amz-json-1.0"


class Credentials(NamedTuple):
    """One frozen set of credentials (botocore's ``ReadOnlyCredentials`` has the same fields)."""

    access_key: str
    secret_key: str
    token: str | None


def _trim(value: str) -> str:
    """SigV4's Trimall: no outer spaces, inner runs of spaces as one."""
    return " ".join(value.split())


class Signer:
    """Signs requests for one region and service. Thread-safe (the cached key is swapped whole)."""

    def __init__(self, region: str, service: str = "dynamodb") -> None:
        self.region = region
        self.service = service
        self._key: tuple[str, str, bytes] | None = None  # (secret, day, signing key)
        self._lock = threading.Lock()

    def _signing_key(self, secret: str, day: str) -> bytes:
        cached = self._key
        if cached is not None and cached[0] == secret and cached[1] == day:
            return cached[2]
        key = hmac.new(f"AWS4{secret}".encode(), day.encode(), hashlib.sha256).digest()
        for part in (self.region, self.service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        with self._lock:
            self._key = (secret, day, key)
        return key

    def sign(
        self,
        credentials: Credentials,
        host: str,
        headers: Mapping[str, str],
        body: bytes,
        now: datetime.datetime,
    ) -> dict[str, str]:
        """The headers to send: ``headers`` (each signed; names as given) plus ``X-Amz-Date``,
        ``X-Amz-Security-Token`` when the credentials have a token, and ``Authorization``.

        :param host: the ``Host`` header's value (lower-case host, ``:port`` unless the default).
        :param now: the signing time, in UTC.
        """
        stamp = now.strftime(TIMESTAMP)
        day = stamp[:8]
        out = dict(headers)
        out["X-Amz-Date"] = stamp
        if credentials.token:
            out["X-Amz-Security-Token"] = credentials.token
        signed = {name.lower(): _trim(value) for name, value in out.items()}
        signed["host"] = host
        names = sorted(signed)
        canonical = "\n".join(
            (
                "POST",
                "/",
                "",
                "".join(f"{name}:{signed[name]}\n" for name in names),
                ";".join(names),
                hashlib.sha256(body).hexdigest(),
            )
        )
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(credentials.secret_key, day), to_sign.encode(), hashlib.sha256)
        out["Authorization"] = (
            f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature.hexdigest()}"
        )
        return out

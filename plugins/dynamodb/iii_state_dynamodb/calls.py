"""One DynamoDB request with our retry policy: which failures are retried, which are surfaced, and how.

botocore's own retries are switched off (``total_max_attempts: 1``) because they retry a write
after a lost reply: a retried ``PutItem``/``DeleteItem`` with ``ReturnValues=ALL_OLD`` would
return the value the first attempt wrote (a wrong ``old_value``), and a retried conditional put
would fail its condition and make the core apply the update a second time. Instead:

* rejected before anything was applied (throttling, a transaction conflict, no connection made):
  retried for every request, with bounded, jittered exponential backoff;
* possibly applied (no reply, connection cut, HTTP 5xx): retried for reads; for writes surfaced
  at once as :class:`~iii_state_core.UnknownOutcomeError`;
* anything else: surfaced at once with DynamoDB's code and message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Final

from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    BotoCoreError,
    ChecksumError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ProxyConnectionError,
    SSLError,
)
from botocore.parsers import ResponseParserError  # type: ignore[import-untyped, unused-ignore]

from iii_state_core import BackendError, UnknownOutcomeError
from iii_state_core.retry import backoff

#: The request was refused before it was applied: retrying is always safe.
REJECTED_CODES: Final = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TransactionConflictException",
    }
)
#: Server-side failures after which a write may or may not have happened.
UNSURE_CODES: Final = frozenset({"InternalServerError", "ServiceUnavailable"})
CONDITION_FAILED: Final = "ConditionalCheckFailedException"
TABLE_MISSING: Final = "ResourceNotFoundException"
#: No connection was made, so nothing was sent (SSLError is a ConnectionError too, but a TLS
#: failure can also cut a request already sent, so it is not in this group).
NOT_SENT: Final = (EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError)
#: The request may have reached DynamoDB and been applied (a reply that fails its CRC32 is no reply).
MAYBE_SENT: Final = (HTTPClientError, SSLError, ChecksumError, ResponseParserError)

_THROTTLE_ADVICE: Final = (
    " Raise the table's capacity, switch it to on-demand (PAY_PER_REQUEST), or slow the writers."
)
_CONNECT_ADVICE: Final = " Check `endpoint_url` / `region` and the network."
BACKOFF_BASE: Final = 0.025
BACKOFF_CAP: Final = 1.0

Method = Callable[..., dict[str, Any]]


class ConditionFailed(Exception):
    """A conditional write's condition did not hold (nothing was written)."""


class AwsError(BackendError):
    """DynamoDB refused a request; ``aws_code`` is its error code (``ResourceNotFoundException``…).

    Keeps ``BackendError``'s signature: the core's driver rebuilds it as ``cls(message, code=…)``.
    """

    def __init__(self, message: str, *, code: str | None = None, aws_code: str = "") -> None:
        super().__init__(message, code=code)
        self.aws_code = aws_code


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _detail(exc: ClientError) -> str:
    message = str(exc.response.get("Error", {}).get("Message", "")).strip()
    return f"{error_code(exc)}: {message}" if message else error_code(exc)


def table_missing_message(table: str, where: str) -> str:
    return (
        f"DynamoDB table {table!r} does not exist ({where}): create it with partition key 'pk' "
        "and sort key 'sk', both of type S (see the iii-state-dynamodb README), or set "
        "`create_table: true` in the adapter config"
    )


class Caller:
    """Runs client methods for one table with the retry policy above. Thread-safe (no state)."""

    def __init__(
        self,
        table: str,
        where: str,
        *,
        max_attempts: int = 10,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.table = table
        self.where = where
        self.max_attempts = max_attempts
        self.sleep = sleep

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^attempt)]."""
        return backoff(attempt, base=BACKOFF_BASE, cap=BACKOFF_CAP)

    def tries(self) -> Iterator[int]:
        """The attempt numbers of one request (``max_attempts`` of them), pausing with the
        back-off before each after the first: every retry loop of this plugin runs on it."""
        for attempt in range(self.max_attempts):
            if attempt:
                self.sleep(self.backoff(attempt - 1))
            yield attempt

    def __call__(self, operation: str, method: Method, *, write: bool, **params: Any) -> dict[str, Any]:
        """Call ``method(**params)``.

        :param operation: the DynamoDB operation name, for messages.
        :param write: the request changes data, so a lost reply is an unknown outcome.
        :raises ConditionFailed: when a ``ConditionExpression`` did not hold.
        :raises UnknownOutcomeError: when a write may or may not have been applied.
        :raises BackendError: on any other failure, or when retries ran out.
        """
        started = time.monotonic()
        last = advice = ""
        for _ in self.tries():
            try:
                return method(**params)
            except ClientError as exc:
                code = error_code(exc)
                if code == CONDITION_FAILED:
                    raise ConditionFailed(operation) from None
                if code == TABLE_MISSING:
                    raise AwsError(table_missing_message(self.table, self.where), aws_code=code) from exc
                if code in REJECTED_CODES:
                    last = f"{_detail(exc)} (throttled or conflicting: nothing was applied)"
                    advice = _THROTTLE_ADVICE
                    continue
                if code in UNSURE_CODES or _status(exc) >= 500:
                    if write:
                        raise UnknownOutcomeError(self._unknown(operation, _detail(exc))) from exc
                    last, advice = _detail(exc), ""
                    continue
                message = f"DynamoDB {operation} on table {self.table!r}: {_detail(exc)}"
                raise AwsError(message, aws_code=code) from exc
            except NOT_SENT as exc:
                last = f"{type(exc).__name__}: {exc} (no connection was made)"
                advice = _CONNECT_ADVICE
                continue
            except MAYBE_SENT as exc:
                last, advice = f"{type(exc).__name__}: {exc}", ""
                if write:
                    raise UnknownOutcomeError(self._unknown(operation, last)) from exc
                continue
            except BotoCoreError as exc:  # credentials, parameters: retrying cannot help
                raise BackendError(f"DynamoDB {operation} on table {self.table!r}: {exc}") from exc
        elapsed = time.monotonic() - started
        raise BackendError(
            f"DynamoDB {operation} on table {self.table!r} ({self.where}) failed {self.max_attempts} "
            f"times in {elapsed:.1f} s; last: {last}.{advice} `max_attempts` sets the number of tries"
        )

    def _unknown(self, operation: str, detail: str) -> str:
        return (
            f"DynamoDB {operation} on table {self.table!r} was sent but its outcome is unknown "
            f"({detail}): the write may or may not have been applied; read the key to find out"
        )

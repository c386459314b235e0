"""The retry policy, request by request: what is retried, what is surfaced, and how."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from iii_state_dynamodb.calls import AwsError, Caller, ConditionFailed

from iii_state_core import BackendError, UnknownOutcomeError


def client_error(code: str, status: int = 400, message: str = "boom") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutItem",
    )


class Script:
    """A fake client method: raises or returns the scripted outcomes in order, counting calls."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def __call__(self, **params: Any) -> dict[str, Any]:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        result: dict[str, Any] = outcome
        return result


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def caller(sleeps: list[float]) -> Caller:
    return Caller("tbl", "endpoint http://x", max_attempts=4, sleep=sleeps.append)


THROTTLES = ["ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"]


@pytest.mark.parametrize("code", THROTTLES)
@pytest.mark.parametrize("write", [False, True])
def test_throttling_is_retried_with_jittered_backoff(
    caller: Caller, sleeps: list[float], code: str, write: bool
) -> None:
    method = Script(client_error(code), client_error(code), {"ok": 1})
    assert caller("PutItem", method, write=write) == {"ok": 1}
    assert method.calls == 3
    assert len(sleeps) == 2 and all(0 <= s <= 0.025 * 2**i for i, s in enumerate(sleeps))


def test_throttling_that_never_ends_is_a_clear_error(caller: Caller, sleeps: list[float]) -> None:
    method = Script(*[client_error("ThrottlingException", message="Rate exceeded")] * 4)
    with pytest.raises(BackendError) as info:
        caller("PutItem", method, write=True)
    message = str(info.value)
    assert method.calls == 4 and len(sleeps) == 3
    assert "failed 4 times" in message and "ThrottlingException: Rate exceeded" in message
    assert "nothing was applied" in message and "on-demand" in message
    assert not isinstance(info.value, UnknownOutcomeError)


def test_backoff_is_bounded() -> None:
    caller = Caller("tbl", "x")
    assert all(0 <= caller.backoff(n) <= 1.0 for n in range(40) for _ in range(20))


@pytest.mark.parametrize(
    "error",
    [
        ReadTimeoutError(endpoint_url="http://x"),
        ConnectionClosedError(endpoint_url="http://x"),
        client_error("InternalServerError", 500),
        client_error("ServiceUnavailable", 503),
    ],
    ids=["read-timeout", "connection-closed", "http-500", "http-503"],
)
def test_a_write_that_may_have_been_applied_is_an_unknown_outcome_and_never_retried(
    caller: Caller, error: Exception
) -> None:
    method = Script(error, {"never": "reached"})
    with pytest.raises(UnknownOutcomeError, match="may or may not have been applied"):
        caller("PutItem", method, write=True)
    assert method.calls == 1


@pytest.mark.parametrize(
    "error",
    [ReadTimeoutError(endpoint_url="http://x"), client_error("InternalServerError", 500)],
    ids=["read-timeout", "http-500"],
)
def test_a_read_is_retried_after_a_lost_reply(caller: Caller, error: Exception) -> None:
    method = Script(error, {"Item": {}})
    assert caller("GetItem", method, write=False) == {"Item": {}}
    assert method.calls == 2


def test_a_write_is_retried_when_no_connection_was_made(caller: Caller) -> None:
    method = Script(EndpointConnectionError(endpoint_url="http://x"), {"ok": 1})
    assert caller("PutItem", method, write=True) == {"ok": 1}
    assert method.calls == 2


def test_an_unreachable_endpoint_gives_up_with_the_cause(caller: Caller) -> None:
    method = Script(*[EndpointConnectionError(endpoint_url="http://x")] * 4)
    with pytest.raises(BackendError, match="no connection was made") as info:
        caller("GetItem", method, write=False)
    assert "endpoint_url" in str(info.value) and "on-demand" not in str(info.value)


def test_a_failed_condition_is_not_an_error(caller: Caller) -> None:
    method = Script(client_error("ConditionalCheckFailedException"))
    with pytest.raises(ConditionFailed):
        caller("PutItem", method, write=True)
    assert method.calls == 1


def test_a_missing_table_says_what_to_do(caller: Caller) -> None:
    method = Script(client_error("ResourceNotFoundException", message="Requested resource not found"))
    with pytest.raises(AwsError) as info:
        caller("GetItem", method, write=False)
    assert info.value.aws_code == "ResourceNotFoundException"
    assert "'tbl' does not exist" in str(info.value) and "create_table: true" in str(info.value)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (client_error("ValidationException", message="bad"), AwsError),
        (client_error("AccessDeniedException", message="no"), AwsError),
        (NoCredentialsError(), BackendError),
    ],
)
def test_other_failures_surface_at_once(caller: Caller, error: Exception, kind: type[Exception]) -> None:
    method = Script(error)
    with pytest.raises(kind) as info:
        caller("PutItem", method, write=True)
    assert method.calls == 1
    assert "PutItem on table 'tbl'" in str(info.value)
    assert not isinstance(info.value, UnknownOutcomeError)


def test_caller_waits_with_the_given_sleep(sleeps: list[float]) -> None:
    caller = Caller("tbl", "x", max_attempts=3, sleep=sleeps.append)
    method: Callable[..., dict[str, Any]] = Script(client_error("ThrottlingException"), {"ok": 1})
    caller("Query", method, write=False)
    assert len(sleeps) == 1

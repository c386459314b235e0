"""Why the moto fixture serialises requests: a minimal, deterministic reproduction of moto's race.

moto's DynamoDB ``put_item`` reads the current item, evaluates the ``ConditionExpression`` and
stores the new item with no lock, and ``python -m moto.server`` serves requests on threads. Two
conditional puts that overlap can therefore both pass ``attribute_not_exists``. On a quiet machine
the window is microseconds wide (the shared ``moto_runner.py`` notes 4 double winners in 60
rounds under a tiny thread switch interval); here we widen it to 0.3 s by slowing the condition
check, so the outcome does not depend on luck.

The same widened window behind the lock that ``iii_state_testsupport.moto_runner`` puts around
moto's WSGI app lets exactly one writer win: that is the mode the ``moto_endpoint`` fixture runs.
If moto ever adds its own lock, the first test fails and tells us the workaround can go.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

moto_werkzeug = pytest.importorskip("moto.moto_server.werkzeug_app")
moto_table = pytest.importorskip("moto.dynamodb.models.table")
from iii_state_testsupport.moto_runner import SerializedApp  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402  (after the importorskip guards)

PAUSE = 0.3
WRITERS = 4


@pytest.fixture
def slow_conditions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ConditionExpression moto evaluates takes PAUSE seconds longer."""
    original = moto_table.get_filter_expression

    def slow(*args: Any, **kwargs: Any) -> Any:
        condition = original(*args, **kwargs)
        check = condition.expr

        def expr(item: Any) -> Any:
            time.sleep(PAUSE)
            return check(item)

        condition.expr = expr
        return condition

    monkeypatch.setattr(moto_table, "get_filter_expression", slow)


@contextmanager
def in_process_moto(wrap: Callable[[Any], Any]) -> Iterator[str]:
    """moto's app served on threads, as ``python -m moto.server`` does, optionally wrapped."""
    app = moto_werkzeug.DomainDispatcherApplication(moto_werkzeug.create_backend_app)
    server = make_server(
        "127.0.0.1", 0, wrap(app), threaded=True, request_handler=moto_werkzeug.MotoRequestHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def racing_conditional_puts(endpoint: str) -> int:
    """WRITERS clients put the same new key at once, each only if it is missing; return the winners."""
    client = boto3.session.Session().client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    table = f"race-{threading.get_ident()}-{time.monotonic_ns()}"
    client.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    start = threading.Barrier(WRITERS)
    winners: list[int] = []

    def put(i: int) -> None:
        start.wait()
        try:
            client.put_item(
                TableName=table,
                Item={"pk": {"S": "one-key"}, "writer": {"N": str(i)}},
                ConditionExpression="attribute_not_exists(pk)",
            )
            winners.append(i)
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ConditionalCheckFailedException"

    threads = [threading.Thread(target=put, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(winners)


@pytest.mark.usefixtures("slow_conditions")
def test_threaded_moto_lets_racing_conditional_puts_all_win() -> None:
    with in_process_moto(lambda app: app) as endpoint:
        winners = racing_conditional_puts(endpoint)
    assert winners > 1, "moto now serialises conditional writes itself: the runner's lock may go"


@pytest.mark.usefixtures("slow_conditions")
def test_serialised_moto_lets_exactly_one_win() -> None:
    with in_process_moto(SerializedApp) as endpoint:
        assert racing_conditional_puts(endpoint) == 1

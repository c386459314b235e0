"""What the two test servers do with PartiQL, which decision 0024 rests on: batch sets stay one
``PutItem`` each because neither server can run conditional ``BatchExecuteStatement`` statements
the way DynamoDB does (a failed condition is that statement's ``ConditionalCheckFailed`` error).

* dynalite does not serve PartiQL at all.
* moto applies an ``UPDATE … WHERE … AND ver = ?`` whose version matches, and answers one whose
  version does not match as a success too, writing nothing: a conflict cannot be told from a
  write. If moto starts reporting it, this test fails and tells whoever reads it that the PartiQL
  batch path of decision 0024 can now be tested on moto.
"""

from __future__ import annotations

import secrets

import boto3
import pytest
from botocore.exceptions import ClientError


def test_conditional_partiql_update_is_refused_or_unreported(
    endpoint: str, session_table: str, request: pytest.FixtureRequest
) -> None:
    server = request.node.callspec.params["endpoint"]
    client = boto3.client("dynamodb", endpoint_url=endpoint)
    key = {"pk": {"S": f"#probe-{secrets.token_hex(4)}"}, "sk": {"S": "#k"}}
    client.put_item(TableName=session_table, Item={**key, "val": {"S": "old"}, "ver": {"N": "100"}})
    update = f'UPDATE "{session_table}" SET "val" = ?, "ver" = ? WHERE "pk" = ? AND "sk" = ? AND "ver" = ?'

    def conditional_update(value: str, version: str, expected: str) -> list[dict[str, object]]:
        parameters = [{"S": value}, {"N": version}, key["pk"], key["sk"], {"N": expected}]
        statement = {"Statement": update, "Parameters": parameters}
        reply = client.batch_execute_statement(
            Statements=[{**statement, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}]
        )
        responses: list[dict[str, object]] = reply["Responses"]
        return responses

    def stored() -> tuple[str, str]:
        item = client.get_item(TableName=session_table, Key=key, ConsistentRead=True)["Item"]
        return item["val"]["S"], item["ver"]["N"]

    try:
        applied = conditional_update("new", "200", "100")
    except ClientError as exc:
        assert (server, exc.response["Error"]["Code"]) == ("dynalite", "UnknownOperationException")
        assert stored() == ("old", "100")
        return
    assert server == "moto", f"{server} serves BatchExecuteStatement now"
    assert [response.get("Error") for response in applied] == [None]
    assert stored() == ("new", "200"), "the statement itself is right: a matching version applies it"
    conflicted = conditional_update("newer", "300", "100")  # the version is 200 now
    assert stored() == ("new", "200")
    if any("Error" in response for response in conflicted):
        pytest.fail(
            f"this server now reports a failed PartiQL condition per statement ({conflicted}): the "
            "conditional BatchExecuteStatement path decision 0024 left unbuilt can be tested here"
        )

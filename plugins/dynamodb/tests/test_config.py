"""The adapter config: required table, refused credentials, unknown keys, regions, profiles."""

from __future__ import annotations

from typing import Any

import pytest
from iii_state_dynamodb import DynamoDBAdapter, parse_settings
from iii_state_dynamodb.client import make_session, region_of

from iii_state_core import ConfigError


def test_defaults() -> None:
    settings = parse_settings({"table_name": "state"})
    assert settings.table_name == "state"
    assert settings.create_table is False
    assert (settings.region, settings.endpoint_url, settings.profile) == (None, None, None)
    assert settings.max_attempts == 10


@pytest.mark.parametrize("config", [None, {}, {"table_name": ""}, {"region": "eu-west-1"}])
def test_table_name_is_required(config: dict[str, Any] | None) -> None:
    with pytest.raises(ConfigError, match="'table_name' is required") as info:
        parse_settings(config)
    assert "create_table" in str(info.value)


@pytest.mark.parametrize(
    "name", ["aws_secret_access_key", "aws_access_key_id", "AWS_SESSION_TOKEN", "secret_key", "password"]
)
def test_credentials_in_the_config_are_refused_without_echoing_them(name: str) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    with pytest.raises(ConfigError) as info:
        parse_settings({"table_name": "state", name: secret})
    message = str(info.value)
    assert repr(name) in message
    assert "AWS_ACCESS_KEY_ID" in message and "profile" in message
    assert secret not in message and secret not in repr(info.value)


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown key.*'tabel'"):
        parse_settings({"table_name": "state", "tabel": "x"})


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"table_name": "ab"}, "not a DynamoDB table name"),
        ({"table_name": "a b c"}, "not a DynamoDB table name"),
        ({"table_name": 3}, "must be a string"),
        ({"table_name": "state", "create_table": "yes"}, "true or false"),
        ({"table_name": "state", "read_timeout": 0}, "at least"),
        ({"table_name": "state", "max_attempts": 0}, "at least 1"),
        ({"table_name": "state", "endpoint_url": "localhost:8000"}, "http"),
    ],
)
def test_bad_values_are_refused(config: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_settings(config)


def test_endpoint_with_a_password_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({"table_name": "state", "endpoint_url": "http://user:hunter2@127.0.0.1:8000"})
    assert "hunter2" not in str(info.value)


def test_table_arn_is_accepted() -> None:
    arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/state"
    assert parse_settings({"table_name": arn}).table_name == arn


@pytest.fixture
def no_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))


@pytest.mark.usefixtures("no_aws_environment")
def test_a_region_is_needed_without_a_local_endpoint() -> None:
    settings = parse_settings({"table_name": "state"})
    with pytest.raises(ConfigError, match="no AWS region"):
        region_of(settings, make_session(settings))
    with pytest.raises(ConfigError, match="no AWS region"):
        DynamoDBAdapter.open({"table_name": "state"})


@pytest.mark.usefixtures("no_aws_environment")
def test_region_comes_from_config_then_environment_then_local_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = parse_settings({"table_name": "state", "endpoint_url": "http://127.0.0.1:1"})
    assert region_of(local, make_session(local)) == "us-east-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    assert region_of(local, make_session(local)) == "ap-south-1"
    explicit = parse_settings({"table_name": "state", "region": "eu-west-3"})
    assert region_of(explicit, make_session(explicit)) == "eu-west-3"


@pytest.mark.usefixtures("no_aws_environment")
def test_a_missing_profile_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="profile 'nope' is not in"):
        DynamoDBAdapter.open({"table_name": "state", "profile": "nope"})


@pytest.mark.usefixtures("no_aws_environment")
def test_a_profile_gives_region(tmp_path: Any) -> None:
    (tmp_path / "config").write_text("[profile iii]\nregion = sa-east-1\n")
    settings = parse_settings({"table_name": "state", "profile": "iii"})
    assert region_of(settings, make_session(settings)) == "sa-east-1"

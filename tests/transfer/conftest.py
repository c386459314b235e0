"""Shared set-up for the transfer tests: hostile data, file-store configs, and target stores.

The server fixtures (``redis_url``, ``memcached_servers``, ``dynalite_endpoint``) come from the
unpublished test-support package's pytest plugin (``pip install -e tests/support``); a server
that cannot start skips the test, or fails it under ``CI=true``.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from iii_state_testsupport import ci_mode

from iii_state_core import StateStore, open_store
from iii_state_core.plugins import default_registry

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # ``--import-mode=importlib`` does not add it
    sys.path.insert(0, _HERE)

from transfer_data import kv_store  # noqa: E402  (needs the path above)


@pytest.fixture
def kv_source(tmp_path: Path) -> Iterator[StateStore]:
    with kv_store(tmp_path / "source") as store:
        yield store


@pytest.fixture
def kv_target(tmp_path: Path) -> Iterator[StateStore]:
    with kv_store(tmp_path / "target") as store:
        yield store


# -- other adapters --------------------------------------------------------------------------

#: adapter name -> (server fixture, how to build its adapter config from the fixture's value)
TARGETS: dict[str, tuple[str | None, Callable[[Any, str], dict[str, Any]]]] = {
    "kv": (None, lambda _, token: {"store_method": "file_based", "file_path": f"<tmp>/kv-{token}"}),
    # a key prefix of its own keeps the test's scopes apart even on a shared server
    "redis": ("redis_url", lambda url, token: {"redis_url": url, "key_prefix": f"transfer-{token}:"}),
    "memcached": (
        "memcached_servers",
        lambda servers, token: {"servers": list(servers), "key_prefix": f"transfer-{token}:"},
    ),
    "dynamodb": (
        "dynalite_endpoint",
        lambda url, token: {
            "table_name": f"iii-transfer-{token}", "endpoint_url": url, "region": "us-east-1",
            "create_table": True,
        },
    ),
}


def missing_plugin(name: str) -> None:
    """Skip (under ``CI=true``: fail) when no installed plugin provides adapter ``name``."""
    if name in default_registry().adapters:
        return
    reason = f"the {name!r} adapter is not installed (pip install -e plugins/{name})"
    if ci_mode():
        pytest.fail(f"{reason}  [CI=true: a missing adapter is a failure]", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def open_target(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], StateStore]]:
    """``open_target(name)``: a fresh store of adapter ``name``, closed when the test ends."""
    opened: list[StateStore] = []
    # dynalite accepts any credentials, but boto3 insists on finding some
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", os.environ.get("AWS_ACCESS_KEY_ID", "testing"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"))

    def open_(name: str) -> StateStore:
        missing_plugin(name)
        fixture, build = TARGETS[name]
        value = None if fixture is None else request.getfixturevalue(fixture)
        token = secrets.token_hex(4)
        config = build(value, token)
        if name == "kv":
            config["file_path"] = str(tmp_path / f"kv-{token}")
        store = open_store(adapter=name, adapter_config=config)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands write resume records to the current directory: keep them out of the checkout."""
    monkeypatch.chdir(tmp_path)

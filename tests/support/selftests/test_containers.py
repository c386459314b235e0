"""The fixtures' container path, for real: images built on this machine by
``scripts/build-test-images``, started by testcontainers, spoken to over loopback, removed after.

Without a Docker engine (or without the images) these tests skip, and under ``CI=true`` fail:
CI builds the images and starts an engine (``scripts/test-all``). The tests that fake a machine
with no engine and no binaries run everywhere.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest
from iii_state_testsupport import (
    CONTAINER_KINDS,
    MODE_ENV,
    REDIS_URL_ENV,
    ServerStartError,
    dynamodb_call,
    image_for,
    redis_command,
    run_container,
    server_unavailable,
    unavailable_reason,
)
from iii_state_testsupport.containers import LABEL, THIS_RUN

pytest_plugins = ("pytester",)


def _need_containers(kind: str) -> None:
    why = unavailable_reason(kind)
    if why is not None:
        server_unavailable(f"the container path cannot run here: {why}")


def _containers(label: str = THIS_RUN) -> set[str]:
    """Ids of the containers with ``label`` (default: those this process started; other test
    sessions on the machine may have containers of their own meanwhile)."""
    docker: Any = pytest.importorskip("docker")
    client = docker.from_env()
    try:
        return {c.id for c in client.containers.list(all=True, filters={"label": label})}
    finally:
        client.close()


def _round_trip(kind: str, host: str, port: int) -> None:
    """One real write and read on the server in the container."""
    if kind in ("redis", "valkey"):
        assert redis_command(host, port, "SET", "selftest:container", "1") == "OK"
        assert redis_command(host, port, "GET", "selftest:container") == b"1"
    elif kind == "memcached":
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(b"set selftest 0 0 2\r\nhi\r\nget selftest\r\n")
            data = b""
            while not data.endswith(b"END\r\n"):
                data += sock.recv(4096)
        assert data == b"STORED\r\nVALUE selftest 0 2\r\nhi\r\nEND\r\n"
    else:
        table = {
            "TableName": "selftest",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
        }
        status, body = dynamodb_call(f"http://{host}:{port}", "CreateTable", table)
        assert status == 200, body
        assert dynamodb_call(f"http://{host}:{port}", "ListTables")[1] == {"TableNames": ["selftest"]}


@pytest.mark.parametrize("kind", sorted(CONTAINER_KINDS))
def test_a_container_serves_on_loopback_and_is_removed_after(kind: str) -> None:
    _need_containers(kind)
    with run_container(kind) as info:
        assert info.host == "127.0.0.1"  # published on loopback only
        assert info.image == image_for(kind)[0]
        _round_trip(kind, info.host, info.port)
        assert info.container_id in _containers()
    assert info.container_id not in _containers()


def test_a_container_whose_server_never_answers_is_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    _need_containers("memcached")
    before = _containers()
    # memcached's image as "redis": it listens on 11211, so nothing ever answers on 6379
    monkeypatch.setenv(CONTAINER_KINDS["redis"].image_env, image_for("memcached")[0])
    with pytest.raises(ServerStartError, match="did not answer") as caught, run_container("redis", timeout=3):
        pass
    assert "its log:" in str(caught.value)
    assert _containers() == before


_INNER_TEST = """
def test_needs_redis(redis_url):
    assert redis_url.startswith("redis://")
"""


def test_the_report_says_a_container_served_and_nothing_outlives_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _need_containers("redis")
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    monkeypatch.setenv(MODE_ENV, "container")
    pytester.makepyfile(test_inner=_INNER_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        f"*environment → container → local binary ({MODE_ENV}=container)*",
        "*iii-state test servers (what served each backend)*",
        f"redis: container — {image_for('redis')[0]} at 127.0.0.1:*, answering * s after start*",
    ])  # fmt: skip
    served = re.search(r"\(container ([0-9a-f]{12})\)", result.stdout.str())
    assert served is not None
    # that session's container is gone once it ended (not left to a later orphan sweep)
    assert not any(cid.startswith(served.group(1)) for cid in _containers(LABEL))


def test_the_report_says_a_local_binary_served(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    monkeypatch.setenv(MODE_ENV, "binary")
    pytester.makepyfile(test_inner=_INNER_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "redis: local binary — redis (*redis-server) at 127.0.0.1:* (pid *) (no container: "
        f"{MODE_ENV}=binary)",
    ])  # fmt: skip


def _no_engine_no_binaries(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no redis-server, no docker client
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")  # no engine answers
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    monkeypatch.delenv(MODE_ENV, raising=False)
    monkeypatch.delenv("III_STATE_TEST_NO_CONTAINERS", raising=False)
    pytester.makepyfile(test_inner=_INNER_TEST)


ALL_THREE_WAYS = [
    f"*no redis server for the tests. Three ways to get one: (1) set {REDIS_URL_ENV} to a server you run;"
    " (2) start a Docker engine, pip install testcontainers, and build the images with"
    " bash scripts/build-test-images — here: no Docker engine answers at unix://*/no-engine.sock*;"
    " (3) install the binary: apt-get install -y redis-server — here: redis-server (not on PATH)*"
]


def test_no_engine_and_no_binaries_names_all_three_ways_and_skips(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_engine_no_binaries(pytester, monkeypatch, tmp_path)
    monkeypatch.delenv("CI", raising=False)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(ALL_THREE_WAYS)


def test_no_engine_and_no_binaries_fails_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_engine_no_binaries(pytester, monkeypatch, tmp_path)
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(ALL_THREE_WAYS)
    result.stdout.fnmatch_lines(["*CI=true: a missing test server is a failure*"])


def test_container_mode_without_an_engine_is_a_failure_not_a_binary(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    monkeypatch.setenv(MODE_ENV, "container")  # redis-server IS on PATH: it must not be used
    pytester.makepyfile(test_inner=_INNER_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [f"*{MODE_ENV}=container, but no container can serve redis: no Docker engine*"]
    )

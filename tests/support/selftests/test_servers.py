"""Self-tests of the test-server fixtures: every server kind is started for real
and spoken to with raw sockets / HTTP (no client libraries needed).

Run: pytest tests/support/selftests -q  (the fixtures come from the package's pytest plugin)
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from iii_state_testsupport import (
    DYNALITE_BINARY_ENV,
    LOOPBACK,
    REDIS_URL_ENV,
    AclUser,
    DynaliteServer,
    MemcachedServer,
    MotoServer,
    RedisCluster,
    RedisServer,
    RespConnection,
    RespError,
    ServerUnavailable,
    address_of,
    dynamodb_call,
    dynamodb_headers,
    external_url,
    free_cluster_port,
    free_port,
)

if TYPE_CHECKING:
    from iii_state_testsupport.fixtures import ServerStarter

pytest_plugins = ("pytester",)


def _key(prefix: str = "selftest") -> str:
    return f"{prefix}:{uuid.uuid4().hex}"


def _redis_connect(url: str) -> RespConnection:
    parts = urllib.parse.urlsplit(url)
    ctx = ssl.create_default_context() if parts.scheme == "rediss" else None
    conn = RespConnection(parts.hostname or LOOPBACK, parts.port or 6379, ssl_context=ctx)
    if parts.password is not None:
        conn.auth(urllib.parse.unquote(parts.password), urllib.parse.unquote(parts.username or "") or None)
    return conn


def _memcached(address: str, payload: bytes, until: tuple[bytes, ...]) -> bytes:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(payload)
        data = b""
        while not data.endswith(until):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def _memcached_set(address: str, key: str, value: bytes) -> bytes:
    payload = b"set %s 0 0 %d\r\n%s\r\n" % (key.encode(), len(value), value)
    return _memcached(address, payload, (b"\r\n",))


def _memcached_get(address: str, key: str) -> bytes | None:
    data = _memcached(address, b"get %s\r\n" % key.encode(), (b"END\r\n",))
    if data == b"END\r\n":
        return None
    header, _, rest = data.partition(b"\r\n")
    size = int(header.split()[3])
    return rest[:size]


def _no_process(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# --------------------------------------------------------------------------
# ports
# --------------------------------------------------------------------------


def test_free_ports_are_loopback_and_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind((LOOPBACK, port))
    assert free_port() != port  # not handed out twice
    cport = free_cluster_port()
    assert cport <= 55535
    with socket.socket() as a, socket.socket() as b:
        a.bind((LOOPBACK, cport))
        b.bind((LOOPBACK, cport + 10000))


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------


def test_redis_url_ping_set_get(redis_url: str) -> None:
    key = _key()
    with _redis_connect(redis_url) as conn:
        assert conn.command("PING") == "PONG"
        assert conn.command("SET", key, "value", "PX", 60000) == "OK"
        assert conn.command("GET", key) == b"value"
        assert conn.command("GET", _key()) is None
        assert conn.command("DEL", key) == 1


def test_redis_requirepass_and_acl_users(redis_server_factory: Any) -> None:
    password = 'pa ss"word\\'  # exercises config quoting
    server: RedisServer = redis_server_factory(
        requirepass=password, acl_users=[AclUser("app", "app-pw", "~app:* +@all")]
    )
    with RespConnection(LOOPBACK, server.port) as conn:
        with pytest.raises(RespError, match="NOAUTH"):
            conn.command("GET", "k")
        with pytest.raises(RespError, match="WRONGPASS"):
            conn.auth("wrong")
        conn.auth(password)
        assert conn.command("PING") == "PONG"
    assert server.command("SET", "k", "v") == "OK"
    with server.connect(username="app", password="app-pw") as conn:
        assert conn.command("SET", "app:1", "x") == "OK"
        with pytest.raises(RespError, match="NOPERM"):
            conn.command("SET", "other:1", "x")
    quoted = urllib.parse.quote(password, safe="")
    assert server.info.url == f"redis://:{quoted}@127.0.0.1:{server.port}"
    with _redis_connect(server.info.url) as conn:
        assert conn.command("GET", "k") == b"v"
    with _redis_connect(server.info.url_for("app", "app-pw")) as conn:
        assert conn.command("GET", "app:1") == b"x"


def test_redis_restart_keeps_port_and_aof_data(redis_server_factory: Any) -> None:
    server: RedisServer = redis_server_factory(appendonly=True)
    port, pid = server.port, server.pid
    assert server.command("SET", "durable", "1") == "OK"

    info = server.restart()  # SIGKILL, start again
    assert (info.port, info.data_dir) == (port, server.data_dir)
    assert info.pid != pid and _no_process(pid)
    assert server.command("GET", "durable") == b"1"
    assert (server.data_dir / "appendonlydir").is_dir()

    server.kill()
    with pytest.raises(OSError):
        RespConnection(LOOPBACK, port, timeout=1)
    server.start()
    assert server.port == port
    assert server.command("GET", "durable") == b"1"

    server.restart(graceful=True)  # SIGTERM
    assert server.port == port
    assert server.command("GET", "durable") == b"1"


def test_redis_restart_without_aof_loses_data(redis_server_factory: Any) -> None:
    server: RedisServer = redis_server_factory()
    port = server.port
    server.command("SET", "volatile", "1")
    server.restart()
    assert server.port == port
    assert server.command("GET", "volatile") is None


def test_redis_pause_and_resume(redis_server_factory: Any) -> None:
    server: RedisServer = redis_server_factory()
    server.pause()
    with RespConnection(LOOPBACK, server.port, timeout=0.3) as conn, pytest.raises(TimeoutError):
        conn.command("PING")
    server.resume()
    assert server.command("PING") == "PONG"


def test_redis_tls_ping_verifies_the_certificate(redis_server_factory: Any) -> None:
    server: RedisServer = redis_server_factory(tls=True, requirepass="pw")
    tls = server.info.tls
    assert tls is not None and tls.ca_cert.is_file()
    assert server.info.url.startswith("rediss://")
    ctx = tls.client_context(with_client_cert=False)
    with RespConnection(LOOPBACK, server.port, ssl_context=ctx) as conn:
        conn.auth("pw")
        assert conn.command("PING") == "PONG"
    # the same via "localhost" (in the SAN as well)
    with RespConnection(LOOPBACK, server.port, ssl_context=ctx, server_hostname="localhost") as conn:
        conn.auth("pw")
        assert conn.command("PING") == "PONG"
    # without the test CA the certificate is rejected
    with pytest.raises(ssl.SSLCertVerificationError):
        RespConnection(LOOPBACK, server.port, ssl_context=ssl.create_default_context())
    # plain text gets no RESP answer (TLS only, --port 0)
    with socket.create_connection((LOOPBACK, server.port), timeout=2) as sock:
        sock.sendall(RespConnection.encode("PING"))
        try:
            reply = sock.recv(64)
        except (ConnectionResetError, TimeoutError):
            reply = b""
        assert not reply.startswith((b"+", b"-"))


def test_redis_tls_client_certificate_required(redis_server_factory: Any) -> None:
    server: RedisServer = redis_server_factory(tls=True, tls_auth_clients=True)
    tls = server.info.tls
    assert tls is not None
    assert server.command("PING") == "PONG"  # uses the client cert
    with pytest.raises((ssl.SSLError, ConnectionError)):
        conn = RespConnection(LOOPBACK, server.port, ssl_context=tls.client_context(with_client_cert=False))
        try:
            conn.command("PING")
        finally:
            conn.close()


def test_redis_cluster_reports_ok(redis_cluster_url: str, redis_cluster_nodes: list[str]) -> None:
    if external_url("III_STATE_TEST_REDIS_CLUSTER_URL") is None:
        assert len(redis_cluster_nodes) == 3
    assert address_of(redis_cluster_url) in redis_cluster_nodes
    key = _key()
    accepted = moved = 0
    for node in redis_cluster_nodes:
        host, _, port = node.rpartition(":")
        with RespConnection(host, int(port)) as conn:
            info = conn.command("CLUSTER", "INFO")
            assert isinstance(info, bytes) and b"cluster_state:ok" in info
            try:
                assert conn.command("SET", key, "1", "PX", 60000) == "OK"
                accepted += 1
            except RespError as exc:
                assert exc.code == "MOVED"
                moved += 1
    assert accepted == 1
    assert moved == len(redis_cluster_nodes) - 1


def test_redis_cluster_node_restart_recovers(start_server: ServerStarter) -> None:
    cluster = start_server(RedisCluster(3, cluster_node_timeout_ms=1000))
    node = cluster.nodes[1]
    port, pid = node.port, node.pid
    node.restart()  # nodes.conf in its dir lets it rejoin
    assert node.port == port
    cluster.wait_ok(timeout=20)
    assert cluster.info.nodes[1].pid != pid
    node.kill()
    assert not cluster.is_ok()
    cluster.start()  # starts the killed node again and waits for cluster_state:ok
    assert cluster.is_ok()


# --------------------------------------------------------------------------
# memcached
# --------------------------------------------------------------------------


def test_memcached_set_get(memcached_servers: list[str]) -> None:
    assert len(memcached_servers) >= 1
    key = uuid.uuid4().hex
    assert _memcached_set(memcached_servers[0], key, b"hello") == b"STORED\r\n"
    assert _memcached_get(memcached_servers[0], key) == b"hello"
    assert _memcached(memcached_servers[0], b"version\r\n", (b"\r\n",)).startswith(b"VERSION ")


def test_memcached_pair_are_two_separate_servers(memcached_servers_pair: list[str]) -> None:
    first, second = memcached_servers_pair
    assert first != second
    key = uuid.uuid4().hex
    assert _memcached_set(first, key, b"only-here") == b"STORED\r\n"
    assert _memcached_get(first, key) == b"only-here"
    assert _memcached_get(second, key) is None


def test_memcached_extra_args_item_size(memcached_server_factory: Any) -> None:
    big = b"x" * (1536 * 1024)
    default = memcached_server_factory()
    assert _memcached_set(default.address, "big", big).startswith(b"SERVER_ERROR")
    large = memcached_server_factory(extra_args=("-I", "2m"))
    assert _memcached_set(large.address, "big", big) == b"STORED\r\n"
    assert _memcached_get(large.address, "big") == big
    assert large.info.args == ("-I", "2m")


def test_stop_ends_the_pid_and_removes_the_dir(start_server: ServerStarter) -> None:
    server = start_server(MemcachedServer())
    pid, data_dir = server.pid, server.data_dir
    assert data_dir.is_dir() and not _no_process(pid)
    server.stop()
    assert _no_process(pid)
    assert not data_dir.exists()
    assert not server.running


# --------------------------------------------------------------------------
# DynamoDB: dynalite and moto
# --------------------------------------------------------------------------


def _create_table(url: str, name: str) -> None:
    status, body = dynamodb_call(
        url,
        "CreateTable",
        {
            "TableName": name,
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
        },
    )
    assert status == 200, body
    deadline = time.monotonic() + 10
    while True:
        status, body = dynamodb_call(url, "DescribeTable", {"TableName": name})
        if status == 200 and body["Table"]["TableStatus"] == "ACTIVE":
            return
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def _exercise_dynamodb(url: str) -> None:
    status, body = dynamodb_call(url, "ListTables")
    assert status == 200 and isinstance(body["TableNames"], list)
    table = f"selftest-{uuid.uuid4().hex[:12]}"
    _create_table(url, table)
    item = {"pk": {"S": "a"}, "v": {"N": "1"}}
    cond = {"ConditionExpression": "attribute_not_exists(pk)"}
    assert dynamodb_call(url, "PutItem", {"TableName": table, "Item": item, **cond})[0] == 200
    status, body = dynamodb_call(url, "PutItem", {"TableName": table, "Item": item, **cond})
    assert status == 400 and "ConditionalCheckFailed" in body["__type"]
    status, body = dynamodb_call(
        url, "GetItem", {"TableName": table, "Key": {"pk": {"S": "a"}}, "ConsistentRead": True}
    )
    assert status == 200 and body["Item"] == item
    assert dynamodb_call(url, "DeleteTable", {"TableName": table})[0] == 200


def test_dynalite_endpoint(dynalite_endpoint: str) -> None:
    _exercise_dynamodb(dynalite_endpoint)


def test_dynalite_keeps_idle_connections_open(dynalite_endpoint: str) -> None:
    """dynalite_keepalive.js is loaded (binary and container alike): node announces
    ``Keep-Alive: timeout=5`` while it closes idle connections after 5 s, and nothing with it off."""
    parts = urllib.parse.urlsplit(dynalite_endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.request("POST", "/", body=b"{}", headers=dynamodb_headers("ListTables"))
        reply = conn.getresponse()
        reply.read()
    finally:
        conn.close()
    assert reply.status == 200
    assert reply.getheader("Connection", "").lower() == "keep-alive"
    assert reply.getheader("Keep-Alive") is None


def test_moto_endpoint(moto_endpoint: str) -> None:
    _exercise_dynamodb(moto_endpoint)


def test_dynalite_persistent_restart_keeps_tables(start_server: ServerStarter) -> None:
    server = start_server(DynaliteServer(persistent=True))
    _create_table(server.url, "kept")
    port = server.port
    server.restart()
    assert server.port == port
    assert dynamodb_call(server.url, "ListTables")[1]["TableNames"] == ["kept"]


def test_moto_serialises_conditional_writes(start_server: ServerStarter) -> None:
    """With very frequent thread switches, moto's stock threaded server lets two
    conditional writes both pass their check (see moto_runner.py); ours must not."""
    server = start_server(MotoServer(switch_interval=1e-6))
    url = server.url
    _create_table(url, "race")
    threads = 6

    def race(work: Any) -> None:
        barrier = threading.Barrier(threads)

        def run(i: int) -> None:
            barrier.wait()
            work(i)

        workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)

    # create-if-absent: exactly one winner per key
    for round_no in range(10):
        winners: list[int] = []

        def put(i: int, key: str = f"k{round_no}", winners: list[int] = winners) -> None:
            item = {"pk": {"S": key}, "w": {"N": str(i)}}
            cond = "attribute_not_exists(pk)"
            payload = {"TableName": "race", "Item": item, "ConditionExpression": cond}
            if dynamodb_call(url, "PutItem", payload)[0] == 200:
                winners.append(i)

        race(put)
        assert len(winners) == 1, f"round {round_no}: winners {winners}"

    # compare-and-set counter: no lost updates
    increments = 5
    dynamodb_call(url, "PutItem", {"TableName": "race", "Item": {"pk": {"S": "ctr"}, "v": {"N": "0"}}})

    def bump(_: int) -> None:
        done = 0
        while done < increments:
            key = {"pk": {"S": "ctr"}}
            got = dynamodb_call(url, "GetItem", {"TableName": "race", "Key": key, "ConsistentRead": True})
            old = got[1]["Item"]["v"]["N"]
            payload = {
                "TableName": "race",
                "Item": {"pk": {"S": "ctr"}, "v": {"N": str(int(old) + 1)}},
                "ConditionExpression": "v = :old",
                "ExpressionAttributeValues": {":old": {"N": old}},
            }
            if dynamodb_call(url, "PutItem", payload)[0] == 200:
                done += 1

    race(bump)
    final = dynamodb_call(url, "GetItem", {"TableName": "race", "Key": {"pk": {"S": "ctr"}}})
    assert final[1]["Item"]["v"]["N"] == str(threads * increments)


# --------------------------------------------------------------------------
# unavailable servers: install hints, CI=true, external URLs, Docker
# --------------------------------------------------------------------------


def test_missing_binaries_name_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    monkeypatch.delenv(DYNALITE_BINARY_ENV, raising=False)
    leftovers_before = set(Path(tempfile.gettempdir()).glob("iii-state-*"))
    cases: list[tuple[Any, str]] = [
        (RedisServer(), "apt-get install -y redis-server"),
        (RedisServer(tls=True, binary="/bin/sh", openssl_binary="no-openssl"), "apt-get install -y openssl"),
        (RedisCluster(3), "apt-get install -y redis-server"),
        (RedisCluster(3, binary="/bin/sh"), "apt-get install -y redis-tools"),
        (MemcachedServer(), "apt-get install -y memcached"),
        (DynaliteServer(binary=str(tmp_path / "dynalite")), "npm install --prefix .tools dynalite@4.0.0"),
        (MotoServer(python=str(tmp_path / "python")), 'pip install "moto[server]"'),
    ]
    for handle, hint in cases:
        with pytest.raises(ServerUnavailable) as caught:
            handle.start()
        assert hint in str(caught.value)
    leftovers_after = set(Path(tempfile.gettempdir()).glob("iii-state-*"))
    assert leftovers_after <= leftovers_before  # no temp dir left behind


_INNER_TEST = """
import http.client
import os

def test_needs_redis(redis_url):
    assert redis_url == os.environ.get("EXPECTED_URL", redis_url)
"""


def _isolate(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytester.makepyfile(test_inner=_INNER_TEST)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # simulate: redis-server not installed
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    monkeypatch.setenv("III_STATE_TEST_SERVERS", "binary")


def test_ci_true_turns_an_unavailable_server_into_a_failure(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _isolate(pytester, monkeypatch, tmp_path)
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*apt-get install -y redis-server*CI=true*"])


def test_without_ci_an_unavailable_server_is_a_skip(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _isolate(pytester, monkeypatch, tmp_path)
    monkeypatch.delenv("CI", raising=False)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*apt-get install -y redis-server*"])


def test_external_url_is_used_instead_of_a_binary(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str
) -> None:
    _isolate(pytester, monkeypatch, tmp_path)  # no redis-server on PATH ...
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv(REDIS_URL_ENV, redis_url)  # ... but a URL is given
    monkeypatch.setenv("EXPECTED_URL", redis_url)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    monkeypatch.setenv(REDIS_URL_ENV, "  ")
    assert external_url(REDIS_URL_ENV) is None

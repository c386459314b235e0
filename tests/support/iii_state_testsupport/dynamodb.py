"""DynamoDB-compatible endpoints on a free loopback port: dynalite (npm) and moto (pip).

``dynamodb_call`` speaks the DynamoDB JSON API with the standard library only, for readiness
checks and for tests that must not depend on boto3.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .environment import (
    DYNALITE_BINARY_ENV,
    INSTALL_HINTS,
    MOTO_PYTHON_ENV,
    ServerUnavailable,
    external_url,
)
from .managed import ManagedServer, ServerInfo
from .ports import LOOPBACK

__all__ = [
    "DynaliteServer",
    "HttpEndpointInfo",
    "MotoServer",
    "dynalite_server",
    "dynamodb_call",
    "dynamodb_headers",
    "find_dynalite",
    "moto_server",
]


@dataclass(frozen=True)
class HttpEndpointInfo(ServerInfo):
    """A DynamoDB-compatible HTTP endpoint (dynalite or moto)."""

    url: str


# Dummy credentials: neither dynalite nor moto verifies the signature, but moto
# routes by the service name in the credential scope.
_DUMMY_AUTHORIZATION = (
    "AWS4-HMAC-SHA256 Credential=AKIAIIISTATETEST/20240101/us-east-1/dynamodb/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "0" * 64
)


def dynamodb_headers(operation: str) -> dict[str, str]:
    """The headers of one DynamoDB JSON API call with a dummy SigV4-looking Authorization."""
    return {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": f"DynamoDB_20120810.{operation}",
        "X-Amz-Date": "20240101T000000Z",
        "Authorization": _DUMMY_AUTHORIZATION,
    }


def dynamodb_call(
    endpoint_url: str, operation: str, payload: dict[str, Any] | None = None, *, timeout: float = 10.0
) -> tuple[int, Any]:
    """POST one DynamoDB JSON API call (e.g. ``ListTables``) with a dummy
    SigV4-looking Authorization header; returns (HTTP status, decoded JSON body)."""
    parts = urllib.parse.urlsplit(endpoint_url)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname or LOOPBACK, parts.port or 443, timeout=timeout
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname or LOOPBACK, parts.port or 80, timeout=timeout)
    body = json.dumps(payload or {}).encode()
    headers = dynamodb_headers(operation)
    try:
        conn.request("POST", parts.path or "/", body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        decoded: Any = json.loads(raw) if raw else None
    except ValueError:
        decoded = raw.decode("utf-8", "replace")
    return response.status, decoded


def _probe_dynamodb(port: int) -> bool:
    status, body = dynamodb_call(f"http://{LOOPBACK}:{port}", "ListTables", timeout=2.0)
    return status == 200 and isinstance(body, dict) and "TableNames" in body


def find_dynalite(explicit: str | None = None) -> str:
    """Locate dynalite: ``explicit``, ``$III_STATE_DYNALITE``, ``.tools/node_modules/.bin/dynalite``
    in a folder above this package or above the cwd (where ``scripts/install-system-deps``
    puts it), then PATH.  Raises ServerUnavailable with the npm command."""
    hint = INSTALL_HINTS["dynalite"]
    chosen = explicit or external_url(DYNALITE_BINARY_ENV)
    if chosen is not None:
        path = chosen if os.sep in chosen else shutil.which(chosen)
        if path is None or not os.access(path, os.X_OK):
            raise ServerUnavailable(f"dynalite ({chosen})", hint)
        return path
    here = Path(__file__).resolve()
    for root in dict.fromkeys([*here.parents, Path.cwd(), *Path.cwd().parents]):
        candidate = root / ".tools" / "node_modules" / ".bin" / "dynalite"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("dynalite")
    if found is None:
        raise ServerUnavailable("dynalite (no .tools/node_modules/.bin/dynalite, none on PATH)", hint)
    return found


def _needs_node(script: str) -> bool:
    try:
        with open(script, "rb") as fh:
            first = fh.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and b"node" in first


class _DynamoDBEndpoint(ManagedServer[HttpEndpointInfo]):
    """What dynalite and moto share: an HTTP endpoint that answers the DynamoDB API."""

    def _probe(self, port: int, pid: int) -> bool:
        return _probe_dynamodb(port)

    def _make_info(self, port: int, pid: int, data_dir: Path, log_file: Path) -> HttpEndpointInfo:
        return HttpEndpointInfo(
            kind=self.kind,
            host=LOOPBACK,
            port=port,
            pid=pid,
            data_dir=data_dir,
            log_file=log_file,
            url=f"http://{LOOPBACK}:{port}",
        )

    @property
    def url(self) -> str:
        return self.info.url


#: Keeps dynalite's idle keep-alive connections open (see the file for why).
KEEPALIVE_PRELOAD = Path(__file__).resolve().with_name("dynalite_keepalive.js")


class DynaliteServer(_DynamoDBEndpoint):
    """``dynalite --host 127.0.0.1 --port PORT`` (in memory; ``persistent=True``
    keeps a LevelDB store in the temp dir so data survives ``restart()``).

    Table state changes take ``*_table_ms`` (dynalite's default is 500 ms; 50 ms
    here keeps tests fast while still exercising the CREATING state)."""

    kind = "dynalite"

    def __init__(
        self,
        *,
        create_table_ms: int = 50,
        delete_table_ms: int = 50,
        update_table_ms: int = 50,
        max_item_size_kb: int | None = None,
        persistent: bool = False,
        extra_args: Sequence[str] = (),
        port: int | None = None,
        binary: str | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(port=port, startup_timeout=startup_timeout)
        self.create_table_ms = create_table_ms
        self.delete_table_ms = delete_table_ms
        self.update_table_ms = update_table_ms
        self.max_item_size_kb = max_item_size_kb
        self.persistent = persistent
        self.extra_args = tuple(extra_args)
        self._binary_arg = binary
        self._binary = ""

    def _check_available(self) -> None:
        self._binary = find_dynalite(self._binary_arg)
        if _needs_node(self._binary) and shutil.which("node") is None:
            raise ServerUnavailable("node (needed by dynalite)", INSTALL_HINTS["node"])

    def _command(self, port: int) -> list[str]:
        assert self._dir is not None
        args = [
            self._binary, "--host", LOOPBACK, "--port", str(port),
            "--createTableMs", str(self.create_table_ms),
            "--deleteTableMs", str(self.delete_table_ms),
            "--updateTableMs", str(self.update_table_ms),
        ]  # fmt: skip
        if self.max_item_size_kb is not None:
            args += ["--maxItemSizeKb", str(self.max_item_size_kb)]
        if self.persistent:
            args += ["--path", str(self._dir / "leveldb")]
        return args + list(self.extra_args)

    def _env(self) -> dict[str, str] | None:
        env = dict(os.environ)
        preload = f"--require {json.dumps(str(KEEPALIVE_PRELOAD))}"  # quoted: a path may hold spaces
        env["NODE_OPTIONS"] = f"{env.get('NODE_OPTIONS', '')} {preload}".strip()
        return env

    def __enter__(self) -> DynaliteServer:
        self.start()
        return self


@functools.lru_cache(maxsize=8)
def _python_has_moto(python: str) -> bool:
    modules = ("moto", "flask", "flask_cors", "werkzeug")
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        return all(importlib.util.find_spec(name) is not None for name in modules)
    try:
        done = subprocess.run(
            [python, "-c", "import " + ", ".join(modules)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


class MotoServer(_DynamoDBEndpoint):
    """moto's server, run through our ``moto_runner.py`` which serialises all
    requests with one global lock (see that module for why: moto's own
    ``python -m moto.server`` is threaded and lets conditional writes race).

    ``python``: interpreter with ``moto[server]`` (default ``$III_STATE_MOTO_PYTHON``
    or the current one).  ``switch_interval``: passed to ``sys.setswitchinterval``
    in the server, a testing aid that makes thread races far more likely."""

    kind = "moto"
    runner = Path(__file__).resolve().with_name("moto_runner.py")

    def __init__(
        self,
        *,
        python: str | None = None,
        switch_interval: float | None = None,
        port: int | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        super().__init__(port=port, startup_timeout=startup_timeout)
        self.python = python or external_url(MOTO_PYTHON_ENV) or sys.executable
        self.switch_interval = switch_interval

    def _check_available(self) -> None:
        if not _python_has_moto(self.python):
            raise ServerUnavailable(f"moto[server] (for {self.python})", INSTALL_HINTS["moto"])

    def _command(self, port: int) -> list[str]:
        args = [self.python, str(self.runner), "--host", LOOPBACK, "--port", str(port)]
        if self.switch_interval is not None:
            args += ["--switch-interval", repr(self.switch_interval)]
        return args

    def _env(self) -> dict[str, str] | None:
        env = dict(os.environ)
        env.setdefault("AWS_ACCESS_KEY_ID", "testing")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def __enter__(self) -> MotoServer:
        self.start()
        return self


@contextlib.contextmanager
def dynalite_server(*, binary: str | None = None, persistent: bool = False) -> Iterator[DynaliteServer]:
    """A started ``DynaliteServer`` (``.url`` is ``http://127.0.0.1:PORT``)."""
    with DynaliteServer(binary=binary, persistent=persistent) as server:
        yield server


@contextlib.contextmanager
def moto_server(*, python: str | None = None) -> Iterator[MotoServer]:
    """A started ``MotoServer`` (``.url`` is ``http://127.0.0.1:PORT``)."""
    with MotoServer(python=python) as server:
        yield server

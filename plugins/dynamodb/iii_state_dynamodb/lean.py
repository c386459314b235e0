"""A lean DynamoDB JSON client for the requests of a batch round: the same requests and the same
answers as the botocore client, at a fraction of its CPU.

Why: on loopback a batch of sets is bound by client CPU, not by the server. botocore spends about
1 to 1.5 ms of Python per ``PutItem`` (serialising by the model, endpoint rules, events, signing,
urllib3, parsing by the model), so 16 threads under the GIL send well under 1,000 a second; this
client's request costs a JSON dump, one SigV4 signature with a cached key and one write and
one read on a keep-alive connection (:mod:`.http1`; decision 0021).

It behaves like the client it sits beside, so :class:`~.calls.Caller`'s retry policy and
:mod:`.settle` apply unchanged:

* credentials are the client's own (``get_frozen_credentials()`` per request, so refreshable
  role credentials keep working), the endpoint is ``client.meta.endpoint_url``, the timeouts and
  the CA bundle are the client's;
* a reply is checked against ``x-amz-crc32`` (:class:`~botocore.exceptions.ChecksumError`);
* an error reply is parsed by botocore's own parser and raised as the client's own exception
  class (``ConditionalCheckFailedException`` with ``Item`` and all), so it is a ``ClientError``
  with the same ``Error.Code``, ``Message`` and modelled fields;
* connection failures raise botocore's exceptions with the same meaning: nothing sent
  (``EndpointConnectionError``, ``ConnectTimeoutError``) or maybe sent (``ConnectionClosedError``,
  ``ReadTimeoutError``), so a lost reply to a write stays an unknown outcome, never a blind resend.

It never retries (the caller does). Blob attributes (``B``, ``BS``) in a reply are decoded to
bytes as botocore decodes them; requests are only ever the adapter's own items (strings and
numbers).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import socket
import ssl
import threading
import urllib.parse
import urllib.request
import zlib
from typing import Any, Final

from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    ChecksumError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    SSLError,
)
from botocore.httpsession import get_cert_path  # type: ignore[import-untyped, unused-ignore]
from botocore.parsers import ResponseParserError, create_parser  # type: ignore[import-untyped, unused-ignore]

from .http1 import Connection, Lost
from .sigv4 import CONTENT_TYPE, Credentials, Signer

TARGET_PREFIX: Final = "DynamoDB_20120810."


def host_header(scheme: str, hostname: str, port: int | None) -> str:
    """The ``Host`` header botocore signs: lower-case, IPv6 in brackets, the port unless default."""
    host = f"[{hostname}]" if ":" in hostname else hostname.lower()
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        host = f"{host}:{port}"
    return host


def lean_unsupported(client: Any) -> str | None:
    """Why this client's requests cannot take the lean path (``None``: they can)."""
    parts = urllib.parse.urlsplit(client.meta.endpoint_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http(s) endpoint"
    if parts.path not in ("", "/") or parts.query:
        return "the endpoint has a path"
    if client.meta.config.proxies or (
        urllib.request.getproxies().get(parts.scheme) and not urllib.request.proxy_bypass(parts.hostname)
    ):
        return "requests go through a proxy"
    if client.meta.service_model.protocol != "json":
        return "not DynamoDB's JSON protocol"
    return None


def _decode_blobs(value: Any) -> Any:
    """An attribute value with ``B``/``BS`` as bytes, as botocore's parser gives them."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for kind, inner in value.items():
            if kind == "B":
                out[kind] = base64.b64decode(inner)
            elif kind == "BS":
                out[kind] = [base64.b64decode(blob) for blob in inner]
            elif kind == "M":
                out[kind] = {name: _decode_blobs(member) for name, member in inner.items()}
            elif kind == "L":
                out[kind] = [_decode_blobs(member) for member in inner]
            else:
                out[kind] = inner
        return out
    return value


def _decoded_item(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _decode_blobs(value) for name, value in item.items()}


def _decode_item_blobs(reply: dict[str, Any]) -> None:
    for field in ("Attributes", "Item", "LastEvaluatedKey"):
        if field in reply:
            reply[field] = _decoded_item(reply[field])
    if "Items" in reply:  # a Query's or Scan's page
        reply["Items"] = [_decoded_item(item) for item in reply["Items"]]
    if "Responses" in reply:  # a BatchGetItem's items, by table
        by_table = reply["Responses"]
        reply["Responses"] = {table: [_decoded_item(i) for i in items] for table, items in by_table.items()}


class LeanClient:
    """The requests the adapter sends this way (``put_item``, ``delete_item``, ``update_item``,
    ``get_item``, ``query``, ``scan``, ``batch_get_item``, ``batch_write_item``) with botocore's
    keyword parameters and answers, one keep-alive connection per thread. Thread-safe."""

    def __init__(
        self, client: Any, credentials: Any, *, ca_bundle: str | None = None, user_agent: str = "iii-state"
    ) -> None:
        """:param client: the botocore DynamoDB client whose endpoint, region, timeouts, error
        parser and exception classes this one uses; :param credentials: its credentials object
        (``get_frozen_credentials()`` is called per request), ``None`` when there are none;
        :param ca_bundle: the CA bundle botocore would use (``None``: botocore's default)."""
        self._client = client
        self._credentials = credentials
        self.url = client.meta.endpoint_url
        parts = urllib.parse.urlsplit(self.url)
        self._https = parts.scheme == "https"
        self._hostname = parts.hostname or ""
        self._port = parts.port
        self._host = host_header(parts.scheme, self._hostname, parts.port)
        self._signer = Signer(client.meta.region_name, "dynamodb")
        config = client.meta.config
        self._connect_timeout = config.connect_timeout
        self._read_timeout = config.read_timeout
        self._user_agent = user_agent
        self._context: ssl.SSLContext | None = None
        if self._https:
            self._context = ssl.create_default_context(cafile=ca_bundle or get_cert_path(True))
        self._local = threading.local()
        self._open: set[Connection] = set()
        self._open_lock = threading.Lock()
        self._parser = create_parser("json")

    # -- the operations the adapter sends this way --------------------------------------------
    def put_item(self, **params: Any) -> dict[str, Any]:
        return self.request("PutItem", params)

    def delete_item(self, **params: Any) -> dict[str, Any]:
        return self.request("DeleteItem", params)

    def update_item(self, **params: Any) -> dict[str, Any]:
        return self.request("UpdateItem", params)

    def get_item(self, **params: Any) -> dict[str, Any]:
        return self.request("GetItem", params)

    def query(self, **params: Any) -> dict[str, Any]:
        return self.request("Query", params)

    def scan(self, **params: Any) -> dict[str, Any]:
        return self.request("Scan", params)

    def batch_get_item(self, **params: Any) -> dict[str, Any]:
        return self.request("BatchGetItem", params)

    def batch_write_item(self, **params: Any) -> dict[str, Any]:
        return self.request("BatchWriteItem", params)

    # -- one request ----------------------------------------------------------------------------
    def request(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send one DynamoDB operation; its parsed reply (with ``ResponseMetadata``).

        :raises botocore.exceptions.ClientError: (the client's own subclass) on an error reply.
        :raises botocore.exceptions.BotoCoreError: on no credentials, a connection failure or a
            reply that fails its CRC32, as botocore raises them.
        """
        body = json.dumps(params, separators=(",", ":")).encode()
        headers = self._signer.sign(
            self._frozen(),
            self._host,
            {"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + operation},
            body,
            datetime.datetime.now(datetime.timezone.utc),
        )
        headers["Host"] = self._host
        headers["User-Agent"] = self._user_agent
        status, reply_headers, data = self._exchange(body, headers)
        expected = reply_headers.get("x-amz-crc32")
        actual = zlib.crc32(data) & 0xFFFFFFFF
        if expected is not None and str(actual) != expected.strip():
            raise ChecksumError(checksum_type="crc32", expected_checksum=expected, actual_checksum=actual)
        if status >= 300:
            raise self._error(operation, status, reply_headers, data)
        try:
            reply: dict[str, Any] = json.loads(data) if data else {}
        except ValueError as exc:
            raise ResponseParserError(f"DynamoDB {operation}: a reply that is not JSON ({exc})") from None
        if b'"B' in data:  # only then can it hold blobs (a cheap test on the raw bytes)
            _decode_item_blobs(reply)
        reply["ResponseMetadata"] = {
            "RequestId": reply_headers.get("x-amzn-requestid", ""),
            "HTTPStatusCode": status,
            "HTTPHeaders": reply_headers,
            "RetryAttempts": 0,
        }
        return reply

    def _frozen(self) -> Credentials:
        if self._credentials is None:
            raise NoCredentialsError()
        frozen = self._credentials.get_frozen_credentials()
        if frozen is None or not frozen.access_key or not frozen.secret_key:
            raise NoCredentialsError()
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    def _error(self, operation: str, status: int, headers: dict[str, str], body: bytes) -> Exception:
        """The exception botocore raises for this error reply (its parser, its modelled fields,
        its exception class)."""
        model = self._client.meta.service_model.operation_model(operation)
        response = {
            "status_code": status,
            "headers": headers,
            "body": body,
            "context": {"operation_name": operation},
        }
        parsed = self._parser.parse(response, model.output_shape)
        code = parsed.get("Error", {}).get("Code")
        if code is not None:
            shape = model.service_model.shape_for_error_code(code)
            if shape is not None:
                parsed.update(self._parser.parse(response, shape))
        parsed.setdefault("ResponseMetadata", {})["RetryAttempts"] = 0
        error: Exception = self._client.exceptions.from_code(code)(parsed, operation)
        return error

    # -- connections ----------------------------------------------------------------------------
    def _exchange(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        raw = f"POST / HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1")
        conn = self._connection()
        try:
            status, reply_headers, data, keep = conn.exchange(raw, body)
        except TimeoutError as exc:  # the request was sent, no reply in time
            self._drop(conn)
            raise ReadTimeoutError(endpoint_url=self.url, error=exc) from None
        except (OSError, Lost) as exc:  # sent, maybe applied, no (whole) reply
            self._drop(conn)
            raise ConnectionClosedError(endpoint_url=self.url, error=exc) from None
        if not keep:
            self._drop(conn)
        return status, reply_headers, data

    def _connection(self) -> Connection:
        """This thread's connection: kept alive between requests, checked before reuse (a socket
        that reads as ready while idle was closed by the server), made anew after a fork."""
        held = getattr(self._local, "held", None)
        if held is not None:
            pid, conn = held
            if pid == os.getpid() and not conn.closed_by_peer():
                kept: Connection = conn
                return kept
            if pid == os.getpid():
                self._drop(conn)
        conn = self._connect()
        self._local.held = (os.getpid(), conn)
        with self._open_lock:
            self._open.add(conn)
        return conn

    def _connect(self) -> Connection:
        address = (self._hostname, self._port or (443 if self._https else 80))
        try:
            sock = socket.create_connection(address, timeout=self._connect_timeout)
        except TimeoutError as exc:
            raise ConnectTimeoutError(endpoint_url=self.url, error=exc) from None
        except OSError as exc:
            raise EndpointConnectionError(endpoint_url=self.url, error=exc) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._context is not None:
            try:
                sock = self._context.wrap_socket(sock, server_hostname=self._hostname)
            except TimeoutError as exc:
                sock.close()
                raise ConnectTimeoutError(endpoint_url=self.url, error=exc) from None
            except ssl.SSLError as exc:
                sock.close()
                raise SSLError(endpoint_url=self.url, error=exc) from None
            except OSError as exc:
                sock.close()
                raise EndpointConnectionError(endpoint_url=self.url, error=exc) from None
        sock.settimeout(self._read_timeout)
        return Connection(sock)

    def _drop(self, conn: Connection) -> None:
        conn.close()
        with self._open_lock:
            self._open.discard(conn)
        held = getattr(self._local, "held", None)
        if held is not None and held[1] is conn:
            self._local.held = None

    def close(self) -> None:
        """Close every connection (each thread makes a new one on its next request)."""
        with self._open_lock:
            conns, self._open = self._open, set()
        for conn in conns:
            conn.close()

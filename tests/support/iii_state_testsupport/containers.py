"""Test servers in Docker containers, started through testcontainers.

The images are built on this machine from Debian packages by ``scripts/build-test-images``
(never pulled from a registry); ``$III_STATE_REDIS_IMAGE``, ``$III_STATE_VALKEY_IMAGE``,
``$III_STATE_MEMCACHED_IMAGE`` and ``$III_STATE_DYNAMODB_IMAGE`` name other images instead
(e.g. ``redis:7`` from a registry, which testcontainers then pulls).

testcontainers' reaper (Ryuk) is off (``TESTCONTAINERS_RYUK_DISABLED=true`` unless set): its
image cannot be pulled here. The clean-up is ours: every container carries the labels below and
is removed when its fixture ends, when its start or readiness check fails, at interpreter exit,
and, for containers whose process died without cleaning up, by :func:`remove_orphans`.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib
import importlib.util
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .dynamodb import dynamodb_call
from .environment import ServerStartError
from .ports import LOOPBACK
from .resp import RespError, redis_command

__all__ = [
    "CONTAINER_KINDS",
    "LABEL",
    "THIS_RUN",
    "ContainerInfo",
    "ContainerKind",
    "DockerEngine",
    "docker_engine",
    "image_for",
    "remove_orphans",
    "run_container",
    "unavailable_reason",
]

#: Every container we start has this label (value: this process's run id) and ``LABEL.pid``.
LABEL = "iii-state.testsupport"
_RUN_ID = uuid.uuid4().hex[:12]
#: the label filter of the containers this process starts (other test sessions have their own)
THIS_RUN = f"{LABEL}={_RUN_ID}"
_HOSTNAME = socket.gethostname()
#: ids of containers this process started and has not removed yet
_started: set[str] = set()


def _redis_answers(host: str, port: int) -> bool:
    return redis_command(host, port, "PING", timeout=2.0) == "PONG"


def _memcached_answers(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=2.0) as sock:
        sock.sendall(b"version\r\n")
        return sock.recv(64).startswith(b"VERSION ")


def _dynamodb_answers(host: str, port: int) -> bool:
    status, body = dynamodb_call(f"http://{host}:{port}", "ListTables", timeout=2.0)
    return status == 200 and isinstance(body, dict) and "TableNames" in body


@dataclass(frozen=True)
class ContainerKind:
    """One server kind the container path serves: its image (and how to rename it), its port."""

    name: str
    image_env: str
    default_image: str
    port: int
    scheme: str | None
    answers: Callable[[str, int], bool]


CONTAINER_KINDS: dict[str, ContainerKind] = {
    kind.name: kind
    for kind in (
        ContainerKind(
            "redis", "III_STATE_REDIS_IMAGE", "iii-state-test/redis:bookworm", 6379, "redis", _redis_answers
        ),
        ContainerKind(
            "valkey", "III_STATE_VALKEY_IMAGE", "iii-state-test/valkey:bookworm", 6379, "redis",
            _redis_answers,
        ),
        ContainerKind(
            "memcached", "III_STATE_MEMCACHED_IMAGE", "iii-state-test/memcached:bookworm", 11211, None,
            _memcached_answers,
        ),
        ContainerKind(
            "dynalite", "III_STATE_DYNAMODB_IMAGE", "iii-state-test/dynalite:bookworm", 4567, "http",
            _dynamodb_answers,
        ),
    )
}  # fmt: skip


def image_for(kind: str) -> tuple[str, bool]:
    """``(image, named_by_environment)`` for a server kind."""
    spec = CONTAINER_KINDS[kind]
    given = os.environ.get(spec.image_env, "").strip()
    return (given, True) if given else (spec.default_image, False)


@dataclass(frozen=True)
class ContainerInfo:
    """A server running in a Docker container that testcontainers started."""

    kind: str
    image: str
    host: str
    port: int
    container_id: str
    #: seconds from asking Docker to start it until the server answered
    started_in_s: float

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        scheme = CONTAINER_KINDS[self.kind].scheme
        return f"{scheme}://{self.address}" if scheme else self.address


@dataclass(frozen=True)
class DockerEngine:
    """Whether a Docker engine answers, and the one line that says which (or why not)."""

    answers: bool
    detail: str


def _docker_host() -> str:
    return os.environ.get("DOCKER_HOST", "").strip() or "unix:///var/run/docker.sock"


def _testcontainers_installed() -> bool:
    try:
        return importlib.util.find_spec("testcontainers") is not None
    except (ImportError, ValueError):
        return False


@functools.lru_cache(maxsize=1)
def docker_engine() -> DockerEngine:
    """Ask the engine at ``$DOCKER_HOST`` (default: the local socket) for its version, once per
    process (``docker_engine.cache_clear()`` asks again). Never takes more than ~5 s."""
    where = _docker_host()
    if _testcontainers_installed():
        try:
            docker: Any = importlib.import_module("docker")
            client = docker.from_env(timeout=5)
            try:
                version = client.version().get("Version", "?")
            finally:
                client.close()
        except Exception as exc:  # docker-py raises several unrelated types for "no engine"
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            return DockerEngine(False, f"no Docker engine answers at {where} ({reason})")
        return DockerEngine(True, f"Docker engine {version} at {where}")
    cli = shutil.which("docker")
    if cli is None:
        return DockerEngine(False, f"no Docker engine found (no docker client on PATH, DOCKER_HOST={where})")
    try:
        done = subprocess.run(
            [cli, "version", "--format", "{{.Server.Version}}"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return DockerEngine(False, f"no Docker engine answers at {where} ({exc})")
    if done.returncode != 0:
        return DockerEngine(False, f"no Docker engine answers at {where}")
    return DockerEngine(True, f"Docker engine {done.stdout.strip()} at {where}")


def _client() -> Any:
    docker: Any = importlib.import_module("docker")
    return docker.from_env(timeout=30)


def _image_present(image: str) -> bool:
    client = _client()
    try:
        client.images.get(image)
    except Exception:
        return False
    finally:
        client.close()
    return True


def unavailable_reason(kind: str) -> str | None:
    """None when a container of ``kind`` can be started here, else why not (one line)."""
    engine = docker_engine()
    if not engine.answers:
        return engine.detail
    if not _testcontainers_installed():
        return f"{engine.detail}, but testcontainers is not installed (pip install testcontainers)"
    image, named = image_for(kind)
    if not named and not _image_present(image):
        spec = CONTAINER_KINDS[kind]
        return (
            f"image {image} is not on this machine (build it: bash scripts/build-test-images; "
            f"or name another image in ${spec.image_env})"
        )
    return None


def _labels() -> dict[str, str]:
    return {LABEL: _RUN_ID, f"{LABEL}.pid": str(os.getpid()), f"{LABEL}.host": _HOSTNAME}


def _remove(client: Any, container_id: str) -> None:
    with contextlib.suppress(Exception):
        client.api.remove_container(container_id, force=True, v=True)


@contextlib.contextmanager
def run_container(kind: str, *, timeout: float = 60.0) -> Iterator[ContainerInfo]:
    """A started container of ``kind`` (redis, memcached, dynalite) whose server answers.

    Its port is published on the engine's host, on 127.0.0.1 only when the engine is local.
    The container is removed when the block ends, and also when starting it or waiting for
    its server fails (:class:`ServerStartError` then carries the container's log).
    """
    spec = CONTAINER_KINDS[kind]
    image, _ = image_for(kind)
    _remove_orphans_once()
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    core: Any = importlib.import_module("testcontainers.core.container")
    container: Any = core.DockerContainer(image, labels=_labels())
    local = _docker_host().startswith("unix://")
    container.ports[f"{spec.port}/tcp"] = (LOOPBACK,) if local else None
    started = time.monotonic()
    container_id = ""
    client = _client()
    try:
        try:
            container.start()
            container_id = container.get_container_id()
            _started.add(container_id)
            # A local engine publishes the port on our loopback (asked for above); testcontainers'
            # own guess can be the bridge gateway when it believes it runs inside a container.
            host = LOOPBACK if local else container.get_container_host_ip()
            port = int(container.get_exposed_port(spec.port))
        except Exception as exc:
            raise ServerStartError(f"{kind} container ({image}) did not start: {exc}") from exc
        deadline = started + timeout
        while True:
            try:
                if spec.answers(host, port):
                    break
            except (OSError, RespError, ValueError):
                pass
            if time.monotonic() > deadline:
                logs = bytes(client.api.logs(container_id, tail=40)).decode("utf-8", "replace")
                raise ServerStartError(
                    f"{kind} container ({image}) did not answer on {host}:{port} within {timeout:.0f}s; "
                    f"its log:\n{logs}"
                )
            time.sleep(0.1)
        yield ContainerInfo(kind, image, host, port, container_id, time.monotonic() - started)
    finally:
        if container_id:
            _remove(client, container_id)
            _started.discard(container_id)
        with contextlib.suppress(Exception):
            container.get_docker_client().client.close()
        client.close()


def _ours(filters: dict[str, Any]) -> list[Any]:
    client = _client()
    try:
        return list(client.containers.list(all=True, filters=filters))
    finally:
        client.close()


def remove_this_run() -> int:
    """Remove every container this process started that is still there; how many."""
    if not _started:
        return 0
    removed = 0
    with contextlib.suppress(Exception):
        for container in _ours({"label": THIS_RUN}):
            container.remove(force=True, v=True)
            removed += 1
    _started.clear()
    return removed


def remove_orphans() -> list[str]:
    """Remove containers of ours whose process (on this host) is gone; their short ids."""
    if not _testcontainers_installed() or not docker_engine().answers:
        return []
    removed = []
    for container in _ours({"label": LABEL}):
        labels = container.labels or {}
        pid = labels.get(f"{LABEL}.pid", "")
        if labels.get(f"{LABEL}.host") != _HOSTNAME or not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(Exception):
            container.remove(force=True, v=True)
            removed.append(container.short_id)
    return removed


@functools.lru_cache(maxsize=1)
def _remove_orphans_once() -> None:
    remove_orphans()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


atexit.register(remove_this_run)

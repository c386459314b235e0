"""A Redis Cluster of throw-away ``redis-server`` nodes on loopback, joined with ``redis-cli``."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .environment import ServerStartError, require_binary
from .redis import RedisServer, RedisServerInfo
from .resp import RespError

__all__ = ["RedisCluster", "RedisClusterInfo", "redis_cluster"]


@dataclass(frozen=True)
class RedisClusterInfo:
    nodes: tuple[RedisServerInfo, ...]
    password: str | None

    @property
    def addresses(self) -> tuple[str, ...]:
        """``host:port`` of every node."""
        return tuple(node.address for node in self.nodes)

    @property
    def url(self) -> str:
        """URL of the first node (cluster clients discover the others)."""
        return self.nodes[0].url


class RedisCluster:
    """``primaries`` (+ replicas) ``redis-server --cluster-enabled yes`` nodes,
    joined with ``redis-cli --cluster create ... --cluster-yes``; ``start()``
    returns once ``CLUSTER INFO`` reports ``cluster_state:ok`` on every node."""

    def __init__(
        self,
        primaries: int = 3,
        *,
        replicas_per_primary: int = 0,
        requirepass: str | None = None,
        appendonly: bool = False,
        cluster_node_timeout_ms: int = 5000,
        extra_config: Sequence[str] = (),
        binary: str | None = None,
        cli_binary: str | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        if primaries < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 primaries")
        self.primaries = primaries
        self.replicas_per_primary = replicas_per_primary
        self.requirepass = requirepass
        self._startup_timeout = startup_timeout
        self._binary_arg = binary
        self._cli_arg = cli_binary
        self.nodes: list[RedisServer] = [
            RedisServer(
                cluster=True,
                appendonly=appendonly,
                requirepass=requirepass,
                cluster_node_timeout_ms=cluster_node_timeout_ms,
                extra_config=extra_config,
                binary=binary,
            )
            for _ in range(primaries * (1 + replicas_per_primary))
        ]
        self._created = False

    @property
    def info(self) -> RedisClusterInfo:
        """Facts of all nodes (current pids, also after a node restart)."""
        if not self._created:
            raise RuntimeError("redis cluster has not been started")
        return RedisClusterInfo(nodes=tuple(node.info for node in self.nodes), password=self.requirepass)

    @property
    def url(self) -> str:
        return self.info.url

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.info.addresses

    def start(self) -> RedisClusterInfo:
        """Create the cluster; once created, start nodes that were killed and wait for ok."""
        deadline = time.monotonic() + self._startup_timeout
        if self._created:
            for node in self.nodes:
                node.start()
            self.wait_ok(deadline - time.monotonic())
            return self.info
        require_binary("redis-server", self._binary_arg)
        cli = require_binary("redis-cli", self._cli_arg)
        try:
            for node in self.nodes:
                node.start()
            auth = [] if self.requirepass is None else ["-a", self.requirepass, "--no-auth-warning"]
            command = [
                cli, *auth, "--cluster", "create", *(node.address for node in self.nodes),
                "--cluster-replicas", str(self.replicas_per_primary), "--cluster-yes",
            ]  # fmt: skip
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=max(5.0, deadline - time.monotonic()),
                check=False,
            )
            if done.returncode != 0:
                raise ServerStartError(
                    "redis-cli --cluster create failed:\n"
                    + done.stdout.decode(errors="replace")
                    + done.stderr.decode(errors="replace")
                )
            self.wait_ok(deadline - time.monotonic())
        except BaseException:
            self.stop()
            raise
        self._created = True
        return self.info

    def cluster_info(self, node: RedisServer) -> dict[str, str]:
        reply = node.command("CLUSTER", "INFO")
        text = reply.decode() if isinstance(reply, bytes) else str(reply)
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {key.strip(): value.strip() for key, value in pairs}

    def is_ok(self) -> bool:
        expected_nodes = str(len(self.nodes))
        for node in self.nodes:
            if not node.running:
                return False
            try:
                facts = self.cluster_info(node)
            except (OSError, RespError, ValueError):
                return False
            if (
                facts.get("cluster_state") != "ok"
                or facts.get("cluster_slots_ok") != "16384"
                or facts.get("cluster_known_nodes") != expected_nodes
            ):
                return False
        return True

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every node reports ``cluster_state:ok`` (e.g. after a node restart)."""
        deadline = time.monotonic() + timeout
        while not self.is_ok():
            if time.monotonic() > deadline:
                states = []
                for node in self.nodes:
                    try:
                        states.append(f"{node.address}: {self.cluster_info(node)}")
                    except (OSError, RespError, ValueError, RuntimeError) as exc:
                        states.append(f"{node.address}: {exc!r}")
                raise ServerStartError("redis cluster did not reach cluster_state:ok:\n" + "\n".join(states))
            time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self._created = False

    def __enter__(self) -> RedisCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def redis_cluster(
    primaries: int = 3,
    *,
    replicas_per_primary: int = 0,
    requirepass: str | None = None,
    binary: str | None = None,
    cli_binary: str | None = None,
) -> Iterator[RedisCluster]:
    """A started ``RedisCluster`` (``.info.addresses``, ``.nodes``, ``.wait_ok()``)."""
    cluster = RedisCluster(
        primaries,
        replicas_per_primary=replicas_per_primary,
        requirepass=requirepass,
        binary=binary,
        cli_binary=cli_binary,
    )
    with cluster:
        yield cluster

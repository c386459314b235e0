"""Small helpers shared by the redis adapter's tests."""

from __future__ import annotations

import secrets
from typing import Any

from iii_state_testsupport import RedisServer


def unique(tag: str) -> str:
    return f"iii-redis-test-{tag}-{secrets.token_hex(5)}"


def command_calls(server: RedisServer, command: str) -> int:
    """How often ``server`` ran ``command`` since start or ``CONFIG RESETSTAT`` (INFO commandstats)."""
    reply: Any = server.command("INFO", "commandstats")
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    for line in text.splitlines():
        if line.startswith(f"cmdstat_{command.lower()}:"):
            fields = dict(item.split("=", 1) for item in line.split(":", 1)[1].split(","))
            return int(fields["calls"])
    return 0


def reset_stats(server: RedisServer) -> None:
    server.command("CONFIG", "RESETSTAT")

"""Updates while redis-server is killed and restarted and connections are reset under them.

Every update increments ``n`` and appends its own tag to ``ids``, so the final value says
exactly which updates were applied, and how often. With AOF on (``appendfsync always``):

* no tag appears twice (no write applied twice),
* every acknowledged tag is there (no acknowledged write lost),
* every tag there was acknowledged or reported as an unknown outcome (a plain failure
  really was not applied), so ``acked <= n <= acked + unknown``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from iii_state_testsupport import RedisServer
from redis_helpers import unique
from redis_proxy import tcp_proxy

from iii_state_core import StateError, UnknownOutcomeError, open_store

WORKERS = 3
KEYS = ("a", "b")
CYCLES = 15


class Ledger:
    """What each update's caller was told: acked, unknown or failed, per key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tags: dict[str, dict[str, set[str]]] = {
            key: {"acked": set(), "unknown": set(), "failed": set()} for key in KEYS
        }
        self.errors: Counter[str] = Counter()

    def note(self, key: str, outcome: str, tag: str, error: str = "") -> None:
        with self._lock:
            self.tags[key][outcome].add(tag)
            if error:
                self.errors[error] += 1

    def total(self, outcome: str) -> int:
        return sum(len(per_key[outcome]) for per_key in self.tags.values())


def _worker(store: object, scope: str, me: int, ledger: Ledger, stop: threading.Event) -> None:
    i = 0
    while not stop.is_set():
        key, tag = KEYS[i % len(KEYS)], f"{me}-{i}"
        i += 1
        ops = [{"type": "increment", "path": "n", "by": 1}, {"type": "append", "path": "ids", "value": tag}]
        try:
            store.update(scope, key, ops)  # type: ignore[attr-defined]
        except UnknownOutcomeError:
            ledger.note(key, "unknown", tag)
        except StateError as exc:
            ledger.note(key, "failed", tag, type(exc).__name__)
        else:
            ledger.note(key, "acked", tag)


def test_no_update_is_doubled_or_lost_across_kills_restarts_and_resets(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory(appendonly=True)
    scope = unique("faults")
    ledger, stop = Ledger(), threading.Event()
    pids = {server.pid}
    with tcp_proxy(server.info.host, server.port) as proxy:
        config = {"redis_url": f"redis://{proxy.address}", "socket_timeout": 2.0, "retries": 4}
        with open_store(adapter="redis", adapter_config=config) as store:
            for key in KEYS:
                store.set(scope, key, {"n": 0, "ids": []})
            threads = [
                threading.Thread(target=_worker, args=(store, scope, me, ledger, stop), daemon=True)
                for me in range(WORKERS)
            ]
            for thread in threads:
                thread.start()
            try:
                for cycle in range(CYCLES):
                    time.sleep(0.2)
                    action = cycle % 3
                    if action == 0:
                        server.restart()  # SIGKILL, then start again on the same port and AOF
                        pids.add(server.pid)
                    elif action == 1:
                        proxy.reset_all()  # RST every connection, mid-command or idle
                    else:
                        proxy.drop_next_reply()  # one reply vanishes after Redis ran the command
                time.sleep(0.3)
            finally:
                stop.set()
                for thread in threads:
                    thread.join(60)
            assert not any(t.is_alive() for t in threads), "a worker hung"

    with open_store(adapter="redis", adapter_config={"redis_url": server.url}) as direct:
        for key in KEYS:
            value = direct.get(scope, key)
            tags = ledger.tags[key]
            ids = Counter(value["ids"])
            doubled = [tag for tag, n in ids.items() if n > 1]
            assert not doubled, f"{key}: updates applied twice: {doubled[:5]}"
            lost = tags["acked"] - set(ids)
            assert not lost, f"{key}: acknowledged updates lost: {sorted(lost)[:5]}"
            unexplained = set(ids) - tags["acked"] - tags["unknown"]
            assert not unexplained, f"{key}: updates that failed were applied: {sorted(unexplained)[:5]}"
            assert value["n"] == len(ids)
            assert len(tags["acked"]) <= value["n"] <= len(tags["acked"]) + len(tags["unknown"])

    print({o: ledger.total(o) for o in ("acked", "unknown", "failed")}, dict(ledger.errors))
    assert len(pids) == 1 + CYCLES // 3, "the server was not restarted as planned"
    assert ledger.total("acked") >= 50, f"too few updates got through to test anything: {ledger.errors}"
    if ledger.total("unknown") == 0:
        pytest.fail(f"no unknown outcome was provoked, so the test proved nothing: {ledger.errors}")

"""Expiry events under SIGKILL, on every backend with expiry events (contract § Expiry):
processes that write expiring entries and sweep them are killed at random moments; on a server
backend, meanwhile, connections through the fault proxy are reset and replies cut, and a durable
server is killed and restarted. Afterwards a last store drains what is left.

Checked from the processes' logs (``sweeper``) and the drain:

- none for an entry nobody wrote, each with the value written;
- every delivery of one expiry carries the same ``expiry_id`` (a receiver deduplicating on it sees
  each expiry once), and an expiry is delivered again only after a delivery its sweeper never
  acknowledged (killed between its handlers and ``ack_expired``, or the acknowledgement failed):
  at most one delivery of an expiry is acknowledged (decision 0017). Raw redeliveries are counted;
- where claims are leases (``LEASED``: the sweeper acknowledges after its handlers ran), every
  acknowledged entry's event is delivered, none lost: a claim a kill or a lost reply cut short
  lapses and another sweeper claims it again (counted as redelivered);
- elsewhere, every acknowledged entry's event is delivered, except entries whose claim was lost: a killed
  process had claimed them and not yet handed them to its handler (``take_expired`` deletes, the
  handler runs after it: at most once under SIGKILL), or the reply of the ``take_expired`` that
  claimed them never arrived (a reset, a cut reply, a server kill). Each loss must be explained
  by such a claim in some process's log: a known count (``T n`` with fewer ``D``) or, for a
  claim of unknown size (killed between ``S`` and ``T``, or ``E``), one that ended after the
  entry's earliest deadline. Both are counted;
- no read returns an entry past its deadline, and the drained store holds no expired entry.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iii_state_conformance.processes import running

from . import sweeper
from .backends import BACKENDS
from .outcome import Line, start_kill_run
from .proxy import FaultProxy

PROCESSES = 3
#: The faults the proxy/server injector picks from, per backend. memcached is never restarted:
#: a restart empties it, and every event of what it held is lost by design (docs/limits.md).
FAULTS: dict[str, tuple[str, ...]] = {
    "redis": ("reset", "reset", "cut", "cut", "restart"),
    "dynamodb": ("reset", "reset", "cut", "cut", "restart"),
    "memcached": ("reset", "reset", "cut", "cut"),
}
BACKEND_NAMES = ("kv", *FAULTS)
#: Backends whose ``take_expired`` leases (``ack_expired`` after delivery): no loss is allowed.
LEASED = frozenset({"kv", "redis", "dynamodb", "memcached"})
#: Their lease in this campaign (short, so the drain sees lapsed claims again soon); the quick
#: runs in CI (fewer than 20 kills, small backlogs) use the shorter one: the drain waits a lease.
LEASE_MS = 2000
QUICK_LEASE_MS = 1000
#: The drain waits at least this long, then until no event arrived for QUIET_S and no expired
#: entry is left in the store (at most DRAIN_MAX_S).
QUIET_S = 2.0
DRAIN_MAX_S = 60.0


@dataclass
class _Log:
    """What one sweeper process's log says."""

    begun: dict[str, int] = field(default_factory=dict)  # key -> earliest deadline
    acked: set[str] = field(default_factory=set)
    #: (key, expiry_id, value) of each ``state:expired`` delivered
    delivered: list[tuple[str, str, str]] = field(default_factory=list)
    #: keys of entries whose ``ack_expired`` returned (``A`` lines)
    acknowledged: set[str] = field(default_factory=set)
    #: keys its takes returned (``C`` lines)
    claimed: set[str] = field(default_factory=set)
    read_back: list[str] = field(default_factory=list)
    #: Events of an unfinished sweep a kill lost (``T n`` followed by fewer than ``n`` ``D``).
    open_claims: int = 0
    #: Ends (epoch ms) of claims of unknown size: a ``take_expired`` that raised, or one a kill
    #: interrupted before it returned (its end: the kill).
    unknown_claims: list[float] = field(default_factory=list)
    failed_takes: int = 0
    killed_in_take: bool = False


def _parse(path: Path, killed_at: float) -> _Log:
    log = _Log()
    pending: int | None = 0  # taken but not yet delivered, in the current sweep; None: in a take
    for line in path.read_text().splitlines(keepends=True) if path.exists() else []:
        if not line.endswith("\n"):
            continue
        kind, _, rest = line.rstrip("\n").partition(" ")
        if kind == "B":
            key, _, earliest = rest.partition(" ")
            log.begun[key] = int(earliest)
        elif kind == "W":
            log.acked.add(rest.split(" ")[0])
        elif kind == "S":
            pending = None
        elif kind == "T":
            pending = int(rest)
        elif kind == "C":
            log.claimed.update(rest.split(" "))
        elif kind == "E":
            log.unknown_claims.append(float(rest))
            log.failed_takes += 1
            pending = 0
        elif kind == "D":
            key, expiry_id, value = rest.split(" ", 2)
            log.delivered.append((key, expiry_id, value))
        elif kind == "A":
            log.acknowledged.update(rest.split(" "))
            pending = None if pending is None else pending - 1
        elif kind == "X":
            log.read_back.append(rest)
    if pending is None:
        log.unknown_claims.append(killed_at)
        log.killed_in_take = True
    else:
        log.open_claims = pending
    return log


@dataclass
class _Target:
    """The store the sweepers share, and how to break it."""

    area: str
    description: str
    #: state block for the sweepers (through the proxy on a server backend) and for the drain
    config: dict[str, Any]
    drain_config: dict[str, Any]
    plugins: str
    #: injects one fault picked with the given rng, returns its kind; None: no faults
    fault: Callable[[random.Random], str] | None = None
    #: expired entries left in the store after the drain, counted behind the adapter's back
    #: (given the keys whose events were lost: where counting everything is not possible)
    leftover: Callable[[list[str]], int] | None = None
    #: starts the server again if it died on its own (before the drain)
    revive: Callable[[], object] | None = None


def _state(adapter: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"adapter": {"name": adapter, "config": config}, "expiry_events": True}


@contextlib.contextmanager
def _target(name: str, directory: str, lease_ms: int) -> Iterator[_Target]:
    if name == "kv":

        def kv_rows(_lost: list[str]) -> int:
            raw = sqlite3.connect(f"file:{directory}/state.sqlite3?mode=ro", uri=True)
            try:
                return int(
                    raw.execute("SELECT count(*) FROM entries").fetchone()[0]
                    + raw.execute("SELECT count(*) FROM expired").fetchone()[0]
                )
            finally:
                raw.close()

        config = sweeper.kv_config(directory)
        config["adapter"]["config"]["expiry_lease_ms"] = lease_ms
        yield _Target("kv file store", "one file store on disk", config, config, "kv", None, kv_rows)
        return
    backend = BACKENDS[name]
    server = backend.server()
    server.start()
    try:
        with FaultProxy(server.port) as proxy:
            run_id = f"expiry-{secrets.token_hex(3)}"
            lease = {"expiry_lease_ms": lease_ms} if name in LEASED else {}
            direct = _state(backend.adapter, {**backend.config(f"127.0.0.1:{server.port}", run_id), **lease})
            from iii_state_core import open_store

            open_store(direct).close()  # creates a DynamoDB table before any fault
            kinds = FAULTS[name]

            def fault(rng: random.Random) -> str:
                kind = rng.choice(kinds)
                if kind == "reset":
                    proxy.reset()
                elif kind == "cut":
                    proxy.cut_next_reply(rng.randint(1, 3))
                else:
                    server.kill()
                    time.sleep(rng.uniform(0.1, 0.5))
                    server.start()
                return kind

            leftover = _leftover(name, direct, server.port)

            yield _Target(
                name,
                backend.description
                + ("" if name == "memcached" else "; killed and restarted")
                + ", connections through the fault proxy reset and replies cut",
                _state(backend.adapter, {**backend.config(proxy.address, run_id), **lease}),
                direct,
                backend.adapter,
                fault,
                leftover,
                server.start,
            )
    finally:
        server.stop()


def _leftover(name: str, direct: dict[str, Any], port: int) -> Callable[[list[str]], int]:
    """How many expired entries are still stored after the drain, read past the adapter (which
    hides them): an entry still there was never taken, so its lost event is not a lost claim."""
    from iii_state_core import open_store

    def count(lost: list[str]) -> int:
        if name == "redis":
            import redis

            client = redis.Redis(port=port)
            try:
                return int(client.hlen(f"state:{sweeper.SCOPE}"))
            finally:
                client.close()
        with open_store({**direct, "expiry_events": False}) as store:
            adapter: Any = store.adapter
            if name == "dynamodb":
                reply = adapter._client.scan(  # entries and undelivered stashes (delivered ones have no exp)
                    TableName=adapter.table,
                    Select="COUNT",
                    ConsistentRead=True,
                    FilterExpression="attribute_exists(#e)",
                    ExpressionAttributeNames={"#e": "exp"},
                )
                return int(reply["Count"])
            from iii_state_memcached import records  # memcached: per lost key (no way to list all)

            left = 0
            for key in lost:
                mc_key = adapter._codec.data_key(sweeper.SCOPE, key)
                item = adapter._cluster.node(mc_key).gets(mc_key)[0]
                if item is not None and records.find(item, mc_key, sweeper.SCOPE.encode(), key.encode()):
                    left += 1
            return left

    return count


def _spawn(target: _Target, log: Path, name: str, double: bool, where: str) -> subprocess.Popen[bytes]:
    config = target.config if where == "thread" else {**target.config, "expiry_sweeper": where}
    return subprocess.Popen(
        [sys.executable, "-m", "bench.faults.sweeper", json.dumps(config), str(log), name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
        env={
            **os.environ,
            "III_STATE_PLUGINS": target.plugins,
            "III_FAULTS_EXPIRY_DOUBLE": "1" if double else "0",
        },
    )


def _await_acknowledgement(log: Path, limit_s: float = 20.0) -> None:
    """Wait until the process logging to ``log`` acknowledged a sweep (an ``A`` line), so the
    negative control kills only sweepers that delivered something twice: a kill before their
    first sweep would leave every expiry to the drain, which delivers once, and the control
    would prove nothing (one CI run on a loaded machine did exactly that)."""
    ends = time.monotonic() + limit_s
    while time.monotonic() < ends:
        if log.exists() and any(line.startswith("A ") for line in log.read_text().splitlines()):
            return
        time.sleep(0.05)


def _drain(target: _Target, least_s: float) -> list[tuple[str, str, str]]:
    """Open one more store with expiry events, let it deliver what is left, close it (which
    acknowledges what it delivered)."""
    got: list[tuple[str, str, str]] = []
    with sweeper._open(target.drain_config) as store:
        store.on_change(
            lambda e: got.append((e.key, str(e.expiry_id), json.dumps(e.old_value))),
            scope=sweeper.SCOPE,
            condition=lambda e: e.event_type == "state:expired",
        )
        time.sleep(least_s)
        seen, quiet_since, started = len(got), time.monotonic(), time.monotonic()
        while time.monotonic() - started < DRAIN_MAX_S:
            time.sleep(0.2)
            if len(got) != seen:
                seen, quiet_since = len(got), time.monotonic()
            elif time.monotonic() - quiet_since >= QUIET_S:
                if not _still_stored(target):
                    break
                quiet_since = time.monotonic()  # look again after another quiet spell
        left = store.list_keys(sweeper.SCOPE)
    if left:
        got.append(("<listed after the drain>", "-", json.dumps(left[:5])))
    return got


def _still_stored(target: _Target) -> bool:
    """Whether expired entries are still in the store (counted past the adapter), so the drain
    waits on for them: a server that restarted slowly under load fails the drain's first takes,
    and its sweeper backs off (up to 5 s) before it takes them. memcached cannot be counted
    without the keys (its ``leftover`` needs them): no."""
    if target.leftover is None or target.area == "memcached":
        return False
    try:
        return target.leftover([]) > 0
    except Exception:
        return True  # the server does not answer yet: wait on


def _inject(target: _Target, stop: threading.Event, rng: random.Random, faults: Counter[str]) -> None:
    assert target.fault is not None
    while not stop.wait(rng.uniform(0.3, 1.2)):
        faults[target.fault(rng)] += 1


def _child_of(log: Path) -> int | None:
    """The sweeper process a sweeping writer logged (``P pid``), if any."""
    lines = log.read_text().splitlines() if log.exists() else []
    return next((int(line[2:]) for line in lines if line.startswith("P ")), None)


def run(
    backend: str,
    kills: int,
    seed: int | None = None,
    *,
    double: bool = False,
    expiry_sweeper: str = "thread",
) -> Line:
    """SIGKILL sweeping writers ``kills`` times in all (breaking the server meanwhile), then
    drain and check every expiry.

    :param backend: ``kv`` (file store) or a server backend of ``FAULTS``.
    :param double: a negative control: sweepers deliver each taken entry twice, and the check
        must say so.
    :param expiry_sweeper: ``process``: each writer sweeps with ``expiry_sweeper: process``; half the
        kills SIGKILL its sweeper process first, at a random moment, and every sweeper process
        must end with its writer. Their claims are not logged (made in the child), so a double
        is judged by ``expiry_id`` and by the count of deliveries against the kills.
    """
    leased = backend in LEASED
    if expiry_sweeper != "thread" and not leased:
        raise ValueError(f"{backend}: expiry_sweeper: process needs a store other processes open")
    line = Line(
        backend,
        "",
        "0 expiry events lost (claims are leases) or invented, 0 doubled by expiry_id, a redelivery only "
        "after a delivery never acknowledged (raw redeliveries counted), 0 expired reads"
        if leased
        else "0 expiry events doubled by expiry_id or invented, 0 lost except a claim lost with its process "
        "or its reply, 0 expired reads",
    )
    kill_run = start_kill_run(line, seed, "iii-faults-expiry-")
    rng, logs = kill_run.rng, kill_run.logs
    recorded = line.details["seed"]  # the one drawn when none was given: failures name it
    faults: Counter[str] = Counter()
    killed_at: dict[str, float] = {}
    cycle = 0
    children: list[int] = []
    children_killed = 0
    lease_ms = LEASE_MS if kills >= 20 else QUICK_LEASE_MS
    with _target(backend, kill_run.directory, lease_ms) as target:
        line.area = target.area
        line.what = (
            f"expiry events: processes writing expiring entries and sweeping them SIGKILLed at random "
            f"moments ({PROCESSES} per cycle; {target.description})"
        )
        stop = threading.Event()
        injector = threading.Thread(target=_inject, args=(target, stop, rng, faults), daemon=True)
        if target.fault is not None:
            injector.start()
        try:
            while line.tried < kills:
                cycle += 1
                names = [f"p{cycle}-{i}" for i in range(PROCESSES)]
                procs = [(_spawn(target, logs / f"{n}.log", n, double, expiry_sweeper), n) for n in names]
                for proc, _name in procs:
                    assert proc.stdout is not None
                    proc.stdout.readline()  # "ready" (or EOF if it died)
                for proc, name in sorted(procs, key=lambda _: rng.random()):
                    if double:
                        _await_acknowledgement(logs / f"{name}.log")
                    time.sleep(rng.uniform(0.05, 0.4))
                    child = _child_of(logs / f"{name}.log")
                    if child is not None:
                        children.append(child)
                        if rng.random() < 0.5:  # its sweeper process first: mid-claim, mid-batch
                            os.kill(child, signal.SIGKILL)
                            children_killed += 1
                            time.sleep(rng.uniform(0.05, 0.6))  # long enough for one to be started again
                    proc.send_signal(signal.SIGKILL)
                    killed_at[name] = time.time() * 1000
                    proc.wait(10)
                    line.tried += 1
                    if proc.returncode != -signal.SIGKILL:
                        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                        line.fail(
                            f"cycle {cycle}: {name} exited {proc.returncode} before the kill: {stderr[-300:]}"
                        )
        finally:
            stop.set()
            if injector.is_alive():
                injector.join(30)
        if target.fault is not None and not faults:  # a short run ended before the first fault
            faults[target.fault(rng)] += 1
        if target.revive is not None:
            target.revive()
        drained = _drain(target, (sweeper.MAX_TTL_MS + 1500 + (lease_ms if leased else 0)) / 1000)
        parsed = [_parse(path, killed_at.get(path.stem, math.inf)) for path in sorted(logs.iterdir())]
        delivered = [d for log in parsed for d in log.delivered] + drained
        counts = Counter(key for key, _, _ in delivered)
        # deliveries whose sweeper acknowledged them (the drain closes cleanly: all of its)
        acknowledged = Counter(k for log in parsed for k, _, _ in log.delivered if k in log.acknowledged)
        acknowledged.update(key for key, _, _ in drained)
        ids: dict[str, set[str]] = {}
        for key, expiry_id, _ in delivered:
            ids.setdefault(key, set()).add(expiry_id)
        acked = set().union(*(log.acked for log in parsed))
        lost = sorted(acked - set(counts))
        left = target.leftover(lost) if target.leftover else None
    begun: dict[str, int] = {}
    for log in parsed:
        begun |= log.begun
    for key, n in counts.items():
        if len(ids[key]) > 1:
            line.fail(f"seed {recorded}: the expiry of {key} was delivered under {len(ids[key])} expiry_ids")
        if n > 1 and acknowledged[key] > 1:
            line.fail(
                f"seed {recorded}: the expiry of {key} was delivered {n} times, {acknowledged[key]} of them "
                "acknowledged (a redelivery no kill or failed acknowledgement explains)"
            )
        if key not in begun:
            line.fail(f"seed {recorded}: an expiry event for {key}, which nobody wrote")
    for key, _, value in delivered:
        if key in begun and value != json.dumps(key):
            line.fail(f"seed {recorded}: the expiry of {key} carried {value}, not the value written")
    for log in parsed:
        for key in log.read_back:
            line.fail(f"seed {recorded}: {key} was read back after its deadline")
    redelivered = sum(
        1 for log in parsed for key in log.claimed - {k for k, _, _ in log.delivered} if counts.get(key) == 1
    )
    if leased and lost:
        line.fail(f"seed {recorded}: {len(lost)} expiry events lost although claims are leases: {lost[:5]}")
    unknown_ends = [end for log in parsed for end in log.unknown_claims]
    in_unknown = [key for key in lost if any(end >= begun[key] for end in unknown_ends)]
    counted = len(lost) - len(in_unknown)
    known = sum(log.open_claims for log in parsed)
    if counted > known and not leased:
        unexplained = [key for key in lost if key not in set(in_unknown)]
        line.fail(
            f"seed {recorded}: {len(lost)} expiry events lost, {counted} not inside a claim of unknown "
            f"size and only {known} taken by a sweep a kill interrupted: {unexplained[:5]}"
        )
    if left:
        line.fail(f"seed {recorded}: {left} expired entries left in the store after the drain (never taken)")
    if expiry_sweeper != "thread":
        if not children:
            line.fail(f"seed {recorded}: no sweeping writer logged its sweeper process")
        orphans = [pid for pid in children if running(pid)]
        if orphans:
            line.fail(f"seed {recorded}: sweeper processes {orphans[:5]} outlived their writers")
    at_most_once = {
        "lost (claimed, then the sweeper killed before its handlers)": min(counted, known),
        "lost (inside a claim whose size is unknown: killed mid-take or its reply lost)": len(in_unknown),
    }
    details: dict[str, object] = {
        "entries acknowledged": len(acked),
        "expiry events delivered": len(delivered),
        "delivered again (raw redeliveries: a sweeper killed between handlers and acknowledgement)": sum(
            n - 1 for n in counts.values()
        ),
        "delivered again under another expiry_id (a receiver deduplicating on it would see a double)": sum(
            1 for key_ids in ids.values() if len(key_ids) > 1
        ),
        **({"lost": len(lost)} if leased else at_most_once),
        "claimed by a sweeper that was killed before delivering, delivered once by another": redelivered,
        "takes whose reply was lost": sum(log.failed_takes for log in parsed),
        "sweepers killed inside a take": sum(log.killed_in_take for log in parsed),
        "cycles": cycle,
    }
    if expiry_sweeper != "thread":
        details["sweeper"] = (
            f"expiry_sweeper: {expiry_sweeper} ({children_killed} sweeper processes SIGKILLed before their "
            "writers; claims made there are not logged)"
        )
    if faults:
        details["faults"] = ", ".join(f"{n} {kind}s" for kind, n in sorted(faults.items()))
    return kill_run.finish(line, details)

"""Fuzzing the core's payload decoding and op engine with Hypothesis.

Promise: whatever arrives through ``trigger`` (any function id, any payload shape, wrong types,
non-JSON Python objects, NaN, huge integers, deep nesting), whatever ops ``update`` gets and
whatever bytes a foreign writer left in the backend, the store either answers or raises a
documented error (a ``StateError`` subclass) — never another exception, never a hang — and
what it stores is strict JSON.
"""

from __future__ import annotations

import base64
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import seed as with_seed
from hypothesis import strategies as st
from hypothesis.errors import HypothesisException

from iii_state_core import StateError, StateStore, open_store
from iii_state_core.values import check_value
from iii_state_core.wire import FUNCTIONS

from .outcome import Line

#: One call spending more CPU than this is pathologically slow. Its thread's CPU time, not the
#: wall clock: the in-memory store works in the calling thread, and a starved run (load 10 on
#: two cores) took 5.3 s of wall time for the 100k-ops update that needs well under 1 s of CPU.
SLOW_CPU_S = 2.0
#: One call taking longer than this by the wall clock hangs (waits rather than works).
HANG_S = 60.0


def _slowness(wall_s: float, cpu_s: float) -> str | None:
    """Why a call that took ``wall_s`` (``cpu_s`` of its thread's CPU) counts as a hang, if it does."""
    if cpu_s > SLOW_CPU_S:
        return f"took {cpu_s:.1f} s of CPU"
    if wall_s > HANG_S:
        return f"took {wall_s:.1f} s"
    return None
FIELDS = ("scope", "key", "value", "data", "ops", "cursor", "limit", "expected", "durable")


class _Odd:
    """A Python object that is no JSON at all."""

    def __repr__(self) -> str:
        return "<odd>"


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=4)
    | st.sampled_from(
        [float("nan"), float("inf"), 2**64, -(2**63) - 1, "\ud800", (), (1,), {1}, _Odd(), 1.0, -0.0]
    )
)
NAMES = st.text(max_size=6) | st.sampled_from(["", "a", "n", "log", "__proto__", "a.b", "x" * 300])
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(NAMES | st.integers(0, 3) | st.none(), inner, max_size=4)
        | st.tuples(inner, inner)
    ),
    max_leaves=16,
)
PATHS = st.none() | NAMES | st.lists(NAMES, max_size=40) | st.integers() | VALUES
OP_TYPES = st.sampled_from(
    ["set", "merge", "increment", "decrement", "append", "remove", "bogus", "", None, 1]
)
OPS = (
    st.lists(
        st.fixed_dictionaries(
            {"type": OP_TYPES},
            optional={"path": PATHS, "value": VALUES, "by": st.integers() | st.floats() | VALUES},
        )
        | VALUES,
        max_size=6,
    )
    | VALUES
)
PAYLOADS = (
    st.fixed_dictionaries(
        {},
        optional={
            "scope": NAMES | VALUES,
            "key": NAMES | VALUES,
            "value": VALUES,
            "data": VALUES,
            "ops": OPS,
            "cursor": st.text(max_size=30) | VALUES,
            "limit": st.integers(-5, 2000) | VALUES,
            "expected": VALUES,
            "durable": st.booleans() | VALUES,
        },
    )
    | VALUES
)
FUNCTION_IDS = st.sampled_from([f"state::{f}" for f in FUNCTIONS]) | st.text(max_size=16) | VALUES


def nested(depth: int, leaf: Any = 0) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


def _cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def hostile_requests() -> list[tuple[str, Any]]:
    """Hand-picked requests Hypothesis would rarely build: huge nesting, huge sizes, odd cursors."""
    cases: list[tuple[str, Any]] = []
    for depth in (129, 1000, 50_000):
        deep = nested(depth)
        cases += [
            (
                f"value nested {depth}",
                {"function_id": "state::set", "payload": {"scope": "s", "key": "k", "value": deep}},
            ),
            (
                f"op value nested {depth}",
                {
                    "function_id": "state::update",
                    "payload": {"scope": "s", "key": "k", "ops": [{"type": "merge", "value": {"a": deep}}]},
                },
            ),
            (
                f"expected nested {depth}",
                {
                    "function_id": "state::compare-and-set",
                    "payload": {"scope": "s", "key": "k", "expected": deep, "value": 1},
                },
            ),
            (f"payload nested {depth}", {"function_id": "state::get", "payload": deep}),
            (f"request nested {depth}", deep),
            (
                f"path nested {depth}",
                {
                    "function_id": "state::update",
                    "payload": {
                        "scope": "s",
                        "key": "k",
                        "ops": [{"type": "append", "path": deep, "value": 1}],
                    },
                },
            ),
            (
                f"cursor of JSON nested {depth}",
                {
                    "function_id": "state::list_entries",
                    "payload": {"scope": "s", "cursor": _cursor_of("[" * depth + "]" * depth)},
                },
            ),
            (
                f"cursor of unclosed JSON nested {depth}",
                {
                    "function_id": "state::list_entries",
                    "payload": {"scope": "s", "cursor": _cursor_of("[" * depth)},
                },
            ),
        ]
    cases += [
        ("1 MB key", {"function_id": "state::get", "payload": {"scope": "s", "key": "k" * 1_000_000}}),
        (
            "100k ops",
            {
                "function_id": "state::update",
                "payload": {
                    "scope": "s",
                    "key": "k",
                    "ops": [{"type": "increment", "path": "n", "by": 1}] * 100_000,
                },
            },
        ),
        (
            "path of 100k segments",
            {
                "function_id": "state::update",
                "payload": {
                    "scope": "s",
                    "key": "k",
                    "ops": [{"type": "merge", "path": ["a"] * 100_000, "value": {}}],
                },
            },
        ),
        (
            "limit 10**100",
            {"function_id": "state::list_entries", "payload": {"scope": "s", "limit": 10**100}},
        ),
        (
            "by 10**100",
            {
                "function_id": "state::update",
                "payload": {
                    "scope": "s",
                    "key": "k",
                    "ops": [{"type": "increment", "path": "n", "by": 10**100}],
                },
            },
        ),
        (
            "cursor non-ASCII",
            {"function_id": "state::list_entries", "payload": {"scope": "s", "cursor": "é€😀"}},
        ),
        (
            "cursor 10 MB",
            {"function_id": "state::list_entries", "payload": {"scope": "s", "cursor": "A" * 10_000_000}},
        ),
    ]
    return cases


class Fuzzer:
    """Calls the store and records every answer that breaks the promise."""

    def __init__(self, store: StateStore, line: Line) -> None:
        self.store, self.line = store, line

    def call(self, what: str, fn: Callable[[], Any]) -> Any:
        self.line.tried += 1
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            result = fn()
        except StateError:
            result = None
        except Exception as exc:
            self.line.fail(f"{what}: {type(exc).__name__}: {str(exc)[:160]}")
            return None
        finally:
            slow = _slowness(time.perf_counter() - started, time.thread_time() - cpu)
            if slow:
                self.line.fail(f"{what}: {slow}")
        return result

    def request(self, label: str, request: Any) -> None:
        shown = label or _short(request)
        self.call(f"trigger({shown})", lambda: self.store.trigger(request))

    def stored_values_are_json(self, scope: str) -> None:
        for key in self.store.list_keys(scope):
            check_value(self.store.get(scope, key))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 160 else text[:157] + "..."


def run(examples: int, seed: int | None = None) -> list[Line]:
    """Fuzz payload decoding, the op engine and stored-bytes decoding; ``examples`` per target.

    :param seed: Hypothesis's seed (default: a random one, reported on each line to rerun it).
    """
    seed = random.randrange(2**32) if seed is None else seed
    # set/delete over foreign bytes log a warning each time: expected here, thousands of times
    logging.getLogger("iii_state.operations").setLevel(logging.ERROR)
    lines = []
    store = open_store(adapter="kv", adapter_config={"store_method": "in_memory"})
    opts = settings(
        max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )

    decoding = Line(
        "core",
        "fuzzed trigger() requests (any function id, payload shape, type) plus "
        f"{len(hostile_requests())} hand-picked hostile ones (deep nesting, huge sizes, odd cursors)",
        "only StateError subclasses, no crash, no hang",
    )
    started = time.monotonic()
    fuzzer = Fuzzer(store, decoding)
    for label, request in hostile_requests():
        fuzzer.request(label, request)

    @opts
    @given(st.fixed_dictionaries({"function_id": FUNCTION_IDS}, optional={"payload": PAYLOADS}) | VALUES)
    def requests(request: Any) -> None:
        fuzzer.request("", request)

    _run(requests, seed, decoding)
    decoding.seconds = time.monotonic() - started
    lines.append(decoding)

    engine = Line(
        "core",
        "fuzzed update ops (well-formed and malformed) on fuzzed stored values",
        "only StateError subclasses; the stored result is strict JSON",
    )
    started = time.monotonic()
    fuzzer = Fuzzer(store, engine)
    json_values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NAMES, inner, max_size=4),
        max_leaves=12,
    )

    @opts
    @given(json_values, OPS)
    def updates(start: Any, ops: Any) -> None:
        fuzzer.call("set", lambda: store.set("fuzz", "k", start))
        fuzzer.call(f"update({_short(ops)}) of {_short(start)}", lambda: store.update("fuzz", "k", ops))
        try:
            fuzzer.stored_values_are_json("fuzz")
        except Exception as exc:
            engine.fail(f"after update({_short(ops)}) of {_short(start)}: stored value is not JSON: {exc}")

    _run(updates, seed, engine)
    engine.seconds = time.monotonic() - started
    lines.append(engine)

    stored = Line(
        "core",
        "fuzzed bytes left in the backend by a foreign writer: get/list/list_entries/export, then "
        "update/compare-and-set/set/delete over them",
        "only StateError subclasses (StoredValueError), no crash; every answer agrees with the stored "
        "bytes (a failed call wrote nothing, set/delete always replace)",
    )
    started = time.monotonic()
    fuzzer = Fuzzer(store, stored)
    adapter = store.adapter

    @opts
    @given(
        st.binary(max_size=40)
        | st.text(max_size=20).map(lambda t: t.encode("utf-8", "surrogatepass"))
        | st.sampled_from([b"[" * 100_000, b"\xef\xbb\xbf{}", b"\xff\xfe{\x00}\x00", b"1e999", b"NaN", b"-"])
    )
    def foreign(data: bytes) -> None:
        shown = _short(data)
        adapter.write("foreign", "k", data)
        fuzzer.call(f"get of stored {shown}", lambda: store.get("foreign", "k"))
        fuzzer.call(f"list of stored {shown}", lambda: store.list("foreign"))
        fuzzer.call(f"list_entries of stored {shown}", lambda: store.list_entries("foreign"))
        fuzzer.call(f"export of stored {shown}", lambda: _export_lines(store))
        # a call that fails must not have written; one that answers must have
        for what, call, written in (
            ("update", lambda: store.update("foreign", "k", [{"type": "set", "path": "", "value": 1}]), b"1"),
            ("compare-and-set", lambda: store.compare_and_set("foreign", "k", 1, 2), b"2"),
        ):
            answered = fuzzer.call(f"{what} over stored {shown}", call)
            applied = answered is not None and getattr(answered, "swapped", True)
            after = adapter.read("foreign", "k")
            if after != (written if applied else data):
                stored.fail(f"{what} over stored {shown}: answered {answered!r}, the store holds {after!r}")
            adapter.write("foreign", "k", data)
        if fuzzer.call(f"set over stored {shown}", lambda: store.set("foreign", "k", "new")) is None:
            stored.fail(f"set over stored {shown} failed (set replaces whatever is stored)")
        elif adapter.read("foreign", "k") != b'"new"':
            stored.fail(
                f"set over stored {shown} answered, but the store holds {adapter.read('foreign', 'k')!r}"
            )
        adapter.write("foreign", "k", data)
        fuzzer.call(f"delete of stored {shown}", lambda: store.delete("foreign", "k"))
        if adapter.read("foreign", "k") is not None:
            stored.fail(f"delete of stored {shown}: the entry is still there")

    _run(foreign, seed, stored)
    stored.seconds = time.monotonic() - started
    lines.append(stored)
    store.close()
    lines.append(fuzz_configs(examples, seed, opts))
    return lines


def _export_lines(store: StateStore) -> int:
    """Export the store as JSON Lines; every line must be strict JSON."""
    from iii_state_core.transfer import export_entries
    from iii_state_core.transfer.jsonl import encode_line
    from iii_state_core.values import loads

    count = 0
    for entry in export_entries(store):
        loads(encode_line(entry))
        count += 1
    return count


#: Option names the adapters read, so fuzzed adapter configs reach their type and range checks.
_OPTION_NAMES = st.sampled_from(
    ["store_method", "file_path", "fsync", "busy_timeout_ms", "save_interval_ms", "redis_url",
     "socket_timeout", "connect_timeout", "db", "max_connections", "retries", "cluster", "key_prefix",
     "password", "bogus"]
)  # fmt: skip
_YAML_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(["in_memory", "file_based", "redis://127.0.0.1:1", "${NOPE}", "${X:1}", "0000-01-01"])
)
_YAML_VALUES = st.recursive(
    _YAML_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6) | _OPTION_NAMES, inner, max_size=4)
    ),
    max_leaves=10,
)
_BLOCKS = st.fixed_dictionaries(
    {},
    optional={
        "adapter": st.fixed_dictionaries(
            {},
            optional={
                "name": st.sampled_from(["kv", "redis"]) | _YAML_VALUES,
                "config": st.dictionaries(_OPTION_NAMES, _YAML_VALUES, max_size=4) | _YAML_VALUES,
                "class": _YAML_VALUES,
            },
        )
        | _YAML_VALUES,
        "triggers_enabled": _YAML_VALUES,
        "max_value_bytes": _YAML_VALUES,
        "max_value_depth": _YAML_VALUES,
        "save_interval_ms": _YAML_VALUES,
    },
)
_DOCUMENTS = (
    st.builds(lambda block: {"workers": [{"name": "iii-state", "config": block}]}, _BLOCKS | _YAML_VALUES)
    | st.builds(
        lambda block: {"modules": [{"class": "modules::state::StateModule", "config": block}]}, _BLOCKS
    )
    | st.dictionaries(st.sampled_from(["workers", "modules", "x"]), _YAML_VALUES, max_size=2)
    | _YAML_VALUES
)


def _bomb(levels: int, width: int) -> str:
    lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join([*lines, f"workers: [{{name: iii-state, config: {{bogus: *a{levels}}}}}]", ""])


def hostile_configs() -> list[tuple[str, bytes]]:
    """Hand-picked config files: alias loops and bombs, wrong top-level types, bad encodings."""
    cases = [
        ("self alias", b"workers: &a [*a]\n"),
        ("mapping alias loop", b"workers:\n  - &w {name: iii-state, config: {adapter: *w}}\n"),
        ("workers: 5", b"workers: 5\n"),
        ("modules: 5", b"modules: 5\n"),
        ("not UTF-8", b"workers:\n  - name: iii-state\n    config: {x: \"\xff\"}\n"),
        ("UTF-16", "workers: []\n".encode("utf-16")),
        ("deep flow", b"a: " + b"[" * 20_000 + b"]" * 20_000 + b"\n"),
        ("bad timestamp", b"when: 0000-01-01\n"),
        ("unset variable", b"workers:\n  - name: iii-state\n    config: {max_value_bytes: ${NOPE}}\n"),
        (
            "redis nan timeout",
            b"workers: [{name: iii-state, config: {adapter: {name: redis, config: {socket_timeout: .nan}}}}]",
        ),
    ]  # fmt: skip
    cases += [(f"alias bomb {n}x{w}", _bomb(n, w).encode()) for n, w in ((7, 10), (9, 10), (30, 2))]
    return cases


def fuzz_configs(examples: int, seed: int, opts: Any) -> Line:
    """Config files: hand-picked hostile ones, fuzzed documents, fuzzed bytes and mutated YAML."""
    import os
    import tempfile

    import yaml

    from iii_state_core import ConfigError
    from iii_state_core.config import load_file

    line = Line(
        "core",
        f"config files: {len(hostile_configs())} hand-picked (alias loops and bombs, wrong types, "
        "bad encodings) plus fuzzed documents (wrong types at every level, shared nodes written as "
        "YAML aliases), mutated YAML and random bytes",
        "settings or one ConfigError naming the file, in one line, within 2 s; never another exception",
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fuzz-config-") as directory:
        path = os.path.join(directory, "iii-config.yaml")

        def check(label: str, data: bytes) -> None:
            line.tried += 1
            with open(path, "wb") as f:
                f.write(data)
            began, began_cpu = time.perf_counter(), time.thread_time()
            try:
                settings_ = load_file(path)
                if settings_ is not None and settings_.adapter == "redis":
                    from iii_state_redis import read_settings

                    read_settings(settings_.adapter_config)
            except ConfigError as exc:
                if (path not in str(exc) and "adapter 'redis'" not in str(exc)) or "\n" in str(exc):
                    line.fail(f"{label}: the error does not name the file in one line: {str(exc)[:160]}")
            except StateError:
                pass
            except Exception as exc:
                line.fail(f"{label}: {type(exc).__name__}: {str(exc)[:160]}")
            slow = _slowness(time.perf_counter() - began, time.thread_time() - began_cpu)
            if slow:
                line.fail(f"{label}: {slow}")

        for label, data in hostile_configs():
            check(label, data)

        @opts
        @given(_DOCUMENTS, st.booleans())
        def documents(doc: Any, share: bool) -> None:
            if share and isinstance(doc, dict):
                doc = {**doc, "again": doc.get("workers", doc)}  # a shared node: dumped as an alias
            try:
                text = yaml.safe_dump(doc, allow_unicode=True)
            except yaml.YAMLError:
                return
            check(f"document {_short(doc)}", text.encode("utf-8", "surrogatepass"))

        @opts
        @given(
            _DOCUMENTS.map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode("utf-8", "surrogatepass")),
            st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(
                [b"&a ", b"*a", b"[", b"]", b"{", b"}", b": ", b"\n- ", b"\xff", b"${X}", b"!!binary ", b"? "]
            )), max_size=4),
        )  # fmt: skip
        def mutated(text: bytes, edits: list[tuple[int, bytes]]) -> None:
            for at, piece in edits:
                at %= len(text) + 1
                text = text[:at] + piece + text[at:]
            check(f"mutated YAML {_short(text)}", text)

        @opts
        @given(st.binary(max_size=200))
        def raw_bytes(data: bytes) -> None:
            check(f"bytes {_short(data)}", data)

        for test in (documents, mutated, raw_bytes):
            _run(test, seed, line)
    line.seconds = time.monotonic() - started
    return line


def _run(test: Callable[[], None], seed: int, line: Line) -> None:
    """Run a Hypothesis test; a failure inside it is already on ``line``, anything else is added."""
    line.details["seed"] = seed
    try:
        with_seed(seed)(test)()
    except HypothesisException as exc:
        line.fail(f"Hypothesis could not run: {exc}")
    except Exception as exc:
        line.fail(f"{type(exc).__name__}: {str(exc)[:300]}")

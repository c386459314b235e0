"""Fuzzing the core's payload decoding and op engine with Hypothesis.

Promise: whatever arrives through ``trigger`` (any function id, any payload shape, wrong types,
non-JSON Python objects, NaN, huge integers, deep nesting), whatever ops ``update`` gets and
whatever bytes a foreign writer left in the backend, the store either answers or raises a
documented error (a ``StateError`` subclass) — never another exception, never a hang — and
what it stores is strict JSON.
"""

from __future__ import annotations

import base64
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

#: One call taking longer than this is a hang.
HANG_S = 2.0
FIELDS = ("scope", "key", "value", "data", "ops", "cursor", "limit", "expected_value", "new_value")


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
            "expected_value": VALUES,
            "new_value": VALUES,
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
                f"expected_value nested {depth}",
                {
                    "function_id": "state::compare_and_set",
                    "payload": {"scope": "s", "key": "k", "expected_value": deep, "new_value": 1},
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
        started = time.perf_counter()
        try:
            result = fn()
        except StateError:
            result = None
        except Exception as exc:
            self.line.fail(f"{what}: {type(exc).__name__}: {str(exc)[:160]}")
            return None
        finally:
            took = time.perf_counter() - started
            if took > HANG_S:
                self.line.fail(f"{what}: took {took:.1f} s")
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
        "fuzzed bytes left in the backend by a foreign writer, read through get/list/list_entries",
        "only StateError subclasses (StoredValueError), no crash",
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
        adapter.write("foreign", "k", data)
        fuzzer.call(f"get of stored {_short(data)}", lambda: store.get("foreign", "k"))
        fuzzer.call(f"list of stored {_short(data)}", lambda: store.list("foreign"))
        fuzzer.call(f"list_entries of stored {_short(data)}", lambda: store.list_entries("foreign"))

    _run(foreign, seed, stored)
    stored.seconds = time.monotonic() - started
    lines.append(stored)
    store.close()
    return lines


def _run(test: Callable[[], None], seed: int, line: Line) -> None:
    """Run a Hypothesis test; a failure inside it is already on ``line``, anything else is added."""
    line.details["seed"] = seed
    try:
        with_seed(seed)(test)()
    except HypothesisException as exc:
        line.fail(f"Hypothesis could not run: {exc}")
    except Exception as exc:
        line.fail(f"{type(exc).__name__}: {str(exc)[:300]}")

"""Long runs of the conformance suite's Hypothesis state machine (random set/update/delete/
compare-and-set/list against a dict model) on every adapter whose server can start.

The machine is the suite's own (``iii_state_conformance.suite.model.ModelTests``), only with
more examples: a difference found here is a difference the suite would report.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

from iii_state_core import StateStore, open_store

from .outcome import Line


@contextlib.contextmanager
def _kv_file() -> Iterator[StateStore]:
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="iii-model-kv-")
    try:
        with open_store(
            adapter="kv", adapter_config={"store_method": "file_based", "file_path": folder}
        ) as s:
            yield s
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _kv_memory() -> Iterator[StateStore]:
    with open_store(adapter="kv", adapter_config={"store_method": "in_memory"}) as s:
        yield s


@contextlib.contextmanager
def _redis() -> Iterator[StateStore]:
    from iii_state_testsupport import redis_server

    with redis_server() as server, open_store(adapter="redis", adapter_config={"redis_url": server.url}) as s:
        yield s


@contextlib.contextmanager
def _memcached() -> Iterator[StateStore]:
    from iii_state_testsupport import memcached_server

    with memcached_server() as server:
        config = {"servers": [server.address], "key_prefix": "model:"}
        with open_store(adapter="memcached", adapter_config=config) as s:
            yield s


@contextlib.contextmanager
def _dynamodb() -> Iterator[StateStore]:
    import os

    from iii_state_testsupport import dynalite_server

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "model")
    with dynalite_server() as server:
        config = {"endpoint_url": server.url, "table_name": "model", "create_table": True}
        with open_store(adapter="dynamodb", adapter_config=config) as s:
            yield s


#: name -> (open a store, examples relative to the full count: slow backends run fewer)
STORES: dict[str, tuple[Callable[[], contextlib.AbstractContextManager[StateStore]], float]] = {
    "kv": (_kv_file, 1.0),
    "kv-memory": (_kv_memory, 1.0),
    "redis": (_redis, 1.0),
    "memcached": (_memcached, 1.0),
    "dynamodb": (_dynamodb, 0.2),
}


class _Counting:
    """The store, counting the calls the machine makes."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return attribute(*args, **kwargs)

        return counted


def run(name: str, examples: int) -> Line:
    from iii_state_conformance.suite.model import ModelTests

    opener, share = STORES[name]
    count = max(3, int(examples * share))
    line = Line(
        name,
        f"Hypothesis state machine against the dict model ({count} programs of up to 25 steps)",
        "the store matches the model after every step",
    )
    started = time.monotonic()
    programs = 0

    def make_scope(suffix: str = "") -> str:
        nonlocal programs
        programs += 1
        return f"model-{secrets.token_hex(5)}{suffix}"

    tests = ModelTests()
    tests.model_examples = count
    with opener() as store:
        counting = _Counting(store)
        try:
            tests.test_random_operations_match_a_dict_model(counting, make_scope)
        except Exception as exc:
            notes = "\n".join(getattr(exc, "__notes__", []))
            line.fail(f"{type(exc).__name__}: {str(exc)[:600]}\n{notes[:1500]}")
    line.tried = programs
    line.details["store calls"] = counting.calls
    line.seconds = time.monotonic() - started
    return line

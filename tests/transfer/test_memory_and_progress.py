"""Export memory stays bounded by the page size; progress renders as a bar or as plain lines."""

from __future__ import annotations

import io
import tracemalloc
from typing import Any

from iii_state_core import Adapter, Capabilities, Registry, StateStore, hookimpl, open_store
from iii_state_core.adapter import Page, Token
from iii_state_core.transfer import digest_scope, export_entries, write_jsonl
from iii_state_core.transfer.migration import Progress
from iii_state_core.transfer.progress import ProgressDisplay
from iii_state_core.values import dumps

_VALUE = dumps({"i": 0, "text": "Zoë 🔥", "list": [1.5, None]}).replace(b"0", b"%d", 1)


class _Synthetic(Adapter):
    """A read-only store of ``size`` generated entries in scope "big": it keeps nothing in memory."""

    name = "synthetic"
    capabilities = Capabilities(ordered_listing=True, shared=False)
    size = 0  # not `count`: that is the optional Adapter.count primitive

    def __init__(self, config: Any = None) -> None:
        pass

    def scan(self, scope: str, cursor: str | None, limit: int) -> Page:
        start = int(cursor or 0)
        end = min(start + limit, self.size) if scope == "big" else start
        page = [(f"key-{i:08d}", _VALUE % i) for i in range(start, end)]
        return page, (str(end) if end < self.size else None)

    def list_scopes(self) -> list[str]:
        return ["big"]

    def read(self, scope: str, key: str) -> bytes | None:
        raise NotImplementedError

    def write(self, scope: str, key: str, data: bytes) -> bytes | None:
        raise NotImplementedError

    def remove(self, scope: str, key: str) -> bytes | None:
        raise NotImplementedError

    def write_if(self, scope: str, key: str, data: bytes, token: Token) -> bool:
        raise NotImplementedError


class _Plugin:
    @hookimpl
    def iii_state_register_adapters(self, register: Any) -> None:
        register(_Synthetic)


class _Sink(io.RawIOBase):
    """A binary stream that counts and forgets what it is given."""

    written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.written += len(data)
        return len(data)


def _synthetic(count: int) -> StateStore:
    _Synthetic.size = count
    registry = Registry(extra_plugins=[_Plugin()], load_entry_points=False)
    return open_store(adapter="synthetic", registry=registry)


def _export_peak(count: int) -> tuple[int, int]:
    with _synthetic(count) as store:
        sink = _Sink()
        tracemalloc.start()
        try:
            lines = write_jsonl(export_entries(store, page_size=500), sink)  # type: ignore[arg-type]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert lines == count and sink.written > count * 60
    return peak, sink.written


def test_export_memory_is_bounded_by_the_page_not_the_data() -> None:
    small, _ = _export_peak(10_000)
    large, written = _export_peak(100_000)
    assert written > 6_000_000  # the export itself is larger than the bound below
    assert large < 3 * 1024 * 1024, f"peak {large} bytes while exporting 100,000 entries"
    assert large < small * 1.5 + 256 * 1024, f"peak grew with the data: {small} -> {large}"


def test_verification_memory_is_bounded_on_an_ordered_adapter() -> None:
    with _synthetic(20_000) as store:
        tracemalloc.start()
        try:
            digest = digest_scope(store, "big", page_size=500)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert digest.count == 20_000
    assert peak < 3 * 1024 * 1024, f"peak {peak} bytes while digesting 20,000 entries"


# -- progress -----------------------------------------------------------------------------------


class _Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_give_rate_and_eta_at_the_interval() -> None:
    out, clock = io.StringIO(), _Clock()
    show = ProgressDisplay(out, tty=False, interval=2.0, clock=clock)
    show(Progress("copy", "a:b", 0, 1000))
    clock.now += 1.0
    show(Progress("copy", "a:b", 100, 1000))  # within the interval: not shown
    clock.now += 1.5
    show(Progress("copy", "\n", 500, 1000))
    clock.now += 0.5
    show(Progress("copy", None, 1000, 1000, finished=True))
    lines = out.getvalue().splitlines()
    assert lines == [
        'copy: 0/1000 entries (0.0%), scope "a:b"',
        'copy: 500/1000 entries (50.0%), 200 entries/s, ETA 0:02, scope "\\n"',
        "copy: 1000/1000 entries (100.0%), 333 entries/s, done",
    ]


def test_a_terminal_gets_one_redrawn_bar() -> None:
    out, clock = io.StringIO(), _Clock()
    show = ProgressDisplay(out, tty=True, clock=clock)
    show(Progress("check", "s", 10, None))
    clock.now += 1
    show(Progress("check", None, 2_000, 2_000, finished=True))
    show(Progress("copy", "s", 0, 2_000))
    clock.now += 2
    show(Progress("copy", "s", 1_000, 2_000))
    show.close()
    text = out.getvalue()
    assert "\r" in text and text.endswith("\n")
    last = text.split("\r")[-1]
    assert "[############............] 1,000/2,000" in last
    assert "500 entries/s" in last and "ETA 0:02" in last and '"s"' in last
    assert text.count("\n") == 2  # one finished line per phase

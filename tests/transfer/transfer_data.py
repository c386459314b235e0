"""Test data and helpers shared by the transfer tests (imported by name: ``transfer_data``)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from iii_state_core import StateStore, open_store
from iii_state_core.transfer import Entry

#: 50 scope names that break naive key encodings: empty, separators, glob and percent
#: characters, control characters, emoji, a prefix pair, and one of 1 KiB.
HOSTILE_SCOPES: list[str] = [
    "", "🔥", "a:b", "%", "*", "\n", "x" * 1024, "foo", "foobar", "a/b", "{x}", " ", "state:x",
    "\t", "Zoë", "中文", "a\x00b", "%s", "%%", "?", "[a]", "a*b", "\\", "'", '"', "\r\n",
    "a b", ":", "::", "/", "{}", "}{", "{a}:b", "#", "@", "é", "e\u0301", "\u2028", "𝄞",
    "👨‍👩‍👧", "NULL", "null", "0", "-1", "true", "state::scope", "a.b", "a..b", "~", "ab" * 300,
]  # fmt: skip
assert len(HOSTILE_SCOPES) == 50 and len(set(HOSTILE_SCOPES)) == 50

#: Values whose bytes must survive a round trip exactly: big and negative integers at the
#: engine's limits, floats that look like integers, empty containers, non-ASCII text.
SAMPLE_VALUES: list[Any] = [
    None, True, False, 0, -1, 2**64 - 1, -(2**63), 9007199254740993, 1.0, -0.0, 0.1, 1e300,
    "", "Zoë 🔥 \u2028 \"quoted\" \\ back", [], {}, [[], {}], {"a": {"b": [1, 2.5, None]}},
    {"é": "ü", "": ""}, list(range(20)), "x" * 2000,
]  # fmt: skip


def make_entries(count: int, scopes: list[str] = HOSTILE_SCOPES) -> Iterator[Entry]:
    """``count`` entries spread evenly over ``scopes``, with hostile keys and sample values."""
    for i in range(count):
        scope = scopes[i % len(scopes)]
        # the empty key once per scope at most; then separators, emoji, newlines, digits
        first = "" if i < len(scopes) else f"e{i}"
        key = [first, f"k{i}", f"k:{i}", f"🔑{i}", f"%{i}*", f"k{i}\n", f"{i}" * 3][i % 7]
        value: Any = SAMPLE_VALUES[i % len(SAMPLE_VALUES)]
        if i % 5 == 0:
            value = {"i": i, "v": value, "scope": scope}
        yield Entry(scope, key, value)


def fill(store: StateStore, entries: Iterable[Entry]) -> int:
    count = 0
    for scope, key, value in entries:
        store.set(scope, key, value)
        count += 1
    return count


def raw_entries(
    store: StateStore, scopes: Iterable[str] | None = None, *, repeats: bool = False
) -> dict[tuple[str, str], bytes]:
    """Every entry's stored bytes, read through the adapter's own listing primitive.

    :param repeats: allow a key listed twice (unordered adapters), with the same bytes.
    """
    out: dict[tuple[str, str], bytes] = {}
    for scope in store.adapter.list_scopes() if scopes is None else scopes:
        cursor = None
        while True:
            page, cursor = store.adapter.scan(scope, cursor, 1000)
            for key, raw in page:
                if (scope, key) in out:
                    assert repeats and out[scope, key] == raw, f"{scope!r}/{key!r} listed twice"
                out[scope, key] = raw
            if cursor is None:
                break
    return out


def kv_config_file(directory: Path, name: str) -> Path:
    """An iii-config.yaml for a kv file store under ``directory/name``."""
    path = directory / f"{name}.yaml"
    data = directory / f"{name}-data"
    path.write_text(
        "workers:\n"
        "  - name: iii-state\n"
        "    config:\n"
        "      adapter:\n"
        "        name: kv\n"
        "        config:\n"
        "          store_method: file_based\n"
        f"          file_path: {data}\n",
        encoding="utf-8",
    )
    return path


def kv_store(directory: Path) -> StateStore:
    config = {"store_method": "file_based", "file_path": str(directory)}
    return open_store(adapter="kv", adapter_config=config)


def cli_command() -> list[str]:
    """How to run ``iii-state`` in a subprocess: the venv's script, else through Python."""
    script = Path(sys.executable).with_name("iii-state")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from iii_state_core.cli import main; main()"]

"""Several processes opening a brand-new file store at the same moment all succeed."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

from iii_state_core import open_store


def _open_and_write(directory: str, me: int, barrier: Any) -> None:
    barrier.wait()
    with open_store(adapter="kv", adapter_config={"store_method": "file_based", "file_path": directory}) as s:
        s.set("race", f"w{me}", me)


def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    for round_ in range(5):
        directory = str(tmp_path / f"store-{round_}")
        barrier = ctx.Barrier(6)
        procs = [ctx.Process(target=_open_and_write, args=(directory, me, barrier)) for me in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0] * 6, f"round {round_}: a process failed to open the store"
        with open_store(
            adapter="kv", adapter_config={"store_method": "file_based", "file_path": directory}
        ) as s:
            assert sorted(s.list_keys("race")) == [f"w{me}" for me in range(6)]

"""Every marked Python example of the docs runs as written (docs/reactions.md and others)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from doc_blocks import doc_blocks

BLOCKS = doc_blocks("python")


def test_the_reactions_guide_has_its_examples() -> None:
    assert {n for n in BLOCKS if n.startswith("reactions-")} >= {
        "reactions-event", "reactions-sync", "reactions-async", "reactions-per-object", "reactions-background"
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_doc_example_runs(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, code = BLOCKS[name]
    monkeypatch.chdir(tmp_path)
    for variable in ("III_CONFIG", "III_STATE_PLUGINS"):
        monkeypatch.delenv(variable, raising=False)
    exec(compile(code, f"{path.name}:{name}", "exec"), {"__name__": f"doc_{name.replace('-', '_')}"})
    assert os.getcwd() == str(tmp_path)

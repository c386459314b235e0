"""Every hook is documented once, with its exact signature (datasette's test_docs idea)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from iii_state_core import hookspecs

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugin-hooks.md"


def _hooks() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in vars(hookspecs).items()
        if name.startswith("iii_state_") and callable(fn)
    }


def test_every_hook_is_documented_once_with_its_signature() -> None:
    text = DOC.read_text(encoding="utf-8")
    headings = re.findall(r"^## (iii_state_\w+)\((.*)\)$", text, flags=re.M)
    assert sorted(h for h, _ in headings) == sorted(_hooks()), "docs and hookspecs list different hooks"
    for name, params in headings:
        assert params.replace(" ", "").split(",") == list(_hooks()[name].parameters), name
        assert text.count(f"def {name}(") == 1, f"{name} needs exactly one example implementation"


def test_every_hook_has_a_docstring_and_version() -> None:
    for name in _hooks():
        doc = getattr(hookspecs, name).__doc__ or ""
        assert "versionadded" in doc, name

"""Code blocks of the docs that are run as tests: a ``<!-- doctest: NAME -->`` line right before
a fenced block marks it. The tests run such a block exactly as written."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r"<!-- doctest: ([\w-]+) -->\n```(\w+)\n(.*?)\n```", re.S)


def doc_blocks(language: str) -> dict[str, tuple[Path, str]]:
    """``{name: (file, code)}`` of every marked block in README.md, docs/ and the plugin READMEs."""
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    files += sorted(REPO.glob("plugins/*/README.md"))
    found: dict[str, tuple[Path, str]] = {}
    for path in files:
        for name, lang, code in _BLOCK.findall(path.read_text(encoding="utf-8")):
            if lang == language:
                assert name not in found, f"doctest name {name!r} used twice"
                found[name] = (path, code)
    return found

"""How to install a missing iii-state package, in words that work today.

The packages are not on the package index yet, so a hint names the checkout directory that
works now and the index name that will work once they are published.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

#: Each distribution's folder inside a checkout of iii-state.
CHECKOUT_FOLDERS: Final = {
    "iii-state-core": ".",
    "iii-state-kvfile": "plugins/kvfile",
    "iii-state-redis": "plugins/redis",
    "iii-state-dynamodb": "plugins/dynamodb",
    "iii-state-memcached": "plugins/memcached",
    "iii-state-conformance": "tests/conformance",
}


def _checkout() -> Path | None:
    """The checkout this core was installed from (editable), if it is one."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "plugins").is_dir() and (root / "pyproject.toml").is_file() else None


def install_hint(distribution: str, extra: str = "") -> str:
    """``pip install …`` text for ``distribution`` (with ``extra``, e.g. ``"[worker]"``)."""
    published = _pip(distribution, extra)
    folder = CHECKOUT_FOLDERS.get(distribution)
    if folder is None:
        return f"install it: {published}"
    root = _checkout()
    if root is not None and (root / folder / "pyproject.toml").is_file():
        local = _pip(f"{root}/" if folder == "." else str(root / folder), extra)
        return f"install it from this checkout: {local} (or, once published, {published})"
    here = _pip("./" if folder == "." else f"./{folder}", extra)
    return f"install it: {published} (not on the package index yet; from a checkout of iii-state: {here})"


def _pip(target: str, extra: str) -> str:
    return f"pip install '{target}{extra}'" if extra else f"pip install {target}"

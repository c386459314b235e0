"""Fail when an iii-state distribution in the venv was installed from the index, not this checkout."""

from __future__ import annotations

import sys
from importlib.metadata import distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    bad = []
    for dist in distributions():
        name = dist.metadata["Name"] or ""
        if not name.lower().startswith("iii-state"):
            continue
        direct = dist.read_text("direct_url.json") or ""
        if "editable" not in direct or ROOT.as_uri() not in direct:
            bad.append(f"{name} {dist.version} ({direct or 'from an index'})")
    if bad:
        print("these iii-state packages are not editable installs of this checkout:", *bad, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

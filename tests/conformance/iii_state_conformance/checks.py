"""Comparison helpers of the suite: strict JSON equality with a readable difference."""

from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any


def strict_equal(got: Any, want: Any) -> bool:
    """Exact JSON equality: what was stored is what comes back, to the bit.

    ``1`` is not ``1.0``, ``true`` is not ``1``, ``-0.0`` is not ``0.0``, and strings and
    object keys compare code point by code point (``"é"`` is not ``"e\u0301"``). Key order is
    free. Python's ``==`` (and the core's CAS comparison) is looser on purpose; this is not.
    """
    if isinstance(want, bool) or isinstance(got, bool):
        return type(got) is type(want) and got == want
    if isinstance(want, float) or isinstance(got, float):
        return (
            isinstance(got, float)
            and isinstance(want, float)
            and got == want
            and math.copysign(1.0, got) == math.copysign(1.0, want)
        )
    if isinstance(want, int) or isinstance(got, int):
        return isinstance(got, int) and isinstance(want, int) and got == want
    if isinstance(want, str) or isinstance(got, str):
        return isinstance(got, str) and isinstance(want, str) and got == want
    if isinstance(want, dict) or isinstance(got, dict):
        return (
            isinstance(got, dict)
            and isinstance(want, dict)
            and got.keys() == want.keys()
            and all(strict_equal(got[k], v) for k, v in want.items())
        )
    if isinstance(want, list) or isinstance(got, list):
        return (
            isinstance(got, list)
            and isinstance(want, list)
            and len(got) == len(want)
            and all(strict_equal(g, w) for g, w in zip(got, want, strict=True))
        )
    return got is None and want is None


def shown(value: Any) -> str:
    """A value for a failure message; non-ASCII is escaped so ``é`` and ``e\u0301`` differ."""
    text = json.dumps(value, ensure_ascii=True, sort_keys=True)
    return text if len(text) < 400 else text[:400] + "…"


def load_cases(name: str) -> list[dict[str, Any]]:
    """A data file shipped in ``iii_state_conformance/data``."""
    folder = resources.files("iii_state_conformance").joinpath("data")
    text = folder.joinpath(name).read_text(encoding="utf-8")
    cases: list[dict[str, Any]] = json.loads(text)
    return cases

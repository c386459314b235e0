"""Comparison helpers of the suite: strict JSON equality with a readable difference."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from iii_state_core.values import same_json


def strict_equal(got: Any, want: Any) -> bool:
    """Structural JSON equality: ``1`` is not ``1.0``, ``true`` is not ``1``; key order is free."""
    return same_json(got, want)


def shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) < 400 else text[:400] + "…"


def load_cases(name: str) -> list[dict[str, Any]]:
    """A data file shipped in ``iii_state_conformance/data``."""
    folder = resources.files("iii_state_conformance").joinpath("data")
    text = folder.joinpath(name).read_text(encoding="utf-8")
    cases: list[dict[str, Any]] = json.loads(text)
    return cases

"""The cell checks the A/B smoke tests share (``bench.pages`` and ``bench.worker_ab`` print the
same kinds of cells): figures, ratios with their interval, a noise band. No timing is checked."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable


def check_ab_cells(figures: Iterable[str], intervals: Iterable[str], band: str) -> None:
    """Each figure is a finite positive number (thousands separated by commas); each interval
    cell reads ``ratio [low, high]`` with ``0 < low <= ratio <= high``; the band is ``1 ± n``."""
    for cell in figures:
        value = float(cell.replace(",", ""))
        assert math.isfinite(value) and value > 0, cell
    for cell in intervals:
        shown = re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", cell)
        assert shown is not None, cell
        ratio, low, high = map(float, shown.groups())
        assert 0 < low <= ratio <= high, cell
    assert band.startswith("1 ± "), band

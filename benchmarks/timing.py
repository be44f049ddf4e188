"""Shared by the benchmark scripts: one percentile definition and one way to print a duration."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (p100 = the maximum); NaN for no samples."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def ms(seconds: float, digits: int = 1) -> str:
    """`12.3 ms`; `-` for a missing (NaN) figure."""
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.{digits}f} ms"

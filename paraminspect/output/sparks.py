"""A small histogram as one line of block characters (``stats --hist``)."""

from __future__ import annotations

import math

SPARKS = "▁▂▃▄▅▆▇█"  # eight heights; an empty bin is a space


def sparkline(counts: list[int]) -> str:
    """One character per bin, its height proportional to the count; any non-empty
    bin is at least ``▁`` so a few outliers stay visible."""
    top = max(counts, default=0)
    if top <= 0:
        return " " * len(counts)
    return "".join(" " if n <= 0 else SPARKS[max(0, math.ceil(n * len(SPARKS) / top) - 1)] for n in counts)

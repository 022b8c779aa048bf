"""Drawing ``diff --heatmap``: block characters first, colour only on top.

Each cell is shaded ░ ▒ ▓ █ by its value's quarter of the logarithmic range
from the smallest to the largest positive finite value (changes span decades;
the range spans at least one decade below the largest),
so the picture reads the same without colour (pipes, ``NO_COLOR``); a TTY
additionally gets a colour per shade. ``·`` is exactly 0 (unchanged), a cross a
tensor whose values were not compared, ``!`` NaN or infinity, blank no tensor.
"""

from __future__ import annotations

import math

from paraminspect.output.render import Colours, safe_text, summary_line
from paraminspect.output.report import Heatmap, Verdict

SHADES = "░▒▓█"
SHADE_COLOURS = ("34", "36", "33", "31")  # blue, cyan, yellow, red
UNCHANGED, NOT_COMPARED, NOT_FINITE = "·", "×", "!"
TITLES = {"rel_l2": "relative L2 change ||B-A||/||A||"}


# The scale spans at least this factor below the largest value: values that
# differ by rounding only (0.0100001 and 0.0099999) must not get four shades.
MIN_SPAN = 10.0


def _range(values: list[float]) -> tuple[float, float] | None:
    positive = [v for v in values if math.isfinite(v) and v > 0]
    if not positive:
        return None
    hi = max(positive)
    return min(*positive, hi / MIN_SPAN), hi


def _level(value: float, span: tuple[float, float]) -> int:
    lo, hi = span
    return min(len(SHADES) - 1, int(len(SHADES) * math.log(value / lo) / math.log(hi / lo)))


def _cell(value: float | None, absent: bool, span: tuple[float, float] | None, width: int, colours: Colours) -> str:
    if value is None:
        return " " * width if absent else NOT_COMPARED.center(width)
    if not math.isfinite(value):
        return NOT_FINITE.center(width)
    if value <= 0 or span is None:
        return UNCHANGED.center(width)
    level = _level(value, span)
    return colours.wrap(SHADE_COLOURS[level], SHADES[level] * width)


def _legend(span: tuple[float, float] | None, colours: Colours) -> list[str]:
    marks = f"{UNCHANGED} unchanged  {NOT_COMPARED} not compared  {NOT_FINITE} nan/inf"
    if span is None:
        return [f"legend: {marks}"]
    lo, hi = span
    edges = [lo * (hi / lo) ** (k / len(SHADES)) for k in range(len(SHADES) + 1)]
    parts = [
        f"{colours.wrap(SHADE_COLOURS[k], SHADES[k])} {edges[k]:.3g}-{edges[k + 1]:.3g}" for k in range(len(SHADES))
    ]
    return [f"legend: {'  '.join(parts)}", f"        {marks}"]


def format_verdict(verdict: Verdict, colours: Colours) -> str:
    """A diff verdict with a picture: the heatmap, then the counts line."""
    assert verdict.picture is not None
    return draw(verdict.picture, colours) + "\n" + summary_line(verdict)


def draw(picture: Heatmap, colours: Colours) -> str:
    """The heatmap as lines of text: a header of column labels, one line per layer,
    one per other prefix (its value also written out), and the legend."""
    values = [v for _, row in picture.rows for v in row if v is not None]
    values += [v for _, v in picture.other if v is not None]
    span = _range(values)
    labels = [safe_text(c) for c in picture.columns]
    widths = [max(2, len(label)) for label in labels]
    names = [safe_text(label) for label, _ in picture.rows]
    left = max([5, *(len(n) for n in names)])
    out = [f"{TITLES.get(picture.measure, picture.measure)}, per layer and module"]
    if picture.rows:
        out.append(" ".join(["layer".ljust(left), *(label.ljust(w) for label, w in zip(labels, widths, strict=True))]))
        for name, (_, row), absent in zip(names, picture.rows, picture.absent, strict=True):
            cells = [_cell(v, gap, span, w, colours) for v, gap, w in zip(row, absent, widths, strict=True)]
            out.append(" ".join([name.rjust(left), *cells]))
    if picture.other:
        out.append("")
        others = [safe_text(prefix) for prefix, _ in picture.other]
        width = max(len(p) for p in others)
        for prefix, (_, value) in zip(others, picture.other, strict=True):
            number = "" if value is None else f"{value:.3g}"
            out.append(f"{prefix.ljust(width)} {_cell(value, False, span, 2, colours)} {number}")
    out.append("")
    out.extend(_legend(span, colours))
    return "\n".join(line.rstrip() for line in out) + "\n"

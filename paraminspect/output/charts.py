"""Histograms as pictures: a sparkline per ``stats --hist`` row, and ``hist``'s bar chart.

Both are plain Unicode block characters, so they read the same without colour
(NO_COLOR, pipes); colour only tints the bars on a terminal.
"""

from __future__ import annotations

import io
import math
from typing import Any

from paraminspect.output.colours import Colours
from paraminspect.output.jsondoc import json_document
from paraminspect.output.outputformat import OutputFormat, refuse_sarif
from paraminspect.output.report import HistReport
from paraminspect.output.text import human_count, safe_text

EIGHTHS = " ▏▎▍▌▋▊▉"  # the partial end of a bar, in eighths of a character
BAR_WIDTH = 40


def bar(count: int, top: int, *, log: bool = False, width: int = BAR_WIDTH) -> str:
    """A horizontal bar of ``count`` against the largest ``top`` (log: on log(1 + count))."""
    if count <= 0 or top <= 0:
        return ""
    share = math.log1p(count) / math.log1p(top) if log else count / top
    eighths = max(1, round(share * width * 8))
    whole, part = divmod(eighths, 8)
    return "█" * whole + (EIGHTHS[part] if part else "")


def _edge(value: float) -> str:
    return f"{value:.6g}"


def format_hist(report: HistReport, fmt: OutputFormat, colours: Colours) -> str:
    """``hist``: a bar chart per bin (table), bins as rows (CSV, markdown), edges and counts (JSON)."""
    refuse_sarif(fmt)
    doc = report.document
    if fmt is OutputFormat.json:
        return json_document(doc)
    edges, counts = doc["edges"], doc["counts"]
    bins = [(edges[i], edges[i + 1], n, i == len(counts) - 1) for i, n in enumerate(counts)]
    if fmt is OutputFormat.csv:
        buffer = io.StringIO()
        import csv  # only for csv output: not on every command's start-up

        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["lo", "hi", "count"])
        writer.writerows([repr(lo), repr(hi), n] for lo, hi, n, _ in bins)
        return buffer.getvalue()
    labels = [f"[{_edge(lo)}, {_edge(hi)}{']' if last else ')'}" for lo, hi, _, last in bins]
    numbers = [f"{n:,}" for _, _, n, _ in bins]
    if fmt is OutputFormat.markdown:
        lines = ["| bin | count |", "|---|---:|", *(f"| {a} | {b} |" for a, b in zip(labels, numbers, strict=True))]
        return "\n".join(lines) + "\n" + _notes(doc)
    head = colours.bold(safe_text(doc["name"])) + "  " + colours.dim(_summary(doc, report.log))
    label_width = max((len(text) for text in labels), default=0)
    number_width = max((len(text) for text in numbers), default=0)
    top = max(counts, default=0)
    rows = []
    for label, number, (_, _, n, _) in zip(labels, numbers, bins, strict=True):
        drawn = colours.cyan(bar(n, top, log=report.log))
        rows.append(f"{label.ljust(label_width)}  {number.rjust(number_width)}  {drawn}".rstrip())
    return "\n".join([head, *rows]) + "\n" + _notes(doc)


def _summary(doc: dict[str, Any], log: bool) -> str:
    shape = "[" + ", ".join(map(str, doc["shape"])) + "]"
    text = f"{doc['dtype']} {shape}, {len(doc['counts'])} bins, {human_count(sum(doc['counts']))} values"
    return text + (", log scale" if log else "")


def _notes(doc: dict[str, Any]) -> str:
    """What the bins leave out: values outside --range, NaN/Inf."""
    parts = []
    if doc["below"]:
        parts.append(f"{doc['below']:,} below the range")
    if doc["above"]:
        parts.append(f"{doc['above']:,} above it")
    if doc["nonfinite"]:
        parts.append(f"{doc['nonfinite']:,} NaN/Inf left out")
    if not doc["counts"]:
        parts.append("no finite values")
    return "".join(f"({safe_text(p)})\n" for p in parts)

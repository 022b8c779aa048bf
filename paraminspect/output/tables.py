"""Tables in every format: aligned text, markdown, CSV and JSON; verdicts' summary lines."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from paraminspect.inttext import safe_str
from paraminspect.output.jsondoc import json_document
from paraminspect.output.outputformat import OutputFormat, refuse_sarif
from paraminspect.output.sparks import sparkline
from paraminspect.output.tabular import Column, Kind, MetaValue, Table
from paraminspect.output.text import human_bytes, human_count, meta_text, safe_text, shape_text

if TYPE_CHECKING:  # verdicts are built by diff and check only: their types are not loaded for a table
    from paraminspect.output.report import Finding, Verdict


def _cell(column: Column, value: Any, *, human: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, MetaValue):
        return meta_text(value, short=human)
    if column.kind is Kind.SPARK:
        return sparkline(value["counts"]) if human else " ".join(str(n) for n in value["counts"])
    if column.kind is Kind.NAME:
        return safe_text(str(value))
    if column.kind is Kind.SHAPE:
        return shape_text(value)
    if column.kind is Kind.COUNT and human and isinstance(value, int):
        return human_count(value)
    if column.kind is Kind.BYTES and human and isinstance(value, int):
        return human_bytes(value)
    if isinstance(value, float):
        return f"{value:.6g}" if human else repr(value)  # CSV keeps exact numbers
    return safe_text(safe_str(value))


# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """Neutralise a text cell a spreadsheet would run as a formula, as OWASP advises:
    prefix a single quote (``=HYPERLINK(...)`` is written ``'=HYPERLINK(...)``)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _csv_cell(column: Column, value: Any) -> str:
    """A CSV cell: exact numbers as they are, every text cell escaped and made spreadsheet-safe."""
    text = _cell(column, value, human=False)
    return text if isinstance(value, int | float) and not isinstance(value, bool) else spreadsheet_safe(text)


def _numeric(column: Column) -> bool:
    return column.kind in (Kind.COUNT, Kind.BYTES, Kind.NUMBER)


def format_table(table: Table, fmt: OutputFormat) -> str:
    refuse_sarif(fmt)  # a table has no findings; verdicts and scans bring their own
    if fmt is OutputFormat.json:
        return json_document(table.document)
    if fmt is OutputFormat.csv:
        buffer = io.StringIO()
        import csv  # only for csv output: not on every command's start-up

        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([c.key for c in table.columns])
        for row in table.rows:
            writer.writerow([_csv_cell(c, row.get(c.key)) for c in table.columns])
        return buffer.getvalue()
    columns = [c for c in table.columns if not c.optional or any(row.get(c.key) for row in table.rows)]
    body = [[_cell(c, row.get(c.key), human=True) for c in columns] for row in table.rows]
    if table.total is not None:
        body.append([_cell(c, table.total.get(c.key), human=True) for c in columns])
    right = [_numeric(c) for c in columns]
    headers = [c.title for c in columns]
    if fmt is OutputFormat.markdown:
        return "\n".join(_markdown_lines(headers, body, right)) + "\n"
    lines = _aligned_lines(headers, body, right)
    if table.total is not None and body:
        lines.insert(len(lines) - 1, lines[1])  # a rule above the total row
    return "\n".join(lines) + "\n"


# Columns are padded to at most this width: a longer cell (a 100 MB tensor name)
# sticks out of its own row instead of padding every other row to its length.
MAX_COLUMN_WIDTH = 120


def _widths(headers: list[str], body: list[list[str]]) -> list[int]:
    # Two spare columns beside each title keep narrow number columns readable.
    widths = [max([len(h) + 2, *(len(row[i]) for row in body)]) for i, h in enumerate(headers)]
    return [min(w, max(MAX_COLUMN_WIDTH, len(h) + 2)) for w, h in zip(widths, headers, strict=True)]


def _pad(cells: list[str], widths: list[int], right: list[bool]) -> list[str]:
    return [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]


def _aligned_lines(headers: list[str], body: list[list[str]], right: list[bool]) -> list[str]:
    """Columns two spaces apart under a dashed rule; numbers right-aligned."""
    widths = _widths(headers, body)
    rows = [headers, ["-" * w for w in widths], *body]
    return ["  ".join(_pad(row, widths, right)).rstrip() for row in rows]


def _markdown_lines(headers: list[str], body: list[list[str]], right: list[bool]) -> list[str]:
    """A GitHub table; ``|`` inside a cell is escaped so names cannot break the layout."""
    body = [[cell.replace("|", "\\|") for cell in row] for row in body]
    widths = _widths(headers, body)
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return [
        "| " + " | ".join(_pad(headers, widths, right)) + " |",
        rule,
        *("| " + " | ".join(_pad(row, widths, right)) + " |" for row in body),
    ]


def format_lines(lines: list[str]) -> str:
    """Lines of text after a table (``scan --explain``), escaped, after a blank line."""
    return "\n" + "".join(safe_text(line) + "\n" for line in lines) if lines else ""


def format_verdict(verdict: Verdict, fmt: OutputFormat) -> str:
    """JSON/CSV as for any table; a table or markdown listing gets a summary line of counts; SARIF the findings."""
    if fmt is OutputFormat.sarif:
        return format_findings(verdict.findings)
    if fmt in (OutputFormat.json, OutputFormat.csv):
        return format_table(verdict.table, fmt)
    summary = summary_line(verdict)
    if not verdict.table.rows:
        return summary
    return format_table(verdict.table, fmt) + "\n" + summary


def summary_line(verdict: Verdict) -> str:
    """The counts line that ends a verdict's table (``0 only in A, ..., 3 equal``)."""
    return ", ".join(f"{human_count(n)} {label}" for label, n in verdict.counts) + "\n"


def format_findings(findings: list[Finding], *, complete: bool = True) -> str:
    """A SARIF 2.1.0 log of ``findings`` (sarif.py)."""
    from paraminspect.output import sarif

    return json_document(sarif.log(findings, complete=complete))

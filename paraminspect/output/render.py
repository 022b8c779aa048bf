"""The only module that formats output: tables, trees, JSON, CSV, markdown.

Commands hand over :mod:`paraminspect.output.report` objects holding exact data;
this module picks human units for tables, exact numbers for JSON and CSV,
escapes control characters in names, and colours only a TTY without NO_COLOR.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from enum import Enum
from typing import Any, TextIO

from paraminspect.errors import UsageError
from paraminspect.inttext import fits, int_text, safe_str
from paraminspect.output.report import (
    Column,
    Finding,
    Kind,
    MetaValue,
    ModuleReport,
    Table,
    TreeLine,
    TreeReport,
    ValueEntry,
    ValuesReport,
    Verdict,
    plural,
)


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"
    sarif = "sarif"  # findings only: scan, check and diff (FINDING_COMMANDS)


# The commands whose output is findings, the only ones that can write SARIF.
FINDING_COMMANDS = ("scan", "check", "diff")
NO_SARIF = "--format sarif is for commands that report findings (scan, check, diff)"


def refuse_sarif(fmt: OutputFormat) -> None:
    """Fail clearly when a command without findings is asked for SARIF."""
    if fmt is OutputFormat.sarif:
        raise UsageError(NO_SARIF)


def format_findings(findings: list[Finding], *, complete: bool = True) -> str:
    """A SARIF 2.1.0 log of ``findings`` (sarif.py)."""
    from paraminspect.output import sarif

    return json.dumps(_json_safe(sarif.log(findings, complete=complete)), indent=2, allow_nan=False) + "\n"


def safe_text(text: str) -> str:
    r"""Escape control characters (ANSI escapes, newlines) so names print as data.

    The backslash is escaped too (``\\``), so the escaping can be undone: a real
    ESC prints as ``\x1b`` and the four characters ``\x1b`` as ``\\x1b``; one
    name cannot pass for another.
    """
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_escape_char(ch) for ch in text)


def _escape_char(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    return ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")


def message_text(text: str) -> str:
    """Escape control characters in a message for stderr; backslashes stay as they
    are, because the names inside messages are quoted with ``repr`` (which escapes them)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def human_count(n: int) -> str:
    if abs(n) < 10_000:
        return f"{n:,}" if abs(n) >= 1000 else str(n)
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value:.1f} EiB"


def shape_text(shape: list[int] | None) -> str:
    return "" if shape is None else "[" + ", ".join(map(str, shape)) + "]"


def _lazy_list(value: Any) -> bool:
    """A sequence its reader decodes on demand (a GGUF string array): shown as a list."""
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | list | tuple)


def _json_safe(value: Any) -> Any:
    """JSON has no NaN/Inf: write them as the strings the design fixes."""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {safe_str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple) or _lazy_list(value):
        return [_json_safe(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return value if fits(value) else int_text(value)  # past 4,300 digits: a string (inttext.py)
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    return safe_str(value)


SHORT_VALUE_CHARS = 80  # a value in a tree line is cut to this many characters
SHORT_SEQUENCE_ITEMS = 8  # longer lists and tuples are summarised there (``[624 ints]``)


def value_text(value: Any, *, short: bool = False) -> str:
    """A non-tensor leaf as one line of text, laid out like ``str()``, escaped.

    Strings are shown with ``repr`` (quotes, control characters and backslashes
    escaped); other leaves with :func:`safe_text`. ``short`` (trees) summarises
    long lists and tuples by count and kind and cuts the line at
    :data:`SHORT_VALUE_CHARS` with ``…``; JSON, CSV and ``get`` show values whole.
    """
    text = _value_repr(value, short)
    if short and len(text) > SHORT_VALUE_CHARS:
        text = text[: SHORT_VALUE_CHARS - 1] + "…"
    return text


def _value_repr(value: Any, short: bool) -> str:
    # Recursion is bounded: model.check_value refuses leaves nested past 100 levels.
    if isinstance(value, str):
        return repr(value)
    if type(value) in (list, tuple):
        open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
        if short and len(value) > SHORT_SEQUENCE_ITEMS:
            return f"{open_}{len(value)} {_item_kind(value)}{close}"
        inner = ", ".join(_value_repr(v, short) for v in value)
        return f"{open_}{inner}{',' if len(value) == 1 and close == ')' else ''}{close}"
    if type(value) is dict:
        if short and len(value) > SHORT_SEQUENCE_ITEMS:
            return f"{{{len(value)} items}}"
        return "{" + ", ".join(f"{_value_repr(k, short)}: {_value_repr(v, short)}" for k, v in value.items()) + "}"
    return safe_text(safe_str(value))


def _item_kind(items: list[Any] | tuple[Any, ...]) -> str:
    kinds = {bool if isinstance(v, bool) else type(v) for v in items}
    names = {int: "ints", float: "floats", str: "strings", bool: "bools"}
    return names.get(kinds.pop(), "items") if len(kinds) == 1 else "items"


META_CHARS = 80  # a metadata value longer than this is summarised in a table
META_ITEMS = 5  # items of a long list (keys of a long mapping) a table shows
META_ITEM_CHARS = 24  # each shown item is cut to this many characters


def meta_text(item: MetaValue, *, short: bool) -> str:
    r"""A file-metadata value as one escaped line. ``short`` (tables, markdown): a long
    string is cut with ``…`` and its length, a long list shows its type, length and
    first items (``[STRING] \u00d7 151000: '!', '"', …``); otherwise (CSV) the whole value,
    strings as they are and containers as JSON."""
    value = item.value
    if not short:
        if isinstance(value, str):
            return safe_text(value)
        plain = isinstance(value, list | tuple | dict | int | float | bool) or value is None or _lazy_list(value)
        if not plain:
            return safe_text(safe_str(value))  # a placeholder object: its text, as JSON shows it
        return safe_text(json.dumps(_json_safe(value), ensure_ascii=False, allow_nan=False))
    if isinstance(value, str):
        if len(value) <= META_CHARS:
            return safe_text(value)
        return f"{safe_text(value[: META_CHARS - 20])}… ({len(value):,} chars)"
    if type(value) in (list, tuple, dict) or _lazy_list(value):
        if len(value) <= META_ITEMS:  # never the whole text of a long list just to measure it
            whole = value_text(list(value) if _lazy_list(value) else value)
            if len(whole) <= META_CHARS:
                return whole
        shown = list(value)[:META_ITEMS] if isinstance(value, dict) else list(value[:META_ITEMS])
        items = ", ".join(_short_item(v) for v in shown) + (", …" if len(value) > len(shown) else "")
        return f"{safe_text(item.type)} × {len(value)}: {items}"
    return value_text(value, short=True)


def _short_item(value: Any) -> str:
    text = value_text(value, short=True)
    return text if len(text) <= META_ITEM_CHARS else text[: META_ITEM_CHARS - 1] + "…"


class Colours:
    """ANSI styling, switched off unless writing to a TTY with NO_COLOR unset."""

    def __init__(self, stream: TextIO) -> None:
        self.enabled = stream.isatty() and not os.environ.get("NO_COLOR")

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.enabled and text else text

    def wrap(self, code: str, text: str) -> str:
        """``text`` in the SGR style ``code`` (``"31"``: red), when colour is on."""
        return self._wrap(code, text)

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def cyan(self, text: str) -> str:
        return self._wrap("36", text)


def _cell(column: Column, value: Any, *, human: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, MetaValue):
        return meta_text(value, short=human)
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
        return json.dumps(_json_safe(table.document), indent=2, allow_nan=False) + "\n"
    if fmt is OutputFormat.csv:
        import csv  # only for csv output: not on every command's start-up

        buffer = io.StringIO()
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


def _tree_detail(info: dict[str, Any], colours: Colours) -> str:
    kind = info["kind"]
    if kind == "tensor":
        text = f"{info['dtype']} {shape_text(info['shape'])}"
        if info.get("scheme"):
            text += f"  ({info['scheme']}, {round(info['bits_per_weight'], 2):g} bpw)"
        if info.get("tied_to"):
            text += f"  (tied to {safe_text(info['tied_to'])})"
        return colours.dim(text)
    parts = []
    if kind == "value":
        parts.append(f"= {value_text(info['value'], short=True)}")
    elif kind == "object":
        parts.append(colours.cyan(f"<object {safe_text(info['type'])}>"))
    if info.get("tensors"):
        summary = f"{_params(info['params'])}, {human_bytes(info['bytes'])}"
        if info.get("folded"):
            summary += f", {plural(info['tensors'], 'tensor')} folded"
        parts.append(colours.dim(f"({summary})"))
    return "  ".join(parts)


def format_tree(report: TreeReport, fmt: OutputFormat, colours: Colours) -> str:
    if fmt is not OutputFormat.table:
        return format_table(report.table, fmt)
    title = report.title
    out = [
        colours.bold(safe_text(title["file"]))
        + f"  ({title['format']}: {plural(title['tensors'], 'tensor')}, "
        + f"{_params(title['params'])}, {human_bytes(title['bytes'])})"
    ]
    for line in report.lines:
        out.append(
            _tree_prefix(line) + colours.bold(safe_text(line.info["name"])) + "  " + _tree_detail(line.info, colours)
        )
    return "\n".join(s.rstrip() for s in out) + "\n"


def _params(n: int) -> str:
    return f"{human_count(n)} {'param' if n == 1 else 'params'}"


def _tree_prefix(line: TreeLine) -> str:
    *ancestors, last = line.last_flags
    return "".join("    " if done else "│   " for done in ancestors) + ("└── " if last else "├── ")


def write(text: str, stream: TextIO | None = None) -> None:
    """Send rendered output to stdout (or ``stream``)."""
    (stream or sys.stdout).write(text)


def write_message(text: str) -> None:
    """Messages and warnings go to stderr, never mixed with data."""
    sys.stderr.write(message_text(text) + "\n")


def format_values(report: ValuesReport, fmt: OutputFormat, colours: Colours) -> Iterator[str]:
    """``get``: torch-style text per entry (table), exact nested lists (JSON), one row per element (CSV).

    Yields the output piece by piece: JSON and CSV stream every value of
    tensors of any size in bounded memory.
    """
    refuse_sarif(fmt)
    if fmt is OutputFormat.json:
        yield from _values_json(report)
        return
    if fmt is OutputFormat.csv:
        yield from _values_csv(report)
        return
    from paraminspect.output import printing

    for number, entry in enumerate(report.entries):
        if entry.dtype is not None and entry.array is None and entry.chunks is not None:
            yield from _full_text_entry(report, entry, fmt, colours, number)
            continue
        if entry.dtype is None:
            detail = safe_text(str(entry.type_name))
            body = value_text(entry.value)
        else:
            detail = f"{entry.dtype} {shape_text(entry.shape)}"
            if entry.tied_to:
                detail += f"  (tied to {safe_text(entry.tied_to)})"
            body = printing.tensor_text(entry.array, entry.dtype, report.options, entry.shape)
        separator = "\n" if number else ""
        if fmt is OutputFormat.markdown:
            yield f"{separator}`{safe_text(entry.name)}` {detail}\n\n```\n{body}\n```\n"
        else:
            yield f"{separator}{colours.bold(safe_text(entry.name))}  {colours.dim(detail)}\n{body}\n"


def _full_text_entry(
    report: ValuesReport, entry: ValueEntry, fmt: OutputFormat, colours: Colours, number: int
) -> Iterator[str]:
    """``get --full`` text of one tensor, written as it is formatted (fulltext.py):
    holding the text, or the values as Python numbers, would not fit memory."""
    from paraminspect.output import fulltext

    assert entry.chunks is not None and entry.dtype is not None
    detail = f"{entry.dtype} {shape_text(entry.shape)}"
    if entry.tied_to:
        detail += f"  (tied to {safe_text(entry.tied_to)})"
    separator = "\n" if number else ""
    if fmt is OutputFormat.markdown:
        yield f"{separator}`{safe_text(entry.name)}` {detail}\n\n```\n"
    else:
        yield f"{separator}{colours.bold(safe_text(entry.name))}  {colours.dim(detail)}\n"
    yield from fulltext.text_pieces(entry.chunks, entry.shape or [], entry.dtype, report.options)
    yield "\n```\n" if fmt is OutputFormat.markdown else "\n"


def _values_json(report: ValuesReport) -> Iterator[str]:
    """One entry per line (indenting every number would bury the structure); ``values`` last."""
    from paraminspect.output import printing

    yield f'{{\n  "file": {json.dumps(report.file)},\n  "format": {json.dumps(report.format)},\n  "entries": [\n'
    for number, entry in enumerate(report.entries):
        yield ",\n    " if number else "    "
        if entry.dtype is None:
            document = {"name": entry.name, "kind": "value", "type": entry.type_name, "value": _json_safe(entry.value)}
            yield json.dumps(document, allow_nan=False)
            continue
        assert entry.chunks is not None, "values.report(stream=True) sets chunks for JSON"
        head = {"name": entry.name, "kind": "tensor", "dtype": entry.dtype, "shape": entry.shape}
        yield json.dumps(head | {"tied_to": entry.tied_to})[:-1] + ', "values": '
        yield from printing.json_value_pieces(entry.chunks, entry.shape or [], entry.dtype)
        yield "}"
    yield "\n  ]\n}\n"


def _values_csv(report: ValuesReport, budget: int = 1 << 16) -> Iterator[str]:
    """Long form: ``name,index,value``; index is ``[i, j]`` (empty for a non-tensor leaf).

    Rows are assembled directly (quoting as csv's QUOTE_MINIMAL would): the
    csv module's per-row call dominated the time for millions of elements.
    """
    import itertools

    from paraminspect.output import printing

    yield "name,index,value\n"
    for entry in report.entries:
        name = _csv_field(spreadsheet_safe(safe_text(entry.name)))
        if entry.dtype is None:
            value = _json_safe(entry.value)
            numeric = isinstance(entry.value, int | float) and not isinstance(entry.value, bool)
            cell = str(value) if numeric else spreadsheet_safe(safe_text(str(value)))
            yield f"{name},,{_csv_field(cell)}\n"
            continue
        assert entry.chunks is not None, "values.report(stream=True) sets chunks for CSV"
        indices = itertools.product(*(range(n) for n in entry.shape or []))
        for chunk in entry.chunks(budget):
            lines = []
            for index, value in zip(indices, printing.json_values(chunk, entry.dtype), strict=False):
                cell = _csv_field(json.dumps(value)) if isinstance(value, list) else value
                lines.append(
                    f'{name},"[{", ".join(map(str, index))}]",{cell}\n'
                    if len(index) > 1
                    else f"{name},[{index[0] if index else ''}],{cell}\n"
                )
            yield "".join(lines)


def _csv_field(text: str) -> str:
    if any(ch in text for ch in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _unravel(position: int, shape: list[int]) -> list[int]:
    index = []
    for n in reversed(shape):
        position, i = divmod(position, n)
        index.append(i)
    return index[::-1]


def format_modules(report: ModuleReport, fmt: OutputFormat) -> str:
    """``print(model)`` layout for tables; the flat rows or JSON document otherwise."""
    if fmt is not OutputFormat.table:
        return format_table(report.table, fmt)
    out = []
    for line in report.lines:
        label = f"({safe_text(line.name)}): " if line.name is not None else ""
        out.append("  " * line.depth + label + safe_text(line.text))
    return "\n".join(out) + "\n"


# ---- edit commands (set/init/rename/drop/extract/cast/convert) ----------------------

EDIT_SUMMARY_LINES = 20


def format_edit_summary(doc: dict[str, Any]) -> str:
    """The short human summary an edit prints on stderr (``doc``: an edit's JSON document)."""
    lines = []
    for change in doc["changes"][:EDIT_SUMMARY_LINES]:
        text = f"  {change['action']:<9} {safe_text(change['name'])}"
        if change.get("new_name"):
            text += f" -> {safe_text(change['new_name'])}"
        if change.get("detail"):
            text += f"  ({safe_text(change['detail'])})"
        lines.append(text)
    if len(doc["changes"]) > EDIT_SUMMARY_LINES:
        lines.append(f"  ... and {len(doc['changes']) - EDIT_SUMMARY_LINES} more (see --format json)")
    if not doc["changes"]:
        lines.append("  (no tensor changed)")
    lines.extend(f"  note: {safe_text(note)}" for note in doc["notes"])
    what = (
        f"{doc['format']}, {plural(doc['tensors'], 'tensor')}"
        + (f" ({doc['stored_tensors']} stored)" if doc["stored_tensors"] != doc["tensors"] else "")
        + f", {human_bytes(doc['file_bytes'] if doc['file_bytes'] is not None else doc['tensor_bytes'])}"
    )
    if doc["dry_run"]:
        head = f"{doc['command']}: dry run, nothing written; would write {safe_text(doc['output'])} ({what})"
    else:
        head = f"{doc['command']}: wrote {safe_text(doc['output'])} ({what}), verified"
    return "\n".join([head, *lines]) + "\n"


def write_edit(doc: dict[str, Any], fmt: OutputFormat) -> None:
    """JSON goes to stdout for pipelines; every other format gets the summary on stderr."""
    refuse_sarif(fmt)
    if fmt is OutputFormat.json:
        write(json.dumps(_json_safe(doc), indent=2, allow_nan=False) + "\n")
    else:
        sys.stderr.write(format_edit_summary(doc))

"""``get``: values as torch prints them, as exact JSON, or one CSV row per element."""

from __future__ import annotations

import json
from collections.abc import Iterator

from paraminspect.output.colours import Colours
from paraminspect.output.outputformat import OutputFormat, refuse_sarif
from paraminspect.output.report import ValueEntry, ValuesReport
from paraminspect.output.tables import spreadsheet_safe
from paraminspect.output.text import _json_safe, safe_text, shape_text, value_text


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

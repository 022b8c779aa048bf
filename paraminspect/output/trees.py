"""Trees: the name hierarchy (``tree``) and the ``print(model)`` layout (``tree --modules``)."""

from __future__ import annotations

from typing import Any

from paraminspect.output.colours import Colours
from paraminspect.output.outputformat import OutputFormat
from paraminspect.output.report import ModuleReport, TreeLine, TreeReport, plural
from paraminspect.output.tables import format_table
from paraminspect.output.text import human_bytes, human_count, safe_text, shape_text, value_text


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


def format_modules(report: ModuleReport, fmt: OutputFormat) -> str:
    """``print(model)`` layout for tables; the flat rows or JSON document otherwise."""
    if fmt is not OutputFormat.table:
        return format_table(report.table, fmt)
    out = []
    for line in report.lines:
        label = f"({safe_text(line.name)}): " if line.name is not None else ""
        out.append("  " * line.depth + label + safe_text(line.text))
    return "\n".join(out) + "\n"

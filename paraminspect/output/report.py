"""What commands hand to the renderer: exact data, with just enough typing
(column kinds) for the renderer to choose human units in tables and exact
numbers in JSON/CSV. No formatting happens here."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

# The table types live in tabular (what the table commands import); named here too.
from paraminspect.output.tabular import Column, Kind, MetaValue, Table, plural

__all__ = [
    "Column",
    "Finding",
    "Heatmap",
    "HistReport",
    "Kind",
    "MetaValue",
    "ModuleLine",
    "ModuleReport",
    "Table",
    "TreeLine",
    "TreeReport",
    "ValueEntry",
    "ValuesReport",
    "Verdict",
    "plural",
]


@dataclass(frozen=True)
class Finding:
    """One finding for code scanning (``--format sarif``): a stable rule id
    (output/sarif.py), a message a reviewer understands, the file, and the
    tensor name or pickle record it is about."""

    rule: str
    message: str
    file: str
    name: str | None = None
    level: str | None = None  # None: the rule's default level


@dataclass
class Verdict:
    """The answer of a command whose exit code matters (diff, check): the rows
    worth listing, labelled counts for a summary line, whether all held, and
    the findings for ``--format sarif``."""

    table: Table
    counts: list[tuple[str, int]]
    ok: bool
    picture: Heatmap | None = None  # diff --heatmap: drawn instead of the table
    findings: list[Finding] = field(default_factory=list)


@dataclass
class TreeLine:
    """One node of a tree drawing: its JSON-form facts and, per level, whether it is a last child."""

    info: dict[str, Any]
    last_flags: tuple[bool, ...]


@dataclass
class TreeReport:
    """A tree: a title, drawable lines, flat rows for CSV/markdown, and the JSON document."""

    title: dict[str, Any]
    lines: list[TreeLine]
    table: Table


@dataclass
class ValueEntry:
    """One selected name for ``get``: a tensor (with decoded values) or a non-tensor leaf.

    ``array`` holds the whole tensor, or only the corners a summarised print
    shows when ``complete`` is False (the renderer needs nothing more); for
    JSON/CSV and the ``--full`` text, ``chunks`` streams every value instead.
    """

    name: str
    dtype: str | None = None  # None for a non-tensor leaf
    shape: list[int] | None = None
    array: Any = None  # values to print: numpy array, or nested lists of Python numbers
    complete: bool = True
    # Every value, for JSON/CSV/--full: chunks(n) yields the elements in C order, n at a time.
    chunks: Callable[[int], Iterator[Any]] | None = None
    type_name: str | None = None  # non-tensor leaf: its Python type
    value: Any = None
    tied_to: str | None = None


@dataclass
class ValuesReport:
    """What ``get`` hands to the renderer: entries in order plus the print options."""

    file: str
    format: str
    entries: list[ValueEntry]
    options: Any  # printing.PrintOptions


@dataclass
class ModuleLine:
    """One line of a ``print(model)``-style drawing: indent level, ``(name)`` or None, text."""

    depth: int
    name: str | None
    text: str


@dataclass
class ModuleReport:
    """``tree --modules``: drawable lines, plus flat rows / the JSON document in ``table``."""

    lines: list[ModuleLine]
    table: Table


@dataclass
class Heatmap:
    """``diff --heatmap``: one measure per (layer, module kind) cell, plus one value
    per other prefix; None where there is no such tensor or its values were not compared."""

    measure: str
    columns: list[str]
    rows: list[tuple[str, list[float | None]]]
    absent: list[list[bool]]  # rows x columns: no tensor of that kind in that layer
    other: list[tuple[str, float | None]]


@dataclass
class HistReport:
    """``hist``: one tensor's exact histogram; ``document`` holds the edges and counts,
    ``log`` asks the bar chart for a logarithmic count axis."""

    document: dict[str, Any]
    log: bool = False

"""What commands hand to the renderer: exact data, with just enough typing
(column kinds) for the renderer to choose human units in tables and exact
numbers in JSON/CSV. No formatting happens here."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 tensor``, ``2 tensors`` (``many`` for irregular plurals): labels built here
    and in commands' total rows read right for every count."""
    return f"{n} {word if n == 1 else many or word + 's'}"


class Kind(str, Enum):
    TEXT = "text"
    NAME = "name"  # a tensor name: escaped before printing
    COUNT = "count"  # an element or parameter count
    BYTES = "bytes"
    SHAPE = "shape"
    NUMBER = "number"
    META = "meta"  # a file-metadata value (MetaValue): summarised in tables, whole in CSV
    SPARK = "spark"  # a small histogram ({"counts": [...], ...}): block characters in tables, counts in CSV


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    kind: Kind = Kind.TEXT
    optional: bool = False  # left out of tables (not CSV) when every row is empty


@dataclass(frozen=True)
class MetaValue:
    """A file-metadata value with its type (``STRING``, ``[STRING]``, ``str``, ``int``...):
    a table cell summarises long ones (type, length, first items), CSV and JSON hold them whole."""

    type: str
    value: Any


@dataclass
class Table:
    """Rows of one kind, plus an optional total row; ``document`` is the JSON form."""

    columns: list[Column]
    rows: list[dict[str, Any]]
    total: dict[str, Any] | None = None
    document: dict[str, Any] = field(default_factory=dict)


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

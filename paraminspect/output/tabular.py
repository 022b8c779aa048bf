"""The report of every table command: rows of columns whose kinds tell the renderer
how to show each cell (human units in tables, exact numbers in JSON/CSV).

Kept apart from :mod:`~paraminspect.output.report` (which re-exports these names) so
``shapes``, ``meta`` and the other table commands do not build the tree, verdict,
heatmap and histogram types at start-up: a dataclass costs a cold process ~0.5 ms.
"""

from __future__ import annotations

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

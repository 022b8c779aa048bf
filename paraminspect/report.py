"""What commands hand to the renderer: exact data, with just enough typing
(column kinds) for the renderer to choose human units in tables and exact
numbers in JSON/CSV. No formatting happens here."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Kind(str, Enum):
    TEXT = "text"
    NAME = "name"  # a tensor name: escaped before printing
    COUNT = "count"  # an element or parameter count
    BYTES = "bytes"
    SHAPE = "shape"
    NUMBER = "number"


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    kind: Kind = Kind.TEXT


@dataclass
class Table:
    """Rows of one kind, plus an optional total row; ``document`` is the JSON form."""

    columns: list[Column]
    rows: list[dict[str, Any]]
    total: dict[str, Any] | None = None
    document: dict[str, Any] = field(default_factory=dict)


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

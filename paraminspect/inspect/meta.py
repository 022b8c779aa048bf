"""``meta``: the file's own key/values (``Checkpoint.file_metadata``) with their types.

Safetensors ``__metadata__``, a sharded index's ``metadata``, a Lightning
``hyper_parameters``, a DCP checkpoint's storage meta and planner data, GGUF
key/values: every reader fills the same mapping, so this command never looks
at a format. No tensor data is read.
"""

from __future__ import annotations

from typing import Any

from paraminspect.errors import SelectionError
from paraminspect.model import Checkpoint
from paraminspect.naming.select import Selector, suggestions
from paraminspect.output.tabular import Column, Kind, MetaValue, Table

COLUMNS = [
    Column("key", "key", Kind.NAME),
    Column("type", "type"),
    Column("value", "value", Kind.META),
]


def metadata_document(ckpt: Checkpoint) -> dict[str, Any]:
    """key -> value, the ``metadata`` object of ``meta``, ``tree`` and ``shapes`` JSON."""
    return {key: value for key, (_, value) in ckpt.file_metadata.items()}


def selected_keys(ckpt: Checkpoint, patterns: list[str], *, regex: bool = False) -> list[str]:
    """The keys ``patterns`` select (exact keys, globs, dotted prefixes, or regexes), in file
    order; a pattern that matches no key is an error naming the closest keys."""
    keys = list(ckpt.file_metadata)
    selector = Selector(patterns, regex=regex)
    missing = selector.unmatched(keys)
    if missing:
        if not keys:
            raise SelectionError(f"no metadata key matches {missing[0]!r}: the file has no metadata", ckpt.path)
        close = [] if regex else suggestions(missing[0], keys)
        hint = "; did you mean " + " or ".join(repr(c) for c in close) + "?" if close else ""
        raise SelectionError(f"no metadata key matches {missing[0]!r}{hint}", ckpt.path)
    return selector.filter(keys)


def report(ckpt: Checkpoint, patterns: list[str] | None = None, *, regex: bool = False) -> Table:
    """One row per selected key: key, type, value (whole; the renderer summarises for tables)."""
    keys = selected_keys(ckpt, patterns or [], regex=regex)
    rows = []
    for key in keys:
        kind, value = ckpt.file_metadata[key]
        rows.append({"key": key, "type": kind, "value": MetaValue(kind, value)})
    document = {
        "file": str(ckpt.path),
        "format": ckpt.format,
        "metadata": {key: ckpt.file_metadata[key][1] for key in keys},
        "types": {key: ckpt.file_metadata[key][0] for key in keys},
    }
    return Table(COLUMNS, rows, None, document)

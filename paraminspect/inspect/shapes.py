"""``shapes``: one row per tensor with name, dtype, shape, numel and bytes."""

from __future__ import annotations

from typing import Any

from paraminspect.inspect.meta import metadata_document
from paraminspect.model import Checkpoint
from paraminspect.naming.order import tensor_names
from paraminspect.naming.select import Selector
from paraminspect.output.report import Column, Kind, Table, plural

COLUMNS = [
    Column("name", "name", Kind.NAME),
    Column("dtype", "dtype"),
    Column("shape", "shape", Kind.SHAPE),
    Column("numel", "numel", Kind.COUNT),
    Column("bytes", "bytes", Kind.BYTES),
    Column("tied_to", "tied to", Kind.NAME, optional=True),
]


def report(ckpt: Checkpoint, selector: Selector | None = None, *, sort: bool = False) -> Table:
    """Rows for every selected tensor; the total counts tied tensors once."""
    tensors = ckpt.tensors
    names = tensor_names(ckpt, selector, sort=sort)
    tied = ckpt.tied_groups()
    rows: list[dict[str, Any]] = []
    seen: set[tuple[object, ...]] = set()
    numel = nbytes = 0
    for name in names:
        ref = tensors[name]
        rows.append(
            {
                "name": name,
                "dtype": ref.dtype.name,
                "shape": list(ref.shape),
                "numel": ref.numel,
                "bytes": ref.nbytes,
                "tied_to": tied.get(name),
            }
        )
        if ref.identity not in seen:
            seen.add(ref.identity)
            numel += ref.numel
            nbytes += ref.nbytes
    total = {"tensors": len(rows), "unique": len(seen), "numel": numel, "bytes": nbytes}
    document = {
        "file": str(ckpt.path),
        "format": ckpt.format,
        "root": ckpt.selected,
        "tensors": rows,
        "total": total,
        "metadata": metadata_document(ckpt),
    }
    label = f"total ({plural(len(rows), 'tensor')}" + (f", {len(seen)} unique)" if len(seen) != len(rows) else ")")
    total_row = {"name": label, "numel": numel, "bytes": nbytes}
    return Table(COLUMNS, rows, total_row, document)

"""``shapes``: one row per tensor with name, dtype, shape, numel and bytes.

A quantized weight (:mod:`paraminspect.quant`) is one row of its logical dtype
and shape, its storage bytes exact, its storage tensors named in the JSON.
"""

from __future__ import annotations

from typing import Any

from paraminspect.inspect.meta import metadata_document
from paraminspect.model import Checkpoint
from paraminspect.naming.order import tensor_names
from paraminspect.naming.select import Selector
from paraminspect.output.report import Column, Kind, Table, plural
from paraminspect.quant.logical import Recognition
from paraminspect.quant.recognise import display_names

COLUMNS = [
    Column("name", "name", Kind.NAME),
    Column("dtype", "dtype"),
    Column("shape", "shape", Kind.SHAPE),
    Column("numel", "numel", Kind.COUNT),
    Column("bytes", "bytes", Kind.BYTES),
    Column("tied_to", "tied to", Kind.NAME, optional=True),
]
QUANT_COLUMN = Column("quantized", "quantized")


def report(
    ckpt: Checkpoint, selector: Selector | None = None, *, sort: bool = False, found: Recognition | None = None
) -> Table:
    """Rows for every selected tensor; the total counts tied tensors once."""
    tensors = ckpt.tensors
    quantized = found or Recognition()
    names = (
        display_names(ckpt, quantized, selector, sort=sort) if quantized else tensor_names(ckpt, selector, sort=sort)
    )
    tied = ckpt.tied_groups()
    rows: list[dict[str, Any]] = []
    seen: set[tuple[object, ...]] = set()
    numel = nbytes = 0
    for name in names:
        weight = quantized.weights.get(name)
        if weight is not None:
            rows.append(
                {
                    "name": name,
                    "dtype": weight.dtype,
                    "shape": list(weight.shape),
                    "numel": weight.numel,
                    "bytes": weight.storage_bytes,
                    "tied_to": None,
                    "quantized": weight.caption,
                    **weight.facts(),
                }
            )
            identity, count, size = weight.identity, weight.numel, weight.storage_bytes
        else:
            ref = tensors[name]
            row = {
                "name": name,
                "dtype": ref.dtype.name,
                "shape": list(ref.shape),
                "numel": ref.numel,
                "bytes": ref.nbytes,
                "tied_to": tied.get(name),
            }
            rows.append({**row, "quantized": None} if quantized else row)
            identity, count, size = ref.identity, ref.numel, ref.nbytes
        if identity not in seen:
            seen.add(identity)
            numel += count
            nbytes += size
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
    columns = [*COLUMNS[:5], QUANT_COLUMN, COLUMNS[5]] if quantized else COLUMNS
    return Table(columns, rows, total_row, document)

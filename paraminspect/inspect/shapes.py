"""``shapes``: one row per tensor with name, dtype, shape, numel and bytes.

A quantized weight (:mod:`paraminspect.quant`) is one row of its logical dtype
and shape, its storage bytes exact, its storage tensors named in the JSON.
"""

from __future__ import annotations

from typing import Any

from paraminspect.dtypes import DType
from paraminspect.inspect.meta import metadata_document
from paraminspect.model import Checkpoint
from paraminspect.naming.order import tensor_names
from paraminspect.naming.select import Selector
from paraminspect.output.tabular import Column, Kind, Table, plural
from paraminspect.quant.logical import Recognition, display_names

COLUMNS = [
    Column("name", "name", Kind.NAME),
    Column("dtype", "dtype"),
    Column("shape", "shape", Kind.SHAPE),
    Column("numel", "numel", Kind.COUNT),
    Column("bytes", "bytes", Kind.BYTES),
    Column("tied_to", "tied to", Kind.NAME, optional=True),
]
QUANT_COLUMN = Column("quantized", "quantized")

# GGUF files add the ggml type and its stored bits per weight (4.5 for Q4_0); other
# formats' output is unchanged. Per-block totals (blk.N) are ``shapes --by-prefix 2``.
GGUF_COLUMNS = [*COLUMNS[:2], Column("ggml_type", "ggml type"), Column("bpw", "bits/weight", Kind.NUMBER), *COLUMNS[2:]]


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
    gguf = ckpt.format == "gguf"
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
                "bytes": ref.nbytes if ref.dtype.size_known else None,
                "tied_to": tied.get(name),
            }
            if gguf:
                row.update(ggml_type=ggml_type_name(ref.dtype), bpw=round(ref.dtype.bits_per_weight, 4))
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
    base = GGUF_COLUMNS if gguf else COLUMNS
    columns = [*base[:-1], QUANT_COLUMN, base[-1]] if quantized else base
    return Table(columns, rows, total_row, document)


def ggml_type_name(dtype: DType) -> str:
    """GGUF's spelling of a dtype: F32, BF16, Q4_K (the blocked types are named so already)."""
    return dtype.name if dtype.blocked else GGUF_PLAIN.get(dtype.name, dtype.name)


GGUF_PLAIN = {
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "float64": "F64",
    "int8": "I8",
    "int16": "I16",
    "int32": "I32",
    "int64": "I64",
}

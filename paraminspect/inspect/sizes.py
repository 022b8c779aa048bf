"""``shapes --by-prefix DEPTH``: parameters, bytes and dtype mix per name prefix, like ``du``.

So a user sees at once that an optimizer's moments or an EMA copy doubles a
file. Tied tensors are counted once per prefix and once in the total; a quantized
weight counts its logical parameters and its storage bytes, as one tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from paraminspect.model import Checkpoint
from paraminspect.naming.order import tensor_names
from paraminspect.naming.select import Selector
from paraminspect.output.report import Column, Kind, Table, plural
from paraminspect.quant.logical import Recognition, display_names

COLUMNS = [
    Column("prefix", "prefix", Kind.NAME),
    Column("tensors", "tensors", Kind.COUNT),
    Column("params", "params", Kind.COUNT),
    Column("bytes", "bytes", Kind.BYTES),
    Column("share", "% bytes", Kind.NUMBER),
    Column("dtypes", "dtypes"),
]


@dataclass
class _Sum:
    tensors: int = 0
    params: int = 0
    nbytes: int = 0
    dtypes: dict[str, list[int]] = field(default_factory=dict)  # name -> [params, bytes]
    seen: set[tuple[object, ...]] = field(default_factory=set)

    def add(self, identity: tuple[object, ...], dtype: str, numel: int, nbytes: int) -> None:
        self.tensors += 1
        if identity in self.seen:
            return
        self.seen.add(identity)
        self.params += numel
        self.nbytes += nbytes
        slot = self.dtypes.setdefault(dtype, [0, 0])
        slot[0] += numel
        slot[1] += nbytes


def _mix(dtypes: dict[str, list[int]], nbytes: int) -> str:
    """``bfloat16 97%, float32 3%`` by share of bytes, largest first."""
    ranked = sorted(dtypes.items(), key=lambda item: -item[1][1])
    if len(ranked) == 1:
        return ranked[0][0]
    return ", ".join(f"{name} {round(100 * b / nbytes) if nbytes else 0}%" for name, (_, b) in ranked)


def report(
    ckpt: Checkpoint, selector: Selector | None, depth: int, *, sort: bool = False, found: Recognition | None = None
) -> Table:
    """One row per prefix of ``depth`` name parts, in order of first appearance."""
    tensors = ckpt.tensors
    names = display_names(ckpt, found, selector, sort=sort) if found else tensor_names(ckpt, selector, sort=sort)
    groups: dict[str, _Sum] = {}
    total = _Sum()
    for name in names:
        weight = found.weights.get(name) if found else None
        prefix = ".".join(name.split(".")[:depth])
        if weight is not None:
            fact = (weight.identity, weight.dtype, weight.numel, weight.storage_bytes)
        else:
            ref = tensors[name]
            fact = (ref.identity, ref.dtype.name, ref.numel, ref.nbytes)
        groups.setdefault(prefix, _Sum()).add(*fact)
        total.add(*fact)
    rows: list[dict[str, Any]] = []
    for prefix, group in groups.items():
        rows.append(
            {
                "prefix": prefix,
                "tensors": group.tensors,
                "params": group.params,
                "bytes": group.nbytes,
                "share": round(100 * group.nbytes / total.nbytes, 1) if total.nbytes else 0.0,
                "dtypes": _mix(group.dtypes, group.nbytes),
                "by_dtype": {k: {"params": p, "bytes": b} for k, (p, b) in group.dtypes.items()},
            }
        )
    summary = {"tensors": total.tensors, "unique": len(total.seen), "params": total.params, "bytes": total.nbytes}
    document = {
        "file": str(ckpt.path),
        "format": ckpt.format,
        "root": ckpt.selected,
        "depth": depth,
        "prefixes": rows,
        "total": {**summary, "by_dtype": {k: {"params": p, "bytes": b} for k, (p, b) in total.dtypes.items()}},
    }
    total_row = {
        "prefix": f"total ({plural(len(rows), 'prefix', 'prefixes')})",
        "tensors": total.tensors,
        "params": total.params,
        "bytes": total.nbytes,
        "share": 100.0 if total.nbytes else 0.0,
        "dtypes": _mix(total.dtypes, total.nbytes) if total.dtypes else "",
    }
    return Table(COLUMNS, rows, total_row, document)

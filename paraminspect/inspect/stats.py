"""``stats``: summary statistics per tensor, per subtree and in total, in bounded memory.

Each tensor is walked in chunks (``arrays.iter_chunks_into``, read into one
reused buffer) and folded into an :class:`Accumulator` in float64, so memory is
bounded by the chunk, not the tensor. Accumulators merge exactly (Chan et al.'s
pairwise update for the variance), which is what makes ``--by-prefix`` and the
total line cheap: they merge per-tensor results instead of reading anything twice.

Definitions (documented in the README):
- NaN and +/-Inf are counted in their own columns and left out of every other
  statistic, so one bad value does not turn the whole row into NaN.
- ``std`` is the sample standard deviation (divisor n-1), like ``torch.std``'s
  default; it is empty (null) with fewer than two finite values.
- ``l2`` is sqrt(sum of x^2); ``mean_abs`` is the mean of |x|.
- bool counts as 0/1. Complex tensors have no order, so min/max/mean/std stay
  empty; mean_abs and l2 use the modulus; NaN/Inf count if either part is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paraminspect.data import broadcast
from paraminspect.data.arrays import DEFAULT_CHUNK_ELEMENTS, iter_chunks_into
from paraminspect.inspect import hist
from paraminspect.inspect.moments import Accumulator
from paraminspect.io import progress
from paraminspect.model import Checkpoint, TensorRef
from paraminspect.naming.order import tensor_names
from paraminspect.naming.select import Selector
from paraminspect.output.report import Column, Kind, Table, plural
from paraminspect.parallel import ordered_map
from paraminspect.quant.logical import Logical, Recognition, display_names

if TYPE_CHECKING:
    import numpy as np


def tensor_stats(ref: TensorRef, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> Accumulator:
    """Statistics of one tensor, reading at most ``chunk_elements`` values at a time.

    A broadcast view is walked over its distinct elements only (broadcast.py).
    """
    return measure(ref, chunk_elements)[0]


@dataclass(frozen=True)
class Wanted:
    """What ``stats`` adds to each row on request: a row histogram, percentiles."""

    hist: bool = False
    percents: tuple[float, ...] = ()

    def __bool__(self) -> bool:
        return self.hist or bool(self.percents)


def measure(
    ref: TensorRef, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS, wanted: Wanted = Wanted()
) -> tuple[Accumulator, dict[str, Any]]:
    """One tensor's statistics and, as ``wanted``, its row histogram (sampled in the same
    pass) and exact percentiles (hist.py: a few more passes, only when asked for)."""
    distinct, times = broadcast.distinct(ref)
    broadcast.check_work(distinct)
    buffer = _read_buffer(min(chunk_elements, distinct.numel) * distinct.dtype.itemsize)

    def values() -> Iterator[np.ndarray]:  # re-readable: percentiles walk it again (one walk at a time)
        return iter_chunks_into(distinct, buffer, chunk_elements)

    return _measure(values, distinct.numel, times, ref.dtype.name.startswith("complex"), wanted)


_READ = threading.local()  # each thread's read buffer, reused from tensor to tensor


def _read_buffer(nbytes: int) -> bytearray:
    """This thread's buffer that chunks are read into, at least ``nbytes`` long. The
    consumers of a chunk (Accumulator, Sampler, percentiles) keep no view of it."""
    buffer: bytearray | None = getattr(_READ, "buffer", None)
    if buffer is None or len(buffer) < nbytes:
        buffer = _READ.buffer = bytearray(nbytes)
    return buffer


def _measure(
    values: hist.Values, numel: int, times: int, complex_: bool, wanted: Wanted
) -> tuple[Accumulator, dict[str, Any]]:
    """``numel`` values in the stream, each standing for ``times`` (a broadcast view)."""
    acc = Accumulator()
    sampler = hist.Sampler(numel) if wanted.hist and not complex_ else None
    for chunk in values():
        acc.add(chunk)
        if sampler is not None:
            sampler.add(chunk)
    extras: dict[str, Any] = {}
    if wanted.hist:
        extras["hist"] = sampler.histogram(acc.minimum, acc.maximum, times) if sampler else None
    if wanted.percents:
        if complex_ or acc.minimum is None or acc.maximum is None:
            extras["percentiles"] = {hist.percent_key(q): None for q in wanted.percents}
        else:
            low, high = float(acc.minimum), float(acc.maximum)
            extras["percentiles"] = hist.percentiles(values, acc.ordered, list(wanted.percents), low, high, times)
    if times > 1:
        acc.repeat(times)
    return acc, extras


COLUMNS = [
    Column("name", "name", Kind.NAME),
    Column("dtype", "dtype"),
    Column("tensors", "tensors", Kind.COUNT, optional=True),  # --by-prefix groups only
    Column("numel", "numel", Kind.COUNT),
    Column("min", "min", Kind.NUMBER),
    Column("max", "max", Kind.NUMBER),
    Column("mean", "mean", Kind.NUMBER),
    Column("std", "std", Kind.NUMBER),
    Column("mean_abs", "mean abs", Kind.NUMBER),
    Column("l2", "L2", Kind.NUMBER),
    Column("nan", "nan", Kind.COUNT),
    Column("posinf", "+inf", Kind.COUNT),
    Column("neginf", "-inf", Kind.COUNT),
    Column("zeros", "zeros", Kind.COUNT),
    Column("sparsity", "sparsity", Kind.NUMBER),
    Column("tied_to", "tied to", Kind.NAME, optional=True),
]


def columns(wanted: Wanted) -> list[Column]:
    """The table's columns: percentiles (``p50``) and the row histogram after the sparsity."""
    extra = [Column(f"p{hist.percent_key(q)}", f"p{hist.percent_key(q)}", Kind.NUMBER) for q in wanted.percents]
    if wanted.hist:
        extra.append(Column("hist", "hist", Kind.SPARK))
    return COLUMNS[:-1] + extra + COLUMNS[-1:]


def _table_row(row: dict[str, Any]) -> dict[str, Any]:
    """A JSON row with its percentiles as columns (``p50``) for the table and CSV."""
    percents = row.get("percentiles")
    return row | {f"p{k}": v for k, v in percents.items()} if percents else row


def report(
    ckpt: Checkpoint,
    selector: Selector | None = None,
    *,
    by_prefix: int | None = None,
    sort: bool = False,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    found: Recognition | None = None,
    wanted: Wanted = Wanted(),
) -> Table:
    """Rows per tensor (or per subtree with ``by_prefix``) and a total that counts tied tensors once.

    Tensors whose dtype cannot be decoded (quantized, sub-byte floats) are
    listed in ``document["skipped"]`` instead of failing the whole command. With
    ``found``, a quantized weight is one row of its dequantized values (one that
    cannot be decoded is skipped, its reason in ``document["undecoded"]``). ``wanted``
    adds each tensor's row histogram and percentiles (not to groups and the total:
    those are not sums).
    """
    tensors = ckpt.tensors
    names = display_names(ckpt, found, selector, sort=sort) if found else tensor_names(ckpt, selector, sort=sort)
    logical = _logical_stats(ckpt, found, names, wanted) if found else {}
    undecoded = {n: r for n, r in logical.items() if isinstance(r, str)}
    tied = ckpt.tied_groups()
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    unique = {
        tensors[n].identity: tensors[n]
        for n in names
        if n in tensors and n not in logical and tensors[n].dtype.numpy is not None
    }
    # A tied alias is read once; tensors are read two at a time (parallel.py).
    # Bytes to read: each tensor once, and again for each percentile pass (about two).
    work = sum(ref.nbytes for ref in unique.values()) * (3 if wanted.percents else 1)
    with progress.task(work, "stats"):
        measured = dict(
            zip(
                unique,
                ordered_map(lambda ref: measure(ref, chunk_elements, wanted), list(unique.values())),
                strict=True,
            )
        )
    done = {identity: acc for identity, (acc, _) in measured.items()}
    kinds: dict[str, tuple[tuple[object, ...], str]] = {}
    for name in names:
        result = logical.get(name)
        if isinstance(result, str):
            skipped.append(name)
            continue
        if result is not None:
            weight, acc, extras = result
            done[weight.identity] = acc
            kinds[name] = (weight.identity, weight.dtype)
            row = {"name": name, "dtype": weight.dtype, "shape": list(weight.shape), "tied_to": None}
            rows.append(row | acc.result() | extras)
            continue
        ref = tensors[name]
        if ref.dtype.numpy is None:
            skipped.append(name)
            continue
        kinds[name] = (ref.identity, ref.dtype.name)
        row = {"name": name, "dtype": ref.dtype.name, "shape": list(ref.shape), "tied_to": tied.get(name)}
        rows.append(row | done[ref.identity].result() | measured[ref.identity][1])
    total = _combine(done.values())
    total_doc = {"tensors": len(rows), "unique": len(done)} | total.result()
    document: dict[str, Any] = {"file": str(ckpt.path), "format": ckpt.format, "by_prefix": by_prefix}
    if by_prefix is not None:
        rows = _group_rows(rows, kinds, done, by_prefix)
        document["groups"] = rows
    else:
        document["tensors"] = rows
    document |= {"total": total_doc, "skipped": skipped}
    if undecoded:
        document["undecoded"] = undecoded
    label = f"total ({plural(total_doc['tensors'], 'tensor')}" + (
        f", {len(done)} unique)" if len(done) != total_doc["tensors"] else ")"
    )
    total_row = {"name": label} | total.result()
    shown = rows if by_prefix is not None else [_table_row(row) for row in rows]
    return Table(columns(wanted), shown, total_row, document)


def _logical_stats(
    ckpt: Checkpoint, found: Recognition, names: list[str], wanted: Wanted
) -> dict[str, tuple[Logical, Accumulator, dict[str, Any]] | str]:
    """Per selected quantized weight: its statistics over dequantized row blocks, or why not."""
    from paraminspect.quant import dequant

    out: dict[str, tuple[Logical, Accumulator, dict[str, Any]] | str] = {}
    for name in names:
        weight = found.weights.get(name)
        if weight is None:
            continue
        reason = dequant.undecodable(weight, ckpt.entries)
        if reason is not None:
            out[name] = f"cannot dequantize: {reason}"
            continue
        values, _, _, _ = hist.named_values(ckpt, name, found)
        out[name] = (weight, *_measure(values, weight.numel, 1, False, wanted))
    return out


def _combine(parts: Iterable[Accumulator]) -> Accumulator:
    acc = Accumulator()
    for part in parts:
        acc.merge(part)
    return acc


def _group_rows(
    rows: list[dict[str, Any]],
    kinds: dict[str, tuple[tuple[object, ...], str]],
    done: dict[tuple[object, ...], Accumulator],
    depth: int,
) -> list[dict[str, Any]]:
    """Merge per-tensor results by their first ``depth`` name parts (tied tensors once per group)."""
    groups: dict[str, dict[tuple[object, ...], str]] = {}
    for row in rows:
        prefix = ".".join(row["name"].split(".")[:depth])
        identity, dtype = kinds[row["name"]]
        groups.setdefault(prefix, {}).setdefault(identity, dtype)
    out = []
    for prefix, members in groups.items():
        dtypes = sorted(set(members.values()))
        acc = _combine(done[identity] for identity in members)
        out.append({"name": prefix, "dtype": dtypes[0] if len(dtypes) == 1 else "mixed", "tensors": len(members)})
        out[-1] |= acc.result()
    return out

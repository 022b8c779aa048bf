"""``diff --dequantize``: a quantized weight compared by its logical values.

Either side may be a quantized weight (:mod:`paraminspect.quant`) or a plain
tensor of the same logical shape: a GPTQ model against the float model it was
made from shows how far quantization moved each weight. Both sides are walked
in aligned pieces (dequantized row blocks, the tensor's chunks), so memory
stays bounded; the totals are elementwise's, so the tolerance rule is the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from paraminspect import dtypes
from paraminspect.compare.accumulate import DECODE_ELEMENTS, Accumulator, ValueStats, Workspace
from paraminspect.compare.metrics import Sums
from paraminspect.compare.tolerance import Tolerance
from paraminspect.data.arrays import iter_chunks
from paraminspect.model import StorageRef, TensorRef, contiguous_strides
from paraminspect.quant import dequant
from paraminspect.quant.logical import Logical

if TYPE_CHECKING:
    import numpy as np

Item = TensorRef | Logical


def _as_ref(item: Item) -> TensorRef:
    """What the totals need to know of a side: a float32 tensor of the logical shape."""
    if isinstance(item, TensorRef):
        return item
    f32 = dtypes.BY_NAME["float32"]
    nowhere = StorageRef(Path("<dequantized>"), item.name, 0, 0, f32)  # never read: only its shape and dtype are used
    return TensorRef(f32, item.shape, contiguous_strides(item.shape), nowhere)


def _pieces(item: Item, entries: Mapping[str, object]) -> Iterator[np.ndarray]:
    if isinstance(item, TensorRef):
        yield from iter_chunks(item, DECODE_ELEMENTS)
    else:
        for block in dequant.iter_rows(item, entries):
            yield block.reshape(-1)


def _aligned(a: Iterator[np.ndarray], b: Iterator[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pairs of equal-length pieces cut from two streams of the same total length."""
    import numpy as np

    held_a: np.ndarray = np.empty(0, np.float32)
    held_b: np.ndarray = np.empty(0, np.float32)
    for piece_a in a:
        held_a = np.concatenate([held_a, piece_a]) if held_a.size else piece_a
        while held_b.size < held_a.size:
            piece_b = next(b, None)
            if piece_b is None:
                break
            held_b = np.concatenate([held_b, piece_b]) if held_b.size else piece_b
        n = min(held_a.size, held_b.size)
        if n:
            yield held_a[:n], held_b[:n]
            held_a, held_b = held_a[n:], held_b[n:]
    for piece_b in b:
        held_b = np.concatenate([held_b, piece_b]) if held_b.size else piece_b
    if held_a.size or held_b.size:
        raise ValueError("dequantized and stored values disagree in length")


def undecodable(item: Item, entries: Mapping[str, object]) -> str | None:
    return dequant.undecodable(item, entries) if isinstance(item, Logical) else None


def compare_logical(
    a: Item,
    a_entries: Mapping[str, object],
    b: Item,
    b_entries: Mapping[str, object],
    tolerance: Tolerance,
    *,
    metrics: bool = False,
) -> ValueStats:
    """Compare two sides of equal logical shape, at least one of them quantized.

    ``metrics``: also carry the change measures' sums (``ValueStats.sums``), from
    the same pass; every element is decoded, so they are always complete."""
    ref_a, ref_b = _as_ref(a), _as_ref(b)
    acc = Accumulator(ref_a, tolerance, Workspace(), ref_b)
    if metrics:
        acc.sums = Sums()
    first = 0
    for piece_a, piece_b in _aligned(_pieces(a, a_entries), _pieces(b, b_entries)):
        acc.add(first, piece_a, piece_b)
        first += len(piece_a)
    stats = acc.stats
    if acc.sums is not None and stats.differing is not None:
        acc.sums.elements, acc.sums.differing = ref_a.numel, stats.differing
        stats.sums = acc.sums
    return stats

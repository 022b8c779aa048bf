"""Element-wise comparison of two tensors of the same shape, streamed.

Memory is bounded by the chunk size, never by the tensor. When both tensors are
stored contiguously with the same byte order, their raw bytes are compared
first (a memcmp, no decoding); only sub-chunks whose bytes differ are decoded,
and a few differing elements without numpy (see :mod:`paraminspect.compare.differing`).
Decoded values then decide: -0.0 equals 0.0 and NaNs with different payloads
are both NaN, although their bytes differ.

The tolerance rule is numpy's/torch's ``allclose``: |a - b| <= atol + rtol * |b|.
Integer and bool tensors are always compared exactly (a tolerance meant for
floating-point rounding would otherwise hide a changed step counter).

Tensors of different numeric dtypes (fp32 against its bf16 cast) are compared
too, to show how far a cast moved the values: there are no equal bytes to skip,
so every chunk is decoded and each ufunc converts both sides to float64 (exact
integer equality when neither side is a float, the same rule as above).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from paraminspect.compare.accumulate import (
    DECODE_ELEMENTS,
    Accumulator,
    ValueStats,
    Workspace,
    cast_comparable,
    numeric,
)
from paraminspect.compare.differing import decoder, differing_offsets
from paraminspect.compare.metrics import Sums, same_sums
from paraminspect.compare.owed import Owed, settle
from paraminspect.compare.tolerance import Tolerance
from paraminspect.data import broadcast
from paraminspect.data.arrays import decode_bytes, iter_chunks, iter_raw_chunks
from paraminspect.io import progress
from paraminspect.model import TensorRef
from paraminspect.parallel import ordered_map

if TYPE_CHECKING:
    pass

# Raw bytes are read and compared in 2 MiB steps (two buffers in memory: small
# enough to stay in cache between the read and the compare, measured ~10% less
# CPU than 8 MiB); a differing step is decoded a quarter-million elements at a time.
RAW_CHUNK_BYTES = 2 << 20

# Differing elements a Comparer decodes without numpy (see differing.py) before it
# imports numpy for good: ~1 us each in pure Python, against ~65 ms for the import.
FEW_ELEMENTS = 4096


def bytes_comparable(a: TensorRef, b: TensorRef) -> bool:
    """True when equal stored bytes imply equal values (and the bytes line up)."""
    same_order = a.storage.byteorder == b.storage.byteorder or a.dtype.itemsize == 1
    if a.dtype.blocked:  # raw chunks would split blocks; compared decoded
        return False
    return a.dtype == b.dtype and a.shape == b.shape and a.is_contiguous and b.is_contiguous and same_order


def _same_bytes(x: memoryview, y: memoryview) -> bool:
    """memcmp-speed equality of two equal-length chunks, without copying.

    ``memoryview == memoryview`` walks element by element (30x slower), while
    ``bytearray.startswith(buffer)`` is a memcmp; ``x`` is always a prefix view
    of its read buffer, so "the buffer starts with y" means ``x == y``.
    """
    if len(x) != len(y):
        return False
    if isinstance(x.obj, bytearray) and len(x.obj) >= len(x):
        return x.obj.startswith(y)
    return bytes(x) == bytes(y)


class Comparer:
    """Compares tensor pairs with one pair of reusable read buffers (bounded memory)."""

    def __init__(self, tolerance: Tolerance | None = None, *, metrics: bool = False, norms: bool = False) -> None:
        """``metrics``: also carry the sums of the change measures (``ValueStats.sums``);
        ``norms``: complete ones even for unchanged tensors (a roll-up adds them up)."""
        self.tolerance = tolerance or Tolerance()
        self.metrics = metrics or norms
        self.norms = norms
        self._buffers: tuple[bytearray, bytearray] | None = None
        self._workspace = Workspace()
        self._few_left = FEW_ELEMENTS  # budget of the numpy-free path, shared by all pairs

    def _raw_buffers(self) -> tuple[bytearray, bytearray]:
        if self._buffers is None:
            self._buffers = (bytearray(RAW_CHUNK_BYTES), bytearray(RAW_CHUNK_BYTES))
        return self._buffers

    def compare(self, a: TensorRef, b: TensorRef) -> ValueStats:
        """Compare the values of two tensors of equal shape, chunk by chunk: equal
        dtypes, or different ones that :func:`cast_comparable` accepts."""
        cast = a.dtype != b.dtype
        if a.shape != b.shape or (cast and not cast_comparable(a, b)):
            raise ValueError("compare needs equal shapes and equal or numeric dtypes")
        # Dimensions both views broadcast (stride 0) repeat the same pairs: compare
        # one of each and scale the count (see broadcast.py); the rest is walked, bounded.
        kept = broadcast.kept_dims(a, b)
        (a_part, times), (b_part, _) = broadcast.reduce(a, kept), broadcast.reduce(b, kept)
        broadcast.check_work(a_part, b_part)
        if times == 1:
            return self._compare(a, b)
        stats = self._compare(a_part, b_part)
        if stats.differing is not None:
            stats.differing *= times
        if stats.sums is not None:
            stats.sums.times(times)
        if stats.index is not None:
            stats.index = broadcast.full_index(stats.index, kept, len(a.shape))
        return stats

    def _compare(self, a: TensorRef, b: TensorRef) -> ValueStats:
        acc = Accumulator(a, self.tolerance, self._workspace, b)
        if self.metrics and numeric(a) and numeric(b):  # raw bits (bits8, float4...) have no norm
            acc.sums = Sums()
        stats = self._values(a, b, acc)
        if acc.sums is not None and stats.differing is not None:
            acc.sums.elements, acc.sums.differing = a.numel, stats.differing
            stats.sums = acc.sums
        return stats

    def _values(self, a: TensorRef, b: TensorRef, acc: Accumulator) -> ValueStats:
        cast = a.dtype != b.dtype
        if a.numel == 0:
            return acc.stats
        if bytes_comparable(a, b):
            itemsize = a.dtype.itemsize
            sub = DECODE_ELEMENTS * itemsize
            first = 0
            buf_a, buf_b = self._raw_buffers()
            decode = decoder(a, acc.kind, self.tolerance.equal_nan)
            owed = Owed()
            for raw_a, raw_b in zip(iter_raw_chunks(a, buf_a), iter_raw_chunks(b, buf_b), strict=True):
                if _same_bytes(raw_a, raw_b):
                    if acc.sums is not None:
                        owed.add(first * itemsize, len(raw_a), itemsize)
                else:
                    if a.dtype.numpy is None:  # cannot decode: all we know is that bytes differ
                        return ValueStats(differing=None)
                    # Not with the change measures: their sums would be added in another
                    # order than numpy's, and whether a pair takes this path depends on
                    # the pairs this thread compared before (its budget), so the last
                    # digits of a cosine would depend on thread scheduling.
                    if decode is not None and self._few_left > 0 and acc.sums is None:
                        offsets = differing_offsets(buf_a, raw_b, len(raw_a), itemsize, self._few_left)
                        if offsets is not None:
                            self._few_left -= len(offsets)
                            self._add_few(acc, first, offsets, raw_a, raw_b, decode)
                            first += len(raw_a) // itemsize
                            continue
                        self._few_left = 0  # many differ: numpy from now on
                    for start in range(0, len(raw_a), sub):
                        part_a, part_b = raw_a[start : start + sub], raw_b[start : start + sub]
                        if not buf_a.startswith(part_b, start):  # memcmp (raw_a is a prefix of buf_a)
                            acc.add(first + start // itemsize, decode_bytes(a, part_a), decode_bytes(b, part_b))
                        elif acc.sums is not None:
                            owed.add(first * itemsize + start, len(part_a), itemsize)
                first += len(raw_a) // itemsize
            if acc.sums is not None and owed.ranges:
                if acc.sums.abs_d != 0 or self.norms:  # unchanged: the measures need no norm
                    settle(a, owed, acc.sums, buf_a)
                else:
                    acc.sums.complete = False
            return acc.stats
        first = 0
        for chunk_a, chunk_b in zip(iter_chunks(a, DECODE_ELEMENTS), iter_chunks(b, DECODE_ELEMENTS), strict=True):
            if len(chunk_a) != len(chunk_b):  # iter_chunks promises exact sizes; never pair misaligned runs
                raise ValueError("chunk sizes of equal-shape tensors disagree")
            if cast or chunk_a.tobytes() != chunk_b.tobytes():  # across dtypes, bytes say nothing
                acc.add(first, chunk_a, chunk_b)
            elif acc.sums is not None:  # decoded anyway: no point owing its norms
                acc.sums.add_same(*same_sums(chunk_a))
            first += len(chunk_a)
        return acc.stats

    @staticmethod
    def _add_few(
        acc: Accumulator,
        first: int,
        offsets: list[int],
        raw_a: memoryview,
        raw_b: memoryview,
        decode: Callable[[Any, int], Any],
    ) -> None:
        """Decode the differing elements at ``offsets`` and fold them in, grouped
        by the slices the numpy path would decode, so both give the same result."""
        itemsize = acc.itemsize
        sub = DECODE_ELEMENTS * itemsize
        group: list[tuple[int, Any, Any]] = []
        for n, offset in enumerate(offsets):
            group.append((first + offset // itemsize, decode(raw_a, offset), decode(raw_b, offset)))
            if n + 1 == len(offsets) or offsets[n + 1] // sub != offset // sub:
                acc.add_few(group)
                group = []


def compare_tensors(
    a: TensorRef, b: TensorRef, tolerance: Tolerance | None = None, *, metrics: bool = False, norms: bool = False
) -> ValueStats:
    """Compare one pair of tensors (see :class:`Comparer` for many pairs)."""
    return Comparer(tolerance, metrics=metrics, norms=norms).compare(a, b)


def compare_pairs(
    pairs: Sequence[tuple[TensorRef, TensorRef]], tolerance: Tolerance, *, metrics: bool = False, norms: bool = False
) -> list[ValueStats]:
    """:meth:`Comparer.compare` for every pair, several pairs at a time
    (:mod:`paraminspect.parallel`), one Comparer and so one set of buffers per
    thread; results in the pairs' order."""
    local = threading.local()

    def one(pair: tuple[TensorRef, TensorRef]) -> ValueStats:
        comparer = getattr(local, "comparer", None)
        if comparer is None:
            comparer = local.comparer = Comparer(tolerance, metrics=metrics, norms=norms)
        return comparer.compare(*pair)

    with progress.task(sum(a.nbytes + b.nbytes for a, b in pairs), "diff"):
        return ordered_map(one, pairs)

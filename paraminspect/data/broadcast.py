"""Broadcast views (stride 0) reduced to the elements they store, and a bound on
the elements any view may ask a statistic or a comparison to walk.

``torch.zeros(1).expand(2**36)`` saves one float and a view claiming 2^36 of
them. Along a dimension of stride 0 every element repeats, so the view is its
distinct sub-array (that dimension dropped) repeated ``n`` times: counts, sums
and squared deviations scale by the repeat factor, while min, max and mean stay
those of the sub-array. Commands work on the sub-array; a view that still asks
for more elements than its stored bytes justify (overlapping strides) is
refused past ``--max-elements``.
"""

from __future__ import annotations

import math
from dataclasses import replace

from paraminspect import limits as _limits
from paraminspect.errors import LimitExceeded
from paraminspect.model import TensorRef

# A view may always walk this many times the elements its stored bytes span
# (so real tensors of any size pass); past that, --max-elements decides.
SPAN_FACTOR = 4


def _repeated(size: int, stride: int) -> bool:
    """A dimension that adds no distinct elements: of size 1, or of stride 0."""
    return size == 1 or stride == 0


def kept_dims(ref: TensorRef, other: TensorRef | None = None) -> tuple[int, ...]:
    """Dimensions that hold distinct elements (in ``ref``, and also in ``other`` if given)."""
    if ref.chunks or ref.numel == 0 or (other is not None and (other.chunks or other.shape != ref.shape)):
        return tuple(range(len(ref.shape)))
    return tuple(
        i
        for i, (n, s) in enumerate(zip(ref.shape, ref.strides, strict=True))
        if not (_repeated(n, s) and (other is None or _repeated(n, other.strides[i])))
    )


def reduce(ref: TensorRef, kept: tuple[int, ...]) -> tuple[TensorRef, int]:
    """The view with only ``kept`` dimensions, and how often each of its elements repeats."""
    if len(kept) == len(ref.shape):
        return ref, 1
    shape = tuple(ref.shape[i] for i in kept)
    strides = tuple(ref.strides[i] for i in kept)
    repeat = ref.numel // math.prod(shape)
    return replace(ref, shape=shape, strides=strides), repeat


def distinct(ref: TensorRef) -> tuple[TensorRef, int]:
    """``ref`` reduced to its distinct elements, and their repeat factor."""
    return reduce(ref, kept_dims(ref))


def full_index(index: list[int], kept: tuple[int, ...], ndim: int) -> list[int]:
    """A reduced view's multi-index as the full view's (first occurrence: 0 in dropped dims)."""
    out = [0] * ndim
    for position, dim in zip(index, kept, strict=True):
        out[dim] = position
    return out


def _stored(ref: TensorRef) -> int:
    if ref.chunks:
        return ref.numel  # pieces are contiguous tensors: every element is stored
    begin, end = ref.byte_range()
    return (end - begin) * 8 // max(ref.dtype.bits, 1)


def check_work(*refs: TensorRef) -> None:
    """Refuse (reduced) views that ask to walk more elements than their stored
    bytes justify (together: a broadcast view against a real tensor walks as many
    elements as the real one holds)."""
    stored = sum(_stored(ref) for ref in refs)
    limit = _limits.current().max_elements
    for ref in refs:
        if ref.numel > max(limit, SPAN_FACTOR * stored):
            raise LimitExceeded(
                f"a view of shape {list(ref.shape)} walks {ref.numel:,} elements over {stored:,} stored ones,"
                f" over the {limit:,} limit (use --max-elements to raise it)",
                ref.storage.path,
            )

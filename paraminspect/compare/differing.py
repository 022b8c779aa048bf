"""Statistics of a few differing elements, without numpy.

When two checkpoints differ in a handful of elements (one patched weight, a
changed step counter), importing numpy to decode the one differing 2 MiB chunk
costs more than reading and comparing a whole GiB (~0.065 s of a ~0.3 s
``diff``). So a differing raw chunk is first narrowed down to the elements whose
bytes differ, by memcmp of ever smaller blocks, and if they are few they are
decoded with :mod:`struct` (via :mod:`paraminspect.data.peek`) and folded in with
plain float arithmetic, the same IEEE double operations numpy performs.
Tests hold this path to the numpy one, result for result.

Elements whose bytes are equal are left out: they are equal values and add
nothing to any statistic, except an identical NaN under ``equal_nan=False``
(counted as differing by the numpy path), so that case is not handled here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paraminspect.compare.metrics import Sums
from paraminspect.data import peek
from paraminspect.model import TensorRef

# Block sizes (bytes) for narrowing a differing chunk: 2 MiB -> 64 KiB -> 2 KiB
# -> 64 B -> elements, at most 32-64 memcmps per level per differing block.
_BLOCKS = (1 << 16, 1 << 11, 1 << 6)


def decoder(ref: TensorRef, kind: str, equal_nan: bool) -> Callable[[Any, int], Any] | None:
    """A one-element decoder (buffer, byte offset) -> number, or None when this
    path cannot give the numpy path's exact results for ``ref``."""
    if kind == "complex" or (kind == "float" and not equal_nan):
        # complex: numpy may compute |z| with its own SIMD code, not libm's hypot.
        return None
    return peek.element_decoder(ref)


def differing_offsets(a: bytearray, b: memoryview, length: int, itemsize: int, limit: int) -> list[int] | None:
    """Byte offsets of the elements of ``a[:length]`` and ``b[:length]`` whose
    bytes differ, in order; None as soon as there are more than ``limit``.

    ``bytearray.startswith(view, start)`` is a memcmp that copies nothing
    (``memoryview == memoryview`` compares element by element, 30x slower).
    """
    found: list[int] = []
    sizes = [s for s in _BLOCKS if s > itemsize and s % itemsize == 0] + [itemsize]

    def scan(lo: int, hi: int, level: int) -> bool:
        size = sizes[level]
        for start in range(lo, hi, size):
            end = min(start + size, hi)
            if a.startswith(b[start:end], start):
                continue
            if size == itemsize:
                found.append(start)
                if len(found) > limit:
                    return False
            elif not scan(start, end, level + 1):
                return False
        return True

    return found if scan(0, length, 0) else None


@dataclass
class SliceSummary:
    """What one decoded slice adds to a tensor pair's running statistics."""

    differing: int
    largest: float  # the largest |a - b| (NaN if any), 0.0 if none
    at: int  # flat index of ``largest`` (first occurrence)
    a_value: Any
    b_value: Any
    top_rel: float
    sums: Sums | None = None  # the slice's share of the change measures' sums (numpy path only)


def summarize(items: list[tuple[int, Any, Any]], kind: str, atol: float, rtol: float) -> SliceSummary:
    """Fold (flat index, a, b) triples of one slice, exactly as numpy would.

    Every operation mirrors accumulate.Accumulator.add: differences in float64,
    ``|a - b| <= rtol * |b| + atol`` (exact equality for int/bool), x/0 as inf
    or NaN, and non-finite differences resolved by a == b or both NaN (the
    caller only sends ``equal_nan=True`` float tensors here).
    """
    differing = 0
    best = -1
    largest = 0.0
    top_rel = 0.0
    nan_seen = False
    exact = kind in ("int", "bool")
    for n, (_, x, y) in enumerate(items):
        fx, fy = float(x), float(y)
        diff = abs(fx - fy)
        if exact and diff == 0 and x != y:  # 64-bit integers past 2**53, as compare._exact_hidden
            diff = float(abs(int(x) - int(y)))
        scale = abs(fy)
        close = x == y if exact else diff <= scale * rtol + atol
        rel = diff / scale if scale else (math.inf if diff > 0 else math.nan)  # numpy's x/0
        if not exact and not math.isfinite(diff):
            close = fx == fy or (math.isnan(fx) and math.isnan(fy))
            if close:
                diff = rel = 0.0
        if not close:
            differing += 1
        if math.isnan(diff):
            if not nan_seen:
                nan_seen, best, largest = True, n, diff
        elif not nan_seen and diff > largest:
            best, largest = n, diff
        if not math.isnan(rel) and rel > top_rel:
            top_rel = rel
    if nan_seen:
        top_rel = math.nan
    if best < 0:
        return SliceSummary(differing, 0.0, -1, None, None, top_rel)
    index, x, y = items[best]
    return SliceSummary(differing, largest, index, x, y, top_rel)

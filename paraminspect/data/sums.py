"""Float64 sums over a block, taken one way by every command (stats, diff's measures).

Each sum is numpy's einsum over a contiguous float64 array, never BLAS: BLAS's
dot is faster, but its threads made np.dot 40x slower on a busy 2-core machine,
and its last bits change with its thread count and with the CPU's kernel. The
order of einsum's additions depends on the array's length only, so a block's
sums are the same to the bit on every run.

Σx² squares into a scratch first and then takes einsum's one-operand sum: 21 µs
per 2^16 elements here, against 29 µs for ``einsum("i,i->")``, whose
two-operand loop is the less unrolled one. The products are the same float64
numbers either way (a float32's square is exact in float64); only the order of
the additions differs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["magnitude_sums", "square_total", "total"]


def total(values: np.ndarray) -> float:
    """Σx of a 1-D float64 array."""
    import numpy as np

    return float(np.einsum("i->", values))


def square_total(values: np.ndarray, scratch: np.ndarray) -> float:
    """Σx² of a 1-D float64 array; ``scratch`` (as long, and possibly ``values``
    itself, which is then overwritten) receives the squares."""
    import numpy as np

    return total(np.square(values, out=scratch))


def magnitude_sums(magnitudes: np.ndarray, scratch: np.ndarray) -> tuple[float, float]:
    """(Σx², Σx) of a 1-D float64 array of |x|, Σx taken before ``scratch`` (which may
    be ``magnitudes``) is overwritten by the squares."""
    plain = total(magnitudes)
    return square_total(magnitudes, scratch), plain

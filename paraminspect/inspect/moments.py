"""The running statistics ``stats`` folds each tensor into, chunk by chunk.

An :class:`Accumulator` holds counts, extremes and float64 sums (the mean and the
sum of squared deviations, merged by Chan et al.'s pairwise update), so two of
them merge exactly: that is what makes ``--by-prefix`` and the total line cheap.
The definitions are in :mod:`paraminspect.inspect.stats`.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paraminspect.data import sums

if TYPE_CHECKING:
    import numpy as np

__all__ = ["COUNT_KEYS", "FLOAT_BLOCK", "STAT_KEYS", "Accumulator"]

STAT_KEYS = ("min", "max", "mean", "std", "mean_abs", "l2")
COUNT_KEYS = ("nan", "posinf", "neginf", "zeros")
# Float chunks are reduced this many elements at a time. The block's sums are taken
# over it whole (data/sums.py), so its bounds fix the order of their additions: another
# size changes the last bits of every mean, std, mean_abs and L2. Measured on the 1 GiB
# benchmark with two threads: 2^16 (whose buffers stay in a core's L2 cache) 1.27x
# the time of 2^18, 2^17 1.11x, 2^19 1.12x, 2^20 1.38x; between numpy calls the
# threads take turns at the GIL, so fewer calls beat fewer cache misses, up to a point.
FLOAT_BLOCK = 1 << 18

_MAGNITUDE_BITS = 0x7FFF_FFFF_FFFF_FFFF  # a float64's bits but the sign: |x|, as numpy.abs
_SCRATCH = threading.local()  # each thread's block buffers, reused from block to block


def _buffers() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """This thread's :data:`FLOAT_BLOCK`-long scratch: float32 (a narrow block widened),
    float64 twice (the block widened; deviations or |x|), bool (the zero test). Kept, so
    no block pays for fresh memory."""
    import numpy as np

    buffers: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = getattr(_SCRATCH, "buffers", None)
    if buffers is None:
        buffers = _SCRATCH.buffers = (
            np.empty(FLOAT_BLOCK, np.float32),
            np.empty(FLOAT_BLOCK, np.float64),
            np.empty(FLOAT_BLOCK, np.float64),
            np.empty(FLOAT_BLOCK, np.bool_),
        )
    return buffers


def _chunk_flags(size: int) -> np.ndarray:
    """This thread's bool buffer for a whole chunk's zero test (kept, grown when needed)."""
    import numpy as np

    flags: np.ndarray | None = getattr(_SCRATCH, "chunk_flags", None)
    if flags is None or flags.size < size:
        flags = _SCRATCH.chunk_flags = np.empty(size, np.bool_)
    return flags[:size]


def _count_zeros(block: np.ndarray, flags: np.ndarray) -> int:
    """How many elements of ``block`` equal 0 (``flags``: a bool buffer of its size).
    Zeros are rare: one maximum over the flags' 64-bit words usually rules them out."""
    import numpy as np

    np.equal(block, 0, out=flags)
    if flags.size % 8 == 0 and not np.maximum.reduce(flags.view(np.uint64)):
        return 0
    return int(np.count_nonzero(flags))


def _as_float32(block: np.ndarray, out: np.ndarray) -> np.ndarray:
    """A float16, bfloat16 or float8 block widened (exactly) to float32 in ``out``."""
    import numpy as np

    if block.dtype.name == "bfloat16":  # the upper half of a float32: shift the bits up
        np.left_shift(block.view(np.uint16), 16, out=out.view(np.uint32), dtype=np.uint32)
    else:
        np.copyto(out, block, casting="unsafe")
    return out


@dataclass
class Accumulator:
    """Running statistics of a set of values; two of them merge into one."""

    numel: int = 0
    finite: int = 0  # elements that are neither NaN nor Inf
    ordered: int = 0  # finite real-valued elements, the ones min/max/mean/std describe
    mean: float = 0.0
    m2: float = 0.0  # sum of squared deviations from the mean
    minimum: float | int | None = None
    maximum: float | int | None = None
    sum_abs: float = 0.0
    sum_sq: float = 0.0
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    zeros: int = 0

    def add(self, chunk: np.ndarray) -> None:
        """Fold in one 1-D chunk of values (any decodable dtype)."""
        self.numel += chunk.size
        kind = chunk.dtype.kind
        if kind == "c":
            self._add_complex(chunk)
            return
        if kind in "biu":
            self._add_exact(chunk)
            return
        self._add_float_blocks(chunk)

    def _add_float_blocks(self, chunk: np.ndarray) -> None:
        """A float chunk in blocks of :data:`FLOAT_BLOCK` (each is walked several times).

        A block without NaN or Inf (the usual case) takes a few numpy calls into this
        thread's buffers and no temporaries. Its sums are the einsums of
        :meth:`_fold_finite` over the same block, whose order depends on the block's
        bounds only, so the results are the same to the bit; |x| clears the sign bit.
        A float32/float64 chunk whose extremes are finite and not zero (so that which
        zero, -0.0 or 0.0, is the extreme cannot depend on how it is reduced) has its
        extremes and zeros found once for the whole chunk: 4 numpy calls, not 64, which
        matters most with two threads taking turns at the GIL between calls.
        """
        import numpy as np

        if not chunk.dtype.isnative:
            # A byte-swapped array is reduced through numpy's cast buffers, whose bounds can
            # make the other zero (-0.0 or 0.0) the extreme. The readers return native
            # arrays (data/arrays.py); an array handed in through the library may not be.
            chunk = chunk.astype(chunk.dtype.newbyteorder("="))
        narrow, _, _, flags = _buffers()
        if chunk.dtype.itemsize >= 4 and chunk.size > FLOAT_BLOCK:
            low, high = np.minimum.reduce(chunk), np.maximum.reduce(chunk)
            if math.isfinite(low) and math.isfinite(high) and low != 0 and high != 0:
                self.zeros += _count_zeros(chunk, _chunk_flags(chunk.size))
                extremes = (float(low), float(high))
                for start in range(0, chunk.size, FLOAT_BLOCK):
                    self._fold_finite(chunk[start : start + FLOAT_BLOCK], *extremes)
                return
        for start in range(0, chunk.size, FLOAT_BLOCK):
            block = chunk[start : start + FLOAT_BLOCK]
            n = block.size
            if block.dtype.itemsize < 4:  # float16, bfloat16, float8: widen to float32 (exactly)
                block = _as_float32(block, narrow[:n])
            low, high = np.minimum.reduce(block), np.maximum.reduce(block)  # NaN propagates, Inf is an extreme
            if not (math.isfinite(low) and math.isfinite(high)):
                self._add_floats(block)
                continue
            self.zeros += _count_zeros(block, flags[:n])  # -0.0 too
            self._fold_finite(block, float(low), float(high))

    def _fold_finite(self, block: np.ndarray, low: float, high: float) -> None:
        """Fold in a float32/float64 block of finite values (``low``, ``high``: their
        extremes, or those of the chunk holding them: the same once merged).

        Σx, Σx² and Σ|x| are taken over the whole block by :mod:`paraminspect.data.sums`
        (numpy's einsum, never BLAS, so the same bits on every run). The square sum of deviations is
        Σx² - n·mean² when that cannot cancel (n·mean² <= the result: at most a factor
        of 2 lost), else it is summed from the deviations themselves.
        """
        import numpy as np

        _, wide, spare, _ = _buffers()
        n = block.size
        values = magnitudes = wide[:n]
        if block.dtype == np.float64 and block.dtype.isnative:
            values = block
        else:  # float32: each value widens exactly
            np.copyto(values, block)
        total = sums.total(values)
        squares = sums.square_total(values, spare[:n])  # a float32's square is exact in float64
        mean = total / n
        m2 = squares - total * mean
        if not m2 >= total * mean:  # also when the sums overflowed (NaN)
            deviations = np.subtract(values, mean, out=spare[:n])
            m2 = sums.square_total(deviations, deviations)
        np.bitwise_and(values.view(np.uint64), np.uint64(_MAGNITUDE_BITS), out=magnitudes.view(np.uint64))
        self.finite += n
        self.sum_abs += sums.total(magnitudes)
        self.sum_sq += squares
        self._merge_ordered(n, mean, m2, low, high)

    def _add_floats(self, block: np.ndarray) -> None:
        """A float32 or float64 block that may hold NaN or Inf."""
        import numpy as np

        flags = _buffers()[3]
        self.zeros += int(np.count_nonzero(np.equal(block, 0, out=flags[: block.size])))  # -0.0 too
        low, high = np.minimum.reduce(block), np.maximum.reduce(block)  # NaN propagates, Inf is an extreme
        if not (math.isfinite(low) and math.isfinite(high)):
            finite = np.isfinite(block)
            self.nan += int(np.count_nonzero(np.isnan(block)))
            self.posinf += int(np.count_nonzero(block == math.inf))
            self.neginf += int(np.count_nonzero(block == -math.inf))
            block = block[finite]
            if block.size == 0:
                return
            low, high = block.min(), block.max()
        self._fold_finite(block, float(low), float(high))

    def _add_exact(self, chunk: np.ndarray) -> None:
        """Integers and bool: min and max exact in Python ints, sums in float64."""
        import numpy as np

        self.zeros += chunk.size - int(np.count_nonzero(chunk))
        if chunk.size == 0:
            return
        wide = chunk.astype(np.float64)
        n = wide.size
        low, high = int(chunk.min()), int(chunk.max())
        mean = float(wide.mean())
        scratch = np.subtract(wide, mean)
        part = Accumulator(
            finite=n,
            ordered=n,
            mean=mean,
            m2=sums.square_total(scratch, scratch),
            minimum=low,
            maximum=high,
            sum_abs=sums.total(np.abs(wide, out=scratch)),
            sum_sq=sums.square_total(wide, scratch),
        )
        self._merge_values(part)

    def _add_complex(self, chunk: np.ndarray) -> None:
        import numpy as np

        self.zeros += chunk.size - int(np.count_nonzero(chunk))
        real, imag = chunk.real.astype(np.float64), chunk.imag.astype(np.float64)
        finite = np.isfinite(real) & np.isfinite(imag)
        if not finite.all():
            nan = np.isnan(real) | np.isnan(imag)
            self.nan += int(np.count_nonzero(nan))
            self.posinf += int(np.count_nonzero(~nan & ((real == math.inf) | (imag == math.inf))))
            self.neginf += int(np.count_nonzero(~nan & ((real == -math.inf) | (imag == -math.inf))))
            real, imag = real[finite], imag[finite]
        modulus = np.hypot(real, imag)
        self.finite += modulus.size
        self.sum_abs += sums.total(modulus)
        self.sum_sq += sums.square_total(modulus, modulus)

    def merge(self, other: Accumulator) -> None:
        """Add another accumulator's values (a later chunk, another tensor)."""
        self.numel += other.numel
        self.nan += other.nan
        self.posinf += other.posinf
        self.neginf += other.neginf
        self.zeros += other.zeros
        self._merge_values(other)

    def _merge_values(self, other: Accumulator) -> None:
        self.finite += other.finite
        self.sum_abs += other.sum_abs
        self.sum_sq += other.sum_sq
        if other.ordered == 0:
            return
        assert other.minimum is not None and other.maximum is not None
        self._merge_ordered(other.ordered, other.mean, other.m2, other.minimum, other.maximum)

    def _merge_ordered(self, n: int, mean: float, m2: float, low: float | int, high: float | int) -> None:
        """Chan et al.'s update by ``n`` > 0 ordered values of this mean, m2 and extremes."""
        if self.ordered == 0:
            self.ordered, self.mean, self.m2 = n, mean, m2
            self.minimum, self.maximum = low, high
            return
        total = self.ordered + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.ordered * n / total
        self.ordered = total
        assert self.minimum is not None and self.maximum is not None
        self.minimum = min(self.minimum, low)
        self.maximum = max(self.maximum, high)

    def repeat(self, times: int) -> None:
        """Become the statistics of these values each repeated ``times`` times
        (a broadcast view): min, max and mean stay, counts and sums scale."""
        for name in ("numel", "finite", "ordered", "nan", "posinf", "neginf", "zeros"):
            setattr(self, name, getattr(self, name) * times)
        self.m2 *= times
        self.sum_abs *= times
        self.sum_sq *= times

    def result(self) -> dict[str, Any]:
        """The statistics as exact numbers; None where undefined."""
        return {
            "numel": self.numel,
            "min": self.minimum,
            "max": self.maximum,
            "mean": self.mean if self.ordered else None,
            "std": math.sqrt(self.m2 / (self.ordered - 1)) if self.ordered > 1 else None,
            "mean_abs": self.sum_abs / self.finite if self.finite else None,
            "l2": math.sqrt(self.sum_sq) if self.finite else None,
            "nan": self.nan,
            "posinf": self.posinf,
            "neginf": self.neginf,
            "zeros": self.zeros,
            "sparsity": self.zeros / self.numel if self.numel else None,
        }

"""Folding the element pairs of two tensors into what differs (:class:`ValueStats`).

An :class:`Accumulator` takes decoded blocks of both sides (or the few elements
whose bytes differ, as Python numbers) and keeps the count outside the tolerance,
the largest absolute and relative differences and where the first largest sits,
and the float64 sums the change measures are made of. Block summaries merge
exactly, so the order of blocks (and of threads) never changes the result.
:mod:`paraminspect.compare.elementwise` reads the blocks; ``quantdiff`` feeds it
dequantized ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paraminspect.compare.differing import SliceSummary, summarize
from paraminspect.compare.metrics import Sums, slice_sums
from paraminspect.compare.tolerance import Tolerance
from paraminspect.data.arrays import DEFAULT_CHUNK_ELEMENTS
from paraminspect.data.sums import magnitude_sums
from paraminspect.model import TensorRef

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "BLOCK_ELEMENTS",
    "DECODE_ELEMENTS",
    "Accumulator",
    "ValueStats",
    "Workspace",
    "cast_comparable",
    "kind",
    "numeric",
    "pair_kind",
]

# A differing raw step is decoded a quarter-million elements at a time.
DECODE_ELEMENTS = DEFAULT_CHUNK_ELEMENTS // 4
# A decoded slice is compared whole, in about twenty numpy calls. Blocks of 2^16, whose
# float64 scratch stays in a core's L2 cache, were slower (1 GiB benchmark, the same code
# otherwise, interleaved runs): diff 1.1-1.3x, diff --metrics 1.35-1.45x the time. Two
# threads take turns at the GIL between numpy calls, and 4x the calls cost more than
# the cache misses.
BLOCK_ELEMENTS = DECODE_ELEMENTS


def kind(ref: TensorRef) -> str:
    """bool, int, float or complex: which comparison rule and Python type apply."""
    name = ref.dtype.name
    if ref.dtype.blocked:  # GGUF quant types decode to float32
        return "float"
    if name == "bool":
        return "bool"
    if name.startswith("complex"):
        return "complex"
    if name.startswith(("float", "bfloat")):
        return "float"
    return "int"


def pair_kind(a: TensorRef, b: TensorRef) -> str:
    """The rule for a pair: a float on either side makes it a float comparison
    (with the tolerance); int against bool stays exact."""
    kinds = {kind(a), kind(b)}
    if len(kinds) == 1:
        return kinds.pop()
    return "float" if "float" in kinds else "int"


def numeric(ref: TensorRef) -> bool:
    """Decodable as numbers (``bits8``/``bits16`` decode as uint, but are raw bits)."""
    return ref.dtype.numpy is not None and not ref.dtype.name.startswith("bits")


def cast_comparable(a: TensorRef, b: TensorRef) -> bool:
    """True when two tensors of different dtypes can have their values compared:
    same shape, both decodable as numbers, complex only against complex."""
    if a.dtype == b.dtype or a.shape != b.shape or not (numeric(a) and numeric(b)):
        return False
    return (kind(a) == "complex") == (kind(b) == "complex")


@dataclass
class ValueStats:
    """What differs between two tensors' values.

    ``differing`` counts elements outside the tolerance (None when the dtype
    cannot be decoded and only the bytes were found to differ). ``max_abs`` and
    ``max_rel`` cover every element, inside the tolerance or not, so an "equal
    within tolerance" tensor still shows how far apart it is; NaN counts as the
    largest difference. ``index`` is where ``max_abs`` sits (C-order position as
    a multi-index), with each side's value there.
    """

    differing: int | None = 0
    max_abs: float | int = 0
    max_rel: float = 0.0
    index: list[int] | None = None
    a_value: Any = None
    b_value: Any = None
    # The float64 sums the change measures are made of (metrics.py); None unless
    # asked for, or when the values cannot be decoded.
    sums: Sums | None = None


def _equal_exact(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``a == b`` for integer/bool arrays, exactly. numpy < 2 compares uint64 with a
    signed type through float64 (wrong past 2**53), so that pair is compared as
    uint64 with the sign checked apart."""
    import numpy as np

    if a.dtype == b.dtype or np.result_type(a.dtype, b.dtype).kind != "f":
        np.equal(a, b, out=out)
        return
    signed, unsigned = (a, b) if a.dtype.kind == "i" else (b, a)
    np.greater_equal(signed, 0, out=out)
    out &= signed.astype(np.uint64) == unsigned  # a negative wraps, but is already False


def _exact_hidden(a: np.ndarray, b: np.ndarray, diff: np.ndarray, close: np.ndarray) -> None:
    """Unequal 64-bit integers that float64 rounds to the same number (past 2**53)
    get their exact difference, so a differing element never shows as 0 apart."""
    import numpy as np

    hidden = np.flatnonzero(~close & (diff == 0))
    if len(hidden):
        # Equal in float64 means same sign and |a - b| < 2**12: of the two residues
        # of a - b modulo 2**64, the smaller one is |a - b|.
        d = a[hidden].astype(np.uint64) - b[hidden].astype(np.uint64)
        diff[hidden] = np.minimum(d, np.negative(d))


def _larger(value: float, than: float) -> bool:
    """Order for "largest difference": NaN beats everything, ties keep the first."""
    if math.isnan(than):
        return False
    return math.isnan(value) or value > than


class Workspace:
    """Scratch arrays reused for every decoded slice: fresh multi-MiB temporaries
    per slice make glibc map, fault and trim pages each time, which cost more
    than the arithmetic (measured: 0.5 s of system time per 400 MB compared)."""

    def __init__(self) -> None:
        self.capacity = 0
        self.arrays: tuple[np.ndarray, ...] = ()

    def get(self, n: int) -> tuple[np.ndarray, ...]:
        """(diff, scale, work) float64 and (close, mask) bool views of length ``n``."""
        import numpy as np

        if n > self.capacity:
            self.capacity = max(n, DECODE_ELEMENTS)
            floats = [np.empty(self.capacity, np.float64) for _ in range(3)]
            self.arrays = (*floats, np.empty(self.capacity, bool), np.empty(self.capacity, bool))
        return tuple(x[:n] for x in self.arrays)


class Accumulator:
    """Running totals over the chunks of one tensor pair (``other``: B, when its
    dtype differs from A's)."""

    def __init__(
        self, ref: TensorRef, tolerance: Tolerance, workspace: Workspace, other: TensorRef | None = None
    ) -> None:
        other = other or ref
        self.shape = ref.shape
        self.itemsize = ref.dtype.itemsize
        self.kind = pair_kind(ref, other)
        self.sides = (kind(ref), kind(other))  # each value is reported in its own type
        self.tolerance = tolerance
        self.workspace = workspace
        self.stats = ValueStats()
        self.sums: Sums | None = None  # set by a Comparer that wants the change measures

    def add(self, first: int, a: np.ndarray, b: np.ndarray) -> None:
        """Fold in elements [first, first + len(a)) of both tensors, a block at a time
        (each block is walked by several passes; the summaries merge exactly: counts
        add, and the first largest difference wins in either order)."""
        for start in range(0, len(a), BLOCK_ELEMENTS):
            self._add_block(first + start, a[start : start + BLOCK_ELEMENTS], b[start : start + BLOCK_ELEMENTS])

    def _add_block(self, first: int, a: np.ndarray, b: np.ndarray) -> None:
        """Fold in one block.

        Written for throughput (a fine-tuned model differs everywhere): a few
        whole-array passes into reused buffers; positions needing care (NaN,
        infinities) are rare and fixed up by index afterwards.
        """
        import numpy as np

        atol, rtol = self.tolerance.atol, self.tolerance.rtol
        a_sums = (0.0, 0.0)  # (sum |a|^2, sum |a|) for the change measures
        sums: Sums | None = None
        all_finite: bool | None = None  # every |b - a| finite: nothing to fix up
        with np.errstate(all="ignore"):
            if self.kind == "complex":  # rare: plain temporaries
                ac, bc = a.astype(np.complex128), b.astype(np.complex128)
                diff, scale = np.abs(ac - bc), np.abs(bc)
                if self.sums is not None:
                    a_moduli = np.abs(ac)
                    a_sums = magnitude_sums(a_moduli, a_moduli)
                close = diff <= scale * rtol + atol
                rel, finite = diff / scale, np.isfinite(diff)
                all_finite = bool(finite.all())
            else:
                diff, scale, rel, close, finite = self.workspace.get(len(a))
                if self.sums is None:
                    np.subtract(a, b, out=diff, dtype=np.float64)
                    np.absolute(diff, out=diff)
                    np.absolute(b, out=scale, dtype=np.float64)
                else:
                    # Both sides to float64 first (A in ``rel``, free until the
                    # tolerance below): the same IEEE operations as the mixed-type
                    # subtract above, and A's norms need no cast of their own.
                    np.copyto(rel, a, casting="unsafe")
                    np.copyto(scale, b, casting="unsafe")
                    np.subtract(rel, scale, out=diff)
                    np.absolute(diff, out=diff)
                    # |a| then |a|² in ``rel``: free until the tolerance below.
                    a_sums = magnitude_sums(np.absolute(rel, out=rel), rel)
                    np.absolute(scale, out=scale)
                    if self.kind == "float":
                        # The sums now, while the block is in cache; a finite Σ|b-a|² also
                        # says every |b-a| is finite, which spares the isfinite pass.
                        sums = slice_sums(*a_sums, scale, diff, rel)
                        all_finite = math.isfinite(sums.dd) or None
                if self.kind in ("int", "bool"):
                    _equal_exact(a, b, close)  # exact: float64 cannot tell int64s apart past 2**53
                    if max(a.dtype.itemsize, b.dtype.itemsize) == 8:
                        _exact_hidden(a, b, diff, close)
                else:
                    np.multiply(scale, rtol, out=rel)
                    rel += atol
                    np.less_equal(diff, rel, out=close)
                np.divide(diff, scale, out=rel)  # 0/0 (equal zeros) is NaN here, ignored below
                if all_finite is None:
                    np.isfinite(diff, out=finite)
                    all_finite = bool(finite.all())
            if self.kind not in ("int", "bool") and not all_finite:
                # inf - inf and NaN: equal if a == b (same infinity) or, with
                # equal_nan, both NaN; any other non-finite difference differs.
                odd = np.flatnonzero(~finite)
                pa, pb = a[odd].astype(np.complex128), b[odd].astype(np.complex128)
                same = pa == pb
                if self.tolerance.equal_nan:
                    same |= np.isnan(pa) & np.isnan(pb)
                close[odd] = same
                diff[odd[same]] = 0
                rel[odd[same]] = 0
                if self.sums is not None:  # equal non-finite pairs add nothing to the norms either
                    scale[odd[same]] = 0
                    wide = np.abs(a.astype(np.complex128 if self.kind == "complex" else np.float64))
                    wide[odd[same]] = 0
                    a_sums = magnitude_sums(wide, wide)
                    sums = None  # summed again below, fixed up
        nan_at = np.flatnonzero(np.isnan(diff)) if not all_finite else np.empty(0, np.intp)
        at = int(nan_at[0]) if len(nan_at) else int(np.argmax(diff))
        if len(nan_at):
            top_rel = math.nan
        else:
            with np.errstate(all="ignore"):
                top_rel = float(np.nanmax(rel, initial=0.0))
        differing = int(close.size - np.count_nonzero(close))
        if self.sums is not None and sums is None:
            sums = slice_sums(*a_sums, scale, diff, rel)  # ``rel`` is free once top_rel is taken
        self.merge(SliceSummary(differing, float(diff[at]), first + at, a[at], b[at], top_rel, sums))

    def add_few(self, items: list[tuple[int, Any, Any]]) -> None:
        """Fold in the elements of one slice whose bytes differ, as (flat index,
        a, b) Python numbers: same result as :meth:`add` on the whole slice."""
        assert self.sums is None, "the numpy-free path carries no change measures (elementwise.Comparer)"
        self.merge(summarize(items, self.kind, self.tolerance.atol, self.tolerance.rtol))

    def merge(self, part: SliceSummary) -> None:
        """Fold one slice's summary into the totals (shared by both paths, so they agree)."""
        assert self.stats.differing is not None
        self.stats.differing += part.differing
        if self.sums is not None and part.sums is not None:
            self.sums.add(part.sums)
        if part.largest != 0 and _larger(part.largest, float(self.stats.max_abs)):
            self.stats.max_abs = part.largest
            self.stats.index = _unravel(part.at, self.shape)
            self.stats.a_value = _scalar(part.a_value, self.sides[0])
            self.stats.b_value = _scalar(part.b_value, self.sides[1])
            if self.kind == "int":  # exact, even past float64's 2**53
                self.stats.max_abs = abs(int(part.a_value) - int(part.b_value))
        if _larger(part.top_rel, self.stats.max_rel):
            self.stats.max_rel = part.top_rel


def _scalar(value: Any, kind: str) -> Any:
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return int(value)
    if kind == "complex":
        return complex(value)
    return float(value)


def _unravel(flat: int, shape: tuple[int, ...]) -> list[int]:
    """``np.unravel_index`` for one C-order position."""
    index = []
    for size in reversed(shape):
        flat, i = divmod(flat, size)
        index.append(i)
    return index[::-1]

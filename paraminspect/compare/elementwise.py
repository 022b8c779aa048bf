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

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paraminspect.compare.differing import SliceSummary, decoder, differing_offsets, summarize
from paraminspect.compare.metrics import Sums, same_sums, slice_sums
from paraminspect.compare.owed import Owed, settle
from paraminspect.compare.tolerance import Tolerance
from paraminspect.data import broadcast
from paraminspect.data.arrays import DEFAULT_CHUNK_ELEMENTS, decode_bytes, iter_chunks, iter_raw_chunks
from paraminspect.data.parallel import ordered_map
from paraminspect.io import progress
from paraminspect.model import TensorRef

if TYPE_CHECKING:
    import numpy as np

# Raw bytes are read and compared in 2 MiB steps (two buffers in memory: small
# enough to stay in cache between the read and the compare, measured ~10% less
# CPU than 8 MiB); a differing step is decoded a quarter-million elements at a time.
RAW_CHUNK_BYTES = 2 << 20
DECODE_ELEMENTS = DEFAULT_CHUNK_ELEMENTS // 4
# A decoded slice is compared this many elements at a time (its float64 scratch stays in cache).
BLOCK_ELEMENTS = 1 << 16

# Differing elements a Comparer decodes without numpy (see differing.py) before it
# imports numpy for good: ~1 us each in pure Python, against ~65 ms for the import.
FEW_ELEMENTS = 4096


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


def _kind(ref: TensorRef) -> str:
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


def _pair_kind(a: TensorRef, b: TensorRef) -> str:
    """The rule for a pair: a float on either side makes it a float comparison
    (with the tolerance); int against bool stays exact."""
    kinds = {_kind(a), _kind(b)}
    if len(kinds) == 1:
        return kinds.pop()
    return "float" if "float" in kinds else "int"


def _numeric(ref: TensorRef) -> bool:
    """Decodable as numbers (``bits8``/``bits16`` decode as uint, but are raw bits)."""
    return ref.dtype.numpy is not None and not ref.dtype.name.startswith("bits")


def cast_comparable(a: TensorRef, b: TensorRef) -> bool:
    """True when two tensors of different dtypes can have their values compared:
    same shape, both decodable as numbers, complex only against complex."""
    if a.dtype == b.dtype or a.shape != b.shape or not (_numeric(a) and _numeric(b)):
        return False
    return (_kind(a) == "complex") == (_kind(b) == "complex")


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


def _norm_sums(absolute: np.ndarray) -> tuple[float, float]:
    """(sum of squares, sum) of a float64 array of |a|."""
    import numpy as np

    return float(np.einsum("i,i->", absolute, absolute)), float(absolute.sum())


def _larger(value: float, than: float) -> bool:
    """Order for "largest difference": NaN beats everything, ties keep the first."""
    if math.isnan(than):
        return False
    return math.isnan(value) or value > than


class _Workspace:
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


class _Accumulator:
    """Running totals over the chunks of one tensor pair (``other``: B, when its
    dtype differs from A's)."""

    def __init__(
        self, ref: TensorRef, tolerance: Tolerance, workspace: _Workspace, other: TensorRef | None = None
    ) -> None:
        other = other or ref
        self.shape = ref.shape
        self.itemsize = ref.dtype.itemsize
        self.kind = _pair_kind(ref, other)
        self.sides = (_kind(ref), _kind(other))  # each value is reported in its own type
        self.tolerance = tolerance
        self.workspace = workspace
        self.stats = ValueStats()
        self.sums: Sums | None = None  # set by a Comparer that wants the change measures

    def add(self, first: int, a: np.ndarray, b: np.ndarray) -> None:
        """Fold in elements [first, first + len(a)) of both tensors, a cache-sized block
        at a time (each block is walked by several passes; the summaries merge exactly:
        counts add, and the first largest difference wins in either order)."""
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
        with np.errstate(all="ignore"):
            if self.kind == "complex":  # rare: plain temporaries
                ac, bc = a.astype(np.complex128), b.astype(np.complex128)
                diff, scale = np.abs(ac - bc), np.abs(bc)
                if self.sums is not None:
                    a_sums = _norm_sums(np.abs(ac))
                close = diff <= scale * rtol + atol
                rel, finite = diff / scale, np.isfinite(diff)
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
                    a_sums = _norm_sums(np.absolute(rel, out=rel))
                    np.absolute(scale, out=scale)
                if self.kind in ("int", "bool"):
                    _equal_exact(a, b, close)  # exact: float64 cannot tell int64s apart past 2**53
                    if max(a.dtype.itemsize, b.dtype.itemsize) == 8:
                        _exact_hidden(a, b, diff, close)
                else:
                    np.multiply(scale, rtol, out=rel)
                    rel += atol
                    np.less_equal(diff, rel, out=close)
                np.divide(diff, scale, out=rel)  # 0/0 (equal zeros) is NaN here, ignored below
                np.isfinite(diff, out=finite)
            if self.kind not in ("int", "bool") and not finite.all():
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
                    a_sums = _norm_sums(wide)
        nan_at = np.flatnonzero(np.isnan(diff)) if not finite.all() else np.empty(0, np.intp)
        at = int(nan_at[0]) if len(nan_at) else int(np.argmax(diff))
        if len(nan_at):
            top_rel = math.nan
        else:
            with np.errstate(all="ignore"):
                top_rel = float(np.nanmax(rel, initial=0.0))
        differing = int(close.size - np.count_nonzero(close))
        sums = slice_sums(*a_sums, scale, diff) if self.sums is not None else None
        self.merge(SliceSummary(differing, float(diff[at]), first + at, a[at], b[at], top_rel, sums))

    def add_few(self, items: list[tuple[int, Any, Any]]) -> None:
        """Fold in the elements of one slice whose bytes differ, as (flat index,
        a, b) Python numbers: same result as :meth:`add` on the whole slice."""
        self.merge(summarize(items, self.kind, self.tolerance.atol, self.tolerance.rtol, self.sums is not None))

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
        self._workspace = _Workspace()
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
        acc = _Accumulator(a, self.tolerance, self._workspace, b)
        if self.metrics and _numeric(a) and _numeric(b):  # raw bits (bits8, float4...) have no norm
            acc.sums = Sums()
        stats = self._values(a, b, acc)
        if acc.sums is not None and stats.differing is not None:
            acc.sums.elements, acc.sums.differing = a.numel, stats.differing
            stats.sums = acc.sums
        return stats

    def _values(self, a: TensorRef, b: TensorRef, acc: _Accumulator) -> ValueStats:
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
                    if decode is not None and self._few_left > 0:
                        offsets = differing_offsets(buf_a, raw_b, len(raw_a), itemsize, self._few_left)
                        if offsets is not None:
                            self._few_left -= len(offsets)
                            self._add_few(acc, first, offsets, raw_a, raw_b, decode)
                            if acc.sums is not None:
                                owed.add(first * itemsize, len(raw_a), itemsize, offsets)
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
        acc: _Accumulator,
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
    (:mod:`paraminspect.data.parallel`), one Comparer and so one set of buffers per
    thread; results in the pairs' order."""
    local = threading.local()

    def one(pair: tuple[TensorRef, TensorRef]) -> ValueStats:
        comparer = getattr(local, "comparer", None)
        if comparer is None:
            comparer = local.comparer = Comparer(tolerance, metrics=metrics, norms=norms)
        return comparer.compare(*pair)

    with progress.task(sum(a.nbytes + b.nbytes for a, b in pairs), "diff"):
        return ordered_map(one, pairs)

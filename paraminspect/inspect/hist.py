"""Value distributions in bounded memory: exact histograms, exact percentiles, and the
small sampled histogram ``stats --hist`` draws per row.

Every routine walks a tensor's values as a stream of chunks (``Values``) and keeps
only fixed-size state, so memory is bounded whatever the tensor's size. NaN and
+/-Inf are left out, as in ``stats``. The definitions (documented in docs/values.md):

- **Histogram** (``hist``): ``bins`` equal bins over [lo, hi] (the finite range, or
  ``--range``). Bin i holds lo_i <= x < lo_(i+1), the last bin also holds hi: the
  edges are ``numpy.linspace(lo, hi, bins + 1)`` and the counts are exactly
  ``numpy.histogram``'s (each chunk is counted by numpy.histogram with the same
  edges, and its binning is per element). Values outside --range are counted as
  ``below``/``above``. Exact: two passes (the finite range, then the counts); one
  with --range.
- **Percentiles**: exact, as ``numpy.percentile`` (its default "linear" method) on
  the finite values widened to float64. Found by histogram refinement: each pass
  counts the values of the still-open interval into 4096 bins, keeping the
  values themselves while they number at most :data:`COLLECT`; the order
  statistics are then picked exactly (``numpy.partition``) from the kept values, or
  the bin holding them becomes the next pass's interval. A tensor of up to
  :data:`COLLECT` values takes one pass, a larger one usually two. Exact selection
  in one bounded-memory pass is not possible; this is exact in a few.
- **Row histogram** (``stats --hist``): :data:`ROW_BINS` bins over the tensor's
  exact finite range, counted on a systematic sample (every k-th element, k chosen
  so at most :data:`SAMPLE` elements are kept), so it costs a strided copy per
  chunk rather than a binning pass. Exact (k = 1) for tensors of up to
  :data:`SAMPLE` elements; JSON says which (``every``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paraminspect.data import broadcast
from paraminspect.data.arrays import DEFAULT_CHUNK_ELEMENTS, iter_chunks
from paraminspect.errors import CheckpointError, UsageError
from paraminspect.io import progress
from paraminspect.model import Checkpoint, TensorRef
from paraminspect.output.report import HistReport
from paraminspect.quant.logical import Recognition

if TYPE_CHECKING:
    import numpy as np

# A fresh iterator over a tensor's values (1-D chunks), each time it is called.
Values = Callable[[], Iterator["np.ndarray"]]

ROW_BINS = 16  # bins of a stats --hist row (two block characters' worth per bin would not fit)
SAMPLE = 1 << 14  # most elements a row histogram keeps (16 bins drawn in 8 heights need no more)
COLLECT = 1 << 18  # most values a percentile pass keeps per open interval (2 MiB of float64)
REFINE_BINS = 4096
MAX_BINS = 100_000


def finite64(chunk: np.ndarray) -> np.ndarray:
    """The chunk's finite values as float64 (bool as 0/1; integers beyond 2^53 round)."""
    import numpy as np

    wide = chunk.astype(np.float64)
    if wide.size == 0 or (math.isfinite(wide.min()) and math.isfinite(wide.max())):
        return wide
    return wide[np.isfinite(wide)]


# ---- the row histogram of stats --hist ------------------------------------------------


_SCRATCH = threading.local()  # each thread's sample buffer, reused from tensor to tensor


def _sample_buffer() -> np.ndarray:
    """This thread's :data:`SAMPLE`-long float64 buffer. One per thread, kept: a fresh
    one per tensor (or a small array per chunk) made glibc trim the heap and fault the
    next chunk's buffers in again, doubling the system time of ``stats --hist``."""
    import numpy as np

    buffer: np.ndarray | None = getattr(_SCRATCH, "buffer", None)
    if buffer is None:
        buffer = _SCRATCH.buffer = np.empty(SAMPLE, np.float64)
    return buffer


@dataclass
class Sampler:
    """Every ``every``-th element of a stream of chunks (by position in the whole stream),
    widened to float64 into this thread's sample buffer (at most :data:`SAMPLE` of them).
    Read :meth:`histogram` in the thread that added the chunks, before it samples again."""

    numel: int
    every: int = 1
    seen: int = 0
    kept: int = 0

    def __post_init__(self) -> None:
        self.every = max(1, -(-self.numel // SAMPLE))

    def add(self, chunk: np.ndarray) -> None:
        import numpy as np

        first = (-self.seen) % self.every
        self.seen += chunk.size
        if first >= chunk.size:
            return
        picked = chunk[first :: self.every]
        np.copyto(_sample_buffer()[self.kept : self.kept + picked.size], picked, casting="unsafe")
        self.kept += picked.size

    def histogram(self, low: float | int | None, high: float | int | None, times: int = 1) -> dict[str, Any] | None:
        """The sample's counts in :data:`ROW_BINS` bins over [low, high] (the exact finite
        range: NaN and +/-Inf fall outside it, so numpy.histogram leaves them out)."""
        import numpy as np

        if low is None or high is None:
            return None
        # numpy.histogram's edges and counts, but counted by sorting the sample in place and
        # finding the edges in it (each bin holds edges[i] <= x < edges[i + 1], the last one
        # its upper edge too; NaN sorts last, Inf beyond the edges): 2x cheaper per row.
        edges = np.histogram_bin_edges(np.empty(0), bins=ROW_BINS, range=(float(low), float(high)))
        values = _sample_buffer()[: self.kept]
        values.sort()
        at = np.searchsorted(values, edges, side="left")
        at[-1] = np.searchsorted(values, edges[-1], side="right")
        counts = np.diff(at)
        return {"edges": edges.tolist(), "counts": (counts * times).tolist(), "every": self.every}


# ---- exact histograms ------------------------------------------------------------------


def finite_range(values: Values) -> tuple[float, float] | None:
    """The least and greatest finite value (None when there is none): the first pass."""
    low, high = math.inf, -math.inf
    for chunk in values():
        kept = finite64(chunk)
        if kept.size:
            low, high = min(low, float(kept.min())), max(high, float(kept.max()))
    return (low, high) if low <= high else None


@dataclass
class Counts:
    """An exact histogram and what it left out."""

    edges: list[float]
    counts: list[int]
    below: int = 0
    above: int = 0
    nonfinite: int = 0


def histogram(values: Values, bins: int, low: float, high: float, times: int = 1) -> Counts:
    """Counts of the finite values in ``bins`` bins over [low, high], exactly numpy.histogram's."""
    import numpy as np

    total = np.zeros(bins, dtype=np.int64)
    edges: np.ndarray = np.histogram_bin_edges(np.zeros(0), bins=bins, range=(low, high))
    below = above = nonfinite = 0
    for chunk in values():
        kept = finite64(chunk)
        nonfinite += chunk.size - kept.size
        below += int(np.count_nonzero(kept < edges[0]))
        above += int(np.count_nonzero(kept > edges[-1]))
        total += np.histogram(kept, bins=bins, range=(low, high))[0]
    return Counts(edges.tolist(), (total * times).tolist(), below * times, above * times, nonfinite * times)


# ---- exact percentiles -----------------------------------------------------------------


@dataclass
class _Open:
    """An interval of values still holding wanted order statistics: [lo, hi) or [lo, hi]."""

    lo: float
    hi: float
    closed: bool
    below: int  # values less than lo
    ranks: list[int]


def order_statistics(values: Values, ranks: set[int], low: float, high: float) -> dict[int, float]:
    """The values of the given ranks (0-based, ascending) among the finite values, exactly."""
    import numpy as np

    found: dict[int, float] = {}
    pending = [_Open(low, high, True, 0, sorted(ranks))] if ranks else []
    while pending:
        kept: list[list[np.ndarray] | None] = [[] for _ in pending]
        held = [0] * len(pending)
        extremes = [(math.inf, -math.inf)] * len(pending)
        counts = [np.zeros(REFINE_BINS, dtype=np.int64) for _ in pending]
        for chunk in values():
            wide = finite64(chunk)
            for i, spec in enumerate(pending):
                inside = (wide >= spec.lo) & ((wide <= spec.hi) if spec.closed else (wide < spec.hi))
                # The first pass's interval holds every finite value: no copy of the chunk.
                part = wide if inside.all() else wide[inside]
                if not part.size:
                    continue
                counts[i] += np.histogram(part, bins=REFINE_BINS, range=(spec.lo, spec.hi))[0]
                held[i] += part.size
                extremes[i] = (min(extremes[i][0], float(part.min())), max(extremes[i][1], float(part.max())))
                if held[i] > COLLECT:
                    kept[i] = None  # too many: refine instead
                elif (store := kept[i]) is not None:
                    store.append(part)  # ``wide`` is the chunk's own copy (finite64), safe to keep
        following: list[_Open] = []
        for spec, store, count, (least, most) in zip(pending, kept, counts, extremes, strict=True):
            if least == most:  # every value of the interval is the same
                found.update(dict.fromkeys(spec.ranks, least))
                continue
            if store is not None:
                flat = np.concatenate(store)
                local = [r - spec.below for r in spec.ranks]
                picked = np.partition(flat, local)
                found.update({r: float(picked[r - spec.below]) for r in spec.ranks})
                continue
            edges = np.histogram_bin_edges(np.zeros(0), bins=REFINE_BINS, range=(spec.lo, spec.hi))
            before = spec.below + np.concatenate(([0], np.cumsum(count)))
            by_bin: dict[int, list[int]] = {}
            for rank in spec.ranks:
                by_bin.setdefault(int(np.searchsorted(before, rank, side="right")) - 1, []).append(rank)
            for j, members in by_bin.items():
                lo, hi = float(edges[j]), float(edges[j + 1])
                if lo == hi or (lo == spec.lo and hi == spec.hi):
                    found.update(dict.fromkeys(members, lo))  # no narrower interval exists: every value is lo
                    continue
                closed = spec.closed and j == REFINE_BINS - 1
                following.append(_Open(lo, hi, closed, int(before[j]), members))
        pending = following
    return found


def percentile_ranks(count: int, percents: list[float]) -> dict[float, tuple[int, int, float]]:
    """Per percent: numpy's "linear" virtual index split into (below, above, fraction)."""
    out = {}
    for q in percents:
        virtual = (count - 1) * (q / 100)
        below = min(max(math.floor(virtual), 0), count - 1)
        out[q] = (below, min(below + 1, count - 1), virtual - below)
    return out


def lerp(a: float, b: float, t: float) -> float:
    """numpy's _lerp, so results agree with numpy.percentile to the last bit."""
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def percentiles(
    values: Values, count: int, percents: list[float], low: float, high: float, times: int = 1
) -> dict[str, float | None]:
    """Exact percentiles of ``count`` finite values (each repeated ``times`` times) in [low, high]."""
    if count == 0:
        return {percent_key(q): None for q in percents}
    split = percentile_ranks(count * times, percents)
    wanted = {r // times for below, above, _ in split.values() for r in (below, above)}
    found = order_statistics(values, wanted, low, high)
    return {
        percent_key(q): lerp(found[below // times], found[above // times], t) for q, (below, above, t) in split.items()
    }


def percent_key(q: float) -> str:
    """The JSON key and column title of a percent: ``50``, ``99.9``."""
    return f"{q:g}"


def parse_percents(text: str) -> list[float]:
    """``1,50,99`` as numbers in [0, 100]."""
    out = []
    for part in text.split(","):
        try:
            q = float(part)
        except ValueError:
            raise UsageError(
                f"--percentiles takes numbers between 0 and 100 separated by commas, not {text!r}"
            ) from None
        if not 0 <= q <= 100:
            raise UsageError(f"--percentiles: {part.strip()} is not between 0 and 100")
        out.append(q)
    return list(dict.fromkeys(out))


def parse_range(text: str) -> tuple[float, float]:
    """``LO,HI`` with LO < HI, both finite."""
    parts = text.split(",")
    try:
        low, high = (float(p) for p in parts) if len(parts) == 2 else (math.nan, math.nan)
    except ValueError:
        low = high = math.nan
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise UsageError(f"--range takes LO,HI with LO < HI (finite numbers), not {text!r}")
    return low, high


# ---- a tensor's values -------------------------------------------------------------------


def tensor_values(ref: TensorRef, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> tuple[Values, int]:
    """A tensor's distinct values as a re-readable stream, and how often each repeats."""
    distinct, times = broadcast.distinct(ref)
    broadcast.check_work(distinct)
    return (lambda: iter_chunks(distinct, chunk_elements)), times


def named_values(ckpt: Checkpoint, name: str, found: Recognition | None) -> tuple[Values, int, str, list[int]]:
    """The values of one tensor (or dequantized weight): stream, repeat, dtype and shape."""
    weight = found.weights.get(name) if found else None
    if weight is not None:
        from paraminspect.quant import dequant

        reason = dequant.undecodable(weight, ckpt.entries)
        if reason is not None:
            raise CheckpointError(f"{name}: cannot dequantize: {reason}", ckpt.path)
        return (
            (lambda: (b.reshape(-1) for b in dequant.iter_rows(weight, ckpt.entries))),
            1,
            weight.dtype,
            list(weight.shape),
        )
    ref = ckpt.tensors.get(name)
    if ref is None:
        raise UsageError(f"{name!r} is not a tensor")
    if ref.dtype.numpy is None:
        raise CheckpointError(f"{name}: cannot decode {ref.dtype} values", ckpt.path)
    if ref.dtype.name.startswith("complex"):
        raise UsageError(f"{name!r} is complex: its values have no order to bin")
    values, times = tensor_values(ref)
    return values, times, ref.dtype.name, list(ref.shape)


def report(
    ckpt: Checkpoint,
    name: str,
    *,
    bins: int = 20,
    value_range: tuple[float, float] | None = None,
    log: bool = False,
    found: Recognition | None = None,
) -> HistReport:
    """``hist``: one tensor's exact histogram."""
    if not 1 <= bins <= MAX_BINS:
        raise UsageError(f"--bins takes 1 to {MAX_BINS:,}")
    values, times, dtype, shape = named_values(ckpt, name, found)
    weight = found.weights.get(name) if found else None
    stored = weight.storage_bytes if weight is not None else ckpt.tensors[name].nbytes
    with progress.task(stored * (1 if value_range else 2), "hist"):  # the range, then the counts
        extent = value_range or finite_range(values)
        if extent is None:
            counts = Counts([], [], nonfinite=math.prod(shape))
        else:
            counts = histogram(values, bins, extent[0], extent[1], times)
    document: dict[str, Any] = {
        "file": str(ckpt.path),
        "format": ckpt.format,
        "name": name,
        "dtype": dtype,
        "shape": shape,
        "range": list(value_range) if value_range else None,
        "edges": counts.edges,
        "counts": counts.counts,
        "below": counts.below,
        "above": counts.above,
        "nonfinite": counts.nonfinite,
    }
    return HistReport(document, log=log)

"""How much a tensor moved: sums carried in float64, and the measures made of them.

A comparison folds every element pair into five running sums (:class:`Sums`):
Σ|a|², Σ|b|², Σ|b-a|², Σ|b-a| and Σ|a|. Every measure is a ratio of sums, so a
roll-up over many tensors (``--by-prefix``, the heatmap) adds the sums first
and divides once: exact, not an average of averages. ⟨a, b⟩ comes from the
polarisation identity Re⟨a, b⟩ = (Σ|a|² + Σ|b|² - Σ|b-a|²) / 2, which saves a
pass and holds for complex values too.

Conventions (documented in docs/compare.md):

- Nothing changed (Σ|b-a| = 0): every measure is exact, 0 (cosine 1), and no
  norm is needed, so byte-identical tensors are never decoded for them.
- A all zero and B not: the ratios are ``inf``; the cosine is 0 (torch's
  ``cosine_similarity`` convention for a zero vector).
- A NaN or infinity that ``diff`` counts as equal (same infinity; NaN against
  NaN under ``--equal-nan``) adds nothing to any sum; one it counts as differing
  enters the sums as it is, so the measures become ``nan`` or ``inf``.
- Integers and bools are summed as float64 (bool: 0/1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paraminspect.data import sums

if TYPE_CHECKING:
    import numpy as np

# Measure names, as JSON keys and ``--sort-by`` values; the cosine sorts ascending.
METRICS = ("rel_l2", "cosine", "nmse", "rel_mean_abs", "frac_differing")


@dataclass
class Sums:
    """Running float64 sums over the element pairs of one or more tensor pairs.

    ``complete`` is False when elements whose bytes were equal were skipped and
    their A-sums (``aa``, ``bb``, ``abs_a``) were not computed: the measures
    are still exact when nothing changed, but such sums cannot be rolled up.
    """

    elements: int = 0
    differing: int = 0
    aa: float = 0.0
    bb: float = 0.0
    dd: float = 0.0
    abs_d: float = 0.0
    abs_a: float = 0.0
    complete: bool = True

    def add(self, other: Sums) -> None:
        self.elements += other.elements
        self.differing += other.differing
        self.aa += other.aa
        self.bb += other.bb
        self.dd += other.dd
        self.abs_d += other.abs_d
        self.abs_a += other.abs_a
        self.complete = self.complete and other.complete

    def add_same(self, aa: float, abs_a: float) -> None:
        """Elements equal on both sides: they add to the norms only."""
        self.aa += aa
        self.bb += aa
        self.abs_a += abs_a

    def times(self, n: int) -> None:
        """The sums of ``n`` repetitions (a broadcast dimension) of these pairs."""
        self.elements *= n
        self.differing *= n
        self.aa, self.bb, self.dd = self.aa * n, self.bb * n, self.dd * n
        self.abs_d, self.abs_a = self.abs_d * n, self.abs_a * n

    def to_json(self) -> dict[str, Any]:
        return {
            "sum_a2": self.aa,
            "sum_b2": self.bb,
            "sum_d2": self.dd,
            "sum_abs_d": self.abs_d,
            "sum_abs_a": self.abs_a,
        }


def _ratio(num: float, den: float) -> float:
    """num/den with x/0 = inf (x > 0), 0/0 = 0 and NaN kept (Python's ``/`` raises on 0)."""
    if math.isnan(num) or math.isnan(den):
        return math.nan
    if den == 0:
        return math.inf if num > 0 else 0.0
    return num / den


def measures(s: Sums) -> dict[str, float]:
    """rel_l2 ‖B-A‖/‖A‖, cosine, nmse ‖B-A‖²/‖A‖², rel_mean_abs mean|B-A|/mean|A|,
    frac_differing (elements outside the tolerance / elements)."""
    fraction = s.differing / s.elements if s.elements else 0.0
    if s.abs_d == 0:
        return {"rel_l2": 0.0, "cosine": 1.0, "nmse": 0.0, "rel_mean_abs": 0.0, "frac_differing": fraction}
    nmse = _ratio(s.dd, s.aa)
    rel_l2 = math.sqrt(nmse) if nmse >= 0 else math.nan
    norms = math.sqrt(s.aa) * math.sqrt(s.bb) if s.aa >= 0 and s.bb >= 0 else math.nan
    if math.isnan(norms) or math.isnan(s.dd):
        cosine = math.nan
    elif norms == 0:
        cosine = 0.0
    else:
        dot = (s.aa + s.bb - s.dd) / 2
        cosine = max(-1.0, min(1.0, dot / norms)) if math.isfinite(dot / norms) else math.nan
    return {
        "rel_l2": rel_l2,
        "cosine": cosine,
        "nmse": nmse,
        "rel_mean_abs": _ratio(s.abs_d, s.abs_a),
        "frac_differing": fraction,
    }


def total(parts: Iterable[Sums]) -> Sums:
    out = Sums()
    for part in parts:
        out.add(part)
    return out


def moved_key(metric: str, value: float | None) -> tuple[int, float]:
    """Sort key for "most moved first": NaN first, missing last; cosine ascending."""
    if value is None:
        return (2, 0.0)
    if math.isnan(value):
        return (0, 0.0)
    return (1, value if metric == "cosine" else -value)


def slice_sums(aa: float, abs_a: float, absb: np.ndarray, diff: np.ndarray, scratch: np.ndarray) -> Sums:
    """The sums of one decoded slice: A's (already summed), |b| and |b-a| as float64
    arrays (equal non-finite positions zeroed everywhere), ``scratch`` as long, for
    the squares; the caller sets the counts."""
    return Sums(
        aa=aa,
        bb=sums.square_total(absb, scratch),
        dd=sums.square_total(diff, scratch),
        abs_d=sums.total(diff),
        abs_a=abs_a,
    )


def same_sums(a: np.ndarray) -> tuple[float, float]:
    """(Σ|a|², Σ|a|) over the finite elements of ``a`` (equal on both sides)."""
    import numpy as np

    with np.errstate(all="ignore"):
        # Cast first: abs(int8 -128) is -128 in int8. Complex: |z| is already real.
        wide = a.astype(np.complex128 if a.dtype.kind == "c" else np.float64)
        absolute = np.absolute(wide, out=wide) if wide.dtype.kind == "f" else np.absolute(wide)  # astype copied
        if not np.isfinite(absolute).all():
            absolute = np.where(np.isfinite(absolute), absolute, 0.0)
        return sums.magnitude_sums(absolute, absolute)


def same_sums_few(values: Iterable[Any]) -> tuple[float, float]:
    """:func:`same_sums` in plain Python, for a few elements (the numpy-free path)."""
    aa = abs_a = 0.0
    for value in values:
        x = abs(complex(value)) if isinstance(value, complex) else abs(float(value))
        if math.isfinite(x):
            aa += x * x
            abs_a += x
    return aa, abs_a

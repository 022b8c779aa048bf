"""What counts as equal when values are compared: allclose's rule.

Kept apart from :mod:`paraminspect.compare.elementwise` so the command line can show the
defaults without importing the comparison machinery at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_ATOL = 1e-8
DEFAULT_RTOL = 1e-5


@dataclass(frozen=True)
class Tolerance:
    """allclose's parameters: |a - b| <= atol + rtol * |b|; ``Tolerance(0, 0)`` compares exactly."""

    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    equal_nan: bool = True  # NaN at the same position counts as equal

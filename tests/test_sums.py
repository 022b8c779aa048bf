"""data/sums.py: the float64 sums stats and diff's measures share, against math.fsum
(the correctly rounded sum) and numpy's own reductions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from paraminspect.data import sums


@pytest.fixture
def values() -> np.ndarray:
    rng = np.random.default_rng(3)
    # Widened float32 values over several magnitudes, as a block of weights is.
    return (rng.standard_normal(300_001) * np.exp(rng.uniform(-8, 8, 300_001))).astype(np.float32).astype(np.float64)


def test_total_and_square_total_match_the_exact_sums(values: np.ndarray) -> None:
    assert sums.total(values) == pytest.approx(math.fsum(values.tolist()), rel=1e-12)
    squares = [x * x for x in values.tolist()]  # exact: a float32's square fits in a float64
    scratch = np.empty_like(values)
    assert sums.square_total(values, scratch) == pytest.approx(math.fsum(squares), rel=1e-12)
    np.testing.assert_array_equal(scratch, np.square(values))  # the scratch holds the squares


def test_square_total_in_place_gives_the_same_bits(values: np.ndarray) -> None:
    apart = sums.square_total(values, np.empty_like(values))
    in_place = values.copy()
    assert sums.square_total(in_place, in_place) == apart
    assert sums.square_total(values, np.empty_like(values)) == apart  # and on every call


def test_magnitude_sums_takes_the_sum_before_the_squares_overwrite_it(values: np.ndarray) -> None:
    magnitudes = np.abs(values)
    expected = (math.fsum(x * x for x in magnitudes.tolist()), math.fsum(magnitudes.tolist()))
    squares, plain = sums.magnitude_sums(magnitudes, magnitudes)  # one buffer for both
    assert squares == pytest.approx(expected[0], rel=1e-12)
    assert plain == pytest.approx(expected[1], rel=1e-12)


def test_empty_and_nonfinite() -> None:
    empty = np.empty(0)
    assert sums.total(empty) == 0.0 and sums.square_total(empty, empty) == 0.0
    odd = np.array([1.0, math.inf, 2.0])
    assert sums.total(odd) == math.inf and sums.square_total(odd, odd.copy()) == math.inf
    assert math.isnan(sums.total(np.array([1.0, math.nan])))

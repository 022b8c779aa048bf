"""Initialisers against torch.nn.init: same fans and gains, same distributions (statistically)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import init

from paraminspect.edit import initializers
from paraminspect.edit.initializers import Scheme
from paraminspect.errors import UsageError

SHAPES = [(64, 32), (16, 8, 3, 3), (8, 4, 5), (1, 300), (128, 1, 2, 2, 2)]


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_match_torch(shape: tuple[int, ...]) -> None:
    assert initializers.fans(shape) == init._calculate_fan_in_and_fan_out(torch.empty(shape))


def test_fans_need_two_dimensions_like_torch() -> None:
    with pytest.raises(ValueError):
        init._calculate_fan_in_and_fan_out(torch.empty(5))
    with pytest.raises(UsageError, match="fewer than 2 dimensions"):
        initializers.fans((5,))


@pytest.mark.parametrize("nonlinearity", initializers.NONLINEARITIES)
@pytest.mark.parametrize("param", [None, 0.2])
def test_gain_matches_torch(nonlinearity: str, param: float | None) -> None:
    assert initializers.calculate_gain(nonlinearity, param) == pytest.approx(init.calculate_gain(nonlinearity, param))


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov distance between empirical distributions."""
    a, b = np.sort(a.ravel()), np.sort(b.ravel())
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / a.size
    cdf_b = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


CASES = [
    (Scheme("xavier_uniform"), init.xavier_uniform_),
    (Scheme("xavier_uniform", gain=2.0), lambda t: init.xavier_uniform_(t, gain=2.0)),
    (Scheme("xavier_normal"), init.xavier_normal_),
    (Scheme("kaiming_uniform"), init.kaiming_uniform_),
    (Scheme("kaiming_uniform", a=math.sqrt(5)), lambda t: init.kaiming_uniform_(t, a=math.sqrt(5))),
    (
        Scheme("kaiming_normal", mode="fan_out", nonlinearity="relu"),
        lambda t: init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu"),
    ),
    (Scheme("kaiming_normal", nonlinearity="tanh"), lambda t: init.kaiming_normal_(t, nonlinearity="tanh")),
    (Scheme("normal", mean=1.0, std=0.5), lambda t: init.normal_(t, 1.0, 0.5)),
    (Scheme("uniform", low=-2.0, high=3.0), lambda t: init.uniform_(t, -2.0, 3.0)),
]


@pytest.mark.parametrize(("scheme", "torch_init"), CASES, ids=[s.describe() for s, _ in CASES])
@pytest.mark.parametrize("shape", [(256, 128), (64, 32, 3, 3)])
def test_distribution_matches_torch(scheme: Scheme, torch_init, shape: tuple[int, ...]) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    theirs = torch_init(torch.empty(shape, dtype=torch.float64)).numpy()
    ours = initializers.generate(scheme, shape, np.random.default_rng(0))
    assert ours.shape == shape
    # Same support (uniform bounds), same spread, same shape of distribution.
    n = ours.size
    # Tolerances of about 5 standard errors for n samples each (seeded, so not flaky).
    assert abs(ours.std() / theirs.std() - 1) < 5 / math.sqrt(n)
    assert abs(ours.mean() - theirs.mean()) < 5 * theirs.std() * math.sqrt(2 / n)
    assert ks_statistic(ours, theirs) < 1.95 * math.sqrt(2 / n)  # KS critical value at alpha = 0.001
    if scheme.name.endswith("uniform"):
        assert np.abs(ours).max() <= max(abs(theirs.min()), abs(theirs.max())) * 1.001 + 1e-12


def test_constant_schemes_and_seed() -> None:
    rng = np.random.default_rng(0)
    assert (initializers.generate(Scheme("zeros"), (3, 2), rng) == 0).all()
    assert (initializers.generate(Scheme("ones"), (3,), rng) == 1).all()
    assert (initializers.generate(Scheme("constant", value=0.25), (2, 2), rng) == 0.25).all()
    a = initializers.generate(Scheme("normal"), (10,), np.random.default_rng(7))
    b = initializers.generate(Scheme("normal"), (10,), np.random.default_rng(7))
    assert np.array_equal(a, b)


def test_bad_options() -> None:
    with pytest.raises(UsageError):
        Scheme("glorot")
    with pytest.raises(UsageError):
        Scheme("kaiming_normal", mode="fan_both")
    with pytest.raises(UsageError):
        Scheme("kaiming_normal", nonlinearity="gelu")

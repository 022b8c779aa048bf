"""printing.tensor_text equals str(tensor) in torch, character for character."""

from __future__ import annotations

import json
import math

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paraminspect.output.printing import PrintOptions, corners, json_value_pieces, json_values, tensor_text


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """The tensor's values as numpy, via its bits (numpy lacks bfloat16/float8)."""
    name = str(t.dtype).removeprefix("torch.")
    if name == "bfloat16" or name.startswith("float8"):
        bits = t.view(torch.uint8 if t.element_size() == 1 else torch.int16).numpy()
        return bits.view(getattr(ml_dtypes, name))
    return t.numpy()


def _cases() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    nonfinite = torch.tensor([1.0, 2.0, float("nan"), float("inf"), -float("inf")])
    return [
        r(3, 4),
        r(5),
        torch.tensor(3.5),
        torch.tensor(True),
        torch.tensor(7, dtype=torch.int32),
        torch.arange(10),
        torch.arange(2000),
        r(40, 50),
        r(2, 3, 4, 5) * 1e5,
        torch.tensor([1e-5, 1.0]),
        torch.tensor([1e9, 1.0]),
        r(100) * 1000,
        nonfinite,
        torch.tensor([float("nan")]),
        torch.tensor([0.0, -0.0]),
        torch.zeros(5),
        torch.tensor([True, False]),
        torch.zeros(0, 3),
        torch.zeros(0, dtype=torch.int64),
        torch.zeros(0),
        r(3, 4).half(),
        r(30).bfloat16(),
        r(4, 3).to(torch.complex64),
        torch.randn(1100, dtype=torch.complex128, generator=g),
        torch.tensor([[1 + 2j, -3.5 - 0j]]),
        torch.randint(-1000, 1000, (50, 50), dtype=torch.int16, generator=g),
        torch.arange(30, dtype=torch.uint8),
        torch.tensor([0, 1, 2**63, 2**64 - 1], dtype=torch.uint64),
        r(7, 7).to(torch.float8_e4m3fn),
        r(7).to(torch.float8_e5m2),
        r(10, 10, 10, 2),
        r(2000, 3),
        r(3, 2000),
        r(1, 1, 1, 1100),
    ]


@pytest.mark.parametrize("t", _cases(), ids=lambda t: f"{str(t.dtype)[6:]}{list(t.shape)}")
@pytest.mark.parametrize("full", [False, True], ids=["summarised", "full"])
def test_text_matches_torch(t: torch.Tensor, full: bool) -> None:
    threshold = math.inf if full else 1000
    with torch._tensor_str.printoptions(threshold=threshold):
        expected = str(t)
    got = tensor_text(as_numpy(t), str(t.dtype)[6:], PrintOptions(threshold=threshold))
    assert got == expected


@pytest.mark.parametrize("precision", [0, 2, 8])
def test_precision_matches_torch(precision: int) -> None:
    t = torch.randn(4, 5, generator=torch.Generator().manual_seed(1)) * torch.tensor([1.0, 10.0, 100.0, 1e-3, 1.0])
    with torch._tensor_str.printoptions(precision=precision):
        expected = str(t)
    assert tensor_text(t.numpy(), "float32", PrintOptions(precision=precision)) == expected


def test_corners_alone_print_the_same_as_the_whole_tensor() -> None:
    t = torch.randn(500, 40, generator=torch.Generator().manual_seed(2))
    options = PrintOptions()
    shown = corners(t.numpy(), options)
    assert shown.shape == (6, 6)
    assert tensor_text(shown, "float32", options, shape=(500, 40)) == str(t)


def test_pinned_text() -> None:
    """One exact case written out, so a change in torch cannot move both sides."""
    values = np.array([[1.5, -2.25, 1e-2], [0.0, 3.0, 4.0]], dtype=np.float32)
    assert (
        tensor_text(values, "float32") == "tensor([[ 1.5000, -2.2500,  0.0100],\n        [ 0.0000,  3.0000,  4.0000]])"
    )
    assert tensor_text(np.arange(3, dtype=np.int8), "int8") == "tensor([0, 1, 2], dtype=torch.int8)"


def test_json_values_are_exact_and_nonfinite_are_strings() -> None:
    t = torch.tensor([[0.1, float("nan")], [float("inf"), -float("inf")]])
    assert json_values(t.numpy(), "float32") == [[t[0, 0].item(), "nan"], ["inf", "-inf"]]
    c = torch.tensor([1 + 2j, -0.5j], dtype=torch.complex64)
    assert json_values(c.numpy(), "complex64") == [[1.0, 2.0], [0.0, -0.5]]
    assert json_values(np.array([True, False]), "bool") == [True, False]


@pytest.mark.parametrize(
    "shape", [(), (1,), (11,), (7, 3), (2, 9), (9, 2), (3, 1, 5, 2), (4, 4, 4), (0, 3), (3, 0), (0,)]
)
@pytest.mark.parametrize("dtype", ["float32", "int64", "complex64", "bool"])
def test_streamed_json_equals_the_whole_document(shape: tuple[int, ...], dtype: str) -> None:
    """However small the memory budget, the pieces join into exactly json.dumps of every value."""
    a = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if a.size > 2:
        a.reshape(-1)[1] = np.nan
    values = {"float32": a, "int64": (np.nan_to_num(a) * 100).astype(np.int64), "bool": a > 0}
    values["complex64"] = (a + 1j * np.nan_to_num(a)).astype(np.complex64)
    array = values[dtype]
    flat = array.reshape(-1)
    want = json.dumps(json_values(array, dtype), allow_nan=False)
    for budget in (1, 2, 3, 5, 7, 16, 1000):
        pieces = json_value_pieces(lambda n: (flat[i : i + n] for i in range(0, flat.size, n)), shape, dtype, budget)
        assert "".join(pieces) == want, budget


_FUZZ_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int32, torch.bool, torch.complex64]
_SPECIALS = [0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e-7, 1e9, 12345.0, -3.0, 0.5]


def random_tensor(dims: list[int], dtype: torch.dtype, scale: float, specials: list[float], seed: int) -> torch.Tensor:
    """A fuzz case: normal values times ``scale``, a few ``specials`` spread through it, in ``dtype``."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(tuple(dims), dtype=torch.float64, generator=g) * scale
    flat = base.reshape(-1)
    for i, value in enumerate(specials[: flat.numel()]):
        flat[(i * 7919) % flat.numel()] = value
    if dtype is torch.int32:
        base = torch.nan_to_num(base, posinf=7, neginf=-7).clamp(-(2**31), 2**31 - 1)
    return base.to(dtype) if not dtype.is_complex else torch.complex(base, base * 0.5).to(dtype)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dims=st.lists(st.integers(0, 12), min_size=0, max_size=4),
    dtype=st.sampled_from(_FUZZ_DTYPES),
    scale=st.sampled_from([1e-6, 1e-3, 1.0, 7.0, 1e4, 1e10]),
    specials=st.lists(st.sampled_from(_SPECIALS), max_size=4),
    precision=st.integers(0, 8),
    threshold=st.sampled_from([5, 50, 1000]),
    seed=st.integers(0, 2**16),
)
def test_fuzzed_text_matches_torch(
    dims: list[int],
    dtype: torch.dtype,
    scale: float,
    specials: list[float],
    precision: int,
    threshold: int,
    seed: int,
) -> None:
    """Random shapes, magnitudes, special values and options: still exactly str(tensor)."""
    t = random_tensor(dims, dtype, scale, specials, seed)
    with torch._tensor_str.printoptions(precision=precision, threshold=threshold):
        expected = str(t)
    got = tensor_text(as_numpy(t), str(dtype)[6:], PrintOptions(precision=precision, threshold=threshold))
    assert got == expected

"""Casts match torch's tensor.to(dtype) bit for bit, edge cases included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from paraminspect import dtypes
from paraminspect.data.arrays import numpy_dtype
from paraminspect.data.casting import cast_array
from paraminspect.model import StorageRef, TensorRef
from tests.conftest import run_cli

TARGETS = [
    "float16",
    "bfloat16",
    "float32",
    "float64",
    "float8_e4m3fn",
    "float8_e5m2",
    "float8_e4m3fnuz",
    "float8_e5m2fnuz",
    "float8_e8m0fnu",
]


def target_numpy(name: str) -> np.dtype[np.generic]:
    dtype = dtypes.BY_NAME[name]
    ref = TensorRef(dtype, (1,), (1,), StorageRef(__import__("pathlib").Path("x"), "k", 0, 8, dtype))
    return numpy_dtype(ref)


def edge_values(source: torch.dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    special = [0.0, -0.0, 1.0, -1.0, 448.0, 449.0, 464.0, 500.0, -1e6, 1e-9, -1e-40, 57344.0, 65504.0, 70000.0]
    special += [float("inf"), -float("inf"), float("nan"), -float("nan"), 3e38]
    spread = torch.randn(4000, generator=generator, dtype=torch.float64) * torch.logspace(
        -8, 6, 4000, dtype=torch.float64
    )
    return torch.cat([torch.tensor(special, dtype=torch.float64), spread]).to(source)


@pytest.mark.parametrize("source", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("target", TARGETS)
def test_cast_matches_torch(source: torch.dtype, target: str) -> None:
    values = edge_values(source)
    want = values.to(getattr(torch, target))
    if source == torch.bfloat16:
        import ml_dtypes

        array = values.view(torch.uint16).numpy().view(ml_dtypes.bfloat16)
    else:
        array = values.numpy()
    got = cast_array(array, target_numpy(target), dtypes.BY_NAME[target])
    width = want.element_size()
    raw_want = want.view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[width]).numpy()
    nan = torch.isnan(want.float()).numpy()
    # NaN payloads differ even between torch's own scalar and vector kernels: compare NaN-ness there.
    assert np.array_equal(np.isnan(got.astype(np.float32)), nan)
    assert np.array_equal(got.view(raw_want.dtype)[~nan], raw_want[~nan])


SCALARS = [3.0, -0.0, -2.5, 1e-40, 500.0, 1e10, float("inf"), float("nan")]


@pytest.mark.parametrize("target", TARGETS)
def test_cast_of_a_zero_dim_array_matches_torch(target: str) -> None:
    for value in SCALARS:
        want = torch.tensor(value).to(getattr(torch, target)).reshape(1).view(torch.uint8).numpy()
        got = cast_array(np.array(value, dtype=np.float32), target_numpy(target), dtypes.BY_NAME[target])
        assert got.shape == ()
        if np.isnan(value):  # NaN-ness only, as above
            assert np.isnan(got.astype(np.float32)) == torch.tensor(value).to(getattr(torch, target)).float().isnan()
        else:
            assert got.reshape(1).view(np.uint8).tobytes() == want.tobytes(), value


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize("target", TARGETS)
def test_cast_empty_and_zero_dim_tensors_match_torch(tmp_path: Path, target: str, suffix: str) -> None:
    sd = {
        "empty": torch.zeros(0, 4),
        "empty64": torch.zeros(3, 0, dtype=torch.float64),
        "w": torch.linspace(-3, 700, 5),
    }
    sd.update({f"s{i}": torch.tensor(v) for i, v in enumerate(SCALARS)})
    torch.save(sd, tmp_path / "in.pt")
    out = tmp_path / f"o{suffix}"
    result = run_cli("cast", tmp_path / "in.pt", "-t", target, "-o", out)
    assert result.code == 0, result.err
    if suffix == ".pt":
        got = torch.load(out, weights_only=True)
    else:
        from safetensors.torch import load_file

        got = load_file(str(out))
    dtype = getattr(torch, target)
    for name, tensor in sd.items():
        want = tensor.to(dtype)
        assert got[name].dtype == dtype and got[name].shape == want.shape, name
        nan = torch.isnan(want.float()).reshape(-1)
        # NaN payloads differ between torch's own kernels (as above): NaN-ness there.
        assert torch.equal(torch.isnan(got[name].float()).reshape(-1), nan), name
        assert torch.equal(raw(got[name])[~nan], raw(want)[~nan]), name


def raw(tensor: torch.Tensor) -> torch.Tensor:
    """Each element's bytes as one row."""
    return tensor.reshape(-1).view(torch.uint8).reshape(-1, tensor.element_size())

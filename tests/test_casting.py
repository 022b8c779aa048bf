"""Casts match torch's tensor.to(dtype) bit for bit, edge cases included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paraminspect import dtypes
from paraminspect.casting import cast_array
from paraminspect.model import StorageRef, TensorRef
from paraminspect.tensors import numpy_dtype

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

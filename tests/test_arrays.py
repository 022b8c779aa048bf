"""Decoded values equal torch's, bit for bit, for every dtype and view."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from paraminspect import CheckpointError, open_checkpoint
from paraminspect.data.arrays import iter_chunks, read_array
from tests.test_formats_torchzip import DTYPES


def _bits(t: torch.Tensor) -> bytes:
    """A tensor's raw element bytes in C order."""
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _array_bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def _sample(dtype: torch.dtype) -> torch.Tensor:
    return (torch.randn(5, 7, dtype=torch.float64) * 3).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_values_match_torch_for_every_dtype_and_view(tmp_path: Path, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    base = _sample(dtype)
    sd = {"whole": base, "t": base.t(), "row": base[3], "cols": base[1:4, ::2], "scalar": base[0, 0], "empty": base[:0]}
    torch.save(sd, tmp_path / "m.pt")
    loaded = torch.load(tmp_path / "m.pt", weights_only=True)
    refs = open_checkpoint(tmp_path / "m.pt").tensors
    for name, expected in loaded.items():
        got = read_array(refs[name])
        assert got.shape == tuple(expected.shape), name
        assert got.dtype.itemsize == expected.element_size(), name
        assert _array_bits(got) == _bits(expected), name
        chunks = list(iter_chunks(refs[name], chunk_elements=4))
        joined = np.concatenate(chunks) if chunks else np.zeros(0, got.dtype)
        assert all(len(c) == 4 for c in chunks[:-1])
        assert _array_bits(joined) == _bits(expected), name


def test_safetensors_values_match(tmp_path: Path) -> None:
    tensors = {"a": torch.randn(3, 4), "b": torch.randn(2).to(torch.bfloat16), "c": torch.arange(5)}
    save_file(tensors, tmp_path / "m.safetensors")
    refs = open_checkpoint(tmp_path / "m.safetensors").tensors
    for name, expected in tensors.items():
        assert _array_bits(read_array(refs[name])) == _bits(expected), name


def test_truncated_data_is_a_clean_error(tmp_path: Path) -> None:
    save_file({"a": torch.ones(100)}, tmp_path / "m.safetensors")
    ref = open_checkpoint(tmp_path / "m.safetensors").tensors["a"]
    with open(tmp_path / "m.safetensors", "r+b") as fh:
        fh.truncate(200)
    with pytest.raises(CheckpointError, match="past the end of the file"):
        read_array(ref)

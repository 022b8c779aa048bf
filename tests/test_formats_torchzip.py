"""The torch zip reader, cross-checked against torch.load(weights_only=True)."""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import pytest
import torch

from paraminspect import Opaque, TensorRef, Value, open_checkpoint
from tests.conftest import SAMPLES

DTYPES = [
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.uint8,
    torch.uint16,
    torch.uint32,
    torch.uint64,
    torch.bool,
    torch.complex64,
    torch.complex128,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
]


def _flat(obj: object, prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensors in a torch-loaded object, by the dotted names paraminspect uses."""
    found: dict[str, torch.Tensor] = {}
    if isinstance(obj, torch.Tensor):
        found[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            found.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            found.update(_flat(v, f"{prefix}.{i}" if prefix else str(i)))
    return found


def assert_matches_torch(path: Path) -> None:
    with torch.serialization.safe_globals([argparse.Namespace]):
        expected = _flat(torch.load(path, weights_only=True))
    got = open_checkpoint(path).tensors
    assert list(got) == list(expected)
    for name, tensor in expected.items():
        ref = got[name]
        assert ref.dtype.name == str(tensor.dtype).removeprefix("torch."), name
        assert ref.shape == tuple(tensor.shape), name
        assert ref.strides == tuple(tensor.stride()), name
        assert ref.storage_offset == tensor.storage_offset(), name
        assert ref.storage.nbytes == tensor.untyped_storage().nbytes(), name


@pytest.mark.parametrize("sample", sorted(SAMPLES.glob("*.pt")), ids=lambda p: p.name)
def test_samples_match_torch(sample: Path) -> None:
    assert_matches_torch(sample)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype_matches_torch(tmp_path: Path, dtype: torch.dtype) -> None:
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    sd = {"x": base.to(dtype), "scalar": torch.tensor(1).to(dtype), "empty": torch.zeros(0, 3, dtype=dtype)}
    torch.save(sd, tmp_path / "m.pt")
    assert_matches_torch(tmp_path / "m.pt")


def test_views_transposes_and_ties_match_torch(tmp_path: Path) -> None:
    base = torch.arange(60.0).reshape(6, 10)
    sd = collections.OrderedDict(
        whole=base,
        transposed=base.t(),
        row=base[2],
        column=base[:, 3],
        sliced=base[1:5:2, 2:9:3],
        expanded=torch.ones(3, 1).expand(3, 5),
        param=torch.nn.Parameter(torch.ones(2, 2)),
    )
    sd["alias"] = sd["whole"]
    torch.save(sd, tmp_path / "v.pt")
    assert_matches_torch(tmp_path / "v.pt")
    ckpt = open_checkpoint(tmp_path / "v.pt")
    assert ckpt.tied_groups() == {"alias": "whole"}
    assert ckpt.tensors["param"].is_parameter
    assert ckpt.tensors["transposed"].storage is ckpt.tensors["whole"].storage


def test_nested_checkpoint_keeps_non_tensor_leaves(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    obj = {
        "model": model.state_dict(),
        "epoch": 3,
        "best": 0.25,
        "name": "run-1",
        "done": None,
        "history": [1.0, 2.0],
        "layers": [torch.zeros(2), {"w": torch.ones(1)}],
        "args": argparse.Namespace(lr=0.1),
        "dtype": torch.float16,
        "empty": {},
    }
    torch.save(obj, tmp_path / "c.pt")
    assert_matches_torch(tmp_path / "c.pt")
    entries = open_checkpoint(tmp_path / "c.pt").entries
    assert entries["epoch"] == Value(3)
    assert entries["best"] == Value(0.25)
    assert entries["name"] == Value("run-1")
    assert entries["done"] == Value(None)
    assert entries["history"] == Value([1.0, 2.0])
    assert entries["empty"] == Value({})
    assert str(entries["dtype"].value) == "torch.float16"  # type: ignore[union-attr]
    args = entries["args"]
    assert isinstance(args, Value) and isinstance(args.value, Opaque)
    assert str(args.value) == "<object argparse.Namespace>"
    assert entries["args.lr"] == Value(0.1)
    assert isinstance(entries["layers.1.w"], TensorRef)


def test_storage_byte_ranges_point_at_the_right_bytes(tmp_path: Path) -> None:
    t = torch.arange(10, dtype=torch.int32)
    torch.save({"t": t[3:7]}, tmp_path / "r.pt")
    ref = open_checkpoint(tmp_path / "r.pt").tensors["t"]
    begin, end = ref.byte_range()
    raw = (tmp_path / "r.pt").read_bytes()[begin:end]
    assert raw == t[3:7].numpy().tobytes()


def test_a_whole_module_saved_is_shown_not_imported(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    torch.save(model, tmp_path / "module.pt")
    ckpt = open_checkpoint(tmp_path / "module.pt")
    # Named as model.state_dict() names it (model/nnmodule.py); the class is never imported.
    assert {k: v.shape for k, v in ckpt.tensors.items()} == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert list(ckpt.entries) == list(model.state_dict())

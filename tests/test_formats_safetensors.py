"""The safetensors reader: file order, metadata, aliases, and parity with the
official library's validation (every file it refuses, we refuse)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from paraminspect import CheckpointError, open_checkpoint
from paraminspect.dtypes import BY_SAFETENSORS
from tests.conftest import SAMPLES


def test_names_dtypes_shapes_match_safe_open(tmp_path: Path) -> None:
    tensors = {
        "b.weight": torch.zeros(3, 4, dtype=torch.bfloat16),
        "a.bias": torch.zeros(7, dtype=torch.float64),
        "c": torch.zeros((), dtype=torch.int8),
        "f8": torch.zeros(5, dtype=torch.float8_e4m3fn),
        "empty": torch.zeros(0, 2),
    }
    save_file(tensors, tmp_path / "m.safetensors", metadata={"format": "pt", "note": "hi"})
    ckpt = open_checkpoint(tmp_path / "m.safetensors")
    assert ckpt.metadata == {"format": "pt", "note": "hi"}
    with safe_open(tmp_path / "m.safetensors", framework="numpy") as f:
        for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
            ref = ckpt.tensors[name]
            piece = f.get_slice(name)
            assert list(ref.shape) == piece.get_shape()
            assert ref.dtype.safetensors == piece.get_dtype()
    assert set(ckpt.tensors) == set(tensors)


def test_tied_aliases_from_save_model_metadata() -> None:
    ckpt = open_checkpoint(SAMPLES / "tied.safetensors")
    assert ckpt.tied_groups() == {"4.weight": "2.weight", "4.bias": "2.bias"}
    assert ckpt.tensors["4.weight"] is ckpt.tensors["2.weight"]


def _file(header: dict[str, object], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


_valid_entry = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3"]),
        "shape": st.lists(st.integers(0, 4), max_size=3),
    }
)


@st.composite
def _mutated_files(draw: st.DrawFn) -> bytes:
    """Valid files, then one mutation of the kind a broken writer or an attacker makes."""
    entries = draw(st.dictionaries(st.text("abc.", min_size=1, max_size=4), _valid_entry, max_size=4))
    header: dict[str, object] = {}
    cursor = 0
    for name, entry in entries.items():
        numel = 1
        for d in entry["shape"]:  # type: ignore[attr-defined]
            numel *= d
        size = numel * BY_SAFETENSORS[entry["dtype"]].itemsize  # type: ignore[index]
        header[name] = {**entry, "data_offsets": [cursor, cursor + size]}
        cursor += size
    data = bytes(cursor)
    mutation = draw(st.sampled_from(["none", "offset", "shape", "dtype", "truncate", "append", "length", "meta"]))
    names = list(header)
    if names and mutation in ("offset", "shape", "dtype"):
        target: dict[str, object] = header[draw(st.sampled_from(names))]  # type: ignore[assignment]
        if mutation == "offset":
            target["data_offsets"] = [draw(st.integers(0, cursor + 8)), draw(st.integers(0, cursor + 8))]
        elif mutation == "shape":
            target["shape"] = draw(st.lists(st.integers(-1, 5), max_size=3))
        else:
            target["dtype"] = draw(st.sampled_from(["F32", "I8", "C64", "XX", "F64"]))
    if mutation == "meta":
        header["__metadata__"] = draw(st.sampled_from([{"a": "b"}, {"a": 1}, [], {"a": None}]))
    raw = _file(header, data)
    if mutation == "truncate":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif mutation == "append":
        raw += draw(st.binary(min_size=1, max_size=9))
    elif mutation == "length":
        raw = struct.pack("<Q", draw(st.integers(0, len(raw) + 16))) + raw[8:]
    return raw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=_mutated_files())
def test_refuses_whatever_the_official_library_refuses(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(raw)
    try:
        with safe_open(path, framework="numpy") as f:
            official = {name: (f.get_slice(name).get_dtype(), f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
    except SafetensorError:
        official = None
    try:
        ckpt = open_checkpoint(path)
        # Names save_model recorded as aliases in __metadata__ are ours to add.
        ours = {n: (r.dtype.safetensors, list(r.shape)) for n, r in ckpt.tensors.items() if n not in ckpt.aliases}
    except CheckpointError:
        ours = None
    if official is None:
        assert ours is None, "paraminspect accepted a file the safetensors library refuses"
    else:
        assert ours == official


@pytest.mark.parametrize("dtype", ["F4", "F6_E2M3", "F6_E3M2"])
def test_sub_byte_dtypes_are_listed(tmp_path: Path, dtype: str) -> None:
    bits = BY_SAFETENSORS[dtype].bits
    header = {"x": {"dtype": dtype, "shape": [8], "data_offsets": [0, 8 * bits // 8]}}
    (tmp_path / "s.safetensors").write_bytes(_file(header, bytes(8 * bits // 8)))
    ref = open_checkpoint(tmp_path / "s.safetensors").tensors["x"]
    assert (ref.shape, ref.nbytes) == ((8,), bits)

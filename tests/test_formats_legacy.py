"""The legacy torch.save format (_use_new_zipfile_serialization=False), torch as the oracle."""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import pytest
import torch

from paraminspect import CheckpointError, Opaque, Value, open_checkpoint
from paraminspect.data.arrays import iter_chunks, read_array
from tests.conftest import SAMPLES, run_cli, run_script
from tests.test_arrays import _array_bits, _bits
from tests.test_formats_torchzip import DTYPES, _flat


def _save_legacy(obj: object, path: Path) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    return path


def assert_values_match_torch(path: Path, saved: object = None) -> None:
    """Compare with torch.load, or with the saved object itself where torch cannot
    load its own legacy file (uint16/32/64 and float8: AttributeError in torch 2.13)."""
    if saved is None:
        with torch.serialization.safe_globals([argparse.Namespace]):
            saved = torch.load(path, weights_only=True)
    expected = _flat(saved)
    got = open_checkpoint(path).tensors
    assert list(got) == list(expected)
    for name, tensor in expected.items():
        ref = got[name]
        assert ref.dtype.name == str(tensor.dtype).removeprefix("torch."), name
        assert (ref.shape, ref.strides, ref.storage_offset) == (
            tuple(tensor.shape),
            tuple(tensor.stride()),
            tensor.storage_offset(),
        ), name
        assert _array_bits(read_array(ref)) == _bits(tensor), name


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype_reads_like_torch(tmp_path: Path, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    base = (torch.randn(5, 7, dtype=torch.float64) * 3).to(dtype)
    sd = {"whole": base, "t": base.t(), "row": base[3], "scalar": base[0, 0], "empty": base[:0]}
    path = _save_legacy(sd, tmp_path / "old.pt")
    if dtype in (torch.uint16, torch.uint32, torch.uint64, torch.float8_e4m3fn, torch.float8_e5m2):
        with pytest.raises(AttributeError):  # torch's own loader fails on these
            torch.load(path, weights_only=True)
        assert_values_match_torch(path, sd)
    else:
        assert_values_match_torch(path)


def test_views_ties_and_parameters(tmp_path: Path) -> None:
    base = torch.arange(60.0).reshape(6, 10)
    sd = collections.OrderedDict(whole=base, sliced=base[1:5:2, 2:9:3], param=torch.nn.Parameter(torch.ones(2)))
    sd["alias"] = sd["whole"]
    path = _save_legacy(sd, tmp_path / "v.pt")
    assert_values_match_torch(path)
    ckpt = open_checkpoint(path)
    assert ckpt.format == "torch-legacy"
    assert ckpt.tied_groups() == {"alias": "whole"}
    assert ckpt.tensors["param"].is_parameter


def test_chapter_models_and_a_trainer_checkpoint(tmp_path: Path) -> None:
    for sample in ("mlp.pt", "rgnet.pt", "tied.pt", "trainer_checkpoint.pt"):
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(SAMPLES / sample, weights_only=True)
        path = _save_legacy(obj, tmp_path / sample)
        assert_values_match_torch(path)
    entries = open_checkpoint(tmp_path / "trainer_checkpoint.pt").entries
    assert entries["epoch"] == Value(3)
    args = entries["args"]
    assert isinstance(args, Value) and isinstance(args.value, Opaque)


def test_chunked_reading_of_a_large_legacy_tensor(tmp_path: Path) -> None:
    t = torch.arange(100_000, dtype=torch.int64)
    ref = open_checkpoint(_save_legacy({"t": t}, tmp_path / "big.pt")).tensors["t"]
    got = b"".join(_array_bits(c) for c in iter_chunks(ref, 4096))
    assert got == _bits(t)


def test_same_tree_as_the_zip_format(tmp_path: Path) -> None:
    zipped = run_cli("tree", SAMPLES / "rgnet.pt", "--depth", "2")
    sd = torch.load(SAMPLES / "rgnet.pt", weights_only=True)
    legacy = run_cli("tree", _save_legacy(sd, tmp_path / "rgnet.pt"), "--depth", "2")
    assert legacy.code == 0
    assert legacy.out.split("\n", 1)[1] == zipped.out.split("\n", 1)[1]


def test_exact_shapes_output(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = _save_legacy(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU()).state_dict(), tmp_path / "m.pt")
    result = run_script("shapes", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "name               dtype    shape      numel    bytes\n"
        "-----------------  -------  -------  -------  -------\n"
        "0.weight           float32  [8, 4]        32    128 B\n"
        "0.bias             float32  [8]            8     32 B\n"
        "-----------------  -------  -------  -------  -------\n"
        "total (2 tensors)                         40    160 B\n"
    )


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9, 0.99])
def test_truncated_legacy_file_is_a_clean_error(tmp_path: Path, keep: float) -> None:
    raw = _save_legacy({"a": torch.ones(64), "b": torch.zeros(64)}, tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(CheckpointError):
        open_checkpoint(tmp_path / "cut.pt")
    result = run_cli("shapes", tmp_path / "cut.pt")
    assert result.code == 2 and result.out == ""
    assert result.err.startswith(f"paraminspect: error: {tmp_path / 'cut.pt'}: ") and result.err.count("\n") == 1


def test_code_in_a_legacy_pickle_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self) -> tuple[object, ...]:
            import os

            return (os.system, (f"touch {marker}",))

    path = _save_legacy({"w": torch.ones(2), "evil": Evil()}, tmp_path / "evil.pt")
    ckpt = open_checkpoint(path)
    assert not marker.exists()
    evil = ckpt.entries["evil"]
    assert isinstance(evil, Value) and isinstance(evil.value, Opaque)
    assert evil.value.qualname in {"os.system", "posix.system"}


def _edit(path: Path, old: bytes, new: bytes) -> Path:
    raw = path.read_bytes()
    assert raw.count(old) == 1
    path.write_bytes(raw.replace(old, new))
    return path


def test_wrong_protocol_version(tmp_path: Path) -> None:
    path = _save_legacy({"a": torch.ones(2)}, tmp_path / "p.pt")
    _edit(path, b"M\xe9\x03.", b"M\xea\x03.")  # 1001 -> 1002
    with pytest.raises(CheckpointError, match="protocol 1002 is not 1001"):
        open_checkpoint(path)


def test_storage_record_with_a_wrong_count(tmp_path: Path) -> None:
    path = _save_legacy({"a": torch.arange(3, dtype=torch.float32)}, tmp_path / "c.pt")
    # The record: int64 element count 3, then 12 bytes; claim 5 elements.
    _edit(
        path,
        (3).to_bytes(8, "little") + torch.arange(3, dtype=torch.float32).numpy().tobytes(),
        (5).to_bytes(8, "little") + bytes(12),
    )
    with pytest.raises(CheckpointError, match="says 5 elements, which cannot hold 12 bytes"):
        open_checkpoint(path)


def test_storage_list_naming_an_unused_key(tmp_path: Path) -> None:
    path = _save_legacy({"a": torch.ones(2)}, tmp_path / "k.pt")
    key = open_checkpoint(path).tensors["a"].storage.key.encode()
    raw = path.read_bytes()
    last = raw.rindex(key)  # the storage-key list comes after the object pickle
    path.write_bytes(raw[:last] + key[:-1] + b"x" + raw[last + len(key) :])
    with pytest.raises(CheckpointError, match="is listed but no tensor uses it"):
        open_checkpoint(path)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_pickle_protocol(tmp_path: Path, protocol: int) -> None:
    torch.manual_seed(0)
    sd = {"w": torch.randn(3, 4), "b": torch.arange(5, dtype=torch.int16), "t": torch.randn(4, 3).t()}
    path = tmp_path / f"p{protocol}.pt"
    torch.save(sd, path, _use_new_zipfile_serialization=False, pickle_protocol=protocol)
    # torch's weights_only loader rejects protocol 4+ opcodes; the file is our own.
    assert_values_match_torch(path, torch.load(path, weights_only=False))

"""read_slice: numpy's basic indexing on torch's own tensor is the reference, bit for bit;
the bytes read and the memory held are bounded by the selection, not the tensor."""

from __future__ import annotations

import random
import tracemalloc
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from paraminspect import CheckpointError, SelectionError, open_checkpoint
from paraminspect.data.slicing import READ_BUFFER_BYTES, IndexOutOfRange, read_slice
from paraminspect.dtypes import BY_NAME
from paraminspect.io import source
from paraminspect.model import Chunk, TensorRef, contiguous_strides
from tests.conftest import ROOT
from tests.test_edit_commands import big_endian_copy

TWO_RANKS = ROOT / "tests" / "data" / "dcp_2ranks"


def _bits(t: torch.Tensor) -> np.ndarray:
    """torch's tensor as numpy integers of the same width: indexing them is the reference
    (numpy has no bfloat16/float8, and NaN != NaN would hide nothing but fail equality)."""
    widths = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}  # complex64 is 8 bytes
    return t.contiguous().view(widths[t.element_size()]).numpy()


def _same(got: np.ndarray, expected: np.ndarray, what: object) -> None:
    assert got.shape == expected.shape, what
    assert np.array_equal(got.view(expected.dtype), expected), what


def random_index(rng: random.Random, shape: tuple[int, ...]) -> tuple[Any, ...]:
    """A random basic index: ints (either sign), slices (any bounds, either step), None, '...'."""
    items: list[Any] = []
    for n in shape[: rng.randint(0, len(shape))] if rng.random() < 0.3 else shape:
        if n and rng.random() < 0.3:
            items.append(rng.randint(-n, n - 1))
        else:
            bound = [None, *range(-n - 2, n + 3)]
            items.append(slice(rng.choice(bound), rng.choice(bound), rng.choice([None, 1, 2, 3, -1, -2, -3])))
    if rng.random() < 0.3:
        items.insert(rng.randint(0, len(items)), None)
    if rng.random() < 0.3:
        at = rng.randint(0, len(items))
        items[at : at + rng.randint(0, 2)] = [Ellipsis]
    return tuple(items)


def _views(rng: random.Random, dtype: torch.dtype, count: int) -> dict[str, torch.Tensor]:
    """Random shapes, and random views of them: permutes, stepped slices, expands."""
    out: dict[str, torch.Tensor] = {}
    for k in range(count):
        shape = [rng.randint(0, 6) if rng.random() < 0.1 else rng.randint(1, 6) for _ in range(rng.randint(0, 4))]
        base = (torch.randn(shape, dtype=torch.float64) * 100).to(dtype)
        out[f"t{k}"] = base
        if len(shape) >= 2:
            out[f"p{k}"] = base.permute(*reversed(range(len(shape))))
        if shape and shape[0] > 1:
            out[f"s{k}"] = base[1::2]
            out[f"e{k}"] = base[:1].expand(3, *shape[1:])
        if len(shape) >= 2 and shape[1] > 2:
            out[f"c{k}"] = base[:, ::2]  # a column-stepped view
            out[f"o{k}"] = base[:, 1:]  # a storage offset
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64, torch.float8_e4m3fn, torch.complex64])
def test_random_indices_match_numpy_on_torchs_tensor(tmp_path: Path, dtype: torch.dtype) -> None:
    rng = random.Random(str(dtype))
    torch.manual_seed(0)
    torch.save(_views(rng, dtype, 12), tmp_path / "v.pt")
    loaded = torch.load(tmp_path / "v.pt", weights_only=True)
    refs = open_checkpoint(tmp_path / "v.pt").tensors
    checked = 0
    for name, tensor in loaded.items():
        expected_all = _bits(tensor)
        for _ in range(40):
            index = random_index(rng, tuple(tensor.shape))
            try:
                expected = expected_all[index]
            except IndexError:
                with pytest.raises(IndexError):
                    read_slice(refs[name], index)
                continue
            _same(read_slice(refs[name], index), expected, (name, index))
            checked += 1
    assert checked > 500


def test_legacy_and_big_endian_files_and_plain_index_forms(tmp_path: Path) -> None:
    t = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5)
    state = {"t": t, "tt": t.transpose(0, 2), "bf": torch.linspace(-1, 1, 60).to(torch.bfloat16).reshape(5, 12)}
    torch.save(state, tmp_path / "l.pt", _use_new_zipfile_serialization=False)
    torch.save(state, tmp_path / "little.pt")
    big_endian_copy(tmp_path / "little.pt", tmp_path / "big.pt", [4, 2])  # as a big-endian machine writes
    indices = [(), Ellipsis, 0, -1, (1, 2), (..., 2), (None, ..., None), slice(None, None, -1), (0, 0, 0), (1, 2, 2)]
    for path in (tmp_path / "l.pt", tmp_path / "big.pt"):
        refs = open_checkpoint(path).tensors
        for name, tensor in torch.load(path, weights_only=True).items():
            for index in indices if tensor.dim() == 3 else indices[:6]:
                _same(read_slice(refs[name], index), _bits(tensor)[index], (path.name, name, index))
    assert open_checkpoint(tmp_path / "big.pt").tensors["t"].storage.byteorder == "big"
    assert read_slice(refs["t"], np.int64(2)).shape == (4, 5)  # numpy integers index too


def test_bad_indices_are_clear_index_errors(tmp_path: Path) -> None:
    torch.save({"t": torch.zeros(3, 4)}, tmp_path / "m.pt")
    ref = open_checkpoint(tmp_path / "m.pt").tensors["t"]
    reference = np.zeros((3, 4))
    cases = {
        5: "index 5 is out of bounds for dimension 0 with size 3",
        (0, -5): "index -5 is out of bounds for dimension 1 with size 4",
        (0, 0, 0): "too many indices",
        (..., ...): "single ellipsis",
    }
    for index, message in cases.items():
        with pytest.raises(IndexError):
            reference[index]  # numpy refuses it too
        with pytest.raises(IndexOutOfRange, match=message) as caught:
            read_slice(ref, index)
        assert isinstance(caught.value, SelectionError) and isinstance(caught.value, IndexError)
    for index, message in [  # slices are unhashable before Python 3.12: pairs, not a dict
        (slice(None, None, 0), "step cannot be zero"),
        ((slice(0.5, 2),), "slice bounds must be integers"),
        (([0, 1],), "only integers, slices"),
        ((True,), "boolean indices"),
        ((np.array([0, 1]),), "only integers, slices"),
        ("a", "only integers, slices"),
    ]:
        with pytest.raises(IndexOutOfRange, match=message):
            read_slice(ref, index)


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, int, int]]:
    """Every read of tensor bytes (pread goes through readinto) as (file, offset, length)."""
    reads: list[tuple[Path, int, int]] = []
    readinto = source.Source.readinto

    def counted(self: source.Source, view: memoryview, offset: int) -> None:
        reads.append((self.path, offset, len(view)))
        readinto(self, view, offset)

    monkeypatch.setattr(source.Source, "readinto", counted)
    return reads


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, TensorRef], torch.Tensor]:
    """A 4096x4096 float32 matrix (64 MiB) and its transpose (the same storage)."""
    path = tmp_path_factory.mktemp("big") / "big.pt"
    matrix = torch.arange(4096 * 4096, dtype=torch.float32).reshape(4096, 4096)
    torch.save({"w": matrix, "wt": matrix.t()}, path)
    return open_checkpoint(path).tensors, matrix


@pytest.mark.parametrize(
    ("name", "index", "most"),
    [
        ("w", 7, 16 << 10),  # a row: its 16 KiB, in one read
        ("w", (slice(None), 7), 16 << 10),  # a column: 4096 elements of 4 bytes
        ("wt", 7, 16 << 10),  # a row of the transpose is a column of the storage
        ("wt", (slice(None), 7), 16 << 10),
        ("w", (slice(100, 200), slice(300, 400)), 100 * 400 * 2),  # a block: rows of 400 B
        ("w", (slice(-1, 0, -512), slice(None, None, -1024)), 8 * 4096),  # reversed, sparse
        ("wt", (slice(None, None, 2), slice(None, None, 2)), 2 * 16 << 20),  # at most twice the 16 MiB result
    ],
)
def test_reads_only_the_bytes_the_selection_needs(
    big: tuple[dict[str, TensorRef], torch.Tensor], monkeypatch: pytest.MonkeyPatch, name: str, index: Any, most: int
) -> None:
    refs, matrix = big
    tensor = matrix if name == "w" else matrix.t()
    reads = _counting(monkeypatch)
    tracemalloc.start()
    try:
        got = read_slice(refs[name], index)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    _same(got, _bits(tensor)[index], index)
    assert sum(n for _, _, n in reads) <= most
    # One read buffer at most besides the result (a run read straight into it needs none).
    assert peak <= got.nbytes + READ_BUFFER_BYTES + (1 << 20)
    assert all(n <= max(READ_BUFFER_BYTES, got.nbytes) for _, _, n in reads)


def test_a_whole_row_is_one_read_into_the_result(
    big: tuple[dict[str, TensorRef], torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    refs, matrix = big
    reads = _counting(monkeypatch)
    rows = read_slice(refs["w"], slice(10, 12))
    begin = refs["w"].byte_range()[0]
    assert reads == [(refs["w"].storage.path, begin + 10 * 4096 * 4, 2 * 4096 * 4)]
    _same(rows, _bits(matrix)[10:12], "rows")


def _pieces(tmp_path: Path) -> tuple[TensorRef, torch.Tensor]:
    """A tensor in six pieces of uneven sizes, some stored transposed (strided pieces),
    built as DCP chunks are: each piece an ordinary tensor placed at an offset."""
    full = torch.randn(7, 9, dtype=torch.float64).to(torch.bfloat16)
    rows, cols = [(0, 3), (3, 7)], [(0, 2), (2, 6), (6, 9)]
    saved = {}
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            piece = full[r0:r1, c0:c1].clone()
            saved[f"{i}{j}"] = piece.t().contiguous().t() if (i + j) % 2 else piece
    torch.save(saved, tmp_path / "pieces.pt")
    refs = open_checkpoint(tmp_path / "pieces.pt").tensors
    chunks = tuple(Chunk((r0, c0), refs[f"{i}{j}"]) for i, (r0, _) in enumerate(rows) for j, (c0, _) in enumerate(cols))
    first = chunks[0].ref
    return TensorRef(first.dtype, (7, 9), contiguous_strides((7, 9)), first.storage, chunks=chunks), full


def test_pieces_random_indices_match_the_whole_tensor(tmp_path: Path) -> None:
    ref, full = _pieces(tmp_path)
    assert not any(c.ref.is_contiguous for c in ref.chunks[1::2])  # strided pieces are exercised
    rng = random.Random(5)
    for _ in range(300):
        index = random_index(rng, (7, 9))
        try:
            expected = _bits(full)[index]
        except IndexError:
            continue
        _same(read_slice(ref, index), expected, index)


def test_pieces_outside_the_selection_are_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref, full = _pieces(tmp_path)
    reads = _counting(monkeypatch)
    got = read_slice(ref, (slice(4, 6), slice(3, 5)))  # inside piece (1, 1) only
    _same(got, _bits(full)[4:6, 3:5], "inside one piece")
    inside = ref.chunks[4].ref.byte_range()
    assert reads and all(inside[0] <= offset and offset + n <= inside[1] for _, offset, n in reads)
    with pytest.raises(CheckpointError, match="uncovered"):
        read_slice(replace(ref, chunks=ref.chunks[:5]), (-1, -1))  # the last piece is missing
    assert read_slice(replace(ref, chunks=ref.chunks[:5]), (0, 0)).shape == ()  # covered part still reads


def test_dcp_two_ranks_match_dcp_to_torch_save(tmp_path: Path) -> None:
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp_to_torch_save(TWO_RANKS, tmp_path / "full.pt")
    reference = torch.load(tmp_path / "full.pt", weights_only=True)["model"]
    refs = open_checkpoint(TWO_RANKS).tensors
    assert any(refs[f"model.{k}"].chunks for k in reference)
    rng = random.Random(2)
    for name, tensor in reference.items():
        for _ in range(60):
            index = random_index(rng, tuple(tensor.shape))
            try:
                expected = _bits(tensor)[index]
            except IndexError:
                continue
            _same(read_slice(refs[f"model.{name}"], index), expected, (name, index))


def test_truncated_file_is_a_clean_error(tmp_path: Path) -> None:
    torch.save({"t": torch.ones(64, 64)}, tmp_path / "m.pt")
    ref = open_checkpoint(tmp_path / "m.pt").tensors["t"]
    with open(tmp_path / "m.pt", "r+b") as fh:
        fh.truncate(ref.byte_range()[0] + 100)
    with pytest.raises(CheckpointError, match="truncated"):
        read_slice(ref, 60)


def test_undecodable_dtype_is_refused_before_reading(tmp_path: Path) -> None:
    # Relabelled, not made by torch: torch warns about complex32 once per process, and
    # test_stats expects to see that warning.
    torch.save({"c": torch.zeros(3)}, tmp_path / "c.pt")
    ref = open_checkpoint(tmp_path / "c.pt").tensors["c"]
    with pytest.raises(CheckpointError, match="complex32"):
        read_slice(replace(ref, dtype=BY_NAME["complex32"]), 0)

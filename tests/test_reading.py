"""paraminspect.safe_open and the read functions, held to independent references:
``safetensors.safe_open`` on safetensors files, torch (``torch.load``, tensor indexing,
``dcp_to_torch_save``) on every other format."""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors
import torch
from safetensors.torch import save_file

import paraminspect
from paraminspect import CheckpointError, SelectionError, UsageError, open_checkpoint
from paraminspect.api.reading import NoSuchTensor, safe_open
from tests.conftest import ROOT, SAMPLES
from tests.matrix.writers_libs import _bin_shards
from tests.matrix.writers_torch import all_dtypes, views
from tests.test_slicing import random_index

TWO_RANKS = ROOT / "tests" / "data" / "dcp_2ranks"


def _raw(t: torch.Tensor) -> bytes:
    dense = torch.empty(t.shape, dtype=t.dtype).copy_(t)  # contiguous() keeps a length-1 dim's stride
    return dense.reshape(-1).view(torch.uint8).numpy().tobytes()


def _same_torch(got: Any, expected: torch.Tensor, what: object) -> None:
    """Equal as torch sees it: type, dtype, shape and every bit (NaN-safe)."""
    assert isinstance(got, torch.Tensor), what
    assert (got.dtype, tuple(got.shape)) == (expected.dtype, tuple(expected.shape)), what
    assert _raw(got) == _raw(expected), what


def _same_numpy(got: Any, expected: torch.Tensor, what: object) -> None:
    """A numpy array of the tensor's dtype (ml_dtypes for bfloat16/float8), bit for bit."""
    assert isinstance(got, np.ndarray), what
    assert got.shape == tuple(expected.shape) and got.dtype.itemsize == expected.element_size(), what
    assert str(got.dtype) == str(expected.dtype).removeprefix("torch."), what
    assert np.ascontiguousarray(got).tobytes() == _raw(expected), what


# --- safetensors files: safetensors.safe_open is the reference ------------------------------------


@pytest.fixture(scope="module")
def st_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("st")
    stored = {k: v for k, v in all_dtypes().items() if v.dtype != torch.complex128}  # no C128 code
    stored["matrix"] = torch.randn(5, 6, 4, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    save_file(stored, root / "plain.safetensors")
    save_file(stored, root / "meta.safetensors", metadata={"format": "pt", "note": "ü"})
    return {"plain": root / "plain.safetensors", "meta": root / "meta.safetensors"}


@pytest.mark.parametrize("kind", ["plain", "meta"])
def test_safetensors_listing_is_what_safetensors_gives(st_files: dict[str, Path], kind: str) -> None:
    with safetensors.safe_open(st_files[kind], "pt") as theirs, safe_open(st_files[kind], "pt") as ours:
        assert ours.keys() == theirs.keys()  # sorted
        assert ours.offset_keys() == theirs.offset_keys()  # the order the bytes lie in
        assert ours.metadata() == theirs.metadata()  # None without __metadata__
        for name in theirs.keys():  # noqa: SIM118  (a reader, not a dict)
            mine, reference = ours.get_slice(name), theirs.get_slice(name)
            assert (mine.get_shape(), mine.get_dtype()) == (reference.get_shape(), reference.get_dtype()), name


def test_safetensors_tensors_are_what_safetensors_reads(st_files: dict[str, Path]) -> None:
    path = st_files["plain"]
    with safetensors.safe_open(path, "pt") as theirs, safe_open(path, "pt") as ours, safe_open(path, "np") as arrays:
        for name in theirs.keys():  # noqa: SIM118  (a reader, not a dict)
            reference = theirs.get_tensor(name)
            _same_torch(ours.get_tensor(name), reference, name)
            _same_numpy(arrays.get_tensor(name), reference, name)
    with safetensors.safe_open(path, "np") as theirs, safe_open(path, "np") as ours:
        for name in theirs.keys():  # noqa: SIM118  (a reader, not a dict)
            try:
                expected = theirs.get_tensor(name)
            except (TypeError, AttributeError):  # safetensors has no numpy bfloat16/float8 (we do: ml_dtypes)
                continue
            got = ours.get_tensor(name)
            assert got.dtype == expected.dtype and got.shape == expected.shape, name
            assert got.tobytes() == expected.tobytes(), name


SAFETENSORS_INDICES: list[Any] = [
    0,
    -1,
    slice(None),
    slice(1, 3),
    slice(None, None, 2),
    (slice(1, 4), 2),
    (Ellipsis, 1),
    (1, Ellipsis),
    (slice(0, 0),),
    (2, slice(1, 5, 3), slice(None)),
    (slice(None), slice(None), 3),
    (),
]


def test_get_slice_matches_safetensors_where_it_slices(st_files: dict[str, Path]) -> None:
    path = st_files["plain"]
    with safetensors.safe_open(path, "pt") as theirs, safe_open(path, "pt") as ours:
        for index in SAFETENSORS_INDICES:
            _same_torch(ours.get_slice("matrix")[index], theirs.get_slice("matrix")[index], index)
        for index in (0, slice(1, 3), (Ellipsis, 2)):
            _same_torch(ours.get_slice("float8_e4m3fn")[index], theirs.get_slice("float8_e4m3fn")[index], index)


def test_get_slice_goes_further_than_safetensors(st_files: dict[str, Path]) -> None:
    """Negative bounds and steps and None (safetensors 0.8 refuses most of them) match numpy
    on torch's tensor."""
    path = st_files["plain"]
    with safetensors.safe_open(path, "pt") as theirs, safe_open(path, "np") as ours:
        whole = theirs.get_tensor("matrix").view(torch.int16).numpy()
        for index in [slice(-2, None), (slice(None, None, -1), -2), (None, 0), (..., slice(3, 0, -2))]:
            got = ours.get_slice("matrix")[index]
            assert got.shape == whole[index].shape and np.array_equal(got.view(np.int16), whole[index]), index


def test_errors_are_clear(st_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = st_files["plain"]
    with safetensors.safe_open(path, "np") as theirs, safe_open(path) as ours:
        with pytest.raises(Exception, match="does not contain tensor nope"):
            theirs.get_tensor("nope")
        for call in (ours.get_tensor, ours.get_slice, ours.tensor_ref):
            with pytest.raises(NoSuchTensor, match="no tensor named 'nope'") as caught:
                call("nope")
            assert isinstance(caught.value, KeyError) and isinstance(caught.value, SelectionError)
        with pytest.raises(IndexError, match="out of bounds for dimension 0 with size 5"):
            ours.get_slice("matrix")[5]
    with pytest.raises(UsageError, match="framework 'tf' is not supported"):
        safe_open(path, "tf")
    with pytest.raises(UsageError, match="device 'cuda:0' is not supported"):
        safe_open(path, "pt", device="cuda:0")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(CheckpointError):
        safe_open(tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="no such file"):
        safe_open(tmp_path / "missing.safetensors")
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    with pytest.raises(UsageError, match="needs torch"):
        safe_open(path, "pt")
    with safe_open(path, "np") as ours:
        assert ours.get_tensor("float32").shape == (3, 5)  # numpy needs no torch


def test_exiting_closes_the_files(st_files: dict[str, Path]) -> None:
    reader = safe_open(st_files["plain"])
    with reader:
        sources = reader.checkpoint.sources
        piece = reader.get_slice("matrix")
        assert sources and not any(s.closed for s in sources)
    assert all(s.closed for s in sources)
    for call in (reader.keys, reader.metadata, lambda: reader.get_tensor("matrix"), lambda: piece[0]):
        with pytest.raises(UsageError, match="closed"):
            call()
    with safetensors.safe_open(st_files["plain"], "np") as theirs:
        pass
    with pytest.raises(Exception, match="closed"):
        theirs.keys()


# --- torch files: torch.load(weights_only=True) and torch indexing are the reference ---------------


def _flat(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a loaded object under dotted names (what keys() should list)."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list | tuple) else []
    out: dict[str, torch.Tensor] = {}
    for key, value in items:
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


WIDTHS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _check_torch_file(path: Path, expected: dict[str, torch.Tensor], *, ordered: bool = True) -> None:
    """keys() in the saved order (or sorted), get_tensor in both frameworks, and random
    get_slice indices: torch's own indexing, or numpy's on torch's tensor for negative steps."""
    rng = random.Random(str(path))
    with safe_open(path, "pt") as ours, safe_open(path, "numpy") as arrays:
        assert ours.keys() == (list(expected) if ordered else sorted(expected))
        for name, tensor in expected.items():
            _same_torch(ours.get_tensor(name), tensor, name)
            _same_numpy(arrays.get_tensor(name), tensor, name)
            piece = ours.get_slice(name)
            assert piece.get_shape() == list(tensor.shape)
            for _ in range(12):
                index = random_index(rng, tuple(tensor.shape))
                items = index if isinstance(index, tuple) else (index,)
                backwards = any(isinstance(i, slice) and (i.step or 1) < 0 for i in items)
                try:
                    reference = tensor.contiguous().view(WIDTHS[tensor.element_size()]).numpy()[index]
                    if not backwards:  # torch has no negative steps
                        _same_torch(piece[index], tensor[index], (name, index))
                except IndexError:
                    with pytest.raises(IndexError):
                        piece[index]
                    continue
                got = arrays.get_slice(name)[index]
                assert got.shape == reference.shape, (name, index)
                assert np.ascontiguousarray(got).tobytes() == reference.tobytes(), (name, index)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_pt_views_and_shared_storage_read_like_torch(tmp_path: Path, legacy: bool) -> None:
    state = {**views(), "bf16": torch.randn(4, 3).to(torch.bfloat16).t()}
    if not legacy:  # torch cannot load a float8 storage from the legacy format
        state["f8"] = torch.randn(6).to(torch.float8_e5m2)
    torch.save(state, tmp_path / "v.pt", _use_new_zipfile_serialization=not legacy)
    loaded = torch.load(tmp_path / "v.pt", weights_only=True)
    assert loaded["transposed"].stride() == (1, 6) and loaded["broadcast"].stride() == (0, 1)
    _check_torch_file(tmp_path / "v.pt", loaded)


def test_trainer_checkpoint_lists_only_its_tensors() -> None:
    path = SAMPLES / "trainer_checkpoint.pt"
    with torch.serialization.safe_globals([argparse.Namespace]):  # the trainer's saved args
        expected = _flat(torch.load(path, weights_only=True))
    _check_torch_file(path, expected)
    with safe_open(path) as ours:
        assert "epoch" in ours.checkpoint.values and "epoch" not in ours.keys()  # noqa: SIM118  (a reader, not a dict)
        with pytest.raises(NoSuchTensor, match=r"'epoch' is a value \(int\), not a tensor"):
            ours.get_tensor("epoch")


def test_iter_chunks_is_bounded_and_in_c_order(tmp_path: Path) -> None:
    torch.save({"t": torch.randn(7, 5).t(), "b": torch.randn(9).to(torch.bfloat16)}, tmp_path / "c.pt")
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)
    for framework in ("np", "pt"):
        with safe_open(tmp_path / "c.pt", framework) as ours:
            for name, tensor in loaded.items():
                pieces = list(ours.iter_chunks(name, chunk_elements=4))
                assert [len(p) for p in pieces[:-1]] == [4] * (len(pieces) - 1) and 0 < len(pieces[-1]) <= 4
                joined = torch.cat(pieces) if framework == "pt" else torch.from_numpy(np.concatenate(pieces).view("u1"))
                assert _raw(joined) == _raw(tensor.reshape(-1)), (framework, name)
    with pytest.raises(UsageError, match="chunk_elements"):
        list(paraminspect.iter_chunks(open_checkpoint(tmp_path / "c.pt").tensors["t"], 0))


def test_module_functions_for_checkpoint_holders(tmp_path: Path) -> None:
    torch.save({"w": torch.randn(3, 4).to(torch.bfloat16).t()}, tmp_path / "w.pt")
    expected = torch.load(tmp_path / "w.pt", weights_only=True)["w"]
    ref = open_checkpoint(tmp_path / "w.pt").tensors["w"]
    _same_numpy(paraminspect.read_tensor(ref), expected, "read_tensor")
    _same_torch(paraminspect.to_torch(ref), expected, "to_torch")
    _same_numpy(paraminspect.read_slice(ref, (slice(1, 3), 0)), expected[1:3, 0], "read_slice")
    assert paraminspect.CheckpointReader is type(safe_open(tmp_path / "w.pt"))


# --- sharded and DCP --------------------------------------------------------------------------------


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return {
        "embed.weight": torch.randn(16, 8, generator=g),
        "layers.0.weight": torch.randn(8, 8, generator=g).to(torch.bfloat16),
        "layers.0.bias": torch.randn(8, generator=g),
        "layers.10.weight": torch.randn(8, 8, generator=g).to(torch.float16),
        "head.weight": torch.randn(4, 8, generator=g),
    }


def _safetensors_shards(state: dict[str, torch.Tensor], directory: Path) -> None:
    """The layout transformers' save_pretrained writes: model-0000k-of-00002.safetensors
    shards and model.safetensors.index.json (its weight_map and total_size)."""
    directory.mkdir()
    names = list(state)
    weight_map: dict[str, str] = {}
    for k, half in enumerate((names[::2], names[1::2]), 1):
        shard = f"model-{k:05d}-of-00002.safetensors"
        save_file({n: state[n] for n in half}, directory / shard, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(half, shard))
    index = {"metadata": {"total_size": sum(t.nbytes for t in state.values())}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))


def test_sharded_safetensors_and_bin_read_like_their_shards(tmp_path: Path) -> None:
    state = _state()
    _safetensors_shards(state, tmp_path / "st")
    _bin_shards(state, tmp_path / "bin")
    for target in (tmp_path / "st", tmp_path / "st" / "model.safetensors.index.json", tmp_path / "bin"):
        _check_torch_file(target, state, ordered=False)  # keys sorted, as safetensors lists them
        with safe_open(target) as ours:
            meta = ours.metadata()
            assert meta is not None and int(meta["total_size"]) == sum(t.nbytes for t in state.values())
    shard_file = tmp_path / "st" / "model-00001-of-00002.safetensors"
    with safetensors.safe_open(shard_file, "pt") as shard, safe_open(tmp_path / "st", "pt") as ours:
        for name in shard.keys():  # each shard's tensors are what safetensors reads from it  # noqa: SIM118  (a reader, not a dict)
            _same_torch(ours.get_tensor(name), shard.get_tensor(name), name)


def test_dcp_reads_like_dcp_to_torch_save(tmp_path: Path) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    state: dict[str, Any] = {"model": _state(), "step": 3, "mask": views()["transposed"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "assuming the intent is to save in a single process"
        dcp.save(state, checkpoint_id=str(tmp_path / "dcp"))
        for source in (tmp_path / "dcp", TWO_RANKS):
            dcp_to_torch_save(source, tmp_path / f"{source.name}.pt")
    for source in (tmp_path / "dcp", TWO_RANKS):
        expected = _flat(torch.load(tmp_path / f"{source.name}.pt", weights_only=True))
        _check_torch_file(source, expected)
        with safe_open(source) as ours:
            assert ours.checkpoint.format == "dcp" and "step" not in ours.keys()  # noqa: SIM118  (a reader, not a dict)
    with safe_open(TWO_RANKS) as ours:
        assert ours.tensor_ref("model.conv.weight").chunks  # saved in pieces by two ranks


# --- the package face --------------------------------------------------------------------------------


def test_listing_imports_neither_numpy_nor_torch() -> None:
    code = (
        "import sys, paraminspect\n"
        "for path in sys.argv[1:]:\n"
        "    with paraminspect.safe_open(path) as f:\n"
        "        names = f.keys(); f.get_slice(names[0]).get_shape()\n"
        "        assert 'numpy' not in sys.modules, 'listing imported numpy'\n"
        "for path in sys.argv[1:]:\n"
        "    with paraminspect.safe_open(path) as f:\n"
        "        f.get_tensor(f.keys()[0])\n"
        "assert 'torch' not in sys.modules, 'numpy reads imported torch'\n"
    )
    paths = [str(SAMPLES / "mlp.safetensors"), str(SAMPLES / "trainer_checkpoint.pt")]
    done = subprocess.run([sys.executable, "-c", code, *paths], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_docs_examples_run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/library.md's examples are real: each python block runs from the repository root."""
    import re

    monkeypatch.chdir(ROOT)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "library.md").read_text(), re.DOTALL)
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, "docs/library.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["['model.0.weight', 'model.0.bias']", "[8, 4] F32", "(2, 4)", "None", "Value(value=3)"]

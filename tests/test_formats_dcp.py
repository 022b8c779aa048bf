"""torch.distributed.checkpoint directories, torch's own dcp.load as the oracle."""

from __future__ import annotations

import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from paraminspect import CheckpointError, TensorRef, Value, open_checkpoint
from paraminspect.data.arrays import iter_chunks, read_array
from tests.conftest import ROOT, run_cli, run_script
from tests.data import make_dcp_2ranks
from tests.test_arrays import _array_bits, _bits

TWO_RANKS = ROOT / "tests" / "data" / "dcp_2ranks"


def _dcp_load(directory: Path, template: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Load ``template``-shaped tensors with torch's own DCP reader (single process)."""
    import torch.distributed.checkpoint as dcp

    loaded = {k: torch.empty_like(v) for k, v in template.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.load(loaded, checkpoint_id=str(directory))
    return loaded


def _model_state() -> dict[str, torch.Tensor]:
    model = make_dcp_2ranks.state()["model"]
    assert isinstance(model, dict)
    return {f"model.{k}": v for k, v in model.items()}


def test_two_rank_chunks_are_reassembled_like_torch() -> None:
    expected = _model_state()
    oracle = _dcp_load(TWO_RANKS, expected)
    ckpt = open_checkpoint(TWO_RANKS)
    assert ckpt.format == "dcp"
    assert list(ckpt.entries) == [*expected, "step"]
    assert ckpt.entries["step"] == Value(7)
    for name, tensor in expected.items():
        ref = ckpt.tensors[name]
        assert (ref.dtype.name, ref.shape) == (str(tensor.dtype).removeprefix("torch."), tuple(tensor.shape))
        assert _array_bits(read_array(ref)) == _bits(oracle[name]) == _bits(tensor), name
        for size in (1, 4, 7, 1000):
            pieces = list(iter_chunks(ref, size))
            assert all(p.size == size for p in pieces[:-1]) and 0 < pieces[-1].size <= size
            assert _array_bits(np.concatenate(pieces)) == _bits(tensor), (name, size)
    # Sharded across the two ranks: one chunk in each .distcp file.
    chunks = ckpt.tensors["model.conv.weight"].chunks
    assert [(c.offsets, c.ref.shape, c.ref.storage.path.name) for c in chunks] == [
        ((0, 0, 0), (2, 3, 3), "__0_0.distcp"),
        ((0, 3, 0), (2, 2, 3), "__1_0.distcp"),
    ]
    assert not ckpt.tensors["model.norm.weight"].chunks  # replicated: saved once


def test_two_rank_tree_output() -> None:
    result = run_script("tree", TWO_RANKS)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"{TWO_RANKS}  (dcp: 4 tensors, 91 params, 428 B)\n"
        "├── model  (91 params, 428 B)\n"
        "│   ├── embed  (30 params, 120 B)\n"
        "│   │   └── weight  float32 [6, 5]\n"
        "│   ├── proj  (28 params, 56 B)\n"
        "│   │   └── weight  bfloat16 [4, 7]\n"
        "│   ├── conv  (30 params, 240 B)\n"
        "│   │   └── weight  int64 [2, 5, 3]\n"
        "│   └── norm  (3 params, 12 B)\n"
        "│       └── weight  float32 [3]\n"
        "└── step  = 7\n"
    )


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """dcp.save on one process, no process group: model, optimizer, epoch, a bf16 tensor."""
    import torch.distributed.checkpoint as dcp

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.rand(2, 4)).sum().backward()
    optimizer.step()
    obj: dict[str, object] = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": 3,
        "note": "hello",
        "half": torch.arange(6, dtype=torch.bfloat16).reshape(2, 3),
    }
    directory = tmp_path_factory.mktemp("dcp") / "ckpt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "assuming the intent is to save in a single process"
        dcp.save(obj, checkpoint_id=str(directory))
    return directory, obj


def test_single_process_save_reads_like_torch(single: tuple[Path, dict[str, object]]) -> None:
    directory, obj = single
    ckpt = open_checkpoint(directory / ".metadata")
    model = obj["model"]
    assert isinstance(model, dict)
    expected = {f"model.{k}": v for k, v in model.items()} | {"half": obj["half"]}
    oracle = _dcp_load(directory, expected)  # type: ignore[arg-type]
    for name, tensor in oracle.items():
        assert _array_bits(read_array(ckpt.tensors[name])) == _bits(tensor), name
    assert ckpt.entries["epoch"] == Value(3)
    assert ckpt.entries["note"] == Value("hello")
    assert ckpt.entries["optimizer.param_groups.0.lr"] == Value(0.001)
    assert ckpt.entries["optimizer.param_groups.0.betas"] == Value((0.9, 0.999))
    assert isinstance(ckpt.entries["optimizer.state.0.exp_avg"], TensorRef)


def test_state_dict_commands_pick_the_model(single: tuple[Path, dict[str, object]]) -> None:
    directory, _ = single
    result = run_cli("shapes", directory, "-f", "csv")
    assert result.code == 0
    assert result.out.splitlines()[1:] == [
        '0.weight,float32,"[8, 4]",32,128,',
        "0.bias,float32,[8],8,32,",
        '2.weight,float32,"[1, 8]",8,32,',
        "2.bias,float32,[1],1,4,",
    ]
    assert result.err == (
        f"paraminspect: note: {directory}: using the state dict under 'model' "
        "(--root KEY picks another part, --root '' the whole file)\n"
    )


def _copy(tmp_path: Path, old: bytes = b"", new: bytes = b"") -> Path:
    """A copy of the two-rank checkpoint, with a same-length edit of its .metadata."""
    target = tmp_path / "copy"
    shutil.copytree(TWO_RANKS, target)
    raw = (target / ".metadata").read_bytes()
    assert len(old) == len(new) and raw.count(old) >= 1  # same length keeps the pickle valid
    (target / ".metadata").write_bytes(raw.replace(old, new))
    return target


def test_data_file_outside_the_directory_is_refused(tmp_path: Path) -> None:
    target = _copy(tmp_path, b"__1_0.distcp", b"../_1_0.dist")
    result = run_cli("tree", target)
    assert result.code == 2
    assert "leaves the checkpoint's directory; refused" in result.err


def test_missing_data_file_is_a_clean_error(tmp_path: Path) -> None:
    target = _copy(tmp_path)
    (target / "__1_0.distcp").unlink()
    result = run_cli("shapes", target)
    assert result.code == 2 and result.err.count("\n") == 1
    assert "cannot open its data file '__1_0.distcp'" in result.err


def test_metadata_that_runs_code_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self) -> tuple[object, ...]:
            import os

            return (os.system, (f"touch {marker}",))

    directory = tmp_path / "evil"
    directory.mkdir()
    (directory / ".metadata").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError, match=r"not torch\.distributed\.checkpoint metadata"):
        open_checkpoint(directory)
    assert not marker.exists()


@pytest.mark.slow
def test_committed_two_rank_checkpoint_is_what_torch_writes(tmp_path: Path) -> None:
    make_dcp_2ranks.main(tmp_path / "fresh", port=29547)
    fresh, committed = open_checkpoint(tmp_path / "fresh"), open_checkpoint(TWO_RANKS)
    assert list(fresh.entries) == list(committed.entries)
    for name, ref in committed.tensors.items():
        assert _array_bits(read_array(fresh.tensors[name])) == _array_bits(read_array(ref))
        assert len(fresh.tensors[name].chunks) == len(ref.chunks)


def test_chunks_that_leave_a_gap_are_an_error_when_read() -> None:
    from dataclasses import replace

    ref = open_checkpoint(TWO_RANKS).tensors["model.embed.weight"]
    holed = replace(ref, chunks=ref.chunks[:1])  # rows 3-5 missing
    with pytest.raises(CheckpointError, match="uncovered"):
        read_array(holed)
    with pytest.raises(CheckpointError, match="uncovered"):
        list(iter_chunks(holed, 4))


def test_tree_root_option_on_a_dcp_directory() -> None:
    result = run_cli("tree", TWO_RANKS, "--root", "model.proj")
    assert result.code == 0 and result.err == ""
    assert result.out == f"{TWO_RANKS}  (dcp: 1 tensor, 28 params, 56 B)\n└── weight  bfloat16 [4, 7]\n"


def test_new_readers_never_import_torch(tmp_path: Path) -> None:
    """The read path stays torch-free for every format this issue adds."""
    import subprocess
    import sys

    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    code = (
        "import sys, io, contextlib\n"
        "from paraminspect.cli import main\n"
        "from paraminspect.data.arrays import read_array\n"
        "from paraminspect import open_checkpoint\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        f"    for args in (['tree', {str(TWO_RANKS)!r}], ['tree', '--modules', {str(legacy)!r}],\n"
        f"                 ['shapes', '--by-prefix', '1', {str(TWO_RANKS)!r}]):\n"
        "        assert main(args) == 0, args\n"
        f"read_array(open_checkpoint({str(TWO_RANKS)!r}).tensors['model.conv.weight'])\n"
        "print(sorted(m for m in ('torch', 'transformers', 'lightning') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"


def test_chunk_that_disagrees_with_the_metadata(tmp_path: Path) -> None:
    target = _copy(tmp_path, b"int64", b"uint8")  # conv.weight's dtype in .metadata
    result = run_cli("shapes", target)
    assert result.code == 2
    assert result.err == (
        f"paraminspect: error: {target}: DCP item 'model.conv.weight': chunk at [0, 0, 0] "
        "is not a uint8 tensor of shape [2, 3, 3]\n"
    )

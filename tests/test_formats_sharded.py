"""Sharded checkpoints written by transformers' save_pretrained and huggingface_hub."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from paraminspect import open_checkpoint
from paraminspect.data.arrays import read_array
from tests.conftest import run_cli, run_script
from tests.test_arrays import _array_bits, _bits


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny Llama saved by the real libraries in each layout, plus its state dict."""
    from huggingface_hub import save_torch_state_dict

    from tests.matrix.writers_libs import tiny_llama

    root = tmp_path_factory.mktemp("hf")
    model = tiny_llama(tied=False)
    model.save_pretrained(root / "single")
    model.save_pretrained(root / "sharded", max_shard_size="10KB")
    # transformers 5 writes safetensors only; the .bin layouts come from the
    # huggingface_hub function transformers 4 used for them.
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    for name, shard_size in (("bin_sharded", "10KB"), ("bin_single", "10GB")):
        (root / name).mkdir()
        save_torch_state_dict(state, root / name, safe_serialization=False, max_shard_size=shard_size)
    torch.save(state, root / "state.pt")
    return {p.name: p for p in root.iterdir()}


def _oracle(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor as the real libraries load it, shard by shard."""
    found: dict[str, torch.Tensor] = {}
    for shard in sorted(directory.glob("*.safetensors")):
        found.update(load_file(shard))
    for shard in sorted(directory.glob("*.bin")):
        found.update(torch.load(shard, weights_only=True))
    return found


@pytest.mark.parametrize("layout", ["single", "sharded", "bin_sharded", "bin_single"])
def test_every_layout_opens_as_one_checkpoint_with_torch_values(saved: dict[str, Path], layout: str) -> None:
    directory = saved[layout]
    expected = _oracle(directory)
    ckpt = open_checkpoint(directory)
    assert sorted(ckpt.tensors) == sorted(expected)
    for name, tensor in expected.items():
        ref = ckpt.tensors[name]
        assert ref.shape == tuple(tensor.shape)
        assert _array_bits(read_array(ref)) == _bits(tensor), name
    if "sharded" in layout:
        shards = {ref.storage.path.name for ref in ckpt.tensors.values()}
        assert len(shards) == int(ckpt.metadata["shards"]) > 1
        index = json.loads(next(directory.glob("*.index.json")).read_text())
        assert {n: r.storage.path.name for n, r in ckpt.tensors.items()} == index["weight_map"]


def test_index_file_and_directory_give_the_same_checkpoint(saved: dict[str, Path]) -> None:
    directory = saved["sharded"]
    by_dir = open_checkpoint(directory)
    by_index = open_checkpoint(directory / "model.safetensors.index.json")
    assert by_dir.entries == by_index.entries
    assert by_dir.format == "sharded-safetensors"
    assert open_checkpoint(saved["bin_sharded"]).format == "sharded-torch-zip"


def test_sharded_and_single_file_do_not_differ(saved: dict[str, Path]) -> None:
    sharded, single = open_checkpoint(saved["sharded"]).tensors, open_checkpoint(saved["single"]).tensors
    assert sorted(sharded) == sorted(single)
    for name, ref in sharded.items():
        assert _array_bits(read_array(ref)) == _array_bits(read_array(single[name]))


def test_tree_of_a_sharded_model_matches_the_single_file(saved: dict[str, Path]) -> None:
    sharded = run_script("tree", saved["sharded"], "--depth", "3")
    single = run_cli("tree", saved["single"] / "model.safetensors", "--depth", "3")
    assert sharded.returncode == 0, sharded.stderr
    title, body = sharded.stdout.split("\n", 1)
    assert (
        title == f"{saved['sharded'] / 'model.safetensors.index.json'}  "
        "(sharded-safetensors: 21 tensors, 6,736 params, 26.3 KiB)"
    )
    assert body == single.out.split("\n", 1)[1]
    assert body.startswith(
        "├── lm_head  (1,024 params, 4.0 KiB)\n"
        "│   └── weight  float32 [64, 16]\n"
        "└── model  (5,712 params, 22.3 KiB)\n"
        "    ├── embed_tokens  (1,024 params, 4.0 KiB)\n"
    )


def _tiny_shards(directory: Path, weight_map: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    save_file({"a": torch.ones(2)}, str(directory / "s1.safetensors"))
    save_file({"b": torch.zeros(3)}, str(directory / "s2.safetensors"))
    index = directory / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 20}, "weight_map": weight_map}))
    return index


def _error(path: Path) -> str:
    result = run_cli("shapes", path)
    assert result.code == 2 and result.out == ""
    assert result.err.count("\n") == 1
    return result.err


def test_header_only_and_metadata(tmp_path: Path) -> None:
    index = _tiny_shards(tmp_path / "m", {"a": "s1.safetensors", "b": "s2.safetensors"})
    ckpt = open_checkpoint(index)
    assert ckpt.metadata == {"total_size": "20", "shards": "2"}
    assert [r.storage.path.name for r in ckpt.tensors.values()] == ["s1.safetensors", "s2.safetensors"]


@pytest.mark.parametrize("bad", ["../s1.safetensors", "/etc/passwd", "sub/../../x.safetensors", "C:\\x.safetensors"])
def test_shard_paths_must_stay_inside_the_directory(tmp_path: Path, bad: str) -> None:
    index = _tiny_shards(tmp_path / "m", {"a": bad, "b": "s2.safetensors"})
    assert "leaves the checkpoint's directory; refused" in _error(index)


def test_symlinked_shard_leading_out_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.safetensors"
    save_file({"a": torch.ones(2)}, str(outside))
    index = _tiny_shards(tmp_path / "m", {"a": "link.safetensors", "b": "s2.safetensors"})
    (tmp_path / "m" / "link.safetensors").symlink_to(outside)
    assert "resolves outside the checkpoint's directory; refused" in _error(index)


def test_missing_shard_names_shard_and_tensor(tmp_path: Path) -> None:
    index = _tiny_shards(tmp_path / "m", {"a": "s1.safetensors", "b": "gone.safetensors"})
    assert _error(index) == (f"paraminspect: error: {index}: shard 'gone.safetensors' (holding 'b') does not exist\n")


def test_tensor_absent_from_its_shard_still_reads_and_fails_check(tmp_path: Path) -> None:
    index = _tiny_shards(tmp_path / "m", {"a": "s1.safetensors", "b": "s1.safetensors"})
    shapes = run_cli("shapes", index, "-f", "json")  # what the shards hold is listed; check says what is wrong
    assert shapes.code == 0
    assert [t["name"] for t in json.loads(shapes.out)["tensors"]] == ["a"]
    result = run_cli("check", index)
    assert result.code == 1
    assert result.out.splitlines()[2:4] == [  # s2 is no shard of this index: its 12 bytes are not counted
        "missing from shard  b           in s1.safetensors  absent",
        "total_size differs  total_size  20                 8 bytes in the shards",
    ]


def test_broken_shard_is_reported_through_the_index(tmp_path: Path) -> None:
    index = _tiny_shards(tmp_path / "m", {"a": "s1.safetensors", "b": "s2.safetensors"})
    raw = (tmp_path / "m" / "s2.safetensors").read_bytes()
    (tmp_path / "m" / "s2.safetensors").write_bytes(raw[:-4])
    assert _error(index).startswith(f"paraminspect: error: {index}: shard 's2.safetensors': ")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"metadata": {}}', "without a 'weight_map'"),
        ('{"weight_map": {"a": 3}}', "must map tensor names to shard file names"),
        ('{"weight_map": {}}', "is empty"),
        ('{"weight_map": {"a": "x", "a": "y"}}', "has the key 'a' twice"),
        ('{"weight_map": ', "not valid JSON"),
    ],
)
def test_malformed_index(tmp_path: Path, text: str, reason: str) -> None:
    (tmp_path / "model.safetensors.index.json").write_text(text)
    assert reason in _error(tmp_path / "model.safetensors.index.json")


def test_directory_choices(tmp_path: Path, saved: dict[str, Path]) -> None:
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(saved["state.pt"], lone / "weights.pt")
    assert open_checkpoint(lone).path == lone / "weights.pt"
    shutil.copy(saved["state.pt"], lone / "other.pt")
    assert "several candidates (other.pt, weights.pt); name one" in _error(lone)
    (tmp_path / "empty").mkdir()
    assert "is a directory with no checkpoint in it" in _error(tmp_path / "empty")

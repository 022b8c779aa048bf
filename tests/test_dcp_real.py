"""DCP directories written by the real ``torch.distributed.checkpoint.save`` on one
process, held to ``dcp_to_torch_save`` + ``torch.load`` as the reference.

The trap: every item in a ``.distcp`` file is its own small torch.save zip whose
storage is called "0", so tensors of equal shape (a BatchNorm's four [4] tensors
and the conv bias) looked like one tied tensor: one tensor's values for five
names, ``diff`` "equal" on changed files, ``convert`` writing wrong values
"verified". Non-tensor items (a Namespace, a tuple) hold tensors at offsets
relative to the item, not the file.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from paraminspect import TensorRef, open_checkpoint
from paraminspect.data.arrays import read_array
from tests.conftest import run_cli
from tests.test_arrays import _array_bits, _bits


class Net(torch.nn.Module):
    """Conv2d -> BatchNorm2d -> Linear: five distinct float32 [4] tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(self.conv(x)).flatten(1))


def _net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    net = Net()
    with torch.no_grad():  # every tensor different from every other (bn starts as ones/zeros)
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor))
        net.bn.num_batches_tracked.fill_(5)
    return net


def _save(obj: dict[str, Any], directory: Path) -> Path:
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "assuming the intent is to save in a single process"
        dcp.save(obj, checkpoint_id=str(directory))
    return directory


def _with_objects(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """A state dict plus two non-tensor items holding tensors (stored as bytes items)."""
    return {
        "model": state,
        "args": argparse.Namespace(lr=0.1, mask=torch.arange(4.0) + 10),
        "pair": (torch.tensor([5.0, 6.0, 7.0, 8.0]), 3),
    }


def _optimizer_state(net: Net) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    optimizer = torch.optim.Adam(net.parameters())
    torch.manual_seed(1)
    net(torch.randn(2, 3, 6, 6)).sum().backward()
    optimizer.step()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model_state, optim_state = get_state_dict(net, optimizer)  # no process group needed
    return {"model": model_state, "optim": optim_state}


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dcp_real")
    changed = _net()
    with torch.no_grad():
        changed.bn.running_mean[0] += 1.0
    return {
        "objects": _save(_with_objects(_net().state_dict()), root / "objects"),
        "changed": _save(_with_objects(changed.state_dict()), root / "changed"),
        "optim": _save(_optimizer_state(_net()), root / "optim"),
    }


_REFERENCES: dict[Path, dict[str, Any]] = {}


def _reference(directory: Path, tmp_path: Path) -> dict[str, Any]:
    """Every leaf of torch's own reading of the directory, by dotted name (once per directory)."""
    if directory not in _REFERENCES:
        _REFERENCES[directory] = _read_reference(directory, tmp_path)
    return _REFERENCES[directory]


def _read_reference(directory: Path, tmp_path: Path) -> dict[str, Any]:
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    out = tmp_path / f"{directory.name}_reference.pt"
    dcp_to_torch_save(str(directory), str(out))
    leaves: dict[str, Any] = {}

    def walk(prefix: str, obj: Any) -> None:
        if isinstance(obj, argparse.Namespace):
            obj = vars(obj)
        if isinstance(obj, dict):
            children = list(obj.items())
        elif isinstance(obj, list | tuple) and any(isinstance(v, torch.Tensor | dict | list) for v in obj):
            children = list(enumerate(obj))
        else:
            leaves[prefix] = obj
            return
        for key, value in children:
            walk(f"{prefix}.{key}" if prefix else str(key), value)

    walk("", torch.load(out, weights_only=False))  # a Namespace needs the full unpickler
    return leaves


def _reference_tensors(directory: Path, tmp_path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in _reference(directory, tmp_path).items() if isinstance(v, torch.Tensor)}


@pytest.mark.parametrize("which", ["objects", "optim"])
def test_names_dtypes_shapes_values_and_no_ties(dirs: dict[str, Path], tmp_path: Path, which: str) -> None:
    reference = _reference_tensors(dirs[which], tmp_path)
    ckpt = open_checkpoint(dirs[which])
    assert list(ckpt.tensors) == list(reference)
    for name, tensor in reference.items():
        ref = ckpt.tensors[name]
        assert (ref.dtype.name, ref.shape) == (str(tensor.dtype).removeprefix("torch."), tuple(tensor.shape)), name
        assert _array_bits(read_array(ref)) == _bits(tensor), name
    # torch reads distinct tensors: nothing in these files is tied, and no two share bytes.
    assert ckpt.tied_groups() == {}
    assert len({r.identity for r in ckpt.tensors.values()}) == len(reference)
    doc = json.loads(run_cli("shapes", dirs[which], "--root", "", "--format", "json").out)
    assert [t["tied_to"] for t in doc["tensors"]] == [None] * len(reference)


def test_get_shows_each_object_items_own_tensor(dirs: dict[str, Path], tmp_path: Path) -> None:
    """Two bytes items (a Namespace, a tuple), each a zip at its own offset in the .distcp."""
    reference = _reference_tensors(dirs["objects"], tmp_path)
    for name in ("args.mask", "pair.0", "model.bn.running_var"):
        result = run_cli("get", dirs["objects"], name, "--root", "", "--format", "json")
        assert result.code == 0, result.err
        doc = json.loads(result.out)
        assert [(e["name"], e["values"]) for e in doc["entries"]] == [(name, reference[name].tolist())]


def test_stats_match_float64_torch(dirs: dict[str, Path], tmp_path: Path) -> None:
    reference = _reference_tensors(dirs["optim"], tmp_path)
    result = run_cli("stats", dirs["optim"], "--root", "", "--format", "json")
    assert result.code == 0, result.err
    rows = {row["name"]: row for row in json.loads(result.out)["tensors"]}
    for name, tensor in reference.items():
        values = tensor.double().reshape(-1)
        for key, want in (("min", values.min()), ("max", values.max()), ("mean", values.mean())):
            assert rows[name][key] == pytest.approx(float(want), rel=1e-9, abs=1e-300), (name, key)
        if values.numel() > 1:
            assert rows[name]["std"] == pytest.approx(float(values.std()), rel=1e-9), name


def test_diff_reports_exactly_the_changed_element(dirs: dict[str, Path]) -> None:
    same = run_cli("diff", dirs["objects"], dirs["objects"], "--root", "", "--format", "json")
    assert same.code == 0 and json.loads(same.out)["same"] is True
    result = run_cli("diff", dirs["objects"], dirs["changed"], "--root", "", "--format", "json")
    assert result.code == 1, result.err
    doc = json.loads(result.out)
    changed = [e for e in doc["entries"] if e["status"] != "equal"]
    assert [(e["name"], e["status"], e["differing"], e["index"]) for e in changed] == [
        ("model.bn.running_mean", "values_changed", 1, [0])
    ]
    assert doc["counts"]["values_changed"] == 1


def _assert_same(written: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert written.keys() == reference.keys()
    for name, tensor in reference.items():
        assert written[name].dtype == tensor.dtype, name
        assert _bits(written[name]) == _bits(tensor), name


@pytest.mark.parametrize("which", ["objects", "optim"])
def test_convert_to_safetensors_is_bit_exact(dirs: dict[str, Path], tmp_path: Path, which: str) -> None:
    out = tmp_path / "out.safetensors"
    result = run_cli("convert", dirs[which], out)
    assert result.code == 0, result.err
    _assert_same(load_file(out), _reference_tensors(dirs[which], tmp_path))


def test_convert_model_and_optimizer_to_pt_is_bit_exact(dirs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.pt"
    result = run_cli("convert", dirs["optim"], out)
    assert result.code == 0, result.err
    loaded = torch.load(out, weights_only=True)
    reference = _reference(dirs["optim"], tmp_path)
    tensors = {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    _assert_same(tensors, {k: v for k, v in reference.items() if isinstance(v, torch.Tensor)})
    assert loaded["optim.param_groups.0.lr"] == reference["optim.param_groups.0.lr"]
    # Distinct sources are distinct storages in the output, as torch.load sees them.
    pointers = [t.untyped_storage().data_ptr() for t in tensors.values() if t.numel()]
    assert len(set(pointers)) == len(pointers)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_cast_is_bit_exact_against_torch(dirs: dict[str, Path], tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"cast{suffix}"
    result = run_cli("cast", dirs["optim"], "--dtype", "bfloat16", "-o", out)
    assert result.code == 0, result.err
    written = load_file(out) if suffix == ".safetensors" else torch.load(out, weights_only=True)
    expected = {
        k: v.to(torch.bfloat16) if v.is_floating_point() else v
        for k, v in _reference_tensors(dirs["optim"], tmp_path).items()
    }
    _assert_same({k: v for k, v in written.items() if isinstance(v, torch.Tensor)}, expected)


def test_set_and_rename_on_model_and_optimizer(dirs: dict[str, Path], tmp_path: Path) -> None:
    reference = _reference_tensors(dirs["optim"], tmp_path)
    out = tmp_path / "set.safetensors"
    result = run_cli("set", dirs["optim"], "model.bn.bias", "0", "-o", out)
    assert result.code == 0, result.err  # used to refuse: "tied to" four unrelated tensors
    _assert_same(load_file(out), reference | {"model.bn.bias": torch.zeros(4)})
    out = tmp_path / "renamed.pt"
    result = run_cli("rename", dirs["optim"], "model.=net.", "-o", out)
    assert result.code == 0, result.err
    renamed = {k.replace("model.", "net.", 1) if k.startswith("model.") else k: v for k, v in reference.items()}
    loaded = torch.load(out, weights_only=True)
    _assert_same({k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}, renamed)


def test_verification_does_not_trust_the_grouping(
    dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the old, key-based identity (the bug) the writer joins distinct tensors;
    the check must catch it by reading each name's own bytes, not pass it as verified."""

    def by_key(ref: TensorRef) -> tuple[object, ...]:
        return (ref.storage.path, ref.storage.key, ref.storage_offset, ref.shape, ref.strides)

    monkeypatch.setattr(TensorRef, "identity", property(by_key))
    for suffix, options in ((".safetensors", []), (".pt", ["--drop-unknown"])):  # the Namespace
        out = tmp_path / f"out{suffix}"
        result = run_cli("convert", dirs["objects"], out, *options)
        assert result.code == 2, result.out
        assert "failed verification" in result.err and "source bytes differ" in result.err, result.err
        assert not out.exists()


def test_dcp_tensor_in_pieces_converts(tmp_path: Path) -> None:
    """A chunked tensor's identity covers every chunk; .pt output assembles the pieces
    (it used to view the first piece's storage as the whole tensor and fail in torch)."""
    from tests.test_formats_dcp import TWO_RANKS, _dcp_load, _model_state

    oracle = _dcp_load(TWO_RANKS, _model_state())
    assert open_checkpoint(TWO_RANKS).tied_groups() == {}
    for suffix in (".safetensors", ".pt"):
        out = tmp_path / f"two{suffix}"
        result = run_cli("convert", TWO_RANKS, out)
        assert result.code == 0, result.err
        written = load_file(out) if suffix == ".safetensors" else torch.load(out, weights_only=True)
        _assert_same({k: written[k] for k in oracle}, oracle)

"""TorchScript archives (torch.jit.save): weights under state-dict names, code never run;
torch.jit.load(...).state_dict() as the oracle."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from paraminspect import open_checkpoint
from paraminspect.data.arrays import read_array
from tests.conftest import run_cli
from tests.test_arrays import _array_bits, _bits


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU())
        self.register_buffer("scale", torch.arange(4, dtype=torch.float64))
        self.head = nn.Linear(8, 3, bias=False)
        self.emb = nn.Embedding(5, 2).to(torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1)) * self.scale.sum()


def _save(module: nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated; its files are still around
        torch.jit.save(torch.jit.script(module), str(path))
        return path


def _expected(path: Path) -> dict[str, torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dict(torch.jit.load(str(path)).state_dict())


@pytest.mark.parametrize("make", [Block, lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))])
def test_names_and_values_match_jit_load(tmp_path: Path, make: type[nn.Module]) -> None:
    torch.manual_seed(0)
    path = _save(make(), tmp_path / "m.pt")
    expected = _expected(path)
    ckpt = open_checkpoint(path)
    assert ckpt.format == "torchscript"
    assert list(ckpt.tensors) == list(expected)
    for name, tensor in expected.items():
        ref = ckpt.tensors[name]
        assert ref.dtype.name == str(tensor.dtype).removeprefix("torch."), name
        assert ref.shape == tuple(tensor.shape), name
        assert _array_bits(read_array(ref)) == _bits(tensor), name


def test_code_is_listed_by_scan_never_run(tmp_path: Path) -> None:
    path = _save(Block(), tmp_path / "m.pt")
    ckpt = open_checkpoint(path)
    assert int(ckpt.metadata["torchscript_code_files"]) > 0
    assert run_cli("tree", path).code == 0
    result = run_cli("scan", path, "--format", "json")
    assert result.code == 1
    references = json.loads(result.out)["files"][0]["references"]
    code = [r["record"] for r in references if r["kind"] == "code"]
    assert "m/code/__torch__.py" in code or any(r.startswith("m/code/__torch__/") for r in code)
    assert all(not r.endswith(".debug_pkl") for r in code)
    assert any(r["name"].startswith("__torch__.") and r["status"] == "unsafe" for r in references)


def test_diff_against_the_state_dict_and_convert(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Block()
    path = _save(model, tmp_path / "m.pt")
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    result = run_cli("diff", path, tmp_path / "sd.pt")
    assert result.code == 0, result.out + result.err
    result = run_cli("convert", path, tmp_path / "m.safetensors")
    assert result.code == 0, result.err
    from safetensors.torch import load_file

    converted = load_file(tmp_path / "m.safetensors")
    for name, tensor in _expected(path).items():
        assert torch.equal(converted[name], tensor), name

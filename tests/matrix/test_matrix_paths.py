"""The matrix's structural cases (issue 11): files whose content a dotted name or
a safetensors file cannot express. Each command must either keep every path,
value type and tensor exactly (read back by torch.load), or refuse with one
clear error; never write a different file and call it verified.
"""

from __future__ import annotations

import json
import pathlib
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import run_cli
from tests.matrix.reference import raw


def _colliding() -> dict[Any, Any]:
    """Keys that flatten to the same dotted name: 'x' -> 'y' and 'x.y'; 1 and '1'."""
    return {
        "x": {"y": torch.full((2,), 1.0)},
        "x.y": torch.full((2,), 2.0),
        1: torch.full((2,), 3.0),
        "1": torch.full((2,), 4.0),
    }


def _value_types() -> dict[str, Any]:
    return {
        "w": torch.ones(2),
        "size_value": torch.Size([2, 3]),
        "path_value": pathlib.PosixPath("/a/b"),
        "layout_value": torch.strided,
    }


def _quantized_and_sparse() -> dict[str, torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensor creation is deprecated
        quantized = torch.quantize_per_tensor(torch.rand(4), 0.1, 0, torch.qint8)
    return {"w": torch.ones(2), "quantized": quantized, "sparse": torch.eye(3).to_sparse()}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    directory = tmp_path_factory.mktemp("paths")
    out: dict[str, tuple[Path, Any]] = {}
    for name, obj in (("colliding", _colliding()), ("types", _value_types()), ("qsparse", _quantized_and_sparse())):
        torch.save(obj, directory / f"{name}.pt")
        out[name] = (directory / f"{name}.pt", obj)
    return out


def _refused(result: Any) -> bool:
    lines = result.err.strip().splitlines()
    return result.code == 2 and len(lines) == 1 and lines[0].startswith("paraminspect: error: ")


def _same_tree(a: Any, b: Any, path: str = "") -> None:
    """Equal objects, key types and value types included; tensors bit-exact."""
    assert type(a) is type(b), (path, type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert (a.dtype, a.shape, raw(a)) == (b.dtype, b.shape, raw(b)), path
    elif isinstance(a, dict):
        assert list(a) == list(b), path
        for key in a:
            _same_tree(a[key], b[key], f"{path}/{key!r}")
    else:
        assert a == b, path


def test_colliding_names_are_all_listed(files: dict[str, tuple[Path, Any]]) -> None:
    """Four tensors in the file: ``shapes`` shows four distinct names, or refuses."""
    path, _ = files["colliding"]
    result = run_cli("shapes", "-f", "json", "--root", "", path)
    if not _refused(result):
        names = [row["name"] for row in json.loads(result.out)["tensors"]]
        assert len(set(names)) == len(names) == 4, names


def test_colliding_names_convert_keeps_every_tensor(files: dict[str, tuple[Path, Any]], tmp_path: Path) -> None:
    path, obj = files["colliding"]
    result = run_cli("convert", path, tmp_path / "out.pt")
    if not _refused(result):
        assert result.code == 0, result.err
        _same_tree(torch.load(tmp_path / "out.pt", weights_only=True), obj)


def test_pt_to_pt_keeps_value_types(files: dict[str, tuple[Path, Any]], tmp_path: Path) -> None:
    """torch.Size, a path and torch.strided come back as themselves, or the summary names
    what could not be kept."""
    path, obj = files["types"]
    result = run_cli("convert", path, tmp_path / "out.pt")
    assert result.code == 0, result.err
    back = torch.load(tmp_path / "out.pt", weights_only=False)  # our own output: trusted
    lost = [k for k in obj if k != "w" and (type(back.get(k)) is not type(obj[k]) or back.get(k) != obj[k])]
    said = result.out + result.err
    assert all(re.search(rf"\b{k}\b", said) for k in lost), (lost, said)
    _same_tree(back["w"], obj["w"])


def test_convert_to_safetensors_refuses_quantized_and_sparse(
    files: dict[str, tuple[Path, Any]], tmp_path: Path
) -> None:
    """safetensors cannot hold them: refuse and name each, never drop them as "non-tensor entries"."""
    path, _ = files["qsparse"]
    result = run_cli("convert", path, tmp_path / "out.safetensors")
    assert _refused(result), (result.code, result.out, result.err)
    assert "quantized" in result.err and "sparse" in result.err
    assert not (tmp_path / "out.safetensors").exists()

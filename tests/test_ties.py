"""A tie is two names on the same bytes of the same file, nothing else; every path
in a file keeps its own name; and a write is verified against each name's own source.

References: ``torch.load(weights_only=True)`` (which tensors share memory),
``safetensors.torch.load_file``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from paraminspect import open_checkpoint
from paraminspect.data.arrays import read_array
from paraminspect.edit.writers import torchsave as torch_write
from tests.conftest import run_cli
from tests.test_arrays import _array_bits, _bits


def _partition(groups: dict[Any, set[str]]) -> set[frozenset[str]]:
    return {frozenset(g) for g in groups.values() if len(g) > 1}


def _torch_ties(state: dict[str, torch.Tensor]) -> set[frozenset[str]]:
    """Names torch sees as one tensor: same memory, dtype, shape and strides."""
    groups: dict[Any, set[str]] = {}
    for name, t in state.items():
        groups.setdefault((t.data_ptr(), t.dtype, t.shape, t.stride()), set()).add(name)
    return _partition(groups)


def _torch_storages(state: dict[str, torch.Tensor]) -> set[frozenset[str]]:
    groups: dict[Any, set[str]] = {}
    for name, t in state.items():
        groups.setdefault(t.untyped_storage().data_ptr(), set()).add(name)
    return _partition(groups)


def _our_ties(path: Path) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for alias, owner in open_checkpoint(path).tied_groups().items():
        groups.setdefault(owner, {owner}).add(alias)
    return {frozenset(g) for g in groups.values()}


@pytest.fixture
def mixed(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A true tie, two views of one storage, and equal-shaped distinct tensors."""
    torch.manual_seed(0)
    shared, base = torch.randn(4), torch.randn(8)
    state = {
        "a": shared,
        "b": shared,
        "c": base[:4],
        "d": base[4:],
        "e": torch.randn(4),
        "f": torch.randn(4),
        "g": base.view(2, 4)[:, 1],
    }
    path = tmp_path / "mixed.pt"
    torch.save(state, path)
    return path, state


def test_ties_are_what_torch_shares(mixed: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, _ = mixed
    loaded = torch.load(path, weights_only=True)
    assert _our_ties(path) == _torch_ties(loaded) == {frozenset({"a", "b"})}
    doc = json.loads(run_cli("shapes", path, "--format", "json").out)
    assert {t["name"]: t["tied_to"] for t in doc["tensors"]} == {n: "a" if n == "b" else None for n in loaded}


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_convert_keeps_ties_views_and_values(
    mixed: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path, suffix: str
) -> None:
    path, _ = mixed
    loaded = torch.load(path, weights_only=True)
    out = tmp_path / f"out{suffix}"
    result = run_cli("convert", path, out)
    assert result.code == 0, result.err
    if suffix == ".pt":
        written = torch.load(out, weights_only=True)
        # Views of one storage stay on one storage; the tie stays one tensor.
        assert _torch_storages(written) == _torch_storages(loaded) == {frozenset({"a", "b"}), frozenset("cdg")}
        assert _torch_ties(written) == _torch_ties(loaded)
    else:
        with safe_open(str(out), framework="pt") as f:
            assert f.metadata() == {"b": "a"}  # stored once, as save_model records a tie
        written = load_file(out)
        written["b"] = written["a"]
        assert _our_ties(out) == {frozenset({"a", "b"})}
    assert written.keys() == loaded.keys()
    for name, tensor in loaded.items():
        assert _bits(written[name]) == _bits(tensor), name


def test_empty_tensors_are_not_tied(tmp_path: Path) -> None:
    """safetensors gives consecutive empty tensors the same offsets; they share no bytes."""
    path = tmp_path / "empty.safetensors"
    save_file({"a": torch.zeros(0), "b": torch.zeros(0), "c": torch.ones(2), "d": torch.zeros(0, 4)}, path)
    assert open_checkpoint(path).tied_groups() == {}
    for suffix in (".pt", ".safetensors"):
        out = tmp_path / f"out{suffix}"
        result = run_cli("convert", path, out)
        assert result.code == 0, result.err
        assert open_checkpoint(out).tied_groups() == {}, suffix


def test_writer_sharing_what_the_sources_did_not_fails_verification(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two distinct all-zero tensors: checksums cannot tell them apart, the tie check can."""
    path = tmp_path / "zeros.pt"
    torch.save({"a": torch.zeros(4), "b": torch.zeros(4)}, path)
    monkeypatch.setattr(torch_write, "identity", lambda source: source.shape)  # a writer joining equal shapes
    out = tmp_path / "out.pt"
    result = run_cli("convert", path, out)
    assert result.code == 2, result.out
    assert "failed verification: tied names differ" in result.err, result.err
    assert not out.exists()


# ---- paths that join to one dotted name ------------------------------------------


def test_distinct_names_respells_only_repeats() -> None:
    from paraminspect.model import distinct_names

    assert distinct_names(["a", "b"]) == ["a", "b"]
    assert distinct_names(["a", "a", "a~1", "a", "b"]) == ["a", "a~2", "a~1", "a~3", "b"]


@pytest.fixture
def colliding(tmp_path: Path) -> tuple[Path, dict[Any, Any]]:
    torch.manual_seed(0)
    obj: dict[Any, Any] = {
        "x": {"y": torch.randn(3)},
        "x.y": torch.randn(3),
        1: torch.randn(2),
        "1": torch.randn(2),
    }
    path = tmp_path / "colliding.pt"
    torch.save(obj, path)
    return path, obj


def _by_spelling(obj: dict[Any, Any]) -> dict[str, torch.Tensor]:
    """The documented spelling: the first in file order keeps the name, later ones get ~N."""
    return {"x.y": obj["x"]["y"], "x.y~1": obj["x.y"], "1": obj[1], "1~1": obj["1"]}


def test_every_path_is_listed_and_read(colliding: tuple[Path, dict[Any, Any]]) -> None:
    path, _ = colliding
    reference = _by_spelling(torch.load(path, weights_only=True))
    ckpt = open_checkpoint(path)
    assert list(ckpt.tensors) == list(reference)
    for name, tensor in reference.items():
        assert _array_bits(read_array(ckpt.tensors[name])) == _bits(tensor), name
    result = run_cli("get", path, "x.y~1", "--format", "json")
    assert json.loads(result.out)["entries"][0]["values"] == reference["x.y~1"].tolist()


def test_convert_and_set_in_place_keep_each_tensor_in_its_place(
    colliding: tuple[Path, dict[Any, Any]], tmp_path: Path
) -> None:
    path, _ = colliding
    original = torch.load(path, weights_only=True)
    out = tmp_path / "out.pt"
    assert run_cli("convert", path, out).code == 0
    written = torch.load(out, weights_only=True)
    assert list(written) == ["x", "x.y", 1, "1"]  # key types and places kept
    assert _bits(written["x"]["y"]) == _bits(original["x"]["y"])
    for key in ("x.y", 1, "1"):
        assert _bits(written[key]) == _bits(original[key]), key
    assert run_cli("diff", path, out, "--quiet").code == 0

    result = run_cli("set", path, "x.y~1", "0", "--in-place")
    assert result.code == 0, result.err
    edited = torch.load(path, weights_only=True)
    assert edited["x.y"].tolist() == [0.0, 0.0, 0.0]
    assert _bits(edited["x"]["y"]) == _bits(original["x"]["y"])
    assert _bits(edited[1]) == _bits(original[1]) and _bits(edited["1"]) == _bits(original["1"])
    doc = json.loads(run_cli("diff", out, path, "--format", "json").out)
    assert [e["name"] for e in doc["entries"] if e["status"] != "equal"] == ["x.y~1"]


def test_convert_to_safetensors_stores_every_path(colliding: tuple[Path, dict[Any, Any]], tmp_path: Path) -> None:
    path, _ = colliding
    out = tmp_path / "out.safetensors"
    assert run_cli("convert", path, out).code == 0
    written = load_file(out)
    reference = _by_spelling(torch.load(path, weights_only=True))
    assert written.keys() == reference.keys()
    for name, tensor in reference.items():
        assert _bits(written[name]) == _bits(tensor), name

"""``hash``, the lockfile, ``check --expect lock.json`` and ``diff`` against a lockfile.

Expected hashes are hashlib.sha256 over the canonical bytes torch/numpy produce
(``t.contiguous().numpy().astype(dtype.newbyteorder('<')).tobytes()``; the
16-bit and 8-bit floats numpy lacks through ``view`` as an integer of their width).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from paraminspect.data import hashing
from paraminspect.formats.opening import open_checkpoint
from tests.conftest import ROOT, SAMPLES, run_cli, run_script
from tests.data import make_dcp_2ranks
from tests.test_edit_commands import big_endian_copy

TWO_RANKS = ROOT / "tests" / "data" / "dcp_2ranks"
_BITS = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float8_e4m3fn: torch.int8}
_BITS |= {torch.float8_e5m2: torch.int8}


def canonical_sha256(t: torch.Tensor) -> str:
    """The reference: hashlib over torch's own C-order little-endian bytes."""
    t = t.detach().contiguous()
    if t.dtype in _BITS:
        t = t.view(_BITS[t.dtype])
    array = t.numpy()
    return hashlib.sha256(array.astype(array.dtype.newbyteorder("<")).tobytes()).hexdigest()


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """The documented state-dict hash, recomputed from torch tensors."""
    items = sorted(
        [n, str(t.dtype).removeprefix("torch."), list(t.shape), canonical_sha256(t)] for n, t in state.items()
    )
    return hashlib.sha256(json.dumps(items, separators=(",", ":")).encode("ascii")).hexdigest()


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=g)
    return {
        "f32": base,
        "f64": torch.randn(3, 2, generator=g, dtype=torch.float64),
        "f16": torch.randn(4, 3, generator=g).half(),
        "bf16": torch.randn(7, generator=g).to(torch.bfloat16),
        "f8": torch.randn(9, generator=g).to(torch.float8_e4m3fn),
        "i64": torch.arange(-5, 7, dtype=torch.int64).reshape(3, 4),
        "u8": torch.arange(10, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "c64": torch.randn(2, 2, generator=g, dtype=torch.complex64),
        "empty": torch.zeros(0, 3),
        "scalar": torch.tensor(2.5),
    }


def _views(base: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "transposed": base.t(),
        "sliced": base[1:5:2, 1:],
        "column": base[:, 3],
        "expanded": base[:1].expand(4, 5),
    }


def _lock(tmp_path: Path, file: Path, *args: str, name: str = "lock.json") -> tuple[Path, dict]:  # type: ignore[type-arg]
    result = run_cli("hash", file, "--format", "json", *args)
    assert (result.code, result.err) == (0, ""), result.err
    path = tmp_path / name
    path.write_text(result.out)
    return path, json.loads(result.out)


def test_hashes_match_hashlib_over_torch_bytes_in_pt_and_safetensors(tmp_path: Path) -> None:
    state = _state()
    torch.save(state, tmp_path / "s.pt")
    save_file({k: v for k, v in state.items() if k != "c64"}, tmp_path / "s.safetensors")
    _, doc = _lock(tmp_path, tmp_path / "s.pt")
    assert (doc["schema"], doc["version"], doc["algorithm"]) == ("paraminspect-lockfile", 1, "sha256")
    assert {t["name"]: t["sha256"] for t in doc["tensors"]} == {n: canonical_sha256(t) for n, t in state.items()}
    assert doc["state_dict_sha256"] == state_sha256(state)
    _, st = _lock(tmp_path, tmp_path / "s.safetensors", name="st.json")
    assert {t["name"]: t["sha256"] for t in st["tensors"]} == {
        n: canonical_sha256(t) for n, t in state.items() if n != "c64"
    }


def test_views_and_big_endian_files_hash_like_contiguous_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = torch.arange(30, dtype=torch.float32).reshape(6, 5) / 7
    views = _views(base)
    torch.save(views, tmp_path / "views.pt")
    save_file({k: v.contiguous() for k, v in views.items()}, tmp_path / "copies.safetensors")
    monkeypatch.setattr(hashing, "RAW_CHUNK_BYTES", 12)  # raw reads end inside elements' runs
    for file in ("views.pt", "copies.safetensors"):
        ckpt = open_checkpoint(tmp_path / file)
        for name, view in views.items():
            assert hashing.tensor_sha256(ckpt.tensors[name], chunk_elements=3) == canonical_sha256(view), (file, name)
    state = {"f32": base, "i64": torch.arange(5, dtype=torch.int64) - 2, "bf16": base[0].to(torch.bfloat16)}
    torch.save(state, tmp_path / "little.pt")
    big_endian_copy(tmp_path / "little.pt", tmp_path / "big.pt", [4, 8, 2])
    big = open_checkpoint(tmp_path / "big.pt")
    assert big.tensors["f32"].storage.byteorder == "big"
    assert {n: hashing.tensor_sha256(r) for n, r in big.tensors.items()} == {
        n: canonical_sha256(t) for n, t in state.items()
    }


def test_sharded_and_dcp_pieces_hash_like_whole_tensors(tmp_path: Path) -> None:
    model = make_dcp_2ranks.state()["model"]
    assert isinstance(model, dict)
    _, doc = _lock(tmp_path, TWO_RANKS, "--root", "model")
    assert {t["name"]: t["sha256"] for t in doc["tensors"]} == {n: canonical_sha256(t) for n, t in model.items()}
    assert doc["state_dict_sha256"] == state_sha256(model)
    # The same tensors as two safetensors shards with an index.
    names = list(model)
    save_file({n: model[n] for n in names[:2]}, tmp_path / "m-1.safetensors")
    save_file({n: model[n] for n in names[2:]}, tmp_path / "m-2.safetensors")
    weight_map = {n: "m-1.safetensors" if n in names[:2] else "m-2.safetensors" for n in names}
    (tmp_path / "m.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    _, sharded = _lock(tmp_path, tmp_path / "m.index.json", name="sharded.json")
    assert sharded["state_dict_sha256"] == doc["state_dict_sha256"]


def test_tied_tensors_and_table_output(tmp_path: Path) -> None:
    state = torch.load(SAMPLES / "tied.pt", weights_only=True)
    _, doc = _lock(tmp_path, SAMPLES / "tied.pt")
    assert {t["name"]: t["sha256"] for t in doc["tensors"]} == {n: canonical_sha256(t) for n, t in state.items()}
    result = run_cli("hash", SAMPLES / "mlp.pt", "2.*")
    mlp = torch.load(SAMPLES / "mlp.pt", weights_only=True)
    selected = {n: mlp[n] for n in ("2.weight", "2.bias")}
    assert result.code == 0
    assert result.out.splitlines()[2].split() == ["2.weight", "float32", "[1,", "8]", canonical_sha256(mlp["2.weight"])]
    assert result.out.splitlines()[-1].split() == ["state", "dict", "(2", "tensors)", state_sha256(selected)]


def test_lockfile_round_trip_and_changes_are_named(tmp_path: Path) -> None:
    state = {"a": torch.ones(3, 2), "b": torch.arange(4.0), "c": torch.zeros(2)}
    torch.save(state, tmp_path / "m.pt")
    lock, _ = _lock(tmp_path, tmp_path / "m.pt")
    save_file(state, tmp_path / "same.safetensors")
    ok = run_cli("check", tmp_path / "same.safetensors", "--expect", lock)
    assert (ok.code, ok.err) == (0, "")
    assert ok.out == (
        "0 missing, 0 unexpected, 0 dtype changed, 0 shape changed, 0 content changed, 3 matching, 12 params\n"
    )
    changed = {"a": state["a"].clone(), "b": state["b"], "d": torch.zeros(1)}
    changed["a"][2, 1] = 1.0000001  # the next float32 after 1.0: one element, one bit
    torch.save(changed, tmp_path / "changed.pt")
    result = run_cli("check", tmp_path / "changed.pt", "--expect", lock, "--format", "json")
    doc = json.loads(result.out)
    assert result.code == 1 and doc["lockfile"] is True and doc["ok"] is False
    assert [(d["status"], d["name"]) for d in doc["drift"]] == [
        ("content_changed", "a"),
        ("missing", "c"),
        ("unexpected", "d"),
    ]
    assert doc["drift"][0]["actual"]["sha256"] == canonical_sha256(changed["a"])
    assert doc["drift"][0]["expected"]["sha256"] == canonical_sha256(state["a"])
    # Only the tensors whose dtype and shape hold are hashed: a reshaped one is "shape changed".
    torch.save({**state, "a": torch.ones(2, 3)}, tmp_path / "reshaped.pt")
    result = run_cli("check", tmp_path / "reshaped.pt", "--expect", lock, "-f", "json")
    assert result.code == 1 and [d["status"] for d in json.loads(result.out)["drift"]] == ["shape_changed"]


def test_diff_against_a_lockfile_on_either_side(tmp_path: Path) -> None:
    state = {"a": torch.ones(3, 2), "b": torch.arange(4.0), "c": torch.zeros(2, dtype=torch.float16)}
    torch.save(state, tmp_path / "m.pt")
    lock, _ = _lock(tmp_path, tmp_path / "m.pt")
    save_file(state, tmp_path / "same.safetensors")
    same = run_cli("diff", lock, tmp_path / "same.safetensors")
    assert (same.code, same.out) == (
        0,
        "0 only in A, 0 only in B, 0 dtype changed, 0 shape changed, 0 values changed, 3 equal\n",
    )
    changed = {"a": state["a"] * 2, "c": state["c"].float(), "e": torch.ones(1)}
    torch.save(changed, tmp_path / "changed.pt")
    for args, flip in (((lock, tmp_path / "changed.pt"), False), ((tmp_path / "changed.pt", lock), True)):
        result = run_cli("diff", *args, "--format", "json")
        doc = json.loads(result.out)
        statuses = {e["name"]: e["status"] for e in doc["entries"]}
        only_lock, only_file = ("only_in_b", "only_in_a") if flip else ("only_in_a", "only_in_b")
        assert result.code == 1
        assert statuses == {"a": "values_changed", "b": only_lock, "c": "dtype_changed", "e": only_file}
    other, _ = _lock(tmp_path, tmp_path / "changed.pt", name="other.json")
    both = run_cli("diff", lock, other, "a", "-f", "json")  # two lockfiles, one name selected
    assert both.code == 1 and [(e["name"], e["status"]) for e in json.loads(both.out)["entries"]] == [
        ("a", "values_changed")
    ]
    assert run_script("diff", lock, lock).returncode == 0


def test_bad_lockfiles_are_one_line_errors(tmp_path: Path) -> None:
    lock, doc = _lock(tmp_path, SAMPLES / "mlp.pt")
    for broken in (
        {**doc, "version": 2},
        {**doc, "tensors": [{**doc["tensors"][0], "sha256": "xyz"}]},
        {**doc, "tensors": "none"},
    ):
        lock.write_text(json.dumps(broken))
        for args in (("check", SAMPLES / "mlp.pt", "--expect", lock), ("diff", lock, SAMPLES / "mlp.pt")):
            result = run_cli(*args)
            assert result.code == 2 and result.out == "" and result.err.count("\n") == 1, result.err
            assert result.err.startswith("paraminspect: error: ") and "lock.json" in result.err

"""Quantized weights in ``tree --modules`` and in structural edits (issue 14).

``tree --modules`` shows a quantized Linear by its logical weight (dtype, shape,
scheme), not its storage tensors as parameters. ``rename``, ``drop`` and
``extract`` of a logical weight carry its companions; a selection that would take
only part of a weight's storage is refused with one line, and nothing is written.

State dicts use the names the real libraries write (GPTQ's ``qweight``/``qzeros``/
``scales``/``g_idx``; compressed-tensors' ``weight_packed``/``weight_scale``/
``weight_global_scale``; bitsandbytes' ``weight.absmax``/``weight.quant_map``/
``weight.quant_state.bitsandbytes__nf4`` and ``SCB``/``weight_format``; FP8's
``weight_scale``), packed with numpy (tests/quant_layouts.py). Outputs are read
back with safetensors and compared to the arrays written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tests import quant_layouts as layouts
from tests.conftest import run_cli

H, KV = 256, 64
P = "model.layers.0.self_attn."
GPTQ_LEAVES = ("qweight", "qzeros", "scales", "g_idx")


def _gptq_model(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A one-layer Llama attention block as AutoGPTQ saves it (bias-less projections)."""
    tensors: dict[str, np.ndarray] = {}
    for n, (proj, out) in enumerate({"q_proj": H, "k_proj": KV, "o_proj": H}.items()):
        packed, _ = layouts.gptq(layouts.matrix(out, H, seed=n), 4, 128, f"{P}{proj}.")
        tensors.update(packed)
    tensors["model.layers.0.input_layernorm.weight"] = np.ones(H, dtype=np.float16)
    tensors["model.embed_tokens.weight"] = layouts.matrix(32, H).astype(np.float16)
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path))
    return path, tensors


def _stored(tensors: dict[str, np.ndarray], prefix: str, leaves: tuple[str, ...]) -> int:
    return sum(tensors[prefix + leaf].nbytes for leaf in leaves)


def test_tree_modules_shows_quantized_linears(tmp_path: Path) -> None:
    path, tensors = _gptq_model(tmp_path)
    result = run_cli("tree", "--modules", path)
    assert result.code == 0, result.err
    bpw = _stored(tensors, P + "k_proj.", GPTQ_LEAVES) * 8 / (KV * H)
    assert (
        f"(k_proj): Linear(in_features={H}, out_features={KV}, bias=False) [int4 gptq g128, {round(bpw, 2):g} bpw]"
        in result.out
    )
    assert "qweight" not in result.out and "qzeros" not in result.out and "g_idx" not in result.out
    doc = json.loads(run_cli("tree", "--modules", "-f", "json", path).out)
    stack, by_path = [doc["modules"]], {}
    while stack:
        node = stack.pop()
        by_path[node["path"]] = node
        stack.extend(node.get("children", []))
    q = by_path[P + "q_proj"]
    assert (q["type"], q["params"]) == ("Linear", H * H)
    assert q["quantized"]["weight"]["logical_shape"] == [H, H]
    assert q["quantized"]["weight"]["storage"] == [f"{P}q_proj.{leaf}" for leaf in GPTQ_LEAVES]
    raw = run_cli("tree", "--modules", "--raw", path)
    assert "qweight: [" in raw.out  # --raw: the storage as stored, an unknown group as before


def _keys(path: Path) -> dict[str, np.ndarray]:
    return load_file(str(path))


def _raw(path: Path) -> dict[str, bytes]:
    """Each tensor's bytes as safetensors (through torch, which knows float8) reads them."""
    import torch
    from safetensors.torch import load_file as load_torch

    return {n: t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() for n, t in load_torch(str(path)).items()}


def test_drop_a_logical_weight_takes_its_companions(tmp_path: Path) -> None:
    path, tensors = _gptq_model(tmp_path)
    out = tmp_path / "out.safetensors"
    result = run_cli("drop", path, f"{P}q_proj.weight", "-o", out)
    assert result.code == 0, result.err
    left = _keys(out)
    assert sorted(left) == sorted(n for n in tensors if not n.startswith(P + "q_proj."))
    for name, array in left.items():
        np.testing.assert_array_equal(array, tensors[name])


def test_extract_a_logical_weight_and_a_module(tmp_path: Path) -> None:
    path, tensors = _gptq_model(tmp_path)
    out = tmp_path / "k.safetensors"
    assert run_cli("extract", path, f"{P}k_proj.weight", "-o", out).code == 0
    assert sorted(_keys(out)) == sorted(f"{P}k_proj.{leaf}" for leaf in GPTQ_LEAVES)
    rerooted = tmp_path / "attn.safetensors"
    assert run_cli("extract", "--reroot", path, P.rstrip("."), "-o", rerooted).code == 0
    got = _keys(rerooted)
    assert sorted(got) == sorted(n.removeprefix(P) for n in tensors if n.startswith(P))
    np.testing.assert_array_equal(got["k_proj.qweight"], tensors[f"{P}k_proj.qweight"])


@pytest.mark.parametrize("command", ["drop", "extract"])
def test_a_selection_that_splits_a_weight_is_refused(tmp_path: Path, command: str) -> None:
    path, _ = _gptq_model(tmp_path)
    out = tmp_path / "out.safetensors"
    result = run_cli(command, path, "*.k_proj.scales", "-o", out)
    gerund = {"drop": "dropping", "extract": "extracting"}[command]
    assert result.code == 2 and result.out == "" and not out.exists()
    storage = ", ".join(f"{P}k_proj.{leaf}" for leaf in GPTQ_LEAVES)
    assert result.err == (
        f"paraminspect: error: {path}: {gerund} '{P}k_proj.scales' would split the quantized weight "
        f"'{P}k_proj.weight' (gptq g128; stored as {storage}); select '{P}k_proj.weight' (or its module) "
        f"to {command} all of it\n"
    )


def test_rename_a_logical_weight_moves_its_storage(tmp_path: Path) -> None:
    path, tensors = _gptq_model(tmp_path)
    out = tmp_path / "r.safetensors"
    new = "model.layers.0.attention.query.weight"
    result = run_cli("rename", path, f"{P}q_proj.weight={new}", "-o", out)
    assert result.code == 0, result.err
    got = _keys(out)
    for leaf in GPTQ_LEAVES:
        np.testing.assert_array_equal(got[f"model.layers.0.attention.query.{leaf}"], tensors[f"{P}q_proj.{leaf}"])
    assert not any(n.startswith(P + "q_proj.") for n in got)
    shapes = json.loads(run_cli("shapes", "-f", "json", out).out)["tensors"]
    assert next(r for r in shapes if r["name"] == new)["scheme"] == "gptq g128"


def test_rename_that_splits_or_renames_the_leaf_is_refused(tmp_path: Path) -> None:
    path, _ = _gptq_model(tmp_path)
    out = tmp_path / "r.safetensors"
    split = run_cli("rename", path, f"{P}q_proj.qweight={P}query.qweight", "-o", out)
    assert split.code == 2 and not out.exists()
    assert f"renaming '{P}q_proj.qweight' to '{P}query.qweight' would split the quantized weight" in split.err
    leaf = run_cli("rename", path, f"{P}q_proj.weight={P}q_proj.w", "-o", out)
    assert leaf.code == 2 and not out.exists()
    assert f"renaming '{P}q_proj.weight' to '{P}q_proj.w' changes its last part" in leaf.err
    module = run_cli("rename", path, f"{P}q_proj={P}query", "-o", out)  # a module rename as before
    assert module.code == 0 and sorted(n for n in _keys(out) if "query" in n) == sorted(
        f"{P}query.{x}" for x in GPTQ_LEAVES
    )


def _other_layouts(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    w = layouts.matrix(64, 256, seed=2)
    tensors: dict[str, np.ndarray] = {}
    tensors.update(layouts.nvfp4(w, "mlp.down_proj.")[0])
    tensors.update(layouts.bnb_nf4(w, 64, "mlp.up_proj.")[0])
    int8, _ = layouts.bnb_int8(w, "mlp.gate_proj.")
    tensors.update(int8)
    tensors["mlp.gate_proj.weight_format"] = np.array(0, dtype=np.uint8)
    tensors.update(layouts.fp8(w, "attn.o_proj.")[0])
    path = tmp_path / "mixed.safetensors"
    save_file(tensors, str(path))
    return path, tensors


@pytest.mark.parametrize(
    ("weight", "storage"),
    [
        ("mlp.down_proj.weight", ["weight_packed", "weight_scale", "weight_global_scale"]),
        (
            "mlp.up_proj.weight",
            ["weight", "weight.absmax", "weight.quant_map", "weight.quant_state.bitsandbytes__nf4"],
        ),
        ("mlp.gate_proj.weight", ["weight", "SCB", "weight_format"]),
        ("attn.o_proj.weight", ["weight", "weight_scale"]),
    ],
)
def test_other_layouts_move_whole(tmp_path: Path, weight: str, storage: list[str]) -> None:
    path, tensors = _other_layouts(tmp_path)
    module = weight.removesuffix(".weight")
    names = [f"{module}.{leaf}" for leaf in storage]
    extracted = tmp_path / "x.safetensors"
    assert run_cli("extract", path, weight, "-o", extracted).code == 0
    got = _raw(extracted)
    assert sorted(got) == sorted(names)
    for name in names:
        assert got[name] == tensors[name].tobytes()
    dropped = tmp_path / "d.safetensors"
    assert run_cli("drop", path, weight, "-o", dropped).code == 0
    assert sorted(_raw(dropped)) == sorted(n for n in tensors if n not in names)
    renamed = tmp_path / "r.safetensors"
    assert run_cli("rename", path, f"{weight}=blocks.1.weight", "-o", renamed).code == 0
    moved = _raw(renamed)
    for name in names:
        assert moved["blocks.1." + name.removeprefix(module + ".")] == tensors[name].tobytes()
    split = run_cli("drop", path, names[-1], "-o", tmp_path / "s.safetensors")
    assert split.code == 2 and "would split the quantized weight" in split.err

"""compressed-tensors NVFP4 and MXFP4 (``nvfp4-pack-quantized``, ``mxfp4-pack-quantized``):
recognised from names, dtypes and shapes (and the config), counted logically,
dequantized as the scheme documents.

The layouts are packed with numpy (tests/quant_layouts.py): E2M1 codes two to a
byte, the first in the low nibble (compressed-tensors' pack_fp4_to_uint8); NVFP4
scales FP8 E4M3 per 16 divided by ``weight_global_scale``, MXFP4 scales E8M0
exponent bytes per 32. Expected values are the quantized floats times their
scales, computed there before packing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from tests import quant_layouts as layouts
from tests.conftest import run_cli

OUT, IN = 48, 256
BUILD: dict[str, Any] = {"nvfp4": layouts.nvfp4, "mxfp4": layouts.mxfp4}
STORAGE = {
    "nvfp4": ["weight_packed", "weight_scale", "weight_global_scale"],
    "mxfp4": ["weight_packed", "weight_scale"],
}
GROUP = {"nvfp4": 16, "mxfp4": 32}


def _config(kind: str) -> dict[str, Any]:
    """A quantization_config as llm-compressor writes it for the preset scheme."""
    group = GROUP[kind]
    weights = {"num_bits": 4, "type": "float", "symmetric": True, "group_size": group, "dynamic": False}
    weights["strategy"] = "tensor_group" if kind == "nvfp4" else "group"
    return {
        "quant_method": "compressed-tensors",
        "format": f"{kind}-pack-quantized",
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights}},
    }


def _write(tmp_path: Path, kind: str, *, config: dict[str, Any] | None = None) -> tuple[Path, dict[str, np.ndarray]]:
    w = layouts.matrix(OUT, IN, seed=11)
    tensors, expected = BUILD[kind](w, "model.layers.0.mlp.down_proj.")
    tensors["model.norm.weight"] = np.ones(IN, dtype=np.float32)
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path))
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps({"quantization_config": config}))
    return path, {"w": w, "expected": expected, **tensors}


@pytest.mark.parametrize("kind", ["nvfp4", "mxfp4"])
def test_one_logical_row_with_exact_counts(tmp_path: Path, kind: str) -> None:
    path, arrays = _write(tmp_path, kind, config=_config(kind))
    result = run_cli("shapes", "-f", "json", path)
    assert result.code == 0 and result.err == ""
    doc = json.loads(result.out)
    row = next(r for r in doc["tensors"] if r["name"] == "model.layers.0.mlp.down_proj.weight")
    prefix = "model.layers.0.mlp.down_proj."
    stored = sum(arrays[prefix + leaf].nbytes for leaf in STORAGE[kind])
    assert row["logical_dtype"] == "float4_e2m1fn" and row["logical_shape"] == [OUT, IN]
    assert row["numel"] == OUT * IN and row["bytes"] == stored
    assert row["scheme"] == f"{kind} g{GROUP[kind]}"
    assert row["storage"] == [prefix + leaf for leaf in STORAGE[kind]]
    assert row["bits_per_weight"] == pytest.approx(stored * 8 / (OUT * IN))
    assert doc["total"]["numel"] == OUT * IN + IN
    raw = json.loads(run_cli("shapes", "--raw", "-f", "json", path).out)
    assert sorted(r["name"] for r in raw["tensors"]) == sorted(n for n in arrays if "." in n)


@pytest.mark.parametrize("kind", ["nvfp4", "mxfp4"])
def test_recognised_without_a_config(tmp_path: Path, kind: str) -> None:
    path, _ = _write(tmp_path, kind)
    row = json.loads(run_cli("shapes", "-f", "json", path).out)["tensors"][0]
    assert row["scheme"] == f"{kind} g{GROUP[kind]}"


@pytest.mark.parametrize("kind", ["nvfp4", "mxfp4"])
def test_dequantize_matches_the_scheme(tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path, arrays = _write(tmp_path, kind, config=_config(kind))
    name = "model.layers.0.mlp.down_proj.weight"
    result = run_cli("get", "--dequantize", "-f", "json", path, name)
    assert result.code == 0, result.err
    values = np.array(json.loads(result.out)["entries"][0]["values"], dtype=np.float32)
    np.testing.assert_allclose(values, arrays["expected"], rtol=1e-6, atol=0)
    # Within half the widest E2M1 step (4 -> 6) of each group's scale of the original.
    prefix = "model.layers.0.mlp.down_proj."
    if kind == "nvfp4":
        scale = arrays[prefix + "weight_scale"].astype(np.float32) / arrays[prefix + "weight_global_scale"][0]
    else:
        scale = np.exp2(arrays[prefix + "weight_scale"].astype(np.float32) - 127)
    bound = np.repeat(scale, GROUP[kind], axis=1) * 1.0001
    assert (np.abs(values - arrays["w"]) <= bound).all()
    from paraminspect.quant import dequant

    monkeypatch.setattr(dequant, "BLOCK_ELEMENTS", 1000)  # 3 rows a block
    again = run_cli("get", "--dequantize", "-f", "json", path, name)
    np.testing.assert_array_equal(np.array(json.loads(again.out)["entries"][0]["values"], np.float32), values)


def test_the_nibble_order_is_low_first(tmp_path: Path) -> None:
    """Hand-made bytes: 0x71 is 0.5 (code 1, low nibble) then 6.0 (code 7); 0xA8 is -0.0, -1.0."""
    packed = np.array([[0x71, 0xA8] * 16], dtype=np.uint8)  # 64 values, 2 groups of 32
    save_file(
        {"l.weight_packed": packed, "l.weight_scale": np.array([[127, 128]], dtype=np.uint8)},
        str(tmp_path / "m.safetensors"),
    )
    result = run_cli("get", "--dequantize", "-f", "json", tmp_path / "m.safetensors", "l.weight")
    values = json.loads(result.out)["entries"][0]["values"][0]
    assert values[:4] == [0.5, 6.0, 0.0, -1.0] and values[32:36] == [1.0, 12.0, 0.0, -2.0]


def test_config_format_that_disagrees_gets_a_note(tmp_path: Path) -> None:
    path, _ = _write(tmp_path, "nvfp4", config=_config("mxfp4"))
    result = run_cli("shapes", path)
    assert result.code == 0
    assert (
        f"paraminspect: note: {path}: config format is 'mxfp4-pack-quantized', tensors are laid out as nvfp4; "
        "read as nvfp4\n" in result.err
    )
    assert "nvfp4 g16" in result.out


def test_scales_that_do_not_fit_stay_storage(tmp_path: Path) -> None:
    tensors, _ = layouts.nvfp4(layouts.matrix(OUT, IN), "l.")
    tensors["l.weight_scale"] = tensors["l.weight_scale"][:, :5].copy()  # 5 groups cannot cover 256 columns
    save_file(tensors, str(tmp_path / "bad.safetensors"))
    result = run_cli("shapes", "-f", "json", tmp_path / "bad.safetensors")
    rows = json.loads(result.out)["tensors"]
    assert sorted(r["name"] for r in rows) == sorted(tensors) and all("scheme" not in r for r in rows)
    assert "do not fit nvfp4 groups; shown as stored" in result.err


def test_diff_dequantize_nvfp4_against_float(tmp_path: Path) -> None:
    path, arrays = _write(tmp_path, "nvfp4", config=_config("nvfp4"))
    float_dir = tmp_path / "float"
    float_dir.mkdir()
    save_file(
        {"model.layers.0.mlp.down_proj.weight": arrays["w"], "model.norm.weight": np.ones(IN, np.float32)},
        str(float_dir / "model.safetensors"),
    )
    result = run_cli("diff", "--dequantize", "-f", "json", path, float_dir / "model.safetensors")
    assert result.code == 1, result.err
    entry = next(e for e in json.loads(result.out)["entries"] if e["name"].endswith("down_proj.weight"))
    gap = np.abs(arrays["expected"].astype(np.float64) - arrays["w"].astype(np.float64))
    assert entry["max_abs_diff"] == pytest.approx(float(gap.max()))
    x = arrays["expected"].astype(np.float64).reshape(-1)
    d = arrays["w"].astype(np.float64).reshape(-1) - x
    assert entry["rel_l2"] == pytest.approx(float(np.linalg.norm(d) / np.linalg.norm(x)), rel=1e-9)

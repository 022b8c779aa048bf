"""Quantized weights decoded to their values (issue 14, ``--dequantize``).

Each layout is packed with numpy from a known float matrix (tests/quant_layouts.py);
the expected values are that scheme's dequantization computed there with numpy,
and the result must also lie within the scheme's error bound of the original
matrix. torch's quantized tensors are checked against ``torch.dequantize``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from tests import quant_layouts as layouts
from tests.conftest import run_cli

OUT, IN = 48, 256
NF4_HALF_GAP = float(np.diff(layouts.NF4).max() / 2)


def _bound(case: str, w: np.ndarray, tensors: dict[str, np.ndarray]) -> np.ndarray:
    """How far each dequantized value may lie from the original, per the scheme."""
    f16 = 2.0**-10  # relative precision of the float16 scales
    if case in ("gptq", "awq"):
        scale = tensors["l.scales"].astype(np.float32).T  # [out, groups]
        return np.repeat(scale, 128, axis=1) * (0.5 + 16 * f16) + 1e-6
    if case == "ct":
        scale = tensors["l.weight_scale"].astype(np.float32)
        return np.repeat(scale, 32, axis=1) * (0.5 + 8 * f16) + 1e-6
    if case == "mlx":
        scale = tensors["l.scales"].astype(np.float32)
        bias = np.abs(tensors["l.biases"].astype(np.float32))
        return np.repeat(scale * (0.5 + 16 * f16) + bias * f16, 64, axis=1) + 1e-6
    if case == "int8":
        return np.repeat((tensors["l.SCB"] / 127 * 0.5001)[:, None], IN, axis=1)
    if case == "nf4":
        absmax = np.repeat(tensors["l.weight.absmax"], 64).reshape(OUT, IN)
        return absmax * NF4_HALF_GAP * 1.0001
    if case == "fp8":
        return np.abs(w) * 2.0**-4 + tensors["l.weight_scale"] * 2.0**-9
    raise AssertionError(case)


BUILDERS: dict[str, Any] = {
    "gptq": lambda w: layouts.gptq(w, 4, 128, "l."),
    "awq": lambda w: layouts.awq(w, 128, "l."),
    "ct": lambda w: layouts.compressed(w, 4, 32, "l."),
    "mlx": lambda w: layouts.mlx(w, 4, 64, "l."),
    "int8": lambda w: layouts.bnb_int8(w, "l."),
    "nf4": lambda w: layouts.bnb_nf4(w, 64, "l."),
    "fp8": lambda w: layouts.fp8(w, "l."),
}


def _layout(tmp_path: Path, case: str) -> tuple[Path, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    w = layouts.matrix(OUT, IN, seed=3)
    tensors, expected = BUILDERS[case](w)
    path = tmp_path / f"{case}.safetensors"
    save_file(tensors, str(path))
    return path, w, expected, tensors


def _get(path: Path, name: str = "l.weight") -> np.ndarray:
    result = run_cli("get", "--dequantize", "-f", "json", path, name)
    assert result.code == 0, result.err
    (entry,) = json.loads(result.out)["entries"]
    assert entry["dtype"] == "float32"
    return np.array(entry["values"], dtype=np.float32)


@pytest.mark.parametrize("case", list(BUILDERS))
def test_get_dequantize_matches_the_scheme(tmp_path: Path, case: str) -> None:
    path, w, expected, tensors = _layout(tmp_path, case)
    values = _get(path)
    assert values.shape == (OUT, IN)
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-7)
    assert (np.abs(values - w) <= _bound(case, w, tensors)).all()


@pytest.mark.parametrize("case", ["gptq", "awq", "ct", "mlx", "int8", "fp8"])
def test_row_blocks_give_the_same_values(tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many small row blocks (bounded memory) decode exactly what one block does."""
    from paraminspect.quant import dequant

    path, _, expected, _ = _layout(tmp_path, case)
    monkeypatch.setattr(dequant, "BLOCK_ELEMENTS", 1000)  # 8 rows a block: 6 blocks
    np.testing.assert_allclose(_get(path), expected, rtol=1e-6, atol=1e-7)
    table = run_cli("get", "--dequantize", path, "l.weight")  # the summarised print
    assert table.code == 0 and table.out.startswith("l.weight  float32 [48, 256]\ntensor([[")


def test_stats_dequantize_counts_logical_values(tmp_path: Path) -> None:
    path, _, expected, _ = _layout(tmp_path, "gptq")
    doc = json.loads(run_cli("stats", "--dequantize", "-f", "json", path).out)
    (row,) = doc["tensors"]
    assert row["name"] == "l.weight" and row["numel"] == OUT * IN
    assert row["min"] == pytest.approx(float(expected.min()))
    assert row["max"] == pytest.approx(float(expected.max()))
    assert row["mean"] == pytest.approx(float(expected.astype(np.float64).mean()), rel=1e-6, abs=1e-9)
    assert row["zeros"] == int((expected == 0).sum())
    raw = json.loads(run_cli("stats", "-f", "json", path).out)
    assert {r["name"] for r in raw["tensors"]} == {"l.qweight", "l.qzeros", "l.scales", "l.g_idx"}


def test_nested_absmax_nf4(tmp_path: Path) -> None:
    w = layouts.matrix(64, 256, seed=5)  # 256 blocks of 64: one nested block of 256 absmax values
    tensors, expected = layouts.bnb_nf4_nested(w, 64, 256, "l.")
    save_file(tensors, str(tmp_path / "n.safetensors"))
    row = json.loads(run_cli("shapes", "-f", "json", tmp_path / "n.safetensors").out)["tensors"][0]
    assert row["scheme"] == "bnb nf4 b64" and len(row["storage"]) == 6
    values = _get(tmp_path / "n.safetensors")
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-7)


def test_a_hostile_g_idx_is_one_line_error(tmp_path: Path) -> None:
    tensors, _ = layouts.gptq(layouts.matrix(OUT, IN), 4, 128, "l.")
    tensors["l.g_idx"] = np.full(IN, 7, dtype=np.int32)  # two groups of scales; group 7 does not exist
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path))
    result = run_cli("get", "--dequantize", path, "l.weight")
    assert result.code == 2 and result.out == ""
    assert result.err == f"paraminspect: error: {path}: l.weight: g_idx names groups the scales do not have\n"


def test_a_scheme_that_cannot_be_decoded_says_so(tmp_path: Path) -> None:
    tensors, _ = layouts.compressed(layouts.matrix(OUT, IN), 4, 32, "l.")
    tensors["l.weight_zero_point"] = np.zeros((OUT * 4 // 32, IN // 32), dtype=np.int32)  # packed along rows
    tensors["m.weight"] = np.ones((2, 2), dtype=np.float32)
    path = tmp_path / "zp.safetensors"
    save_file(tensors, str(path))
    result = run_cli("stats", "--dequantize", "-f", "json", path)
    assert result.code == 0
    assert (
        "paraminspect: warning: l.weight: cannot dequantize: packed zero points are not decoded; skipped" in result.err
    )
    assert [r["name"] for r in json.loads(result.out)["tensors"]] == ["m.weight"]
    refused = run_cli("get", "--dequantize", path, "l.weight")
    assert refused.code == 2 and refused.out == ""
    assert (
        refused.err == f"paraminspect: error: {path}: l.weight: cannot dequantize: packed zero points are not decoded\n"
    )


def test_torch_quantized_tensors_match_torch_dequantize(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = torch.randn(5, 7) * 3
        sd = {
            "pt8": torch.quantize_per_tensor(a, 0.037, 5, torch.qint8),
            "ptu8": torch.quantize_per_tensor(a, 0.05, 128, torch.quint8),
            "pt32": torch.quantize_per_tensor(a, 0.001, -3, torch.qint32),
            "pc0": torch.quantize_per_channel(
                a, torch.rand(5) * 0.1 + 0.01, torch.randint(-3, 3, (5,)), 0, torch.qint8
            ),
            "pc1": torch.quantize_per_channel(
                a, torch.rand(7) * 0.1 + 0.01, torch.randint(0, 9, (7,)), 1, torch.quint8
            ),
        }
    torch.save(sd, tmp_path / "q.pt")
    for name, q in sd.items():
        values = _get(tmp_path / "q.pt", name)
        np.testing.assert_allclose(values, q.dequantize().numpy(), rtol=1e-6, atol=1e-6, err_msg=name)


def test_diff_dequantize_against_the_float_model(tmp_path: Path) -> None:
    w = layouts.matrix(OUT, IN, seed=3)
    gptq, expected = layouts.gptq(w, 4, 128, "l.")
    awq, _ = layouts.awq(w, 128, "l.")
    save_file(gptq, str(tmp_path / "gptq.safetensors"))
    save_file(awq, str(tmp_path / "awq.safetensors"))
    save_file({"l.weight": w}, str(tmp_path / "float.safetensors"))
    save_file({"l.weight": expected}, str(tmp_path / "deq.safetensors"))

    moved = run_cli("diff", "--dequantize", "-f", "json", tmp_path / "gptq.safetensors", tmp_path / "float.safetensors")
    assert moved.code == 1, moved.err
    (entry,) = json.loads(moved.out)["entries"]
    gap = np.abs(expected.astype(np.float64) - w.astype(np.float64))
    assert entry["status"] == "values_changed"
    assert entry["a"] == {"kind": "tensor", "dtype": "int4", "shape": [OUT, IN]}
    assert entry["max_abs_diff"] == pytest.approx(float(gap.max()))
    assert entry["differing"] == int((gap > 1e-8 + 1e-5 * np.abs(w)).sum())
    same = run_cli("diff", "--dequantize", tmp_path / "gptq.safetensors", tmp_path / "deq.safetensors")
    assert same.code == 0, same.out
    across = run_cli("diff", "--dequantize", tmp_path / "gptq.safetensors", tmp_path / "awq.safetensors")
    assert across.code == 0, across.out  # one quantization, two packings: the same values
    raw = run_cli("diff", "-f", "json", tmp_path / "gptq.safetensors", tmp_path / "float.safetensors")
    assert {e["status"] for e in json.loads(raw.out)["entries"]} == {"only_in_a", "only_in_b"}


def test_diff_dequantize_torch_qtensor_against_torch_dequantize(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.quantize_per_channel(torch.randn(6, 9), torch.rand(6) * 0.1 + 0.01, torch.arange(6), 0, torch.qint8)
    torch.save({"w": q}, tmp_path / "q.pt")
    torch.save({"w": q.dequantize()}, tmp_path / "f.pt")
    result = run_cli("diff", "--dequantize", "--atol", "0", "--rtol", "1e-6", tmp_path / "q.pt", tmp_path / "f.pt")
    assert result.code == 0, result.out + result.err

"""``diff --dequantize`` gives quantized pairs the same change measures as float
pairs (rel_l2, cosine, nmse, rel_mean_abs, frac_differing), from the one streamed
pass that compares their values.

Layouts are packed with numpy (tests/quant_layouts.py); the expected measures are
computed here with numpy in float64 on the arrays each scheme dequantizes to.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from tests import quant_layouts as layouts
from tests.conftest import run_cli

OUT, IN = 48, 256
MEASURES = ("rel_l2", "cosine", "nmse", "rel_mean_abs", "frac_differing")


def _reference(a: np.ndarray, b: np.ndarray, atol: float = 1e-8, rtol: float = 1e-5) -> dict[str, float]:
    """The measures in float64, A and B as the values each side means."""
    x, y = a.astype(np.float64).reshape(-1), b.astype(np.float64).reshape(-1)
    d = y - x
    differing = int((np.abs(d) > atol + rtol * np.abs(y)).sum())
    return {
        "rel_l2": float(np.linalg.norm(d) / np.linalg.norm(x)),
        "cosine": float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y))),
        "nmse": float((d @ d) / (x @ x)),
        "rel_mean_abs": float(np.abs(d).mean() / np.abs(x).mean()),
        "frac_differing": differing / x.size,
    }


def _diff(a: Path, b: Path, *args: str) -> dict:  # type: ignore[type-arg]
    result = run_cli("diff", "--dequantize", "-f", "json", a, b, *args)
    assert result.code in (0, 1), result.err
    (entry,) = json.loads(result.out)["entries"]
    return entry  # type: ignore[no-any-return]


def _close(entry: dict, expected: dict[str, float]) -> None:  # type: ignore[type-arg]
    for key in MEASURES:
        assert entry[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), key


@pytest.fixture
def files(tmp_path: Path) -> dict[str, tuple[Path, np.ndarray]]:
    w = layouts.matrix(OUT, IN, seed=7)
    built = {
        "gptq4": layouts.gptq(w, 4, 128, "l."),
        "gptq8": layouts.gptq(w, 8, 64, "l."),
        "awq": layouts.awq(w, 128, "l."),
        "mlx": layouts.mlx(w, 4, 64, "l."),
        "nf4": layouts.bnb_nf4(w, 64, "l."),
    }
    out: dict[str, tuple[Path, np.ndarray]] = {}
    for name, (tensors, expected) in built.items():
        save_file(tensors, str(tmp_path / f"{name}.safetensors"))
        out[name] = (tmp_path / f"{name}.safetensors", expected)
    save_file({"l.weight": w}, str(tmp_path / "float.safetensors"))
    out["float"] = (tmp_path / "float.safetensors", w)
    return out


@pytest.mark.parametrize("quantized", ["gptq4", "mlx", "nf4"])
def test_quantized_against_float_has_the_measures(files: dict[str, tuple[Path, np.ndarray]], quantized: str) -> None:
    (qpath, deq), (fpath, w) = files[quantized], files["float"]
    entry = _diff(qpath, fpath)
    assert entry["status"] == "values_changed"
    _close(entry, _reference(deq, w))
    back = _diff(fpath, qpath)  # A is the float side now: the ratios are over its norms
    _close(back, _reference(w, deq))


@pytest.mark.parametrize(("a", "b"), [("gptq4", "gptq8"), ("awq", "mlx"), ("nf4", "gptq4")])
def test_quantized_against_quantized_has_the_measures(
    files: dict[str, tuple[Path, np.ndarray]], a: str, b: str
) -> None:
    entry = _diff(files[a][0], files[b][0])
    _close(entry, _reference(files[a][1], files[b][1]))


def test_equal_values_and_the_table_columns(files: dict[str, tuple[Path, np.ndarray]]) -> None:
    """One quantization in two packings: nothing moved (rel_l2 0, cosine 1); the
    table's --metrics columns show the numbers, not blanks."""
    entry = _diff(files["gptq4"][0], files["awq"][0])
    assert entry["status"] == "equal"
    assert [entry[k] for k in MEASURES] == [0.0, 1.0, 0.0, 0.0, 0.0]
    expected = _reference(files["gptq4"][1], files["float"][1])
    table = run_cli("diff", "--dequantize", "--metrics", files["gptq4"][0], files["float"][0])
    assert table.code == 1, table.err
    row = next(line for line in table.out.splitlines() if " l.weight " in line)
    for key in ("rel_l2", "cosine", "nmse", "rel_mean_abs"):  # the columns are filled, not blank
        assert f" {expected[key]:.6g} " in row, key


def test_by_prefix_rolls_up_quantized_pairs(files: dict[str, tuple[Path, np.ndarray]]) -> None:
    result = run_cli("diff", "--dequantize", "--by-prefix", "1", "-f", "json", files["mlx"][0], files["float"][0])
    assert result.code == 1, result.err
    (group,) = json.loads(result.out)["by_prefix"]["groups"]
    assert (group["prefix"], group["tensors"], group["not_compared"]) == ("l", 1, 0)
    expected = _reference(files["mlx"][1], files["float"][1])
    for key in MEASURES:
        assert group[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), key

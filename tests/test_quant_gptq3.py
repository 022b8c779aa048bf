"""GPTQ with 3 bits: 32 values in 3 int32 words, two of them split across a word
boundary (AutoGPTQ's and GPTQModel's ``pack``), qweight along the input, qzeros
along the output. Packed with numpy step by step as that loop documents
(tests/quant_layouts.py ``_pack_3bit``); expected values are the scheme's
(q - zero) * scale computed there.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from tests import quant_layouts as layouts
from tests.conftest import run_cli
from tests.quant_sparse import LLAMA_8B, llama_8b

OUT, IN = 64, 256


def _write(tmp_path: Path, config: dict[str, object] | None = None) -> tuple[Path, dict[str, np.ndarray], np.ndarray]:
    w = layouts.matrix(OUT, IN, seed=4)
    tensors, expected = layouts.gptq(w, 3, 128, "l.")
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path))
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps({"quantization_config": config}))
    return path, tensors, expected


def test_the_packer_follows_the_documented_bit_layout() -> None:
    """Value 10 straddles words 0 and 1, value 21 words 1 and 2 (the packer's own check)."""
    values = np.arange(32, dtype=np.int64) % 8
    values[10], values[21] = 0b101, 0b110
    w0, w1, w2 = (int(x) for x in layouts._pack_3bit(values[:, None])[:, 0])
    assert (w0 >> 30) | ((w1 & 1) << 2) == 0b101
    assert (w1 >> 31) | ((w2 & 0b11) << 1) == 0b110
    assert [(w0 >> (3 * k)) & 7 for k in range(10)] == list(values[:10])
    assert [(w2 >> (2 + 3 * k)) & 7 for k in range(10)] == list(values[22:])


def test_logical_row_and_counts(tmp_path: Path) -> None:
    path, tensors, _ = _write(tmp_path, {"quant_method": "gptq", "bits": 3, "group_size": 128})
    assert tensors["l.qweight"].shape == (IN * 3 // 32, OUT) and tensors["l.qzeros"].shape == (2, OUT * 3 // 32)
    result = run_cli("shapes", "-f", "json", path)
    assert result.code == 0 and result.err == ""
    (row,) = json.loads(result.out)["tensors"]
    stored = sum(t.nbytes for t in tensors.values())
    assert (row["name"], row["logical_dtype"], row["logical_shape"]) == ("l.weight", "int3", [OUT, IN])
    assert row["numel"] == OUT * IN and row["bytes"] == stored and row["scheme"] == "gptq g128"
    assert row["bits_per_weight"] == pytest.approx(stored * 8 / (OUT * IN))


def test_dequantize_matches_the_scheme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, tensors, expected = _write(tmp_path)
    result = run_cli("get", "--dequantize", "-f", "json", path, "l.weight")
    assert result.code == 0, result.err
    values = np.array(json.loads(result.out)["entries"][0]["values"], dtype=np.float32)
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-7)
    w = layouts.matrix(OUT, IN, seed=4)
    scale = np.repeat(tensors["l.scales"].astype(np.float32).T, 128, axis=1)
    assert (np.abs(values - w) <= scale * (0.5 + 8 * 2.0**-10) + 1e-6).all()
    from paraminspect.quant import dequant

    monkeypatch.setattr(dequant, "BLOCK_ELEMENTS", 1000)  # 8 output rows a block
    again = run_cli("get", "--dequantize", "-f", "json", path, "l.weight")
    np.testing.assert_array_equal(np.array(json.loads(again.out)["entries"][0]["values"], np.float32), values)


def test_config_bits_that_disagree_with_the_shapes(tmp_path: Path) -> None:
    path, _, _ = _write(tmp_path, {"quant_method": "gptq", "bits": 4, "group_size": 128})
    result = run_cli("shapes", path)
    assert "l.qweight: config says 4 bits, the shapes say 3; read as 3-bit" in result.err
    assert "int3" in result.out


def test_llama_31_8b_gptq_3bit_header_only_count(tmp_path: Path) -> None:
    """Llama-3.1-8B's shapes at 3 bits, as a sparse file: the logical count is its 8,030,261,248."""
    h, i = LLAMA_8B["hidden_size"], LLAMA_8B["intermediate_size"]
    path = tmp_path / "model.safetensors"
    offset = llama_8b(path, gptq_bits=3, group=128)  # qweight [in / 32 * 3, out]: 32 values in 3 words
    doc = json.loads(run_cli("shapes", "-f", "json", path).out)
    assert doc["total"]["numel"] == 8_030_261_248 and doc["total"]["bytes"] == offset
    down = next(r for r in doc["tensors"] if r["name"] == "model.layers.0.mlp.down_proj.weight")
    assert (down["logical_dtype"], down["logical_shape"]) == ("int3", [h, i])

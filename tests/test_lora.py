"""``lora ADAPTER``: rank, scale, ||BA|| and effective rank of every LoRA module,
against torch.linalg on the formed B @ A (issue 16), for adapters saved by peft."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import run_cli


def _effective_rank(sigma: torch.Tensor) -> float:
    p = sigma / sigma.sum()
    return math.exp(float(-(p * p.log()).sum()))


def _peft_adapter(directory: Path, rslora: bool) -> Path:
    from peft import LoraConfig, get_peft_model

    from tests.matrix.writers_libs import tiny_llama

    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"], init_lora_weights=False, use_rslora=rslora
    )
    get_peft_model(tiny_llama(), config).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("rslora", [False, pytest.param(True, marks=pytest.mark.slow)])  # peft + transformers: slow
def test_peft_adapter_against_torch_linalg(tmp_path: Path, rslora: bool) -> None:
    adapter = _peft_adapter(tmp_path / "adapter", rslora)
    result = run_cli("lora", adapter, "--format", "json")
    assert (result.code, result.err) == (0, "")
    doc = json.loads(result.out)
    assert doc["config"] == {"r": 4, "lora_alpha": 8, "use_rslora": rslora}
    tensors = load_file(adapter / "adapter_model.safetensors")
    modules = {m["module"]: m for m in doc["modules"]}
    expected = sorted(n.removesuffix(".lora_A.weight") for n in tensors if n.endswith(".lora_A.weight"))
    assert sorted(modules) == expected and len(expected) == 4
    for name, m in modules.items():
        a = tensors[f"{name}.lora_A.weight"].double()
        b = tensors[f"{name}.lora_B.weight"].double()
        ba = b @ a
        sigma = torch.linalg.svdvals(ba)[:4]
        scale = 8 / math.sqrt(4) if rslora else 8 / 4
        assert (m["rank"], m["alpha"], m["scale"]) == (4, 8.0, scale)
        assert m["norm_ba"] == pytest.approx(float(torch.linalg.matrix_norm(ba)), rel=1e-12)
        assert m["delta_norm"] == pytest.approx(scale * float(torch.linalg.matrix_norm(ba)), rel=1e-12)
        assert m["singular_values"] == pytest.approx(sigma.tolist(), rel=1e-10)
        assert m["effective_rank"] == pytest.approx(_effective_rank(sigma), rel=1e-10)
    table = run_cli("lora", adapter / "adapter_model.safetensors").out.splitlines()
    assert table[0].split() == ["module", "rank", "alpha", "scale", "||BA||", "||scale*BA||", "effective", "rank"]
    assert len(table) == 2 + 4


def test_kohya_adapter_rank_one_and_errors(tmp_path: Path) -> None:
    torch.manual_seed(7)
    down, up = torch.randn(1, 12), torch.randn(10, 1)
    save_file(
        {
            "lora_unet_mid.lora_down.weight": down,
            "lora_unet_mid.lora_up.weight": up,
            "lora_unet_mid.alpha": torch.tensor(0.5),
        },
        tmp_path / "k.safetensors",
    )
    doc = json.loads(run_cli("lora", tmp_path / "k.safetensors", "-f", "json").out)
    (m,) = doc["modules"]
    ba = up.double() @ down.double()
    assert (m["module"], m["rank"], m["alpha"], m["scale"], doc["config"]) == ("lora_unet_mid", 1, 0.5, 0.5, None)
    assert m["norm_ba"] == pytest.approx(float(torch.linalg.matrix_norm(ba)), rel=1e-12)
    assert m["effective_rank"] == pytest.approx(1.0)
    save_file({"x.lora_A.weight": down}, tmp_path / "half.safetensors")
    result = run_cli("lora", tmp_path / "half.safetensors")
    assert result.code == 2 and result.err.count("\n") == 1 and "lacks its B matrix" in result.err
    save_file({"w": down}, tmp_path / "none.safetensors")
    result = run_cli("lora", tmp_path / "none.safetensors")
    assert result.code == 2 and result.err.startswith("paraminspect: error: ") and "no LoRA module" in result.err

"""tree --modules: layer kinds inferred from parameters, compared with print(model)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from paraminspect import open_checkpoint
from paraminspect.inspect.modules import classify
from tests.conftest import SAMPLES, run_cli, run_script

sys.path.insert(0, str(SAMPLES))
import make_samples


def _as_state_dict_sees_it(printed: str) -> str:
    """print(model) reduced to what a state dict can show: modules without
    parameters (ReLU) leave no trace, and container classes are not recorded."""
    lines = [line for line in printed.splitlines() if not re.search(r"\): (ReLU|GELU|Dropout)\(", line)]
    return "\n".join(re.sub(r"\b(Sequential|ModuleList)\(", "Module(", line) for line in lines) + "\n"


def test_rgnet_nests_like_print_rgnet() -> None:
    torch.manual_seed(1)
    expected = _as_state_dict_sees_it(str(make_samples.rgnet()))
    result = run_script("tree", "--modules", SAMPLES / "rgnet.pt")
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
    assert "    (block 1): Module(\n      (0): Linear(in_features=4, out_features=8, bias=True)\n" in result.stdout
    assert run_cli("tree", "--modules", SAMPLES / "rgnet.safetensors").out == expected


def test_every_chapter_sample_matches_print_model() -> None:
    for name, build in (("mlp", make_samples.mlp), ("tied", make_samples.tied)):
        result = run_cli("tree", "--modules", SAMPLES / f"{name}.pt")
        assert result.out == _as_state_dict_sees_it(str(build())), name


class Zoo(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 16))
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.conv1d = nn.Conv1d(16, 8, 5)
        self.conv3d = nn.Conv3d(2, 4, (1, 3, 3))
        self.emb = nn.Embedding(100, 16)
        self.ln = nn.LayerNorm(16)
        self.ln2d = nn.LayerNorm([4, 16])
        self.bn_plain = nn.BatchNorm1d(8, affine=False)
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(16, 16), nn.GELU()) for _ in range(3)])
        self.head = nn.Linear(16, 10)


def test_layer_kinds_with_exact_output(tmp_path: Path) -> None:
    torch.save(Zoo().state_dict(), tmp_path / "zoo.pt")
    result = run_cli("tree", "--modules", tmp_path / "zoo.pt")
    assert result.code == 0 and result.err == ""
    assert result.out == (
        "Module(\n"
        "  (cls_token): Parameter([1, 1, 16], float32)\n"
        "  (stem): Module(\n"
        "    (0): Conv2d(3, 16, kernel_size=(3, 3), bias=False)\n"
        "    (1): BatchNorm(16, affine=True, track_running_stats=True)\n"
        "  )\n"
        "  (conv1d): Conv1d(16, 8, kernel_size=(5,))\n"
        "  (conv3d): Conv3d(2, 4, kernel_size=(1, 3, 3))\n"
        "  (emb): Embedding(100, 16)\n"
        "  (ln): LayerNorm((16,), elementwise_affine=True, bias=True)\n"
        "  (ln2d): LayerNorm((4, 16), elementwise_affine=True, bias=True)\n"
        "  (bn_plain): BatchNorm(8, affine=False, track_running_stats=True)\n"
        "  (blocks): Module(\n"
        "    (0-2): 3 x Module(\n"
        "      (0): Linear(in_features=16, out_features=16, bias=True)\n"
        "    )\n"
        "  )\n"
        "  (head): Linear(in_features=16, out_features=10, bias=True)\n"
        ")\n"
    )
    # Every inferred layer agrees with what torch prints for it, up to the
    # arguments a state dict cannot know (stride, eps, momentum).
    printed = str(Zoo())
    for line in result.out.splitlines():
        found = re.match(r"\s*\((\w+)\): (Conv\dd\(\d+, \d+, kernel_size=\([\d, ]+\))", line)
        if found:
            assert f"({found[1]}): {found[2]}" in printed


def _refs(**shapes: tuple[int, ...]) -> dict[str, object]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.pt"
        torch.save({k: torch.zeros(v) for k, v in shapes.items()}, path)
        return dict(open_checkpoint(path).tensors)


@pytest.mark.parametrize(
    ("name", "shapes", "expected"),
    [
        ("layers.0.table", {"weight": (8, 4)}, None),  # Linear(bias=False) or Embedding: not guessed
        ("model.embed_tokens", {"weight": (8, 4)}, "Embedding(8, 4)"),
        ("attn.q_proj", {"weight": (8, 4)}, "Linear(in_features=4, out_features=8, bias=False)"),
        ("layers.0.input_layernorm", {"weight": (16,)}, None),  # LayerNorm(bias=False) or RMSNorm
        ("block.rms_norm", {"weight": (16,)}, "RMSNorm((16,))"),
        ("resnet.norm1", {"weight": (16,), "bias": (16,)}, None),  # GroupNorm in diffusers, LayerNorm in timm
        ("h.0.ln_1", {"weight": (16,), "bias": (16,)}, "LayerNorm((16,), elementwise_affine=True, bias=True)"),
        ("attn.c_attn", {"weight": (8, 24), "bias": (24,)}, None),  # GPT-2 Conv1D stores [in, out]
        ("up", {"weight": (16, 8, 2, 2), "bias": (8,)}, "ConvTranspose2d(16, 8, kernel_size=(2, 2))"),
        ("x", {"weight": (4,), "scale": (4,)}, None),
    ],
)
def test_ambiguous_groups_are_never_guessed(
    name: str, shapes: dict[str, tuple[int, ...]], expected: str | None
) -> None:
    found = classify(name, _refs(**shapes))  # type: ignore[arg-type]
    assert (found[1] if found else None) == expected


def test_gpt2_conv1d_layers_are_shown_by_parameters(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=8, n_head=2, vocab_size=32, n_positions=16, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config)
    torch.save(model.state_dict(), tmp_path / "gpt2.pt")
    out = run_cli("tree", "--modules", tmp_path / "gpt2.pt").out
    # The square c_proj [8, 8] would pass for a Linear, but this model stores
    # layers as [in, out] (c_attn [8, 24]), so it is not guessed either.
    assert "          (c_attn): {weight: [8, 24], bias: [24]}\n          (c_proj): {weight: [8, 8], bias: [8]}\n" in out
    assert "    (wte): Embedding(32, 8)\n    (wpe): Embedding(16, 8)\n" in out
    assert "      (0-1): 2 x Module(\n        (ln_1): LayerNorm((8,), elementwise_affine=True, bias=True)\n" in out
    assert "  (lm_head): Linear(in_features=8, out_features=32, bias=False)\n" in out
    printed = str(model)
    assert (
        "(wte): Embedding(32, 8)" in printed
        and "(lm_head): Linear(in_features=8, out_features=32, bias=False)" in printed
    )


def test_trainer_checkpoint_shows_its_model_and_json() -> None:
    path = SAMPLES / "trainer_checkpoint.pt"
    result = run_cli("tree", "--modules", path, "-f", "json")
    assert result.code == 0
    assert "using the state dict under 'model'" in result.err
    doc = json.loads(result.out)
    assert doc["root"] == "model"
    assert doc["modules"]["type"] == "Module"
    assert [(c["path"], c["type"], c["repr"], c["params"]) for c in doc["modules"]["children"]] == [
        ("0", "Linear", "Linear(in_features=4, out_features=8, bias=True)", 40),
        ("2", "Linear", "Linear(in_features=8, out_features=1, bias=True)", 9),
    ]
    csv = run_cli("tree", "--modules", path, "-f", "csv", "--root", "model").out
    assert csv.splitlines() == [
        "path,type,module,params",
        ",Module,Module,49",
        '0,Linear,"Linear(in_features=4, out_features=8, bias=True)",40',
        '2,Linear,"Linear(in_features=8, out_features=1, bias=True)",9',
    ]


def test_modules_of_a_subtree() -> None:
    out = run_cli("tree", "--modules", SAMPLES / "rgnet.pt", "0.block 2").out
    assert out == (
        "Module(\n"
        "  (0): Linear(in_features=4, out_features=8, bias=True)\n"
        "  (2): Linear(in_features=8, out_features=4, bias=True)\n"
        ")\n"
    )


def test_absurdly_deep_names_are_a_clean_error(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({".".join(["a"] * 5000): torch.zeros(1)}, str(tmp_path / "deep.safetensors"))
    result = run_cli("tree", "--modules", tmp_path / "deep.safetensors")
    assert result.code == 2
    assert result.err.endswith("names nest too deeply to draw as modules (use tree without --modules)\n")


def test_modules_option_takes_one_prefix() -> None:
    result = run_cli("tree", "--modules", SAMPLES / "rgnet.pt", "0", "1")
    assert result.code == 2 and "--modules takes at most one prefix" in result.err
    missing = run_cli("tree", "--modules", SAMPLES / "rgnet.pt", "0.block 9")
    assert missing.code == 2 and "no name matches '0.block 9'" in missing.err

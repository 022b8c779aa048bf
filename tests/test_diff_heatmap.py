"""``diff --heatmap``: layer/module placement from names, the grid's values against
torch in float64, and text snapshots with and without colour (issue 16)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from paraminspect.compare.heatmap import locate
from paraminspect.output import heatmap as drawing
from paraminspect.output.render import Colours
from paraminspect.output.report import Heatmap
from tests.conftest import run_cli, run_script

# Factor per tensor of B = factor * A: its relative L2 change is |factor - 1|.
FACTORS = {
    "model.layers.0.self_attn.q_proj.weight": 1.001,
    "model.layers.1.self_attn.q_proj.weight": 1.1,
    "model.layers.1.mlp.down_proj.weight": 1.005,
    "model.layers.0.mlp.up_proj.weight": 1.02,
    "model.embed_tokens.weight": 1.05,
}

PLAIN = """\
relative L2 change ||B-A||/||A||, per layer and module
layer q_proj k_proj v_proj o_proj gate_proj up_proj down_proj input_layernorm post_attention_layernorm
    0 ░░░░░░   ·      ·      ·        ·     ▓▓▓▓▓▓▓     ·            ·                   ·
    1 ██████   ·      ·      ·        ·        ·    ▒▒▒▒▒▒▒▒▒        ·                   ·

lm_head            ·  0
model.embed_tokens ██ 0.05
model.norm         ·  0

legend: ░ 0.001-0.00316  ▒ 0.00316-0.01  ▓ 0.01-0.0316  █ 0.0316-0.1
        · unchanged  × not compared  ! nan/inf

0 only in A, 0 only in B, 0 dtype changed, 0 shape changed, 5 values changed, 16 equal
"""


@pytest.fixture(scope="module")
def llama_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, torch.Tensor]]:
    from tests.matrix.writers_libs import tiny_llama

    root = tmp_path_factory.mktemp("heatmap")
    model = tiny_llama(tied=False)
    model.save_pretrained(root / "a")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for name, factor in FACTORS.items():
            model.state_dict()[name].mul_(factor)
    model.save_pretrained(root / "b")
    return root / "a" / "model.safetensors", root / "b" / "model.safetensors", state


def test_names_place_tensors_in_layers_and_kinds() -> None:
    assert locate("model.layers.12.self_attn.q_proj.weight") == ("model.layers", 12, "self_attn.q_proj")
    assert locate("blk.12.attn_q.weight") == ("blk", 12, "attn_q")
    assert locate("h.12.attn.c_attn.weight") == ("h", 12, "attn.c_attn")
    assert locate("transformer.h.3.mlp.c_fc.weight") == ("transformer.h", 3, "mlp.c_fc")
    assert locate("model.layers.3.mlp.experts.7.w1.weight") == ("model.layers", 3, "mlp.experts.*.w1")
    assert locate("model.embed_tokens.weight") is None and locate("0.weight") is None


def test_plain_snapshot_and_values_against_torch(llama_pair: tuple[Path, Path, dict[str, torch.Tensor]]) -> None:
    a, b, state = llama_pair
    result = run_script("diff", a, b, "--heatmap")  # a pipe: no colour
    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout == PLAIN
    doc = json.loads(run_cli("diff", a, b, "--heatmap", "--format", "json").out)["heatmap"]
    assert doc["columns"][:4] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    q = doc["columns"].index("q_proj")
    for layer in (0, 1):
        x = state[f"model.layers.{layer}.self_attn.q_proj.weight"].double()
        y = (x.float() * FACTORS[f"model.layers.{layer}.self_attn.q_proj.weight"]).double()
        assert doc["rows"][layer]["layer"] == str(layer)
        assert doc["rows"][layer]["cells"][q] == pytest.approx(float((y - x).norm() / x.norm()), rel=1e-12)
    assert {o["prefix"]: o["rel_l2"] for o in doc["other"]}["model.norm"] == 0.0


def test_colour_only_on_a_tty_without_no_color(
    llama_pair: tuple[Path, Path, dict[str, torch.Tensor]], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    picture = Heatmap("rel_l2", ["q", "k"], [("0", [0.001, None]), ("1", [0.1, 0.0])], [[False, True]] * 2, [])
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert drawing.draw(picture, Colours(Tty())) == (
        "relative L2 change ||B-A||/||A||, per layer and module\n"
        "layer q  k\n"
        "    0 \x1b[34m░░\x1b[0m\n"
        "    1 \x1b[31m██\x1b[0m ·\n"
        "\n"
        "legend: \x1b[34m░\x1b[0m 0.001-0.00316  \x1b[36m▒\x1b[0m 0.00316-0.01  \x1b[33m▓\x1b[0m 0.01-0.0316"
        "  \x1b[31m█\x1b[0m 0.0316-0.1\n"
        "        · unchanged  × not compared  ! nan/inf\n"
    )
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b" not in drawing.draw(picture, Colours(Tty()))


def test_gpt2_names_disambiguate_columns_and_mark_not_compared(tmp_path: Path) -> None:
    torch.manual_seed(5)
    a = {f"h.{i}.{m}.weight": torch.randn(4, 4) for i in range(2) for m in ("attn.c_attn", "attn.c_proj", "mlp.c_proj")}
    b = {n: t * 1.01 for n, t in a.items()}
    b["h.1.mlp.c_proj.weight"] = torch.randn(4, 5)  # shape changed: not compared
    torch.save(a, tmp_path / "a.pt")
    torch.save(b, tmp_path / "b.pt")
    lines = run_cli("diff", tmp_path / "a.pt", tmp_path / "b.pt", "--heatmap").out.splitlines()
    assert lines[1].split() == ["layer", "c_attn", "attn.c_proj", "mlp.c_proj"]
    assert lines[3].split() == ["1", "█" * 6, "█" * 11, "×"]

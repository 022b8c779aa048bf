"""Shared selectors: the index form, 'did you mean' suggestions, and the CLI's use of both."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from paraminspect import SelectionError, open_checkpoint
from paraminspect.naming.order import ordered_names
from paraminspect.naming.select import is_index_form, resolve_index_form, suggestions
from tests.conftest import SAMPLES, run_cli, run_script


def _rgnet_names() -> list[str]:
    return ordered_names(open_checkpoint(SAMPLES / "rgnet.pt"))


def test_index_form_matches_module_indexing_in_torch() -> None:
    """rgnet[0][1][0].bias in torch is the tensor the index form names."""
    from sample_models.make_samples import rgnet

    torch.manual_seed(1)
    net = rgnet()
    names = list(net.state_dict())
    by_id = {id(p): n for n, p in net.named_parameters()}
    cases = {"[0][1][0].bias": net[0][1][0].bias, "[0][3][2].weight": net[0][3][2].weight, "[1].weight": net[1].weight}
    for pattern, param in cases.items():
        assert resolve_index_form(pattern, names) == by_id[id(param)]
    # Numbered children are picked by name, so the parameterless ReLU at [1] keeps its index.
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    assert resolve_index_form("[2].bias", list(mlp.state_dict())) == "2.bias"


def test_index_form_mixes_with_names_and_negative_indices() -> None:
    names = _rgnet_names()
    assert resolve_index_form("[0][1]", names) == "0.block 1"
    assert resolve_index_form("0.block 2[2].weight", names) == "0.block 2.2.weight"
    assert resolve_index_form("[0][-1][0].bias", names) == "0.block 3.0.bias"
    assert is_index_form("[0].x") and not is_index_form("layers.[0-9].weight")


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("[0][9]", "index 9 is out of range, '0' has 4 children ('block 0', 'block 1', 'block 2', 'block 3')"),
        ("[5]", "the top level has no child 5 (it has '0', '1')"),
    ],
)
def test_index_form_out_of_range(pattern: str, message: str) -> None:
    with pytest.raises(SelectionError) as info:
        resolve_index_form(pattern, _rgnet_names())
    assert info.value.message == f"no name matches {pattern!r}: {message}"


def test_suggestions_prefer_the_closest_and_skip_its_descendants() -> None:
    names = _rgnet_names()
    assert suggestions("0.blok 1.0.bias", names)[0] == "0.block 1.0.bias"
    assert suggestions("0.block1", names)[0] == "0.block 1"
    assert "0.block 1.0" not in suggestions("0.block1", names)
    assert suggestions("*.wieght", names) == ["*.weight"]
    assert suggestions("zzzz", names) == []


def test_cli_reports_suggestions_and_resolves_index_form() -> None:
    result = run_cli("shapes", SAMPLES / "mlp.pt", "2.bais")
    assert (result.code, result.out) == (2, "")
    assert result.err == (
        f"paraminspect: error: {SAMPLES / 'mlp.pt'}: no name matches '2.bais'; did you mean '2.bias'?\n"
    )
    result = run_cli("shapes", SAMPLES / "rgnet.pt", "[0][1][0].bias", "--format", "csv")
    assert result.out == "name,dtype,shape,numel,bytes,tied_to\n0.block 1.0.bias,float32,[8],8,32,\n"
    proc = run_script("tree", SAMPLES / "rgnet.pt", "[0][7]")
    assert proc.returncode == 2 and "index 7 is out of range" in proc.stderr and proc.stderr.count("\n") == 1


def test_suggestions_walk_the_tree_on_large_checkpoints() -> None:
    """Part-by-part correction: right answer, fast, even with tens of thousands of names."""
    parts = ("self_attn.q_proj", "self_attn.k_proj", "mlp.gate_proj", "mlp.up_proj", "input_layernorm")
    names = [f"model.layers.{i}.{p}.weight" for i in range(4000) for p in parts]
    assert suggestions("model.layers.17.mlp.gate_prj.weight", names) == ["model.layers.17.mlp.gate_proj.weight"]
    assert suggestions("model.layer.17.mlp.up_proj.wieght", names) == ["model.layers.17.mlp.up_proj.weight"]

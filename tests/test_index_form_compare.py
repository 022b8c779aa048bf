"""Index-form names (``[0][1][0].bias``) select in ``diff`` and ``check`` as in ``get``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import SAMPLES, run_cli, run_script


@pytest.fixture
def changed(tmp_path: Path) -> Path:
    """rgnet with one bias moved: ``[0][1][0].bias`` is ``0.block 1.0.bias``."""
    sd = torch.load(SAMPLES / "rgnet.pt", weights_only=True)
    sd["0.block 1.0.bias"] = sd["0.block 1.0.bias"] + 1
    torch.save(sd, tmp_path / "changed.pt")
    return tmp_path / "changed.pt"


def test_diff_selects_by_index_form(changed: Path) -> None:
    result = run_cli("diff", SAMPLES / "rgnet.pt", changed, "[0][1][0].bias", "--format", "json")
    assert (result.code, result.err) == (1, "")
    doc = json.loads(result.out)
    assert [(e["name"], e["status"]) for e in doc["entries"]] == [("0.block 1.0.bias", "values_changed")]
    # Elsewhere the files are equal: the same selection one block over says so.
    assert run_cli("diff", SAMPLES / "rgnet.pt", changed, "[0][2][0].bias", "-q").code == 0


def test_diff_resolves_in_b_when_a_lacks_the_path(tmp_path: Path) -> None:
    sd = torch.load(SAMPLES / "mlp.pt", weights_only=True)
    torch.save({k: v for k, v in sd.items() if not k.startswith("2.")}, tmp_path / "first.pt")
    result = run_cli("diff", tmp_path / "first.pt", SAMPLES / "mlp.pt", "[2].bias", "--format", "json")
    assert result.code == 1
    assert [(e["name"], e["status"]) for e in json.loads(result.out)["entries"]] == [("2.bias", "only_in_b")]


def test_diff_index_out_of_range_is_exit_2() -> None:
    result = run_cli("diff", SAMPLES / "rgnet.pt", SAMPLES / "rgnet.safetensors", "[0][9]")
    assert result.code == 2
    assert result.err == (
        f"paraminspect: error: {SAMPLES / 'rgnet.pt'}: no name matches '[0][9]': index 9 is out of range, "
        "'0' has 4 children ('block 0', 'block 1', 'block 2', 'block 3')\n"
    )


def test_check_selects_by_index_form(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(run_cli("shapes", SAMPLES / "mlp.pt", "--format", "json").out)
    result = run_cli("check", SAMPLES / "mlp.safetensors", "--expect", spec, "[2]")
    assert (result.code, result.err) == (0, "")
    assert result.out == "0 missing, 0 unexpected, 0 dtype changed, 0 shape changed, 2 matching, 9 params\n"


def test_installed_script_diff_by_index_form(changed: Path) -> None:
    result = run_script("diff", SAMPLES / "rgnet.pt", changed, "[0][1][0].bias", "--quiet")
    assert (result.returncode, result.stdout, result.stderr) == (1, "", "")

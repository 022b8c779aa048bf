"""``diff`` of a save that stores a tie against one that leaves it out (transformers 5
against 4: ``lm_head.weight`` tied to ``model.embed_tokens.weight``). The reference is
torch: which names each file holds and which of them share storage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file, save_model

from tests.conftest import run_cli

EMBED, HEAD = "model.embed_tokens.weight", "lm_head.weight"


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.model = torch.nn.Module()
        self.model.embed_tokens = torch.nn.Embedding(6, 4)
        self.model.norm = torch.nn.LayerNorm(4)
        self.lm_head = torch.nn.Linear(4, 6, bias=False)
        self.lm_head.weight = self.model.embed_tokens.weight  # tie_word_embeddings


@pytest.fixture
def saves(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A: the tie left out (safetensors); B: stored as shared storage (.pt, torch.save);
    C: recorded by safetensors' save_model (one name kept, the other in the metadata)."""
    torch.manual_seed(0)
    model = Tiny()
    state = model.state_dict()
    a, b, c = tmp_path / "a.safetensors", tmp_path / "b.pt", tmp_path / "c.safetensors"
    save_file({k: v.contiguous() for k, v in state.items() if k != HEAD}, a)
    torch.save(state, b)
    save_model(model, str(c))
    loaded_a, loaded_b = load_file(a), torch.load(b, weights_only=True)
    assert set(loaded_b) - set(loaded_a) == {HEAD}  # what torch sees: one name more in B...
    assert loaded_b[HEAD].data_ptr() == loaded_b[EMBED].data_ptr()  # ...sharing the embedding's bytes
    return a, b, c


def _json(*args: str | Path) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = run_cli("diff", *args, "-f", "json")
    assert result.err == ""
    return result.code, json.loads(result.out)


def test_only_in_b_says_tied_to_a_name_in_both(saves: tuple[Path, Path, Path]) -> None:
    a, b, _ = saves
    code, doc = _json(a, b)
    assert code == 1
    rows = {e["name"]: e for e in doc["entries"]}
    assert (rows[HEAD]["status"], rows[HEAD]["tied_to"]) == ("only_in_b", EMBED)
    assert rows[EMBED]["status"] == "equal" and rows[EMBED]["tied_to"] is None
    table = run_cli("diff", a, b)
    assert table.code == 1
    line = next(x for x in table.out.splitlines() if HEAD in x)
    assert line.startswith("tied in B") and line.rstrip().endswith(EMBED)
    code, doc = _json(b, a)  # the other way round
    assert (code, {e["name"]: e for e in doc["entries"]}[HEAD]["status"]) == (1, "only_in_a")


def test_ties_equal_treats_the_pair_as_equal(saves: tuple[Path, Path, Path]) -> None:
    a, b, c = saves
    for other in (b, c):
        code, doc = _json(a, other, "--ties-equal")
        assert code == 0, doc
        rows = {e["name"]: e for e in doc["entries"]}
        assert rows[HEAD]["status"] == "tied_alias"
        assert doc["same"] is True and doc["counts"]["tied_alias"] == 1
        assert run_cli("diff", a, other, "--ties-equal", "-q").code == 0
        assert run_cli("diff", other, a, "--ties-equal", "-q").code == 0
    table = run_cli("diff", a, b, "--ties-equal")
    assert table.code == 0
    assert "1 tied alias" in table.out.splitlines()[-1]


def test_ties_equal_still_sees_a_changed_embedding_and_untied_extras(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Tiny()
    state = model.state_dict()
    a = tmp_path / "a.safetensors"
    save_file({k: v.contiguous() for k, v in state.items() if k != HEAD}, a)
    with torch.no_grad():
        model.model.embed_tokens.weight[2, 1] += 1
    changed = tmp_path / "changed.pt"
    torch.save(model.state_dict(), changed)
    code, doc = _json(a, changed, "--ties-equal")
    rows = {e["name"]: e for e in doc["entries"]}
    assert code == 1 and rows[EMBED]["status"] == "values_changed" and rows[EMBED]["index"] == [2, 1]
    extra = tmp_path / "extra.pt"
    torch.save({**state, "extra.weight": torch.ones(2)}, extra)  # not tied to anything
    code, doc = _json(a, extra, "--ties-equal")
    rows = {e["name"]: e for e in doc["entries"]}
    assert code == 1 and (rows["extra.weight"]["status"], rows["extra.weight"]["tied_to"]) == ("only_in_b", None)

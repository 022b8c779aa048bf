"""Trainer checkpoints: --root, the automatic state-dict choice, and shapes --by-prefix."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from paraminspect import SelectionError, TensorRef, open_checkpoint
from paraminspect.naming.roots import choose, state_dict_candidates
from tests.conftest import SAMPLES, run_cli, run_script

NOTE = "(--root KEY picks another part, --root '' the whole file)"


@pytest.fixture(scope="module")
def lightning_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint written by a real Lightning Trainer after one epoch."""
    import lightning as L
    from torch import nn

    class Net(L.LightningModule):
        def __init__(self, hidden: int = 8) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 1))

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
            x, y = batch
            return nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self) -> object:
            optimizer = torch.optim.Adam(self.parameters(), lr=1e-3)
            return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1)}

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.rand(8, 4), torch.rand(8, 1))
    root = tmp_path_factory.mktemp("lightning")
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=root,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Net(), torch.utils.data.DataLoader(data, batch_size=4))
    trainer.save_checkpoint(root / "last.ckpt")
    return root / "last.ckpt"


def test_lightning_checkpoint_picks_state_dict(lightning_ckpt: Path) -> None:
    raw = torch.load(lightning_ckpt, weights_only=False)
    ckpt = open_checkpoint(lightning_ckpt)
    assert choose(ckpt).key == "state_dict"
    assert ckpt.subtree("state_dict").tensors.keys() == raw["state_dict"].keys()
    result = run_script("shapes", lightning_ckpt, "-f", "json")
    assert result.returncode == 0
    doc = json.loads(result.stdout)
    assert doc["root"] == "state_dict"
    assert [t["name"] for t in doc["tensors"]] == list(raw["state_dict"])
    assert result.stderr == f"paraminspect: note: {lightning_ckpt}: using the state dict under 'state_dict' {NOTE}\n"


def test_tree_shows_the_whole_lightning_object(lightning_ckpt: Path) -> None:
    result = run_cli("tree", lightning_ckpt, "--depth", "1")
    assert result.code == 0 and result.err == ""
    top = [line.split("  ")[0][4:] for line in result.out.splitlines()[1:]]
    for key in ("epoch", "global_step", "state_dict", "optimizer_states", "lr_schedulers", "hyper_parameters"):
        assert key in top
    entries = open_checkpoint(lightning_ckpt).entries
    assert entries["hyper_parameters.hidden"].value == 8  # type: ignore[union-attr]
    assert isinstance(entries["optimizer_states.0.state.0.exp_avg"], TensorRef)


def test_hand_rolled_trainer_checkpoint() -> None:
    ckpt = open_checkpoint(SAMPLES / "trainer_checkpoint.pt")
    assert state_dict_candidates(ckpt) == ["model"]
    result = run_cli("shapes", SAMPLES / "trainer_checkpoint.pt", "-f", "csv")
    assert result.out.splitlines()[1].startswith("0.weight,")
    assert (
        result.err
        == f"paraminspect: note: {SAMPLES / 'trainer_checkpoint.pt'}: using the state dict under 'model' {NOTE}\n"
    )


def test_explicit_root_and_whole_file() -> None:
    path = SAMPLES / "trainer_checkpoint.pt"
    optimizer = run_cli("shapes", path, "--root", "optimizer", "-f", "csv")
    assert optimizer.err == ""
    assert [line.split(",")[0] for line in optimizer.out.splitlines()[1:4]] == [
        "state.0.step",
        "state.0.exp_avg",
        "state.0.exp_avg_sq",
    ]
    whole = run_cli("shapes", path, "--root", "", "-f", "csv")
    assert whole.err == "" and whole.out.splitlines()[1].startswith("model.0.weight,")
    nested = run_cli("shapes", path, "--root", "optimizer.state.1", "-f", "csv")
    assert [line.split(",")[0] for line in nested.out.splitlines()[1:]] == ["step", "exp_avg", "exp_avg_sq"]


@pytest.mark.parametrize(("root", "reason"), [("nope", "no such key"), ("epoch", "a single value, not a group")])
def test_bad_root_is_a_usage_error(root: str, reason: str) -> None:
    path = SAMPLES / "trainer_checkpoint.pt"
    result = run_cli("shapes", path, "--root", root)
    assert result.code == 2 and result.out == ""
    assert result.err == f"paraminspect: error: {path}: --root {root!r}: {reason}\n"
    with pytest.raises(SelectionError):
        open_checkpoint(path).subtree(root)


def test_plain_and_optimizer_state_dicts_are_left_alone(tmp_path: Path) -> None:
    assert choose(open_checkpoint(SAMPLES / "rgnet.pt")).candidates == ()
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    torch.save(optimizer.state_dict(), tmp_path / "opt.pt")
    result = run_cli("shapes", tmp_path / "opt.pt", "-f", "csv")
    assert result.err == ""
    assert [line.split(",")[0] for line in result.out.splitlines()[1:]] == [
        "state.0.momentum_buffer",
        "state.1.momentum_buffer",
    ]


def test_model_and_ema_are_not_guessed(tmp_path: Path) -> None:
    sd = torch.nn.Linear(2, 2).state_dict()
    torch.save({"model": sd, "ema": {k: v.clone() for k, v in sd.items()}, "step": 5}, tmp_path / "ema.pt")
    result = run_cli("shapes", tmp_path / "ema.pt", "-f", "csv")
    assert result.code == 0
    assert len(result.out.splitlines()) == 5
    assert result.err == (
        f"paraminspect: note: {tmp_path / 'ema.pt'}: several parts hold only tensors ('model', 'ema'); "
        "using the whole file, pick one with --root KEY\n"
    )


def test_by_prefix_shows_what_fills_the_file() -> None:
    path = SAMPLES / "trainer_checkpoint.pt"
    result = run_script("shapes", path, "--by-prefix", "1")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == (
        "prefix                tensors    params    bytes    % bytes  dtypes\n"
        "------------------  ---------  --------  -------  ---------  --------\n"
        "model                       4        49    196 B       32.5  float32\n"
        "optimizer                  12       102    408 B       67.5  float32\n"
        "------------------  ---------  --------  -------  ---------  --------\n"
        "total (2 prefixes)         16       151    604 B        100  float32\n"
    )


def test_by_prefix_json_dtype_mix_and_ties(tmp_path: Path) -> None:
    shared = torch.ones(4, 4)
    sd = {"a.w": shared, "a.tied": shared, "a.h": torch.ones(4, dtype=torch.float16), "b.w": torch.ones(2)}
    torch.save(sd, tmp_path / "m.pt")
    doc = json.loads(run_cli("shapes", tmp_path / "m.pt", "--by-prefix", "1", "-f", "json").out)
    first = doc["prefixes"][0]
    assert first["prefix"] == "a" and first["tensors"] == 3
    assert first["params"] == 20 and first["bytes"] == 72
    assert first["by_dtype"] == {"float32": {"params": 16, "bytes": 64}, "float16": {"params": 4, "bytes": 8}}
    assert first["dtypes"] == "float32 89%, float16 11%"
    assert doc["total"]["bytes"] == 80 and doc["total"]["unique"] == 3
    deep = json.loads(run_cli("shapes", SAMPLES / "rgnet.pt", "--by-prefix", "2", "-f", "json").out)
    assert [p["prefix"] for p in deep["prefixes"]] == [
        "0.block 0",
        "0.block 1",
        "0.block 2",
        "0.block 3",
        "1.weight",
        "1.bias",
    ]


def test_known_key_is_used_when_no_group_is_all_tensors(tmp_path: Path) -> None:
    sd: dict[str, object] = dict(torch.nn.Linear(2, 2).state_dict())
    sd["attn._extra_state"] = b"\x00"  # e.g. TransformerEngine's extra state
    torch.save({"model": sd, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}, "epoch": 1}, tmp_path / "c.pt")
    ckpt = open_checkpoint(tmp_path / "c.pt")
    assert choose(ckpt).key == "model"
    result = run_cli("shapes", tmp_path / "c.pt", "-f", "csv")
    assert [line.split(",")[0] for line in result.out.splitlines()[1:]] == ["weight", "bias"]

"""Write the sample checkpoints from the parameter-management chapter.

Deterministic: fixed seeds, so values are the same on every run (torch.save
still stamps a random serialization id, so .pt bytes differ between runs).

    python sample_models/make_samples.py [OUTDIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file, save_model
from torch import nn


def mlp() -> nn.Module:
    """The chapter's first net: Linear(4, 8), ReLU, Linear(8, 1)."""
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))


def block1() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4), nn.ReLU())


def block2() -> nn.Module:
    net = nn.Sequential()
    for i in range(4):
        net.add_module(f"block {i}", block1())  # names with spaces, as in the chapter
    return net


def rgnet() -> nn.Module:
    """Nested blocks: rgnet[0][1][0].bias is '0.block 1.0.bias'."""
    return nn.Sequential(block2(), nn.Linear(4, 1))


def tied() -> nn.Module:
    """One Linear(8, 8) used twice: '2.weight' and '4.weight' are the same tensor."""
    shared = nn.Linear(8, 8)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU(), nn.Linear(8, 1))


def trainer_checkpoint(model: nn.Module) -> dict[str, object]:
    """A hand-rolled training checkpoint: model, optimizer state, epoch and argparse args."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = model(torch.rand(2, 4)).sum()
    loss.backward()
    optimizer.step()
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": 3,
        "args": argparse.Namespace(lr=1e-3, batch_size=2),
    }


def main(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    for seed, (name, build) in enumerate({"mlp": mlp, "rgnet": rgnet, "tied": tied}.items()):
        torch.manual_seed(seed)
        net = build()
        torch.save(net.state_dict(), outdir / f"{name}.pt")
        if name == "tied":
            save_model(net, str(outdir / f"{name}.safetensors"))  # keeps one copy, records the alias
        else:
            save_file(net.state_dict(), str(outdir / f"{name}.safetensors"))
    torch.manual_seed(3)
    torch.save(trainer_checkpoint(mlp()), outdir / "trainer_checkpoint.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)

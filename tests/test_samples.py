"""The committed sample models match what the generator script writes."""

from __future__ import annotations

import torch

from tests.conftest import SAMPLES


def test_every_sample_loads_in_torch_and_matches_the_chapter() -> None:
    mlp = torch.load(SAMPLES / "mlp.pt", weights_only=True)
    assert [(k, tuple(v.shape)) for k, v in mlp.items()] == [
        ("0.weight", (8, 4)),
        ("0.bias", (8,)),
        ("2.weight", (1, 8)),
        ("2.bias", (1,)),
    ]
    rgnet = torch.load(SAMPLES / "rgnet.pt", weights_only=True)
    assert "0.block 1.0.bias" in rgnet and len(rgnet) == 18
    tied = torch.load(SAMPLES / "tied.pt", weights_only=True)
    assert tied["2.weight"].data_ptr() == tied["4.weight"].data_ptr()

"""Write tests/data/dcp_2ranks: a real two-rank torch.distributed.checkpoint save.

Tensors are sharded across the ranks (rows, columns, an uneven split of a 3-D
tensor), so each is stored as chunks in two .distcp files. Two processes on
gloo take ~15 s, too slow for every test run: the output is committed, and a
slow test re-creates it and checks the committed copy still reads the same.

    python tests/data/make_dcp_2ranks.py [OUTDIR]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2


def state() -> dict[str, object]:
    """The full (unsharded) values every rank starts from."""
    return {
        "model": {
            "embed.weight": torch.arange(6 * 5, dtype=torch.float32).reshape(6, 5),
            "proj.weight": torch.arange(4 * 7, dtype=torch.float32).reshape(4, 7).to(torch.bfloat16),
            "conv.weight": torch.arange(2 * 5 * 3, dtype=torch.int64).reshape(2, 5, 3),
            "norm.weight": torch.ones(3),
        },
        "step": 7,
    }


def _work(rank: int, outdir: str, port: int) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (WORLD,))
    full = state()
    model = full["model"]
    assert isinstance(model, dict)
    placements = {
        "embed.weight": Shard(0),
        "proj.weight": Shard(1),
        "conv.weight": Shard(1),
        "norm.weight": Replicate(),
    }
    sharded = {k: distribute_tensor(v, mesh, [placements[k]]) for k, v in model.items()}
    dcp.save({"model": sharded, "step": full["step"]}, checkpoint_id=outdir)
    dist.destroy_process_group()


def main(outdir: Path, port: int = 29533) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    mp.spawn(_work, args=(str(outdir), port), nprocs=WORLD)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "dcp_2ranks")

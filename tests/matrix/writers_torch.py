"""Matrix files written by torch itself: torch.save in its forms, safetensors, DCP."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.matrix.cases import Case, bump_named


def conv_bn_linear(seed: int = 0) -> torch.nn.Module:
    """The issue's model: every BatchNorm tensor has the shape of conv.bias, values random
    (BatchNorm's own init makes them all 0 or 1, which would hide a wrong read)."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential()
    model.add_module("conv", torch.nn.Conv2d(3, 4, 3))
    model.add_module("bn", torch.nn.BatchNorm2d(4))
    model.add_module("pool", torch.nn.AdaptiveAvgPool2d(1))
    model.add_module("flat", torch.nn.Flatten())
    model.add_module("fc", torch.nn.Linear(4, 4))
    with torch.no_grad():
        for buffer in (model.bn.running_mean, model.bn.running_var, model.bn.weight, model.bn.bias):
            buffer.copy_(torch.rand(4) + 0.5)
        model.bn.num_batches_tracked.fill_(3)
    return model


def _stepped(model: torch.nn.Module) -> torch.optim.Optimizer:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.rand(2, 3, 5, 5)).sum().backward()
    optimizer.step()
    return optimizer


def all_dtypes() -> dict[str, torch.Tensor]:
    """One small tensor of every dtype torch.save writes, values that exercise each."""
    g = torch.Generator().manual_seed(1)
    base = torch.randn(3, 5, generator=g) * 3
    out: dict[str, torch.Tensor] = {}
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        out[str(dtype).removeprefix("torch.")] = base.to(dtype)
    for dtype in (torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz):
        out[str(dtype).removeprefix("torch.")] = base.to(dtype)
    out["float8_e8m0fnu"] = base.abs().add(0.1).to(torch.float8_e8m0fnu)
    out["complex64"] = torch.complex(base, -base)
    out["complex128"] = torch.complex(base, base * 2).to(torch.complex128)
    ints = torch.randint(-100, 100, (3, 5), generator=g)
    for dtype in (torch.int8, torch.int16, torch.int32, torch.int64):
        out[str(dtype).removeprefix("torch.")] = ints.to(dtype)
    out["uint8"] = ints.abs().to(torch.uint8)
    out["uint16"] = torch.tensor([0, 1, 65535], dtype=torch.uint16)
    out["uint32"] = torch.tensor([0, 7, 2**32 - 1], dtype=torch.uint32)
    out["uint64"] = torch.tensor([0, 2**53 + 1, 2**64 - 1], dtype=torch.uint64)
    out["bool"] = ints > 0
    out["scalar"] = torch.tensor(2.5)
    out["empty"] = torch.zeros(0, 4)
    return out


def views() -> dict[str, torch.Tensor]:
    """Views and shared storages: a tie, a slice, a transpose, a broadcast (stride 0)."""
    base = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))
    return {
        "base": base,
        "tied": base,
        "rows": base[1:3],
        "column": base[:, 2],
        "transposed": base.t(),
        "broadcast": base[0].expand(3, 6),
        "own": torch.randn(4, 6, generator=torch.Generator().manual_seed(3)),
    }


def write_torch(directory: Path) -> dict[str, Case]:
    model = conv_bn_linear()
    cases: dict[str, Case] = {}
    # The DCP trap in a plain file: equal-shaped, distinct tensors (conv.bias, bn.*).
    torch.save(model.state_dict(), directory / "trap.pt")
    cases["torch-state-dict"] = Case(directory / "trap.pt")
    tied = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    tied[1].weight = tied[0].weight
    torch.save({"net": model, "tied": tied}, directory / "module.pt")
    cases["torch-whole-module"] = Case(directory / "module.pt", drop_unknown=True)  # modules are placeholders
    torch.save(_stepped(conv_bn_linear()).state_dict(), directory / "optimizer.pt")
    cases["torch-optimizer"] = Case(directory / "optimizer.pt")
    legacy = {"model": model.state_dict(), "views": views(), "step": 3}
    torch.save(legacy, directory / "legacy.pt", _use_new_zipfile_serialization=False)
    cases["torch-legacy"] = Case(directory / "legacy.pt")
    torch.save(all_dtypes(), directory / "dtypes.pt")
    cases["torch-dtypes"] = Case(directory / "dtypes.pt")
    torch.save(views(), directory / "views.pt")
    cases["torch-views"] = Case(directory / "views.pt")
    # safetensors save_file: every dtype it stores (all but complex128).
    stored = {k: v for k, v in all_dtypes().items() if v.dtype != torch.complex128}
    save_file(stored, str(directory / "dtypes.safetensors"))
    cases["safetensors-dtypes"] = Case(directory / "dtypes.safetensors")
    return cases


def _dcp_save(state: dict[str, object], directory: Path) -> None:
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "assuming the intent is to save in a single process"
        dcp.save(state, checkpoint_id=str(directory))


def write_dcp(directory: Path) -> dict[str, Case]:
    """dcp.save on one process, and the same state saved again with one element changed."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    cases: dict[str, Case] = {}
    model = conv_bn_linear()
    state: dict[str, object] = dict(model.state_dict())
    _dcp_save(state, directory / "sd")
    bump_named(state, "bn.running_mean")
    _dcp_save(state, directory / "sd-changed")
    cases["dcp-state-dict"] = Case(directory / "sd", directory / "sd-changed")

    model = conv_bn_linear(1)
    optimizer = _stepped(model)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    full: dict[str, object] = {"model": model_sd, "optim": optim_sd, "epoch": 2}
    _dcp_save(full, directory / "optim")
    bump_named(full, "optim.state.bn.weight.exp_avg_sq")
    _dcp_save(full, directory / "optim-changed")
    cases["dcp-model-optimizer"] = Case(directory / "optim", directory / "optim-changed")

    # Tensors inside non-tensor items: each tuple is a small torch.save zip in the .distcp.
    g = torch.Generator().manual_seed(4)
    items: dict[str, object] = {
        "weight": torch.randn(3, generator=g),
        "first": (torch.randn(3, generator=g), "a"),
        "second": (torch.randn(3, generator=g), "b"),
    }
    _dcp_save(items, directory / "items")
    bump_named(items, "second.0")
    _dcp_save(items, directory / "items-changed")
    cases["dcp-tensors-in-items"] = Case(directory / "items", directory / "items-changed")
    return cases


def _two_rank_work(rank: int, outdir: str, port: int) -> None:
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    mesh = init_device_mesh("cpu", (2,))
    full = conv_bn_linear().state_dict()
    places = {"conv.weight": Shard(1), "fc.weight": Shard(0)}
    for name in ("", "-changed"):
        sharded = {k: distribute_tensor(v, mesh, [places.get(k, Replicate())]) for k, v in full.items()}
        dcp.save({"model": sharded}, checkpoint_id=f"{outdir}/two{name}")
        bump_named(full, "fc.weight")
    dist.destroy_process_group()


def write_dcp_two_ranks(directory: Path) -> dict[str, Case]:
    import torch.multiprocessing as mp

    mp.spawn(_two_rank_work, args=(str(directory), 29541), nprocs=2)
    return {"dcp-two-ranks": Case(directory / "two", directory / "two-changed")}

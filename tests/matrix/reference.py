"""The reference readings the matrix holds paraminspect to: torch, safetensors, DCP.

Nothing here imports paraminspect: every expected name, dtype, shape, tie and
value comes from the libraries that wrote the files (``torch.load``,
``safetensors.torch.load_file``, ``dcp_to_torch_save``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file

Flat = dict[str, torch.Tensor]


def flatten(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in a loaded object, under its dotted path (dict keys, list
    indices; a whole ``nn.Module`` by its ``state_dict()`` names)."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, torch.nn.Module):
        yield from flatten(obj.state_dict(keep_vars=True), prefix)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            yield from flatten(value, f"{prefix}.{index}" if prefix else str(index))


def flat(obj: Any) -> Flat:
    out: Flat = {}
    for name, tensor in flatten(obj):
        assert name not in out, f"reference has two tensors named {name!r}"
        out[name] = tensor.detach()
    return out


def torch_load(path: Path) -> Any:
    """torch.load with weights_only=True; the trusted fixtures that need more
    (a pickled module, numpy RNG state) fall back to weights_only=False."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # weights_only refuses the file's globals: our own fixture, trusted
        return torch.load(path, map_location="cpu", weights_only=False)


def safetensors_aliases(path: Path) -> dict[str, str]:
    """Names a safetensors file records as aliases in its metadata (the convention
    of ``safetensors.torch.save_model``): dropped name -> stored name."""
    with safe_open(str(path), framework="pt") as handle:
        stored = set(handle.keys())
        metadata = handle.metadata() or {}
    return {k: v for k, v in metadata.items() if k not in stored and v in stored}


def read_safetensors(path: Path) -> Flat:
    tensors = load_file(str(path))
    for alias, kept in safetensors_aliases(path).items():
        tensors[alias] = tensors[kept]
    return tensors


def read_index(path: Path) -> Flat:
    """A sharded model directory: each shard by its own reference reader."""
    (index,) = sorted(path.glob("*.index.json"))
    weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
    out: Flat = {}
    for shard in dict.fromkeys(weight_map.values()):
        out.update(read_file(path / shard))
    assert set(out) == set(weight_map)
    return out


def read_dcp(path: Path) -> Flat:
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    target = path.parent / f"{path.name}.reference.pt"
    if not target.exists():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dcp_to_torch_save(str(path), str(target))
    return flat(torch_load(target))


def read_file(path: Path) -> Flat:
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    return flat(torch_load(path))


def read(path: Path) -> Flat:
    """The reference reading of any matrix input or output."""
    if path.is_dir():
        return read_dcp(path) if (path / ".metadata").exists() else read_index(path)
    return read_file(path)


def raw(tensor: torch.Tensor) -> bytes:
    """A tensor's elements as bytes, in row-major order (exact for every dtype)."""
    return bytes(tensor.contiguous().clone().untyped_storage())


def ties(tensors: Flat) -> set[frozenset[str]]:
    """Groups of names torch sees as one tensor: same storage, offset, shape, stride."""
    groups: dict[tuple[object, ...], set[str]] = {}
    for name, t in tensors.items():
        if t.is_sparse or t.is_quantized or t.numel() == 0:
            continue
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
        groups.setdefault(key, set()).add(name)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


def dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def changed_elements(a: Flat, b: Flat) -> dict[str, tuple[int, list[int]]]:
    """Per name present in both with equal dtype and shape, whose bytes differ:
    (how many elements differ, the index of the first)."""
    out: dict[str, tuple[int, list[int]]] = {}
    for name in a.keys() & b.keys():
        x, y = a[name], b[name]
        if x.dtype != y.dtype or x.shape != y.shape or raw(x) == raw(y):
            continue
        bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64, 16: torch.int64}[x.element_size()]
        xs, ys = (t.contiguous().reshape(-1).view(bits) for t in (x, y))
        if x.element_size() == 16:  # complex128: two int64 per element
            xs, ys = xs.reshape(-1, 2), ys.reshape(-1, 2)
            differ = (xs != ys).any(dim=1)
        else:
            differ = xs != ys
        first = int(differ.nonzero()[0, 0])
        index = [int(i) for i in torch.unravel_index(torch.tensor(first), x.shape)] if x.dim() else []
        out[name] = (int(differ.sum()), index)
    return out

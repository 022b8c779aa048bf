"""What a matrix case is, and how to make its "one element changed" twin.

A writer (tests/matrix/writers_*.py) saves files with a real library and returns
:class:`Case` objects; a case whose writer cannot re-save a changed copy itself
gets one here, re-saved with the same library that reads it (torch.save,
safetensors ``save_file``), keeping the file's layout.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tests.matrix.reference import Flat, flatten

EDITABLE = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
INTEGERS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


@dataclass(frozen=True)
class Case:
    """One file (or directory) in the matrix."""

    path: Path  # what the commands are given
    changed: Path | None = None  # the same writer's save with one element changed
    drop_unknown: bool = False  # holds objects a .pt output leaves out (--drop-unknown)


def pick(tensors: Flat) -> str:
    """The tensor to change: the first (by name) float one with two elements or more that
    shares no storage (else the first such integer one)."""
    storages = [t.untyped_storage().data_ptr() for t in tensors.values()]
    alone = [n for n in sorted(tensors) if storages.count(tensors[n].untyped_storage().data_ptr()) == 1]
    for dtypes in (EDITABLE, INTEGERS):
        for name in alone:
            if tensors[name].dtype in dtypes and tensors[name].numel() >= 2:
                return name
    raise AssertionError("no tensor to change")


@torch.no_grad()
def bump(tensor: torch.Tensor) -> None:
    """Change one element (the middle one) in place, to a value every dtype holds."""
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(tensor.numel() // 2), tensor.shape))
    tensor[index] = 2.0 if float(tensor[index]) == 1.0 else 1.0


def bump_named(obj: object, name: str | None = None) -> str:
    """Change one element of a loaded object's tensor (``pick``'s if no name); return its name."""
    tensors = dict(flatten(obj))
    name = name or pick(tensors)
    bump(tensors[name])
    return name


def write_changed(source: Path, target: Path) -> Path:
    """A copy of ``source`` with one element changed, re-saved in the same layout."""
    if source.is_dir():
        shutil.copytree(source, target)
        (index,) = sorted(target.glob("*.index.json"))
        weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        shard = target / weight_map[sorted(weight_map)[0]]
        write_changed(shard, shard.with_suffix(".tmp"))
        shard.with_suffix(".tmp").replace(shard)
    elif source.suffix == ".safetensors":
        tensors = load_file(str(source))
        with safe_open(str(source), framework="pt") as handle:
            metadata = handle.metadata()
        bump(tensors[pick(tensors)])
        save_file(tensors, str(target), metadata=metadata)
    else:
        obj = torch.load(source, map_location="cpu", weights_only=False)  # our own fixture: trusted
        bump_named(obj)
        legacy = source.read_bytes()[:2] != b"PK"
        torch.save(obj, target, _use_new_zipfile_serialization=not legacy)
    return target

"""Hostile files that run no code but ask for hours or gigabytes: each is built
small and fast here (sparse files, memo-shared pickles), and must cost at most
:data:`MAX_SECONDS` and :data:`MAX_RSS_MIB` under default limits, or be refused
with a limit the user can raise."""

from __future__ import annotations

import json
import os
import pickle
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tests.hostile_build import tensor_pickle, torch_zip

MAX_SECONDS = 2.0
MAX_RSS_MIB = 256.0


@dataclass(frozen=True)
class Costly:
    id: str
    build: Callable[[Path], dict[str, Path]]  # (folder to build in) -> named paths
    # Each job: argv with {name} placeholders, expected exit code, phrase of the stderr line.
    jobs: list[tuple[list[str], int, str]] = field(default_factory=list)


def _broadcast(value: float, size: tuple[int, ...], stride: tuple[int, ...], numel: int = 1) -> Callable[[Path], None]:
    """A float view of ``size``/``stride`` over ``numel`` stored copies of ``value``."""
    return lambda path: torch_zip(
        path, tensor_pickle(numel, 0, size, stride), {"data/0": struct.pack("<f", value) * numel}
    )


def _one(name: str, make: Callable[[Path], object]) -> Callable[[Path], dict[str, Path]]:
    def build(root: Path) -> dict[str, Path]:
        path = root / f"{name}.pt"
        make(path)
        return {"a": path}

    return build


def _broadcast_pair(root: Path) -> dict[str, Path]:
    a, b, c = root / "zeros_2_36.pt", root / "ones_2_36.pt", root / "zeros_2_47.pt"
    _broadcast(0.0, (1 << 36,), (0,))(a)
    _broadcast(1.0, (1 << 36,), (0,))(b)
    _broadcast(0.0, (1 << 23, 1 << 24), (0, 0))(c)  # as_strided with stride 0: 2^47 elements
    return {"a": a, "b": b, "c": c}


def _overlapping(path: Path) -> None:
    # 2^28 elements over 2^15 stored ones, no stride 0 to reduce: a sliding window.
    _broadcast(0.5, (1 << 14, 1 << 14), (1, 1), numel=1 << 15)(path)


def _many_globals(n: int) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        body = b"".join(b"cm%d\nn\n)R" % i for i in range(n))
        torch_zip(path, b"\x80\x02(" + body + b"l.")

    return build


def _nones(n: int) -> Callable[[Path], None]:
    return lambda path: torch_zip(path, b"\x80\x02(" + b"N" * n + b"l.")


def _sparse_data_pkl(path: Path, size: int = 1 << 30) -> None:
    """A stored zip whose data.pkl record claims ``size`` bytes, left sparse on disk, then the
    version record torch.save writes."""
    name, version_name, version = b"archive/data.pkl", b"archive/version", b"3\n"
    local = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, size, size, len(name), 0) + name
    fields = (b"PK\x03\x04", 20, 0, 0, 0, 0, 0, len(version), len(version), len(version_name), 0)
    version_local = struct.pack("<4s5H3I2H", *fields) + version_name
    with open(path, "wb") as fh:
        fh.write(local)
        fh.seek(size, os.SEEK_CUR)
        version_at = fh.tell()
        fh.write(version_local + version)
        cd_at = fh.tell()
        central = struct.pack(
            "<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, size, size, len(name), 0, 0, 0, 0, 0, 0
        )
        version_central = struct.pack(
            "<4s6H3I5H2I",
            *(b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, len(version), len(version), len(version_name), 0, 0, 0, 0, 0),
            version_at,
        )
        directory = central + name + version_central + version_name
        fh.write(directory)
        fh.write(struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 2, 2, len(directory), cd_at, 0))


def safetensors_file(path: Path, tensors: dict[str, dict[str, object]], data: bytes = b"") -> None:
    header = json.dumps(tensors, separators=(",", ":")).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


def _empty_tensors(n: int) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        safetensors_file(path, {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(n)})

    return build


LONG_NAME = 4 << 20  # characters; the 100 MB behaves the same, only slower to build


def long_name_file(path: Path) -> str:
    """One tensor with a 4 MiB name among 100 short ones; returns the long name."""
    name = "w" * LONG_NAME
    tensors = {f"t{i}": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i in range(100)}
    tensors[name] = {"dtype": "F32", "shape": [1], "data_offsets": [400, 404]}
    safetensors_file(path, tensors, b"\0" * 404)
    return name


def dcp_shared_items(directory: Path, n: int) -> None:
    """A DCP directory whose ``n`` tensor items all point at one stored item."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import MetadataIndex

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"w": torch.arange(6.0).reshape(2, 3)}, checkpoint_id=str(directory), no_dist=True)
    meta_path = directory / ".metadata"
    with open(meta_path, "rb") as fh:
        meta = pickle.load(fh)
    item = meta.state_dict_metadata["w"]
    (index, info), *_ = meta.storage_data.items()
    for i in range(n):
        meta.state_dict_metadata[f"w{i}"] = item
        meta.storage_data[MetadataIndex(f"w{i}", index.offset)] = info
    with open(meta_path, "wb") as fh:
        pickle.dump(meta, fh)


def _dcp(root: Path) -> dict[str, Path]:
    directory = root / "dcp_shared"
    dcp_shared_items(directory, 20_000)  # 200k: over the default opcode limit, refused at once
    return {"a": directory}


def _fifos(root: Path) -> dict[str, Path]:
    model = root / "fifo_model"
    model.mkdir()
    os.mkfifo(model / "model.safetensors")
    os.mkfifo(root / "fifo.pt")
    return {"a": model, "b": root / "fifo.pt"}


def _dcp_fifo(root: Path) -> dict[str, Path]:
    directory = root / "dcp_fifo"
    dcp_shared_items(directory, 1)
    data = next(directory.glob("*.distcp"))
    data.unlink()
    os.mkfifo(data)
    return {"a": directory}


FIFO = "named pipe (FIFO), not a regular file"
OPCODES = "opcodes (use --max-pickle-opcodes"


def costly() -> list[Costly]:
    """Every costly file, and what each command must do with it."""
    both = ["tree", "scan"]
    return [
        Costly(
            "broadcast_views",
            _broadcast_pair,
            [
                (["stats", "{a}"], 0, ""),
                (["stats", "{c}"], 0, ""),
                (["diff", "{a}", "{a}"], 0, ""),
                (["diff", "{a}", "{b}"], 1, ""),
                (["diff", "{a}", "{c}"], 1, ""),  # shapes differ: nothing walked
            ],
        ),
        Costly(
            "overlapping_view",
            _one("overlap", _overlapping),
            [(["stats", "{a}"], 2, "(use --max-elements to raise it)"), (["diff", "{a}", "{a}"], 2, "--max-elements")],
        ),
        Costly(
            "globals_1m",  # 14 MB, 3M opcodes: stopped by the opcode count before any placeholder is made
            _one("globals", _many_globals(1_000_000)),
            [([c, "{a}"], 2, OPCODES) for c in both],
        ),
        Costly(
            "globals_20k",  # small, but one placeholder class each
            _one("globals", _many_globals(20_000)),
            [([c, "{a}"], 2, "distinct globals (use --max-globals") for c in both],
        ),
        Costly("nones_60m", _one("nones", _nones(60_000_000)), [([c, "{a}"], 2, OPCODES) for c in both]),
        Costly(
            "data_pkl_1gib_sparse",
            _one("sparse", _sparse_data_pkl),
            [([c, "{a}"], 2, "over the 134,217,728-byte limit (use --max-pickle-bytes") for c in both],
        ),
        Costly(
            "safetensors_1m_empty",
            lambda root: {"a": _build(root / "empty.safetensors", _empty_tensors(1_000_000))},
            [([c, "{a}"], 2, "--max-entries") for c in ["tree", "shapes"]],
        ),
        Costly(
            "long_name",
            lambda root: {"a": _build(root / "long.safetensors", long_name_file)},
            [(["shapes", "{a}"], 0, ""), (["tree", "{a}"], 0, "")],
        ),
        Costly("dcp_20k_shared", _dcp, [(["shapes", "{a}"], 0, ""), (["scan", "{a}"], 0, "")]),
        Costly(
            "fifo",
            _fifos,
            [([c, "{a}"], 2, FIFO) for c in ["shapes", "scan"]] + [([c, "{b}"], 2, FIFO) for c in ["tree", "scan"]],
        ),
        Costly("dcp_data_fifo", _dcp_fifo, [([c, "{a}"], 2, FIFO) for c in ["shapes", "scan"]]),
    ]


def _build(path: Path, make: Callable[[Path], object]) -> Path:
    make(path)
    return path

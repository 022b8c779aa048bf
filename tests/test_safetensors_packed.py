"""safetensors' packed dtypes (F4: 4 bits, F6_E2M3/F6_E3M2: 6 bits) and F8_E8M0: the header
check and every read use one byte count, the official library's.

The official library is the reference throughout: ``safetensors.safe_open`` decides which
headers are valid, ``safetensors.serialize`` writes the files and ``safetensors.deserialize``
says which bytes are each tensor's. Each packed tensor is followed by another, so a read of
the wrong length shows as the neighbour's bytes (or a read past the end).
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest
import safetensors

from paraminspect import open_checkpoint
from paraminspect.data.arrays import iter_raw_chunks
from paraminspect.errors import CheckpointError
from tests.conftest import run_cli

TAIL = {"dtype": "U8", "shape": [3], "data": b"\xaa\xbb\xcc"}  # the neighbour after the packed tensor

# (dtype, shape, bytes the header's data_offsets span): some valid, some not, as safe_open decides.
HEADERS = [
    ("F4", [8], 4),
    ("F4", [2, 3], 3),
    ("F4", [0], 0),
    ("F4", [3], 2),  # 12 bits: not a whole number of bytes
    ("F4", [4], 4),  # 2 bytes needed
    ("F4", [8], 8),  # a byte per element, as an unpacked read would count
    ("F6_E2M3", [4], 3),
    ("F6_E3M2", [8], 6),
    ("F6_E3M2", [2, 4], 6),
    ("F6_E2M3", [2], 2),  # 12 bits
    ("F6_E2M3", [4], 4),
    ("F8_E8M0", [4], 4),
    ("F8_E8M0", [4], 2),
]


def write(path: Path, dtype: str, shape: list[int], span: int) -> Path:
    """A file whose header says what it is told (the official writer checks, so headers are by hand)."""
    data = bytes(range(1, span + 1))
    header = {
        "x": {"dtype": dtype, "shape": shape, "data_offsets": [0, span]},
        "y": {"dtype": TAIL["dtype"], "shape": TAIL["shape"], "data_offsets": [span, span + 3]},
    }
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data + TAIL["data"])  # type: ignore[operator]
    return path


def official_accepts(path: Path) -> bool:
    try:
        with safetensors.safe_open(path, "pt"):
            return True
    except safetensors.SafetensorError:
        return False


@pytest.mark.parametrize(("dtype", "shape", "span"), HEADERS, ids=[f"{d}{s}-{n}B" for d, s, n in HEADERS])
def test_accepted_and_refused_like_the_official_loader(tmp_path: Path, dtype: str, shape: list[int], span: int) -> None:
    path = write(tmp_path / "p.safetensors", dtype, shape, span)
    try:
        ckpt = open_checkpoint(path)
    except CheckpointError as exc:
        assert not official_accepts(path), f"safetensors reads it, we refused: {exc}"
        assert run_cli("shapes", path).code == 2
        return
    assert official_accepts(path), "safetensors refuses it, we read it"
    expected = dict(safetensors.deserialize(path.read_bytes()))
    for name, ref in ckpt.tensors.items():
        want = bytes(expected[name]["data"])
        begin, end = ref.byte_range()
        assert (ref.nbytes, end - begin) == (len(want), len(want)), name
        assert path.read_bytes()[begin:end] == want, name
        assert b"".join(bytes(c) for c in iter_raw_chunks(ref, bytearray(1 << 16))) == want, name


PACKED = [("F4", [16]), ("F4", [3, 2]), ("F8_E8M0", [5]), ("F6_E2M3", [8]), ("F6_E3M2", [4, 4])]


def official_file(path: Path, dtype: str, shape: list[int]) -> Path:
    """The packed tensor, then its neighbour: written by safetensors.torch where it has a torch
    dtype (F4 is torch's float4_e2m1fn_x2, two values a byte), else by hand and held to safe_open."""
    import torch
    from safetensors.torch import save_file

    numel = 1
    for d in shape:
        numel *= d
    nbytes = numel * {"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "F8_E8M0": 8}[dtype] // 8
    if dtype.startswith("F6"):
        assert official_accepts(write(path, dtype, shape, nbytes))
        return path
    raw = torch.tensor([(7 * i + 3) % 256 for i in range(nbytes)], dtype=torch.uint8)
    if dtype == "F4":
        x = raw.reshape(*shape[:-1], shape[-1] // 2).view(torch.float4_e2m1fn_x2)
    else:
        x = raw.reshape(shape).view(torch.float8_e8m0fnu)
    save_file({"x": x, "y": torch.tensor(list(TAIL["data"]), dtype=torch.uint8)}, path)  # type: ignore[call-overload]
    return path


@pytest.mark.parametrize(("dtype", "shape"), PACKED, ids=[f"{d}{s}" for d, s in PACKED])
def test_commands_read_exactly_the_tensors_bytes(tmp_path: Path, dtype: str, shape: list[int]) -> None:
    path = official_file(tmp_path / "p.safetensors", dtype, shape)
    expected = dict(safetensors.deserialize(path.read_bytes()))
    assert (expected["x"]["dtype"], expected["x"]["shape"]) == (dtype, shape)
    hashed = run_cli("hash", path, "--format", "json")
    assert hashed.code == 0, hashed
    digests = {t["name"]: t["sha256"] for t in json.loads(hashed.out)["tensors"]}
    assert digests == {n: hashlib.sha256(bytes(t["data"])).hexdigest() for n, t in expected.items()}
    out = tmp_path / "x.safetensors"
    extracted = run_cli("extract", path, "x", "-o", out)
    assert extracted.code == 0, extracted
    written = dict(safetensors.deserialize(out.read_bytes()))
    assert written == {"x": expected["x"]}
